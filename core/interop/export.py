"""`strata export`: an asset written out with its provenance inside, for other tools.

What the file carries, by kind:

- PNG: a `parameters` text chunk in AUTOMATIC1111's format when a generation step is in
  the ancestry (the prompt, a `Negative prompt:` line when there is one, then
  `Steps: …, Sampler: …, CFG scale: …, Seed: …, Size: WxH, Model hash: …, Model: …`),
  which A1111/Forge's "PNG info" and "send to" read; and a `strata` iTXt chunk holding the
  provenance JSON (`strata provenance --format json`, docs/provenance.schema.json).
- JPEG and WebP: the same `parameters` text in EXIF UserComment (``UNICODE\\0`` and
  UTF-16BE, as A1111 writes it), and both texts in XMP: `strata:parameters` and
  `strata:provenance` in the namespace XMP_NAMESPACE. A JPEG holds at most 64 KB of XMP;
  a longer provenance is refused there (export PNG or WebP).
- Video, audio and animated images: the bytes as stored, and a JSON sidecar beside them
  (`<file>.strata.json`: the exported file's name and digest, the parameters text and the
  provenance JSON).

With `c2pa`, the file is also signed with Content Credentials whose actions follow the
lineage (core.interop.c2pa_credentials). The signed bytes are kept in the blob store, so a
later export of a descendant finds them and names them as its parentOf ingredient: the
chain of credentials follows the lineage even when the exported file has moved.

The file (and its sidecar) is written to a temporary file beside PATH and renamed over it,
so no half-written export is ever left under its name; then `asset.exported` records the
path, the format and the digest of the bytes written (its payload is in core.interop.events).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from strata.core.config import strata_version
from strata.core.errors import EventNotFound, InvalidInput
from strata.core.interop.chunks import SIDECAR_FORMAT, SIDECAR_SUFFIX, STRATA_KEY, XMP_NAMESPACE
from strata.core.interop.events import AssetExported
from strata.core.ledger.event_types import short
from strata.core.ledger.events import registry
from strata.core.projections import views
from strata.core.provenance.ancestry import Provenance, provenance
from strata.core.provenance.report import as_json
from strata.core.service import Strata, asset_stream
from strata.core.storage.files import fsync_dir

if TYPE_CHECKING:
    from strata.core.interop.c2pa_credentials import Ingredient

# The names an export writes (STRATA_KEY, XMP_NAMESPACE, SIDECAR_*) are defined beside the
# reader that brings them back (chunks.py).
FORMATS = ("png", "jpeg", "webp")
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
STILL_IMAGES = frozenset(MEDIA_TYPES.values())
PARAMETERS_KEY = "parameters"  # AUTOMATIC1111's PNG chunk
USER_COMMENT = 0x9286  # EXIF UserComment, in the Exif IFD
EXIF_IFD = 0x8769
JPEG_SEGMENT = 65_000  # what one JPEG APP1 segment holds, less its headers
JPEG_QUALITY = 95
# A1111's sampler names for the schedulers Strata runs.
SAMPLERS = {"ddim": "DDIM", "euler": "Euler", "euler_a": "Euler a", "dpmpp_2m": "DPM++ 2M",
            "pndm": "PLMS", "lms": "LMS", "unipc": "UniPC"}


@dataclass(frozen=True)
class Export:
    path: Path
    format: str
    exported_digest: str
    size: int
    sidecar: Path | None
    parameters: str | None
    c2pa: bool
    position: int


# --- the AUTOMATIC1111 parameters text ------------------------------------------------------


def _quote(value: str) -> str:
    """A value as A1111 writes it: JSON-quoted when it holds a comma, colon or newline."""
    if not any(c in value for c in ",:\n\""):
        return value
    return json.dumps(value, ensure_ascii=False)


def a1111_parameters(found: Provenance) -> str | None:
    """The latest generation of the ancestry in A1111's `parameters` format; None when no
    generation step made any of it."""
    generation = next((s for s in reversed(found.steps)
                       if s.kind == "job" and s.layer == "generation"), None)
    if generation is None:
        return None
    p = generation.parameters
    seed = next((o.seed for o in generation.outputs if o.seed is not None), None)
    model = generation.model or (p.get("model") if isinstance(p.get("model"), dict) else {})
    digest = str(model.get("digest") or "")
    lines = [str(p.get("prompt", ""))]
    if p.get("negative_prompt"):
        lines.append(f"Negative prompt: {p['negative_prompt']}")
    settings = {
        "Steps": p.get("steps"), "Sampler": SAMPLERS.get(str(p.get("scheduler")),
                                                         p.get("scheduler")),
        "CFG scale": p.get("cfg"), "Seed": seed, "Size": f"{p.get('width')}x{p.get('height')}",
        # A1111's model hash is the first 10 hex digits of the weights' SHA-256.
        "Model hash": digest.removeprefix("sha256:")[:10] or None, "Model": model.get("name"),
        "Version": f"strata {strata_version()}",
    }
    lines.append(", ".join(f"{k}: {_quote(str(v))}" for k, v in settings.items()
                           if v is not None))
    return "\n".join(lines)


# --- writing the formats --------------------------------------------------------------------


def _xmp(parameters: str | None, provenance_json: str) -> bytes:
    fields = [f"<strata:provenance>{escape(provenance_json)}</strata:provenance>"]
    if parameters is not None:
        fields.insert(0, f"<strata:parameters>{escape(parameters)}</strata:parameters>")
    return ("<?xpacket begin=\"\ufeff\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>"
            "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">"
            "<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">"
            f"<rdf:Description rdf:about=\"\" xmlns:strata=\"{XMP_NAMESPACE}\">"
            + "".join(fields) +
            "</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end=\"w\"?>").encode()


def encode_image(source: bytes, fmt: str, parameters: str | None,
                 provenance_json: str) -> bytes:
    """The image re-encoded as `fmt` with the parameters and provenance embedded."""
    from PIL import Image, PngImagePlugin

    with Image.open(io.BytesIO(source)) as image:
        image.load()
        out = io.BytesIO()
        if fmt == "png":
            info = PngImagePlugin.PngInfo()
            if parameters is not None:
                info.add_text(PARAMETERS_KEY, parameters)  # iTXt when not Latin-1
            info.add_itxt(STRATA_KEY, provenance_json, zip=True)
            image.save(out, "PNG", pnginfo=info)
            return out.getvalue()
        exif = Image.Exif()
        if parameters is not None:
            exif.get_ifd(EXIF_IFD)[USER_COMMENT] = (b"UNICODE\0"
                                                   + parameters.encode("utf-16-be"))
        xmp = _xmp(parameters, provenance_json)
        if fmt == "jpeg":
            if len(xmp) > JPEG_SEGMENT or len(exif.tobytes()) > JPEG_SEGMENT:
                raise InvalidInput(
                    f"the provenance of this asset ({len(xmp):,} bytes of XMP) is more than "
                    "a JPEG can hold (64 KB per segment); export it as png or webp")
            converted = image.convert("RGB") if image.mode not in ("RGB", "L") else image
            converted.save(out, "JPEG", quality=JPEG_QUALITY, exif=exif, xmp=xmp)
        else:
            image.save(out, "WEBP", lossless=True, exif=exif, xmp=xmp)
        return out.getvalue()


def _animated(source: bytes) -> bool:
    from PIL import Image

    with Image.open(io.BytesIO(source)) as image:
        return bool(getattr(image, "is_animated", False))


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; an export is meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- Content Credentials --------------------------------------------------------------------


def _signed_exports(strata: Strata, digests: list[str]) -> dict[str, AssetExported]:
    """The latest signed export of each of `digests` whose bytes the blob store keeps."""
    found: dict[str, AssetExported] = {}
    if not digests:
        return found  # (no streams would mean every stream to read_all)
    event_type, _ = registry.name_of(AssetExported)
    for event in strata.ledger.read_all(streams=[asset_stream(d) for d in digests],
                                        types=[event_type]):
        payload = event.payload
        if (isinstance(payload, AssetExported) and payload.c2pa
                and strata.blobs.exists(payload.exported_digest)):
            found[payload.digest] = payload
    return found


def _ingredient(strata: Strata, digest: str, relationship: str, label: str,
                media_types: dict[str, str], signed: dict[str, AssetExported]) -> Ingredient:
    """An ancestor as an ingredient: its signed export when it has one (so its manifest
    comes along), else its stored bytes."""
    export = signed.get(digest)
    if export is not None:
        data = strata.blobs.read_bytes(export.exported_digest)
        media_type = MEDIA_TYPES.get(export.format, export.format)
        title = Path(export.path).name
    else:
        data, media_type, title = strata.blobs.read_bytes(digest), media_types[digest], (
            f"{short(digest)}")
    from strata.core.interop.c2pa_credentials import Ingredient

    return Ingredient(digest=digest, label=label, relationship=relationship,
                      media_type=media_type, data=data, title=title)


def _credentials(strata: Strata, found: Provenance, data: bytes, media_type: str,
                 title: str) -> bytes:
    """`data` signed with a manifest that follows the asset's lineage.

    The parent it opens from: the latest-made ancestor with a signed export; else, when
    nothing in the ancestry was generated, the imported original it began from.
    """
    # Imported only to sign: cryptography is slow to import, and an unsigned export (or a
    # command that imports this module for its other names) does not need it.
    from strata.core.interop import c2pa_credentials

    ancestors = [a.digest for a in found.assets if a.digest != found.asset]
    signed = _signed_exports(strata, ancestors)
    media_types = {a.digest: a.media_type for a in found.assets}
    made_at = {a.digest: found.step(a.step).position for a in found.assets}
    parent = None
    if signed:
        latest = max(signed, key=lambda d: made_at[d])
        parent = _ingredient(strata, latest, "parentOf", "parent", media_types, signed)
    elif not any(c2pa_credentials.generated(s) for s in found.steps):
        root = min(found.roots, key=lambda d: made_at[d])
        parent = _ingredient(strata, root, "parentOf", "parent", media_types, signed)
    layers = dict.fromkeys(i.digest for s in found.steps if s.layer == "compositing"
                           for o in s.outputs for i in o.inputs if i.role == "layer")
    placed = {d: _ingredient(strata, d, "componentOf", f"layer-{short(d)}", media_types, signed)
              for d in layers if d in media_types}
    definition = c2pa_credentials.manifest(found, title, media_type, strata_version(), parent,
                                           placed)
    ingredients = [*([parent] if parent else []), *placed.values()]
    return c2pa_credentials.sign(strata.store.settings.resolved_home, definition, data,
                                 media_type, ingredients)


# --- the export -----------------------------------------------------------------------------


def _format_of(path: Path, fmt: str | None) -> str:
    """The format asked for, else the one the file name says, else PNG."""
    return fmt or SUFFIXES.get(path.suffix.lower(), "png")


def export(strata: Strata, asset_ref: str, path: Path, fmt: str | None = None,
           c2pa: bool = False) -> Export:
    """Write an asset to `path` with its provenance embedded (or in a sidecar), optionally
    signed with Content Credentials, and record `asset.exported`. Everything is checked
    before anything is written; a refusal writes and records nothing."""
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise InvalidInput(f"cannot export to {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise InvalidInput(f"cannot export to {path}: it is a folder; give a file name")
    if c2pa:
        from strata.core.interop.c2pa_credentials import require_c2pa

        require_c2pa()  # say why before any work is done
    digest = strata.resolve_asset(asset_ref)
    with strata.view() as conn:
        row = views.asset_row(conn, digest)
    if row is None:  # resolved a moment ago; the projections cannot lose it
        raise EventNotFound(f"no asset {digest} in the projections")
    source = strata.blobs.read_bytes(digest)
    media_type = str(row["media_type"])
    still = media_type in STILL_IMAGES and not _animated(source)
    if not still and fmt is not None:
        raise InvalidInput(f"{short(digest)} is {media_type}, which cannot be exported as "
                           f"{fmt}: --format is for still images; leave it out to export "
                           "the file as stored, with a JSON sidecar")

    found = provenance(strata, digest)
    provenance_json = as_json(found)
    parameters = a1111_parameters(found)
    sidecar: Path | None = None
    if still:
        chosen = _format_of(path, fmt)
        data = encode_image(source, chosen, parameters, provenance_json)
        written_type = MEDIA_TYPES[chosen]
    else:
        chosen, data, written_type = media_type, source, media_type
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if c2pa:
        data = _credentials(strata, found, data, written_type, path.name)
    exported_digest = _digest(data)
    if sidecar is not None:
        _write_atomically(sidecar, (json.dumps({
            "format": SIDECAR_FORMAT, "file": path.name, "digest": exported_digest,
            "asset": digest, "parameters": parameters, "provenance": found.to_json(),
        }, ensure_ascii=False, sort_keys=True, indent=1) + "\n").encode())
    _write_atomically(path, data)
    if c2pa:
        strata.blobs.ingest_bytes(data)  # blob before event: later exports open it
    (event,) = strata.record(asset_stream(digest), [AssetExported(
        digest=digest, path=str(path.resolve()), format=chosen,
        exported_digest=exported_digest, size=len(data),
        sidecar=str(sidecar.resolve()) if sidecar else None, c2pa=c2pa)])
    return Export(path=path, format=chosen, exported_digest=exported_digest, size=len(data),
                  sidecar=sidecar, parameters=parameters, c2pa=c2pa, position=event.position)
