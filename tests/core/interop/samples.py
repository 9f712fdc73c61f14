"""Hand-made files in other tools' formats, written with Pillow as those tools write them:
PNG text chunks (PngInfo), and EXIF UserComment for JPEG and WebP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.helpers import png_bytes

A1111 = (
    "masterpiece, a red fox in the snow <lora:add_detail:0.8>, <lora:fox_style:1.2>\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567, "
    "Size: 512x768, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Denoising strength: 0.45, "
    "Hires upscale: 2, Hires steps: 12, Hires upscaler: R-ESRGAN 4x+, "
    'ADetailer model: face_yolov8n.pt, ADetailer prompt: "smiling, detailed eyes", '
    "ADetailer denoising strength: 0.4, ADetailer version: 24.1.0, "
    'Lora hashes: "add_detail: 7c6bad76eb54, fox_style: 0123abcd", Version: v1.10.1'
)


def picture(seed: int = 1) -> Image.Image:
    """A distinct small picture per seed."""
    import io

    return Image.open(io.BytesIO(png_bytes(seed, (16, 16)))).convert("RGB")


def png(path: Path, chunks: dict[str, str], seed: int = 1, zipped: bool = False) -> Path:
    info = PngInfo()
    for name, text in chunks.items():
        info.add_text(name, text, zip=zipped)
    picture(seed).save(path, pnginfo=info)
    return path


def user_comment(path: Path, text: str, image_format: str, seed: int = 1) -> Path:
    """`text` in EXIF UserComment as A1111 writes it (piexif: UNICODE, UTF-16 big-endian)."""
    exif = Image.Exif()
    exif[0x8769] = {0x9286: b"UNICODE\x00" + text.encode("utf-16-be")}
    picture(seed).save(path, format=image_format, exif=exif)
    return path


def comfy_refiner_graph() -> dict[str, Any]:
    """SDXL base + refiner (KSamplerAdvanced x2), two LoRAs on the base model, a combined
    positive conditioning, and — first in node order — a sampler that leads nowhere."""
    return {
        "1": {"class_type": "KSampler", "inputs": {  # a decoy: not upstream of the save
            "seed": 999, "steps": 5, "cfg": 1.0, "sampler_name": "ddim",
            "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
            "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple",
              "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "12": {"class_type": "CheckpointLoaderSimple",
               "inputs": {"ckpt_name": "sd_xl_refiner_1.0.safetensors"}},
        "20": {"class_type": "LoraLoader", "inputs": {
            "lora_name": "add_detail.safetensors", "strength_model": 0.7,
            "strength_clip": 0.5, "model": ["4", 0], "clip": ["4", 1]}},
        "21": {"class_type": "LoraLoader", "inputs": {
            "lora_name": "fox_style.safetensors", "strength_model": 1.1,
            "strength_clip": 1.0, "model": ["20", 0], "clip": ["20", 1]}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode",
              "inputs": {"text": "a red fox in the snow", "clip": ["21", 1]}},
        "16": {"class_type": "CLIPTextEncode",
               "inputs": {"text": "golden hour light", "clip": ["21", 1]}},
        "17": {"class_type": "ConditioningCombine",
               "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["16", 0]}},
        "7": {"class_type": "CLIPTextEncode",
              "inputs": {"text": "blurry, lowres", "clip": ["21", 1]}},
        "13": {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {
            "ascore": 6, "width": 1024, "height": 1024, "text": "a red fox, sharp",
            "clip": ["12", 1]}},
        "14": {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {
            "ascore": 2.5, "width": 1024, "height": 1024, "text": "blurry",
            "clip": ["12", 1]}},
        "10": {"class_type": "KSamplerAdvanced", "inputs": {
            "add_noise": "enable", "noise_seed": 721897303308196, "steps": 25, "cfg": 8,
            "sampler_name": "euler", "scheduler": "normal", "start_at_step": 0,
            "end_at_step": 20, "return_with_leftover_noise": "enable", "model": ["21", 0],
            "positive": ["17", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "11": {"class_type": "KSamplerAdvanced", "inputs": {
            "add_noise": "disable", "noise_seed": 0, "steps": 25, "cfg": 8,
            "sampler_name": "euler", "scheduler": "normal", "start_at_step": 20,
            "end_at_step": 10000, "return_with_leftover_noise": "disable",
            "model": ["12", 0], "positive": ["13", 0], "negative": ["14", 0],
            "latent_image": ["10", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["12", 2]}},
        "9": {"class_type": "SaveImage",
              "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def comfy_custom_hires_graph() -> dict[str, Any]:
    """img2img from a loaded picture with SamplerCustomAdvanced (its seed in a RandomNoise
    node, a ControlNet between the prompts and the guider), then a latent-upscaled hires
    pass with a KSampler whose seed comes from a seed node."""
    return {
        "30": {"class_type": "UNETLoader",
               "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "31": {"class_type": "LoraLoaderModelOnly", "inputs": {
            "lora_name": "ink.safetensors", "strength_model": 0.6, "model": ["30", 0]}},
        "32": {"class_type": "CLIPTextEncode", "inputs": {"text": "an ink fox", "clip": 0}},
        "33": {"class_type": "CLIPTextEncode", "inputs": {"text": "photo", "clip": 0}},
        "34": {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": ["32", 0], "negative": ["33", 0], "strength": 0.8,
            "control_net": ["40", 0], "image": ["41", 0]}},
        "40": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "canny"}},
        "41": {"class_type": "LoadImage", "inputs": {"image": "edges.png"}},
        "35": {"class_type": "CFGGuider", "inputs": {
            "model": ["31", 0], "positive": ["34", 0], "negative": ["34", 1], "cfg": 3.5}},
        "36": {"class_type": "RandomNoise", "inputs": {"noise_seed": 4242}},
        "37": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "38": {"class_type": "BasicScheduler", "inputs": {
            "scheduler": "simple", "steps": 20, "denoise": 0.75, "model": ["31", 0]}},
        "42": {"class_type": "LoadImage", "inputs": {"image": "fox_sketch.png"}},
        "43": {"class_type": "VAEEncode", "inputs": {"pixels": ["42", 0], "vae": 0}},
        "39": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["36", 0], "guider": ["35", 0], "sampler": ["37", 0],
            "sigmas": ["38", 0], "latent_image": ["43", 0]}},
        "44": {"class_type": "LatentUpscaleBy", "inputs": {
            "upscale_method": "nearest-exact", "scale_by": 1.5, "samples": ["39", 0]}},
        "45": {"class_type": "Seed (rgthree)", "inputs": {"seed": 777}},
        "46": {"class_type": "KSampler", "inputs": {
            "seed": ["45", 0], "steps": 10, "cfg": 3.5, "sampler_name": "dpmpp_2m",
            "scheduler": "karras", "denoise": 0.5, "model": ["31", 0],
            "positive": ["34", 0], "negative": ["34", 1], "latent_image": ["44", 0]}},
        "47": {"class_type": "VAEDecode", "inputs": {"samples": ["46", 0], "vae": 0}},
        "48": {"class_type": "SaveImage", "inputs": {"images": ["47", 0]}},
    }


def workflow_of(graph: dict[str, Any]) -> str:
    """A stand-in for the editor's workflow chunk (kept raw, never parsed)."""
    return json.dumps({"last_node_id": len(graph), "nodes": [
        {"id": int(key), "type": node["class_type"]} for key, node in graph.items()],
        "version": 0.4})


INVOKEAI = {
    "generation_mode": "sdxl_txt2img", "positive_prompt": "a red fox, watercolor",
    "negative_prompt": "muddy", "width": 1024, "height": 832, "seed": 3141592653,
    "rand_device": "cpu", "cfg_scale": 5.5, "cfg_rescale_multiplier": 0, "steps": 30,
    "scheduler": "dpmpp_2m_k",
    "model": {"key": "k1", "hash": "blake3:abcdef", "name": "Juggernaut XL v9",
              "base": "sdxl", "type": "main"},
    "loras": [{"model": {"key": "l1", "hash": "blake3:0123", "name": "watercolor_v2",
                         "base": "sdxl", "type": "lora"}, "weight": 0.75}],
    "refiner_model": {"key": "r1", "hash": "blake3:feed", "name": "sdxl-refiner-1.0"},
    "refiner_steps": 10, "refiner_cfg_scale": 7.5, "refiner_scheduler": "euler",
    "refiner_start": 0.8, "refiner_positive_aesthetic_score": 6,
    "app_version": "5.6.0",
}

FOOOCUS = {
    "adm_guidance": "(1.5, 0.8, 0.3)", "base_model": "juggernautXL_v8Rundiffusion",
    "base_model_hash": "aeb7e9e689", "full_negative_prompt": ["ugly"],
    "full_prompt": ["a red fox, cinematic"], "guidance_scale": 4,
    "loras": [["sd_xl_offset_example-lora_1.0", 0.1, "4852686128"]],
    "negative_prompt": "", "performance": "Speed", "prompt": "a red fox",
    "refiner_model": "None", "refiner_switch": 0.5, "resolution": "(1152, 896)",
    "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras", "seed": "5087146337582372211",
    "sharpness": 2, "steps": 30, "styles": "['Fooocus V2', 'Fooocus Enhance']",
    "vae": "Default (model)", "version": "Fooocus v2.5.5",
}

SWARMUI = {
    "sui_image_params": {
        "prompt": "a red fox at dawn", "negativeprompt": "text",
        "model": "OfficialStableDiffusion/sd_xl_base_1.0",
        "seed": 305223794, "steps": 25, "cfgscale": 7.0, "aspectratio": "1:1",
        "width": 1024, "height": 1024, "sampler": "euler", "scheduler": "normal",
        "loras": ["foxes"], "loraweights": ["0.9"], "refinercontrolpercentage": 0.2,
        "refinermodel": "OfficialStableDiffusion/sd_xl_refiner_1.0", "refinersteps": 12,
        "refinerupscale": 2, "swarm_version": "0.9.6.2",
    },
    "sui_models": [{"name": "OfficialStableDiffusion/sd_xl_base_1.0.safetensors",
                    "param": "model", "hash": "0xd7a9105a90"}],
}

NOVELAI = {
    "prompt": "1girl, fox ears, masterpiece", "steps": 28, "height": 1216, "width": 832,
    "scale": 5.0, "uncond_scale": 0.0, "cfg_rescale": 0.0, "seed": 2402367183,
    "n_samples": 1, "noise_schedule": "karras", "sampler": "k_euler_ancestral",
    "uc": "lowres, bad anatomy", "strength": 0.7, "noise": 0.0,
    "request_type": "PromptGenerateRequest",
}


def novelai_chunks() -> dict[str, str]:
    return {"Title": "NovelAI generated image", "Description": NOVELAI["prompt"],
            "Software": "NovelAI", "Source": "NovelAI Diffusion V4.5 4BDE2A90",
            "Comment": json.dumps(NOVELAI)}
