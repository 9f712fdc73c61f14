"""An imported file that carries Content Credentials keeps its manifest store and what
c2pa-python's Reader says of it (with no trust anchor) in its import record; a tampered or
forged manifest is recorded, never refused; without c2pa-python it is recorded as not
checked."""

from __future__ import annotations

import builtins
import io
import json
import zlib
from pathlib import Path
from typing import Any

import c2pa
import pytest

from strata.core.interop import embedded as embedded_module
from strata.core.interop.export import export
from strata.core.provenance.keys import init_keys
from strata.core.provenance.recipe import recipe
from strata.core.service import Strata
from tests.core.interop import samples
from tests.core.interop.test_export import generate
from tests.core.interop.test_roundtrip import origin  # noqa: F401  (the exporting store)
from tests.helpers import png_bytes


def signed_export(other: Strata, folder: Path) -> tuple[str, Path]:
    """A generation of the other store, exported signed with that store's certificate."""
    init_keys(other.store.settings.resolved_home)
    made = generate(other)
    target = folder / "fox.png"
    export(other, made, target, c2pa=True)
    return made, target


def reader_says(path: Path) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """c2pa-python's own verdict with no trust anchor, the manifest store and the active
    manifest's failures."""
    with c2pa.Reader("image/png", io.BytesIO(path.read_bytes())) as read:
        results = read.get_validation_results() or {}
        return (str(read.get_validation_state()), json.loads(read.json()),
                results.get("activeManifest", {}).get("failure", []))


def chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk, with its CRC."""
    return (len(data).to_bytes(4, "big") + kind + data
            + zlib.crc32(kind + data).to_bytes(4, "big"))


def imported(strata: Strata, path: Path) -> dict[str, Any]:
    (event,) = strata.add_files([path])
    return event.data["embedded"]  # type: ignore[no-any-return]


def test_a_signed_export_keeps_its_manifest_store_and_validation(
        origin: Strata, strata: Strata, tmp_path: Path) -> None:  # noqa: F811
    made, target = signed_export(origin, tmp_path)
    state, store, failures = reader_says(target)
    (event,) = strata.add_files([target])
    found = event.data["embedded"]
    credentials = found["content_credentials"]
    assert credentials["checked"] is True and credentials["error"] is None
    assert credentials["state"] == state and state in ("Valid", "Trusted")
    # Signed by another store's authority, which nothing here anchors: the Reader says
    # so as a failure beside its verdict, and that is what is kept.
    assert credentials["failures"] == failures
    assert [f["code"] for f in failures] == ["signingCredential.untrusted"]
    assert credentials["active_manifest"] == store["active_manifest"]
    assert credentials["manifest_store"] == store
    assert credentials["manifest_store_size"] == len(json.dumps(store, ensure_ascii=False,
                                                                sort_keys=True))
    # The Strata provenance in the file still gives the recipe and the original digest.
    assert found["format"] == "strata" and found["original_digest"] == made
    shown = recipe(strata, event.data["asset"]["digest"])
    assert shown["content_credentials"]["state"] == state
    assert "manifest_store" not in shown["content_credentials"]  # --json of the event has it


def test_a_tampered_or_forged_manifest_is_recorded_and_the_file_goes_in(
        origin: Strata, strata: Strata, tmp_path: Path) -> None:  # noqa: F811
    _, target = signed_export(origin, tmp_path)
    data = target.read_bytes()
    tampered = tmp_path / "tampered.png"  # a chunk added after signing, the picture intact
    end = data.rindex(b"IEND") - 4
    tampered.write_bytes(data[:end] + chunk(b"tEXt", b"Comment\x00added later") + data[end:])
    credentials = imported(strata, tampered)["content_credentials"]
    assert credentials["checked"] is True and credentials["state"] == "Invalid"
    assert any("mismatch" in f["code"] for f in credentials["failures"])

    # A caBX chunk that says it is a manifest store and is nothing of the kind.
    plain = png_bytes(5)
    end = plain.index(b"IEND") - 4
    junk = b"\x00\x00\x00\x20jumb\x00\x00\x00\x18jumdc2pa" + b"\xff" * 12
    forged = tmp_path / "forged.png"
    forged.write_bytes(plain[:end] + chunk(b"caBX", junk) + plain[end:])
    found = imported(strata, forged)
    assert found["format"] == "c2pa" and found["content_credentials"]["error"]
    assert found["content_credentials"]["manifest_store"] is None


def test_a_file_without_credentials_records_none(strata: Strata, tmp_path: Path) -> None:
    path = samples.png(tmp_path / "fox.png", {"parameters": samples.A1111})
    assert imported(strata, path)["content_credentials"] is None
    plain = tmp_path / "plain.png"
    plain.write_bytes(png_bytes(6))
    assert imported(strata, plain) is None


def test_a_manifest_store_over_the_bound_is_kept_truncated(
        origin: Strata, strata: Strata, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, target = signed_export(origin, tmp_path)
    monkeypatch.setattr(embedded_module, "MAX_CHUNK_BYTES", 1000)
    credentials = imported(strata, target)["content_credentials"]
    assert credentials["manifest_store"] is None and credentials["state"] in ("Valid",
                                                                                "Trusted")
    assert len(credentials["manifest_store_truncated"]) == 1000
    assert credentials["manifest_store_size"] > 1000


def test_without_c2pa_python_it_is_recorded_as_not_checked(
        origin: Strata, strata: Strata, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    made, target = signed_export(origin, tmp_path)
    real_import = builtins.__import__

    def no_c2pa(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "c2pa" or name.startswith("c2pa."):
            raise ImportError("libc2pa_c.so: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_c2pa)
    found = imported(strata, target)
    credentials = found["content_credentials"]
    assert credentials["checked"] is False and credentials["state"] is None
    assert "need c2pa-python" in credentials["error"]
    assert found["original_digest"] == made  # the rest of the record is there
