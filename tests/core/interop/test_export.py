"""`strata export` in core: what the written files carry, read back with Pillow (and PyAV's
MP4 beside its sidecar), what is recorded, and what is refused."""

from __future__ import annotations

import hashlib
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from strata.core.av import encode_mp4
from strata.core.errors import InvalidInput
from strata.core.interop.export import XMP_NAMESPACE, AssetExported, export
from strata.core.layers import build_executors
from strata.core.layers.generation import build_request
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from tests.helpers import png_bytes

PROMPT = "a red fox, at dusk: golden"


def generate(strata: Strata) -> str:
    request = build_request(strata, PROMPT, model="tiny", seed=7, steps=2,
                            negative_prompt="blurry")
    jobs.request(strata, request)
    (made,) = Worker(strata, build_executors()).wait_for(request.job_id)["outputs"]
    return str(made)


def parse_a1111(text: str) -> tuple[str, str, dict[str, str]]:
    """A minimal reader of A1111's `parameters` text: prompt lines, the negative prompt,
    and the last line's `Key: value` pairs (values JSON-quoted when they hold a comma)."""
    *head, last = text.split("\n")
    negative = ""
    if head and head[-1].startswith("Negative prompt: "):
        negative = head.pop()[len("Negative prompt: "):]
    pairs = re.findall(r'\s*([\w ]+):\s*("(?:\\.|[^"])*"|[^,]*)(?:,|$)', last)
    return "\n".join(head), negative, {k: json.loads(v) if v.startswith('"') else v
                                       for k, v in pairs}


def exported_events(strata: Strata) -> list[AssetExported]:
    return [e.payload for e in strata.ledger.read_all(types=["asset.exported"])
            if isinstance(e.payload, AssetExported)]


def check_parameters(text: str, strata: Strata, digest: str) -> None:
    prompt, negative, settings = parse_a1111(text)
    assert (prompt, negative) == (PROMPT, "blurry")
    model_digest = next(iter(strata.ledger.read_all(types=["model.registered"]))).data["digest"]
    assert settings == {"Steps": "2", "Sampler": "DDIM", "CFG scale": "7.5", "Seed": "7",
                        "Size": "64x64", "Model hash": model_digest[7:17], "Model": "tiny",
                        "Version": settings["Version"]}


def test_png_export_carries_a1111_parameters_and_the_provenance(tiny: Strata,
                                                                tmp_path: Path) -> None:
    made = generate(tiny)
    target = tmp_path / "fox.png"
    done = export(tiny, made[7:19], target)
    data = target.read_bytes()
    with Image.open(target) as image:
        check_parameters(image.info["parameters"], tiny, made)
        carried = json.loads(image.info["strata"])
        pixels = image.convert("RGB").tobytes()
    with Image.open(io.BytesIO(tiny.blobs.read_bytes(made))) as original:
        assert pixels == original.convert("RGB").tobytes()  # the same picture
    assert carried["format"] == "strata-provenance" and carried["asset"] == made
    assert [s["layer"] for s in carried["steps"]] == ["generation"]
    assert done.exported_digest == "sha256:" + hashlib.sha256(data).hexdigest()
    (recorded,) = exported_events(tiny)
    assert (recorded.digest, recorded.path, recorded.format, recorded.exported_digest,
            recorded.size) == (made, str(target.resolve()), "png", done.exported_digest,
                               len(data))
    assert not list(tmp_path.glob(".fox.png.*"))  # no temporary file left beside it


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_jpeg_and_webp_carry_them_in_exif_and_xmp(tiny: Strata, tmp_path: Path,
                                                  fmt: str) -> None:
    made = generate(tiny)
    target = tmp_path / "fox.out"
    assert export(tiny, made, target, fmt).format == fmt
    with Image.open(target) as image:
        assert image.format == fmt.upper()
        comment = image.getexif().get_ifd(0x8769)[0x9286]
        xmp = image.info["xmp"]
    assert comment[:8] == b"UNICODE\0"  # as A1111 writes it (piexif's "unicode")
    check_parameters(comment[8:].decode("utf-16-be"), tiny, made)
    root = ET.fromstring(xmp.decode().split("?>", 1)[1].rsplit("<?", 1)[0])
    found = {e.tag.split("}")[1]: e.text for e in root.iter()
             if e.tag.startswith("{" + XMP_NAMESPACE)}
    assert json.loads(found["provenance"] or "")["asset"] == made
    check_parameters(found["parameters"] or "", tiny, made)


def test_an_image_without_a_generation_has_no_parameters(strata: Strata,
                                                          tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    source.write_bytes(png_bytes(1))
    (event,) = strata.add_files([source])
    digest = event.data["asset"]["digest"]
    done = export(strata, digest, tmp_path / "out.webp")  # the format from the suffix
    assert done.format == "webp" and done.parameters is None
    with Image.open(tmp_path / "out.webp") as image:
        assert 0x8769 not in image.getexif()
        assert b"strata:provenance" in image.info["xmp"]


def test_a_video_gets_a_json_sidecar(strata: Strata, tmp_path: Path) -> None:
    frames = [Image.new("RGB", (32, 32), (i * 40, 0, 0)) for i in range(4)]
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(encode_mp4(frames, 8, (32, 32), np.zeros((2, 4410), np.float32)))
    (event,) = strata.add_files([clip])
    digest = event.data["asset"]["digest"]
    target = tmp_path / "out.mp4"
    done = export(strata, digest, target)
    assert target.read_bytes() == clip.read_bytes()  # as stored
    assert done.sidecar == tmp_path / "out.mp4.strata.json"
    sidecar = json.loads(done.sidecar.read_text())
    assert sidecar["file"] == "out.mp4" and sidecar["digest"] == done.exported_digest
    assert sidecar["provenance"]["asset"] == digest and sidecar["parameters"] is None
    (recorded,) = exported_events(strata)
    assert recorded.format == "video/mp4" and recorded.sidecar == str(done.sidecar.resolve())

    before = strata.ledger.head_position()
    with pytest.raises(InvalidInput, match="cannot be exported as jpeg"):
        export(strata, digest, tmp_path / "still.jpg", "jpeg")
    assert strata.ledger.head_position() == before
    assert not (tmp_path / "still.jpg").exists()


@pytest.mark.parametrize(("name", "fmt", "message"), [
    ("out.gif", "gif", "unknown export format 'gif'"),
    ("missing/out.png", None, "does not exist"),
    (".", None, "it is a folder"),
])
def test_bad_exports_are_refused_and_record_nothing(strata: Strata, tmp_path: Path,
                                                    name: str, fmt: str | None,
                                                    message: str) -> None:
    source = tmp_path / "a.png"
    source.write_bytes(png_bytes(2))
    (event,) = strata.add_files([source])
    before = strata.ledger.head_position()
    files = sorted(tmp_path.rglob("*"))
    with pytest.raises(InvalidInput, match=message):
        export(strata, event.data["asset"]["digest"], tmp_path / name, fmt)
    assert strata.ledger.head_position() == before
    assert sorted(tmp_path.rglob("*")) == files
