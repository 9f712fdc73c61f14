"""InvokeAI: the `invokeai_metadata` PNG chunk (its graph and workflow chunks are kept raw).

The metadata is one JSON object of the core parameters (`positive_prompt`, `seed`,
`cfg_scale`, `model` with its name and hash, `loras` with weights, `strength` for
image-to-image…), a refiner's own `refiner_*` settings and a high-resolution fix's
`hrf_*`; each of those becomes a pass after the base one.
"""

from __future__ import annotations

import json
from typing import Any

from strata.core.interop.recipe import Lora, Parsed, Pass

_MODES = {"txt2img": "txt2img", "img2img": "img2img", "inpaint": "inpaint",
          "outpaint": "outpaint"}
_USED = {"generation_mode", "positive_prompt", "negative_prompt", "seed", "steps",
         "scheduler", "cfg_scale", "width", "height", "model", "loras", "strength",
         "init_image", "app_version", "hrf_enabled", "hrf_strength", "hrf_method"}


def _model(value: Any) -> tuple[Any, Any]:
    """A model's name and hash, however the version of InvokeAI wrote it."""
    if isinstance(value, dict):
        return value.get("name", value.get("model_name")), value.get("hash")
    return value, None


def _loras(value: Any) -> list[Lora]:
    found = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        # 3.x: {"lora": {"model_name": …}, "weight": …}; 4.x+: {"model": {"name": …}, …}
        name, digest = _model(item.get("model", item.get("lora")))
        found.append(Lora.model_validate({"name": name, "weight": item.get("weight"),
                                          "hash": digest}))
    return found


def parse(texts: dict[str, str]) -> Parsed:
    meta = json.loads(texts["invokeai_metadata"])
    if not isinstance(meta, dict):
        raise ValueError("invokeai_metadata is not a JSON object")
    model, digest = _model(meta.get("model"))
    mode = str(meta.get("generation_mode", "txt2img")).removeprefix("sdxl_")
    mode = mode.removeprefix("flux_").removeprefix("sd3_").removeprefix("cogview4_")
    base = {
        "prompt": meta.get("positive_prompt"), "negative_prompt": meta.get("negative_prompt"),
        "seed": meta.get("seed"), "steps": meta.get("steps"),
        "scheduler": meta.get("scheduler"), "cfg": meta.get("cfg_scale"),
        "width": meta.get("width"), "height": meta.get("height"), "model": model,
        "model_hash": digest, "loras": _loras(meta.get("loras")),
    }
    image = meta.get("init_image")
    passes = [Pass.model_validate({
        **base, "kind": _MODES.get(mode, mode),
        "denoise": meta.get("strength") if mode != "txt2img" else None,
        "source_images": [image.get("image_name") if isinstance(image, dict) else image],
        "extra": {k: v for k, v in meta.items()
                  if k not in _USED and not k.startswith("refiner_")}})]
    if meta.get("hrf_enabled"):
        passes.append(Pass.model_validate({
            **base, "kind": "hires", "denoise": meta.get("hrf_strength"),
            "extra": {"method": meta.get("hrf_method")}}))
    if meta.get("refiner_model"):
        refiner, refiner_hash = _model(meta.get("refiner_model"))
        passes.append(Pass.model_validate({
            **base, "kind": "refiner", "model": refiner, "model_hash": refiner_hash,
            "loras": [], "steps": meta.get("refiner_steps"),
            "scheduler": meta.get("refiner_scheduler"), "cfg": meta.get("refiner_cfg_scale"),
            "extra": {k.removeprefix("refiner_"): v for k, v in meta.items()
                      if k.startswith("refiner_")
                      and k not in ("refiner_model", "refiner_steps", "refiner_scheduler",
                                    "refiner_cfg_scale")}}))
    return Parsed("InvokeAI", meta.get("app_version"), passes)
