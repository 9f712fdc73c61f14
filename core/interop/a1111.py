"""AUTOMATIC1111 / Forge / SD.Next infotext: the `parameters` PNG chunk, or the same text
in a JPEG/WebP EXIF UserComment.

The text is the prompt, a `Negative prompt:` line, then one line of `Key: value` pairs
separated by commas, where a value holding commas is JSON-quoted. A hires fix, a refiner
and ADetailer units add their own keys; each becomes a pass after the base one. LoRAs
are tags in the prompt (`<lora:name:weight>`), their hashes in `Lora hashes`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from strata.core.interop.recipe import Lora, Parsed, Pass, integer, number

# One `Key: value` of the last line; a value is quoted JSON text or runs to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")
_LORA = re.compile(r"<(?:lora|lyco):([^:>]+)((?::[^:>]*)*)>", re.IGNORECASE)
_NAME_HASH = re.compile(r"^(.*?)\s*\[([0-9a-fA-F]+)\]\s*$")
_ADETAILER = re.compile(r"^ADetailer (.+?)(?: (\d+)(?:st|nd|rd|th))?$")
_PARAMS_NEEDED = 3  # fewer `Key: value` pairs on the last line: it is part of the prompt


def split(infotext: str) -> tuple[str, str | None, dict[str, str]]:
    """The prompt, the negative prompt and the key/value settings of an infotext."""
    *lines, last = infotext.strip().split("\n")
    if len(_PARAM.findall(last)) < _PARAMS_NEEDED:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] | None = None
    for line in lines:
        if negative is None and line.strip().startswith("Negative prompt:"):
            negative = [line.strip().removeprefix("Negative prompt:").strip()]
        elif negative is not None:
            negative.append(line)
        else:
            prompt.append(line)
    settings = {key.strip(): _unquote(value.strip()) for key, value in _PARAM.findall(last)}
    return "\n".join(prompt).strip(), None if negative is None else "\n".join(negative), settings


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            found = json.loads(value)
        except ValueError:
            return value
        return found if isinstance(found, str) else value
    return value


def loras(prompt: str, hashes: str | None = None) -> list[Lora]:
    """The LoRA tags of a prompt, with their hashes from `Lora hashes: "a: 1f2e, b: …"`."""
    by_name = {}
    for item in (hashes or "").split(","):
        name, sep, digest = item.rpartition(":")
        if sep:
            by_name[name.strip()] = digest.strip()
    found = []
    for name, arguments in _LORA.findall(prompt):
        weights = [a for a in arguments.split(":")[1:] if a]
        found.append(Lora.model_validate({
            "name": name, "weight": weights[0] if weights else 1.0,
            "hash": by_name.get(name)}))
    return found


def _size(value: str | None) -> tuple[int | None, int | None]:
    match = _SIZE.match(value or "")
    return (int(match[1]), int(match[2])) if match else (None, None)


def _name_and_hash(value: str | None) -> tuple[str | None, str | None]:
    match = _NAME_HASH.match(value or "")
    return (match[1], match[2]) if match else (value, None)


def _tool(settings: dict[str, str]) -> tuple[str, str | None]:
    version = settings.get("Version")
    if "App" in settings:
        return settings["App"], version
    if version and version.startswith("strata "):  # Strata's own exports write it so
        return "Strata", version.removeprefix("strata ")
    if version and "Fooocus" in version:
        return "Fooocus", version.replace("Fooocus", "").strip().removeprefix("v") or None
    if version and re.match(r"^f\d", version):  # Forge: f2.0.1v1.10.1-…
        return "Forge", version
    return "AUTOMATIC1111", version


def parse(texts: dict[str, str]) -> Parsed:
    prompt, negative, settings = split(texts["parameters"])
    used: set[str] = set()

    def take(key: str) -> str | None:
        used.add(key)
        return settings.get(key)

    width, height = _size(take("Size"))
    hires = any(key.startswith("Hires") for key in settings)
    denoise = take("Denoising strength")
    base = {
        "prompt": prompt, "negative_prompt": negative, "seed": take("Seed"),
        "steps": take("Steps"), "sampler": take("Sampler"),
        "scheduler": take("Schedule type"), "cfg": take("CFG scale"),
        "width": width, "height": height, "model": take("Model"),
        "model_hash": take("Model hash"), "loras": loras(prompt, take("Lora hashes")),
    }
    passes = [Pass.model_validate({
        **base, "kind": "img2img" if denoise is not None and not hires else "txt2img",
        "denoise": None if hires else denoise})]
    if hires:
        passes.append(_hires(base, settings, denoise, used))
    if "Refiner" in settings:
        model, digest = _name_and_hash(take("Refiner"))
        passes.append(Pass.model_validate({
            **base, "kind": "refiner", "model": model, "model_hash": digest,
            "extra": {"switch_at": take("Refiner switch at")}}))
    # Face fixes run on the finished picture, at its final size.
    final = {"width": passes[-1].width, "height": passes[-1].height}
    passes += _adetailer({**base, **final}, settings, used)
    tool, version = _tool(settings)
    used |= {"Version", "App"}
    extra = {key: value for key, value in settings.items() if key not in used}
    passes[0] = passes[0].model_copy(update={"extra": extra})
    return Parsed(tool, version, passes)


def _hires(base: dict[str, Any], settings: dict[str, str], denoise: str | None,
           used: set[str]) -> Pass:
    used |= {key for key in settings if key.startswith("Hires")}
    width, height = _size(settings.get("Hires resize"))
    scale = number(settings.get("Hires upscale"))
    if width is None and scale is not None and base["width"] and base["height"]:
        width, height = round(base["width"] * scale), round(base["height"] * scale)
    checkpoint, digest = _name_and_hash(settings.get("Hires checkpoint"))
    steps = integer(settings.get("Hires steps"))
    return Pass.model_validate({
        **base, "kind": "hires", "width": width, "height": height, "denoise": denoise,
        "steps": steps or base["steps"],  # 0: as many as the first pass
        "sampler": settings.get("Hires sampler") or base["sampler"],
        "prompt": settings.get("Hires prompt") or base["prompt"],
        "negative_prompt": settings.get("Hires negative prompt") or base["negative_prompt"],
        "cfg": settings.get("Hires CFG Scale") or base["cfg"],
        **({"model": checkpoint, "model_hash": digest}
           if checkpoint and checkpoint != "Use same checkpoint" else {}),
        "extra": {"upscaler": settings.get("Hires upscaler"), "upscale": scale}})


def _adetailer(base: dict[str, Any], settings: dict[str, str], used: set[str]) -> list[Pass]:
    """One pass per ADetailer unit (`ADetailer model`, `ADetailer model 2nd`, …)."""
    units: dict[int, dict[str, str]] = {}
    for key, value in settings.items():
        match = _ADETAILER.match(key)
        if match and match[1] != "version":
            units.setdefault(int(match[2] or 1), {})[match[1]] = value
            used.add(key)
    used.add("ADetailer version")
    passes = []
    for _, unit in sorted(units.items()):
        passes.append(Pass.model_validate({
            **base, "kind": "adetailer", "loras": [],
            "prompt": unit.pop("prompt", None) or base["prompt"],
            "negative_prompt": unit.pop("negative prompt", None) or base["negative_prompt"],
            "denoise": unit.pop("denoising strength", None),
            "extra": {**unit, "version": settings.get("ADetailer version")}}))
    return passes
