"""Files from other tools keep their recipe on import: every format, written by hand with
Pillow as those tools write it, imported through `Strata.add_files`, and the recorded
`asset.imported` event read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from strata.core.interop.chunks import MAX_CHUNK_BYTES
from strata.core.interop.recipe import RECONSTRUCTED
from strata.core.service import Strata
from tests.core.interop import samples


def imported(strata: Strata, path: Path) -> dict[str, Any]:
    """The `embedded` field of the event that imported `path`."""
    (event,) = strata.add_files([path])
    assert event.type == "asset.imported"
    stored = strata.ledger.get(event.event_id)
    assert stored is not None
    return stored.data["embedded"]  # type: ignore[no-any-return]


def kinds(embedded: dict[str, Any]) -> list[str]:
    return [p["kind"] for p in embedded["passes"]]


def test_a1111_png_with_loras_hires_and_adetailer(strata: Strata, tmp_path: Path) -> None:
    found = imported(strata, samples.png(tmp_path / "a.png", {"parameters": samples.A1111}))
    assert found["note"] == RECONSTRUCTED and found["verified"] is False
    assert (found["format"], found["tool"], found["tool_version"]) == (
        "a1111", "AUTOMATIC1111", "v1.10.1")
    assert found["raw"] == {"parameters": samples.A1111}  # verbatim
    assert kinds(found) == ["txt2img", "hires", "adetailer"]
    base, hires, face = found["passes"]
    assert base["prompt"].startswith("masterpiece, a red fox in the snow <lora:add_detail:0.8>")
    assert base["negative_prompt"] == "blurry, lowres"
    assert (base["seed"], base["steps"], base["cfg"], base["width"], base["height"]) == (
        1234567, 28, 6.5, 512, 768)
    assert (base["sampler"], base["scheduler"]) == ("DPM++ 2M", "Karras")
    assert (base["model"], base["model_hash"]) == ("sd_xl_base_1.0", "31e35c80fc")
    assert [(lo["name"], lo["weight"], lo["hash"]) for lo in base["loras"]] == [
        ("add_detail", 0.8, "7c6bad76eb54"), ("fox_style", 1.2, "0123abcd")]
    # With a hires fix, the denoising strength is the hires pass's, not an img2img's.
    assert base["denoise"] is None
    assert (hires["width"], hires["height"], hires["steps"], hires["denoise"]) == (
        1024, 1536, 12, 0.45)
    assert hires["extra"] == {"upscaler": "R-ESRGAN 4x+", "upscale": 2.0}
    assert face["prompt"] == "smiling, detailed eyes"  # the quoted value, unquoted
    assert face["denoise"] == 0.4 and face["extra"]["model"] == "face_yolov8n.pt"
    assert (face["width"], face["height"]) == (1024, 1536)  # after the hires pass


@pytest.mark.parametrize("image_format", ["JPEG", "WEBP"])
def test_a1111_text_in_exif_user_comment(strata: Strata, tmp_path: Path,
                                         image_format: str) -> None:
    text = samples.A1111.replace("a red fox", "a red fox — ünïcödé")
    path = samples.user_comment(tmp_path / f"a.{image_format.lower()}", text, image_format)
    found = imported(strata, path)
    assert found["format"] == "a1111" and found["raw"] == {"parameters": text}
    assert found["passes"][0]["prompt"].startswith("masterpiece, a red fox — ünïcödé")
    assert found["passes"][0]["seed"] == 1234567


def test_a1111_img2img_and_forge(strata: Strata, tmp_path: Path) -> None:
    text = ('a fox\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512, '
            'Denoising strength: 0.6, Refiner: "sd_xl_refiner_1.0 [7440042bbd]", '
            "Refiner switch at: 0.8, Version: f2.0.1v1.10.1-previous-313-g8a042934")
    found = imported(strata, samples.png(tmp_path / "f.png", {"parameters": text}))
    assert (found["tool"], kinds(found)) == ("Forge", ["img2img", "refiner"])
    assert found["passes"][0]["denoise"] == 0.6
    refiner = found["passes"][1]
    assert (refiner["model"], refiner["model_hash"]) == ("sd_xl_refiner_1.0", "7440042bbd")
    assert refiner["extra"] == {"switch_at": "0.8"}


def test_a_strata_export_names_strata(strata: Strata, tmp_path: Path) -> None:
    text = ("a fox\nSteps: 4, Sampler: ddim, CFG scale: 7.5, Seed: 9, Size: 64x64, "
            "Model hash: 0123456789, Model: tiny, Version: strata 0.1.0")
    found = imported(strata, samples.png(tmp_path / "s.png", {"parameters": text}))
    assert (found["tool"], found["tool_version"]) == ("Strata", "0.1.0")


def test_comfyui_refiner_graph_walked_from_the_saved_image(strata: Strata,
                                                           tmp_path: Path) -> None:
    graph = samples.comfy_refiner_graph()
    workflow = samples.workflow_of(graph)
    found = imported(strata, samples.png(tmp_path / "c.png", {
        "prompt": json.dumps(graph), "workflow": workflow}))
    assert (found["format"], found["tool"]) == ("comfyui", "ComfyUI")
    assert found["raw"]["workflow"] == workflow
    # The decoy sampler (node 1, seed 999) does not lead to SaveImage: two passes, not three.
    assert kinds(found) == ["txt2img", "refiner"]
    base, refiner = found["passes"]
    assert base["seed"] == 721897303308196 and base["extra"]["node"] == "10"
    assert base["prompt"] == "a red fox in the snow\ngolden hour light"  # combined
    assert base["negative_prompt"] == "blurry, lowres"
    assert (base["steps"], base["cfg"], base["sampler"], base["scheduler"]) == (
        25, 8.0, "euler", "normal")
    assert (base["width"], base["height"]) == (1024, 1024)
    assert base["model"] == "sd_xl_base_1.0.safetensors"
    assert [(lo["name"], lo["weight"], lo["clip_weight"]) for lo in base["loras"]] == [
        ("add_detail.safetensors", 0.7, 0.5), ("fox_style.safetensors", 1.1, 1.0)]
    assert (base["extra"]["start_at_step"], base["extra"]["end_at_step"]) == (0, 20)
    assert refiner["model"] == "sd_xl_refiner_1.0.safetensors" and refiner["loras"] == []
    assert (refiner["prompt"], refiner["negative_prompt"]) == ("a red fox, sharp", "blurry")
    assert (refiner["width"], refiner["height"]) == (1024, 1024)


def test_comfyui_custom_sampler_img2img_and_hires(strata: Strata, tmp_path: Path) -> None:
    graph = samples.comfy_custom_hires_graph()
    found = imported(strata, samples.png(tmp_path / "h.png", {"prompt": json.dumps(graph)}))
    assert kinds(found) == ["img2img", "hires"]
    first, hires = found["passes"]
    assert first["seed"] == 4242  # in the RandomNoise node
    assert (first["steps"], first["scheduler"], first["denoise"]) == (20, "simple", 0.75)
    assert (first["sampler"], first["cfg"]) == ("euler", 3.5)  # KSamplerSelect, CFGGuider
    # Through the ControlNet applier: its positive output to the positive prompt only.
    assert (first["prompt"], first["negative_prompt"]) == ("an ink fox", "photo")
    assert first["model"] == "flux1-dev.safetensors"
    assert [(lo["name"], lo["weight"]) for lo in first["loras"]] == [("ink.safetensors", 0.6)]
    assert first["source_images"] == ["fox_sketch.png"]
    assert hires["seed"] == 777  # from the seed node it is linked to
    assert (hires["denoise"], hires["sampler"], hires["scheduler"]) == (0.5, "dpmpp_2m",
                                                                        "karras")
    assert (hires["prompt"], hires["negative_prompt"]) == ("an ink fox", "photo")


def test_invokeai_metadata_with_lora_and_refiner(strata: Strata, tmp_path: Path) -> None:
    graph, workflow = '{"nodes": {"a": {}}}', '{"name": "my workflow"}'
    found = imported(strata, samples.png(tmp_path / "i.png", {
        "invokeai_metadata": json.dumps(samples.INVOKEAI), "invokeai_graph": graph,
        "invokeai_workflow": workflow}))
    assert (found["tool"], found["tool_version"]) == ("InvokeAI", "5.6.0")
    assert found["raw"]["invokeai_graph"] == graph
    assert found["raw"]["invokeai_workflow"] == workflow
    assert kinds(found) == ["txt2img", "refiner"]
    base, refiner = found["passes"]
    assert (base["prompt"], base["seed"], base["cfg"], base["scheduler"]) == (
        "a red fox, watercolor", 3141592653, 5.5, "dpmpp_2m_k")
    assert (base["model"], base["model_hash"]) == ("Juggernaut XL v9", "blake3:abcdef")
    assert [(lo["name"], lo["weight"], lo["hash"]) for lo in base["loras"]] == [
        ("watercolor_v2", 0.75, "blake3:0123")]
    assert (refiner["model"], refiner["steps"], refiner["cfg"]) == ("sdxl-refiner-1.0", 10,
                                                                   7.5)
    assert refiner["extra"]["start"] == 0.8


def test_fooocus_json(strata: Strata, tmp_path: Path) -> None:
    found = imported(strata, samples.png(tmp_path / "f.png", {
        "parameters": json.dumps(samples.FOOOCUS), "fooocus_scheme": "fooocus"}))
    assert (found["format"], found["tool"], found["tool_version"]) == (
        "fooocus", "Fooocus", "2.5.5")
    (base,) = found["passes"]
    assert (base["prompt"], base["seed"], base["width"], base["height"], base["cfg"]) == (
        "a red fox", 5087146337582372211, 1152, 896, 4.0)
    assert (base["model"], base["model_hash"]) == ("juggernautXL_v8Rundiffusion",
                                                   "aeb7e9e689")
    assert [(lo["name"], lo["weight"]) for lo in base["loras"]] == [
        ("sd_xl_offset_example-lora_1.0", 0.1)]
    assert base["extra"]["performance"] == "Speed"


def test_swarmui_json_in_png_and_jpeg(strata: Strata, tmp_path: Path) -> None:
    text = json.dumps(samples.SWARMUI)
    for path in (samples.png(tmp_path / "s.png", {"parameters": text}),
                 samples.user_comment(tmp_path / "s.jpg", text, "JPEG", seed=2)):
        found = imported(strata, path)
        assert (found["tool"], found["tool_version"]) == ("SwarmUI", "0.9.6.2")
        assert kinds(found) == ["txt2img", "refiner"]
        base, refiner = found["passes"]
        assert (base["prompt"], base["seed"], base["cfg"]) == ("a red fox at dawn",
                                                               305223794, 7.0)
        assert base["model_hash"] == "0xd7a9105a90"
        assert [(lo["name"], lo["weight"]) for lo in base["loras"]] == [("foxes", 0.9)]
        assert (refiner["width"], refiner["denoise"], refiner["steps"]) == (2048, 0.2, 12)


def test_novelai_comment(strata: Strata, tmp_path: Path) -> None:
    found = imported(strata, samples.png(tmp_path / "n.png", samples.novelai_chunks()))
    assert (found["format"], found["tool"]) == ("novelai", "NovelAI")
    (base,) = found["passes"]
    assert (base["prompt"], base["negative_prompt"], base["seed"]) == (
        "1girl, fox ears, masterpiece", "lowres, bad anatomy", 2402367183)
    assert (base["sampler"], base["scheduler"], base["cfg"]) == ("k_euler_ancestral",
                                                                 "karras", 5.0)
    assert (base["model"], base["model_hash"]) == ("NovelAI Diffusion V4.5", "4BDE2A90")
    assert base["kind"] == "txt2img" and base["denoise"] is None


def test_broken_json_is_recorded_and_the_file_imported(strata: Strata, tmp_path: Path) -> None:
    broken = '{"3": {"class_type": "KSampler", "inputs": {'
    path = samples.png(tmp_path / "b.png", {"prompt": broken})
    found = imported(strata, path)
    assert found["format"] == "comfyui" and found["passes"] == []
    assert found["error"].startswith("the comfyui metadata could not be parsed (invalid JSON)")
    assert found["raw"] == {"prompt": broken}
    assert strata.blobs.read_bytes(strata.resolve_asset(
        strata.ledger.read_last(1)[0].data["asset"]["digest"])) == path.read_bytes()


def test_an_oversized_chunk_is_kept_truncated_not_parsed(strata: Strata,
                                                         tmp_path: Path) -> None:
    huge = '{"3": {"class_type": "KSampler", "inputs": {"text": "' + "x" * (50 * 1024**2) + '"}}}'
    found = imported(strata, samples.png(tmp_path / "o.png", {"prompt": huge}))
    assert found["truncated"] == {"prompt": len("prompt") + 1 + len(huge)}
    assert found["raw"]["prompt"] == huge[:MAX_CHUNK_BYTES]
    assert "kept truncated, not parsed" in found["error"] and found["passes"] == []


def test_a_compressed_chunk_is_bounded_when_inflated(strata: Strata, tmp_path: Path) -> None:
    """A small zTXt that inflates past the bound (a zip bomb) is cut at the bound."""
    from strata.core.interop.chunks import read_text_chunks

    path = samples.png(tmp_path / "z.png", {"parameters": "y" * (MAX_CHUNK_BYTES + 10)},
                       zipped=True)
    chunks = read_text_chunks(path, "image/png")
    assert len(chunks.texts["parameters"]) == MAX_CHUNK_BYTES
    assert "parameters" in chunks.truncated


@pytest.mark.parametrize("chunks, zipped", [
    ({"parameters": "y" * (2 * 1024**2)}, True),
    ({"prompt": "x" * (40 * 1024**2), "workflow": "w" * (30 * 1024**2)}, False)],
    ids=["inflates-past-1MB", "70MB-of-text"])
def test_pillow_text_limits_do_not_refuse_the_file(strata: Strata, tmp_path: Path,
                                                   chunks: dict[str, str], zipped: bool) -> None:
    found = imported(strata, samples.png(tmp_path / "big.png", chunks, zipped=zipped))
    assert "kept truncated, not parsed" in found["error"]


def test_hostile_values_never_block_the_import(strata: Strata, tmp_path: Path) -> None:
    loop = {"1": {"class_type": "KSampler", "inputs": {
                "seed": "NaN", "cfg": float("nan"), "steps": "many", "model": ["2", 0],
                "positive": ["1", 0], "latent_image": ["1", 0]}},
            "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "a\x00b",
                                                         "model": ["2", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}
    text = json.dumps(loop).replace('"a\\u0000b"', '"a\\u0000b\\ud800"')
    found = imported(strata, samples.png(tmp_path / "h.png", {"prompt": text}))
    # A model chain that loops on itself is an error, recorded; the asset is in.
    assert found["format"] == "comfyui" and "runs too long" in found["error"]
    assert found["raw"]["prompt"] == text

    fooocus = '{"prompt": "p\\u0000", "seed": 1e400, "guidance_scale": NaN, "steps": -Infinity}'
    found = imported(strata, samples.png(tmp_path / "f.png", {"parameters": fooocus}, seed=2))
    (base,) = found["passes"]
    assert (base["prompt"], base["seed"], base["cfg"], base["steps"]) == (
        "p\ufffd", None, None, None)


def test_nul_characters_in_raw_text_are_stored_replaced(strata: Strata,
                                                        tmp_path: Path) -> None:
    text = "a fox\x00\nSteps: 3, Seed: 2, Size: 8x8"
    found = imported(strata, samples.png(tmp_path / "n.png", {"parameters": text}))
    assert found["raw"] == {"parameters": text.replace("\x00", "\ufffd")}
    assert found["passes"][0]["prompt"] == "a fox\ufffd"


def test_plain_files_and_derivations_carry_no_recipe(strata: Strata, tmp_path: Path) -> None:
    plain = samples.png(tmp_path / "p.png", {"Software": "GIMP"})
    assert imported(strata, plain) is None
    made = samples.png(tmp_path / "d.png", {"parameters": samples.A1111}, seed=3)
    (event,) = strata.add_files([made], parents=[(strata.ledger.read_last(1)[0].data[
        "asset"]["digest"], "source")])
    assert event.type == "asset.derived" and "embedded" not in event.data
