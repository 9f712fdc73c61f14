"""Interop commands: export (an asset with its provenance inside, optionally signed with
Content Credentials) and verify-file (read and validate a file's Content Credentials)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from strata.api.cli.app import Json, app, console, open_strata, print_json
from strata.core.config import Settings


@app.command()
def export(
    ref: Annotated[str, typer.Argument(help="an asset hash prefix")],
    path: Annotated[Path, typer.Argument(help="the file to write (replaced if it exists)")],
    fmt: Annotated[str | None, typer.Option(
        "--format", help="png, jpeg or webp, for still images (default: from PATH's "
        "suffix, else png); video, audio and animations are written as stored with a "
        "JSON sidecar")] = None,
    c2pa: Annotated[bool, typer.Option(
        "--c2pa", help="sign it with Content Credentials whose actions follow the lineage "
        "(needs `strata keys init` and c2pa-python)")] = False,
) -> None:
    """Write an asset out with its provenance: an AUTOMATIC1111 `parameters` text for
    images with a generation in their ancestry and the provenance JSON, in PNG chunks or
    JPEG/WebP EXIF and XMP, or a JSON sidecar beside video and audio; recorded as
    asset.exported."""
    from strata.core.interop.export import export as write_export

    done = write_export(open_strata(), ref, path, fmt, c2pa)
    signed = ", signed with Content Credentials" if done.c2pa else ""
    console.print(f"exported {done.path} ({done.format}, {done.size:,} bytes, "
                  f"{done.exported_digest}){signed}", soft_wrap=True)
    if done.sidecar is not None:
        console.print(f"provenance in {done.sidecar}", soft_wrap=True)
    if done.parameters is not None:
        console.print("parameters (AUTOMATIC1111):")
        console.print(done.parameters, markup=False, soft_wrap=True)


@app.command("verify-file")
def verify_file(
    path: Annotated[Path, typer.Argument(help="a file that may carry Content Credentials")],
    trust: Annotated[Path | None, typer.Option(
        "--trust", help="a CA certificate (PEM) to trust (default: this store's local "
        "authority, when there is one)")] = None,
    as_json: Json = False,
) -> None:
    """Read and validate a file's Content Credentials (C2PA) and show them: whether the
    signature holds and is trusted, who signed, the actions and the ingredients. Exits
    non-zero when the manifest is invalid."""
    from strata.core.errors import VerificationFailed
    from strata.core.interop.c2pa_credentials import local_anchor, read

    anchor = (trust.read_text(encoding="ascii") if trust is not None
              else local_anchor(Settings().resolved_home))
    found = read(path, anchor)
    if as_json:
        print_json(found.to_json())
    else:
        _show(found.state, found.anchored, found.active, found.failures)
    if found.state == "Invalid":
        raise VerificationFailed(f"{path}: its Content Credentials do not validate")


def _show(state: str, anchored: bool, active: dict[str, Any],
          failures: list[dict[str, Any]]) -> None:
    trust = "" if state == "Trusted" else (
        " (not trusted: the signer's authority was not among the anchors)" if anchored
        else " (no trust anchor given: run in the store that signed, or pass --trust)")
    console.print(f"Content Credentials: {state}{trust}")
    signer = active.get("signature_info", {})
    console.print(f"signed by: {signer.get('common_name')} ({signer.get('issuer')}), "
                  f"{signer.get('alg')}")
    generators = ", ".join(f"{g.get('name')} {g.get('version', '')}".strip()
                           for g in active.get("claim_generator_info", []))
    console.print(f"title: {active.get('title')}; made with: {generators}", markup=False)
    for assertion in active.get("assertions", []):
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                source = action.get("digitalSourceType", "").rsplit("/", 1)[-1]
                description = action.get("parameters", {}).get("description", "")
                console.print(f"  {action.get('action')}"
                              + (f" [{source}]" if source else "")
                              + (f": {description}" if description else ""), markup=False)
    for ingredient in active.get("ingredients", []):
        credentials = " (with its own Content Credentials)" if ingredient.get(
            "active_manifest") else ""
        console.print(f"  ingredient {ingredient.get('relationship')}: "
                      f"{ingredient.get('title')}{credentials}", markup=False)
    for failure in failures:
        console.print(f"  failure {failure.get('code')}: {failure.get('explanation')}",
                      markup=False)
