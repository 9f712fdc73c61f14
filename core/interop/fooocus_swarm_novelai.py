"""Fooocus and SwarmUI (their JSON in the `parameters` chunk or EXIF UserComment) and
NovelAI (a `Comment` JSON chunk beside `Software: NovelAI`).

Fooocus: `prompt`, `negative_prompt`, `resolution` as "(w, h)", `guidance_scale`,
`base_model` and its hash, `loras` as [name, weight, hash] (or `lora_combined_N` as
"name : weight"), a refiner with its switch point, `version` "Fooocus v2.x".
SwarmUI: `sui_image_params` (`prompt`, `negativeprompt`, `cfgscale`, `loras` beside
`loraweights`, `initimagecreativity`, `refiner*`, `swarm_version`), and `sui_models` with
the models' hashes. NovelAI: `prompt`, `uc` (the negative), `scale`, `sampler`,
`noise_schedule`, `strength` for image-to-image; the model is named in `Source`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from strata.core.interop.recipe import Lora, Parsed, Pass, number

_PAIR = re.compile(r"^\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_NAMED_HASH = re.compile(r"^(.*?)\s+([0-9A-Fa-f]{8})$")
_MODEL_FILE = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|gguf|sft)$", re.IGNORECASE)


def _object(text: str, what: str) -> dict[str, Any]:
    found = json.loads(text)
    if not isinstance(found, dict):
        raise ValueError(f"the {what} metadata is not a JSON object")
    return found


def _rest(data: dict[str, Any], used: set[str]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in used}


def _stem(name: Any) -> Any:
    return _MODEL_FILE.sub("", name) if isinstance(name, str) else name


# --- Fooocus ---------------------------------------------------------------------------


def fooocus(texts: dict[str, str]) -> Parsed:
    data = _object(texts["parameters"], "Fooocus")
    size = _PAIR.match(str(data.get("resolution", "")))
    loras = [Lora.model_validate({"name": item[0], "weight": item[1],
                                  "hash": item[2] if len(item) > 2 else None})
             for item in data.get("loras") or [] if isinstance(item, list) and item]
    for key, value in sorted(data.items()):  # the older form: lora_combined_1 = "n : w"
        if key.startswith("lora_combined_") and isinstance(value, str) and " : " in value:
            name, _, weight = value.rpartition(" : ")
            loras.append(Lora.model_validate({"name": name, "weight": weight}))
    base = {
        "prompt": data.get("prompt"), "negative_prompt": data.get("negative_prompt"),
        "seed": data.get("seed"), "steps": data.get("steps"), "sampler": data.get("sampler"),
        "scheduler": data.get("scheduler"), "cfg": data.get("guidance_scale"),
        "width": size[1] if size else None, "height": size[2] if size else None,
        "model": data.get("base_model"), "model_hash": data.get("base_model_hash"),
        "loras": loras,
    }
    used = {*base, "guidance_scale", "resolution", "base_model", "base_model_hash", "loras",
            "version", "refiner_model", "refiner_model_hash", "refiner_switch"}
    passes = [Pass.model_validate({
        **base, "extra": {k: v for k, v in _rest(data, used).items()
                          if not k.startswith("lora_combined_")}})]
    if str(data.get("refiner_model", "None")) not in ("", "None"):
        passes.append(Pass.model_validate({
            **base, "kind": "refiner", "model": data["refiner_model"],
            "model_hash": data.get("refiner_model_hash"), "loras": [],
            "extra": {"switch_at": data.get("refiner_switch")}}))
    version = str(data.get("version", "")).removeprefix("Fooocus").strip().removeprefix("v")
    return Parsed("Fooocus", version or None, passes)


# --- SwarmUI ---------------------------------------------------------------------------


def swarmui(texts: dict[str, str]) -> Parsed:
    data = _object(texts["parameters"], "SwarmUI")
    params = data.get("sui_image_params")
    if not isinstance(params, dict):
        raise ValueError("sui_image_params is not a JSON object")
    # sui_models names the files, the parameters the models (without their extension).
    hashes = {_stem(m.get("name")): m.get("hash") for m in data.get("sui_models") or []
              if isinstance(m, dict)}
    names, weights = params.get("loras") or [], params.get("loraweights") or []
    loras = [Lora.model_validate({"name": name,
                                  "weight": weights[i] if i < len(weights) else None,
                                  "hash": hashes.get(_stem(name))})
             for i, name in enumerate(names if isinstance(names, list) else [])]
    creativity = params.get("initimagecreativity")
    base = {
        "prompt": params.get("prompt"), "negative_prompt": params.get("negativeprompt"),
        "seed": params.get("seed"), "steps": params.get("steps"),
        "sampler": params.get("sampler"), "scheduler": params.get("scheduler"),
        "cfg": params.get("cfgscale"), "width": params.get("width"),
        "height": params.get("height"), "model": params.get("model"),
        "model_hash": hashes.get(_stem(params.get("model"))), "loras": loras,
    }
    used = {*base, "negativeprompt", "cfgscale", "loras", "loraweights", "swarm_version",
            "initimagecreativity", "initimage"}
    passes = [Pass.model_validate({
        **base, "kind": "img2img" if creativity is not None else "txt2img",
        "denoise": creativity, "source_images": [params.get("initimage")],
        "extra": {k: v for k, v in _rest(params, used).items() if not k.startswith("refiner")}
    })]
    if "refinercontrolpercentage" in params:
        upscale = number(params.get("refinerupscale")) or 1.0
        refiner = params.get("refinermodel")
        sizes = {key: number(base[key]) for key in ("width", "height")}
        scaled = {key: round(size * upscale) for key, size in sizes.items() if size}
        passes.append(Pass.model_validate({
            **base, **scaled, "kind": "refiner" if refiner else "hires",
            "model": refiner or base["model"],
            "model_hash": hashes.get(_stem(refiner)) if refiner else base["model_hash"],
            "denoise": params.get("refinercontrolpercentage"),
            "steps": params.get("refinersteps") or base["steps"],
            "extra": {k.removeprefix("refiner"): v for k, v in params.items()
                      if k.startswith("refiner")}}))
    return Parsed("SwarmUI", params.get("swarm_version"), passes)


# --- NovelAI ---------------------------------------------------------------------------


def novelai(texts: dict[str, str]) -> Parsed:
    data = _object(texts["Comment"], "NovelAI")
    source = texts.get("Source", "")
    named = _NAMED_HASH.match(source)
    image_to_image = "img2img" in str(data.get("request_type", "")).lower()
    used = {"prompt", "uc", "seed", "steps", "sampler", "noise_schedule", "scale", "width",
            "height"} | ({"strength"} if image_to_image else set())
    return Parsed("NovelAI", None, [Pass.model_validate({
        "kind": "img2img" if image_to_image else "txt2img",
        "prompt": data.get("prompt", texts.get("Description")),
        "negative_prompt": data.get("uc"), "seed": data.get("seed"),
        "steps": data.get("steps"), "sampler": data.get("sampler"),
        "scheduler": data.get("noise_schedule"), "cfg": data.get("scale"),
        "width": data.get("width"), "height": data.get("height"),
        "model": named[1] if named else source or None,
        "model_hash": named[2] if named else None,
        "denoise": data.get("strength") if image_to_image else None,
        "extra": _rest(data, used)})])
