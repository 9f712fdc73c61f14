"""The text chunks of an image file that other tools write their recipes into, bounded.

PNG text chunks (tEXt, zTXt, iTXt) are walked by hand rather than through Pillow, which
would read a chunk whole: a chunk over the bound is read only up to it and kept
truncated, and the rest of it is skipped. JPEG and WebP carry the same text in EXIF
(UserComment, in the Exif IFD or, as Fooocus writes it, in IFD0), read with Pillow, and
Strata's own exports the provenance JSON in XMP (`strata:provenance`), found as the
`strata` text. `carries_c2pa` tells, from the bytes alone, whether a file holds a C2PA
manifest store, so that c2pa-python is loaded only for the files that do.

The names an export writes (`strata` chunk, XMP namespace, video sidecar) are defined
here, where imports read them; core.interop.export writes the same.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

# Per chunk; a ComfyUI workflow of a few hundred nodes is well below it.
MAX_CHUNK_BYTES = 1024 * 1024
STRATA_KEY = "strata"  # the provenance JSON of a Strata export
XMP_NAMESPACE = "https://strata.invalid/ns/export/1.0/"
SIDECAR_SUFFIX = ".strata.json"  # beside an exported video or audio file
SIDECAR_FORMAT = "strata-export"
# A JUMBF description box ("jumd") whose type is the C2PA manifest store's UUID, which
# begins with the bytes "c2pa": what every container's C2PA manifest store starts with.
C2PA_MARK = b"jumdc2pa"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The chunk names the parsers read, and those kept raw beside them; others are ignored.
KNOWN = frozenset({
    "parameters", "fooocus_scheme",  # A1111/Forge/SD.Next, Fooocus, SwarmUI
    "prompt", "workflow",  # ComfyUI
    "invokeai_metadata", "invokeai_graph", "invokeai_workflow",  # InvokeAI
    "Comment", "Software", "Source", "Description", "Title", "Generation time",  # NovelAI
    STRATA_KEY,  # Strata's own exports
})
USER_COMMENT, MAKER_NOTE, SOFTWARE, EXIF_IFD = 0x9286, 0x927C, 0x0131, 0x8769
# Character codes that open an EXIF UserComment (EXIF 2.3, table 9).
_UNICODE, _ASCII, _JIS = b"UNICODE\x00", b"ASCII\x00\x00\x00", b"JIS\x00\x00\x00\x00\x00"


@dataclass(frozen=True)
class TextChunks:
    """Text found in a file by chunk name; `truncated` names those over the bound, with
    the size they declared (what `texts` holds of them is their beginning)."""

    texts: dict[str, str] = field(default_factory=dict)
    truncated: dict[str, int] = field(default_factory=dict)


def read_text_chunks(path: Path, media_type: str,
                     limit: int = MAX_CHUNK_BYTES) -> TextChunks:
    if media_type == "image/png":
        return _png(path, limit)
    if media_type in ("image/jpeg", "image/webp"):
        return _exif(path, limit)
    return TextChunks()


def _png(path: Path, limit: int) -> TextChunks:
    found = TextChunks()
    with path.open("rb") as file:
        if file.read(8) != PNG_SIGNATURE:
            return found
        while len(header := file.read(8)) == 8:
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IEND":
                break
            if kind not in (b"tEXt", b"zTXt", b"iTXt"):
                file.seek(length + 4, 1)  # the data and its CRC
                continue
            # A keyword (at most 79 bytes) and the iTXt header come before the text.
            data = file.read(min(length, limit + 512))
            file.seek(length - len(data) + 4, 1)
            _text_chunk(found, kind, data, cut=len(data) < length, length=length,
                        limit=limit)
    return found


def _text_chunk(found: TextChunks, kind: bytes, data: bytes, cut: bool, length: int,
                limit: int) -> None:
    keyword, _, rest = data.partition(b"\x00")
    name = keyword.decode("latin-1")
    if name not in KNOWN or name in found.texts:  # the first of a name counts, as in A1111
        return
    encoding = "latin-1"
    compressed = kind == b"zTXt"
    if kind == b"zTXt":
        rest = rest[1:]  # the compression method
    elif kind == b"iTXt":
        compressed = rest[:1] == b"\x01"
        _language, _, rest = rest[2:].partition(b"\x00")
        _translated, _, rest = rest.partition(b"\x00")
        encoding = "utf-8"
    if compressed:
        inflater = zlib.decompressobj()
        try:
            text = inflater.decompress(rest, limit)
        except zlib.error:
            text = b""
        cut = cut or bool(inflater.unconsumed_tail)
    else:
        text = rest[:limit]
        cut = cut or len(rest) > limit
    found.texts[name] = text.decode(encoding, "replace")
    if cut:
        found.truncated[name] = length


def _exif(path: Path, limit: int) -> TextChunks:
    from PIL import Image

    found = TextChunks()
    with Image.open(path) as image:
        exif = image.getexif()
        comment = exif.get_ifd(EXIF_IFD).get(USER_COMMENT, exif.get(USER_COMMENT))
        # Fooocus names its scheme in MakerNote and itself in Software.
        scheme, software = exif.get(MAKER_NOTE), exif.get(SOFTWARE)
        xmp = image.info.get("xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode()
    strata = None
    if isinstance(xmp, bytes):
        if len(xmp) <= limit:
            strata = _xmp_provenance(xmp)
        elif XMP_NAMESPACE.encode() in xmp:  # Strata's, too large to parse: say so
            found.texts[STRATA_KEY], found.truncated[STRATA_KEY] = "", len(xmp)
    for name, value in (("parameters", comment), ("fooocus_scheme", scheme),
                        ("Software", software), (STRATA_KEY, strata)):
        text = _user_comment(value) if isinstance(value, bytes) else value
        if isinstance(text, str) and text.strip("\x00 "):
            text = text.rstrip("\x00")
            found.texts[name] = text[:limit]
            if len(text) > limit:
                found.truncated[name] = len(text)
    return found


def _xmp_provenance(xmp: bytes) -> str | None:
    """The `strata:provenance` text of an XMP packet (an element, or an attribute as some
    editors rewrite XMP), else None. Expat refuses entity expansion bombs, and
    ElementTree resolves no external entities."""
    try:
        root = ElementTree.fromstring(xmp)
    except (ElementTree.ParseError, ValueError):
        return None  # broken XMP hides no Strata provenance; the EXIF text is still read
    name = f"{{{XMP_NAMESPACE}}}provenance"
    for element in root.iter():
        found = element.text if element.tag == name else element.attrib.get(name)
        if found:
            return found
    return None


def carries_c2pa(path: Path, block: int = MAX_CHUNK_BYTES) -> bool:
    """Whether the file holds a C2PA manifest store, from its bytes: read in blocks that
    overlap by the mark's length, so a mark across two blocks is found."""
    tail = b""
    with path.open("rb") as file:
        while data := file.read(block):
            if C2PA_MARK in tail + data:
                return True
            tail = data[-(len(C2PA_MARK) - 1):]
    return False


def _user_comment(value: bytes) -> str:
    """The text of an EXIF UserComment, whatever character code opens it."""
    code, text = value[:8], value[8:]
    if code == _UNICODE:
        if text[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return text.decode("utf-16", "replace")
        # Without a byte-order mark: ASCII-range text has its zero bytes first in
        # big-endian (as piexif, and so A1111, writes it) and second in little-endian.
        big = text[0::2].count(0) >= text[1::2].count(0)
        return text.decode("utf-16-be" if big else "utf-16-le", "replace")
    if code == _ASCII:
        return text.decode("latin-1")
    if code == _JIS:
        return text.decode("shift_jis", "replace")
    if code == b"\x00" * 8:
        return text.decode("utf-8", "replace")
    return value.decode("utf-8", "replace")  # no character code: as written
