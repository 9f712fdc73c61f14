"""ComfyUI: the API-format graph in the PNG `prompt` chunk (the editor's `workflow` chunk
is kept raw).

Nothing is guessed from node order. The walk starts at the node that saved the image
(SaveImage), finds every sampler upstream of it (KSampler, KSamplerAdvanced,
SamplerCustom, SamplerCustomAdvanced), earliest first, and for each follows its inputs
back: the conditioning to the text encoders (through combiners and ControlNet
appliers), the model to its loader through every LoRA loader on the way, the latent to
its size (an empty latent, an upscale of an earlier sampler's latent, or an encoded
source image) and the seed wherever the graph keeps it (`seed`, `noise_seed`, a
RandomNoise node). Several samplers — a refiner, a hires pass — become several passes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from strata.core.interop.recipe import Lora, Parsed, Pass, integer, number

SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom",
                      "SamplerCustomAdvanced"})
SAVERS = ("SaveImage", "SaveAnimatedWEBP", "SaveAnimatedPNG", "Image Save",
          "SaveImageWebsocket")
MAX_NODES = 10_000
MAX_SAMPLERS = 100
MAX_HOPS = 1_000  # along one chain of inputs: a longer one is a loop or a hostile graph
_TEXT_INPUTS = ("text", "text_g", "text_l", "clip_l", "t5xxl", "prompt")
_VALUE_INPUTS = ("value", "string", "text", "int", "float", "number", "seed", "noise_seed")
_MODEL_FILES = ("ckpt_name", "unet_name", "model_name", "gguf_name")

Node = dict[str, Any]


class GraphError(ValueError):
    pass


@dataclass
class _Latent:
    width: int | None = None
    height: int | None = None
    source_images: list[str] = field(default_factory=list)
    kind: str = "txt2img"
    upscaled: bool = False


def parse(texts: dict[str, str]) -> Parsed:
    if "prompt" not in texts:
        raise GraphError("only the editor's workflow is in the file, no API-format prompt: "
                         "kept raw, not parsed")
    return Parsed("ComfyUI", None, Graph(json.loads(texts["prompt"])).passes())


class Graph:
    def __init__(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise GraphError("the prompt is not a graph of nodes")
        self.nodes: dict[str, Node] = {
            str(key): node for key, node in data.items()
            if isinstance(node, dict) and isinstance(node.get("class_type"), str)
            and isinstance(node.get("inputs"), dict)}
        if len(self.nodes) > MAX_NODES:
            raise GraphError(f"{len(self.nodes):,} nodes: more than {MAX_NODES:,}")

    # --- reading the graph --------------------------------------------------------------

    def link(self, value: Any) -> tuple[str, int] | None:
        """The (node, output slot) an input is linked to; None for a literal value."""
        if (isinstance(value, list) and len(value) == 2 and str(value[0]) in self.nodes
                and isinstance(value[1], int)):
            return str(value[0]), value[1]
        return None

    def inputs(self, node: str) -> dict[str, Any]:
        return self.nodes[node]["inputs"]  # type: ignore[no-any-return]

    def kind(self, node: str) -> str:
        return self.nodes[node]["class_type"]  # type: ignore[no-any-return]

    def value(self, raw: Any, names: tuple[str, ...] = _VALUE_INPUTS) -> Any:
        """A literal input, or the value a linked node (a primitive, a seed node) holds
        in the first of `names` it has."""
        for _ in range(MAX_HOPS):
            linked = self.link(raw)
            if linked is None:
                return raw
            inputs = self.inputs(linked[0])
            name = next((n for n in names if n in inputs), None)
            if name is None:
                return None
            raw = inputs[name]
        raise GraphError("a chain of values runs too long")

    def upstream(self, start: str) -> list[str]:
        """Every node `start` depends on and itself, each after all it depends on."""
        order: list[str] = []
        seen: set[str] = set()
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            node, finished = stack.pop()
            if finished:
                order.append(node)
                continue
            if node in seen:
                continue
            seen.add(node)
            stack.append((node, True))
            for raw in self.inputs(node).values():
                linked = self.link(raw)
                if linked is not None and linked[0] not in seen:
                    stack.append((linked[0], False))
        return order

    # --- the passes ---------------------------------------------------------------------

    def passes(self) -> list[Pass]:
        savers = [n for n in self.nodes if self.kind(n) in SAVERS]
        if not savers:
            raise GraphError("no SaveImage node: which output is this file cannot be told")
        # With several outputs, the file is the one with the most samplers behind it.
        chains = [[n for n in self.upstream(s) if self.kind(n) in SAMPLERS] for s in savers]
        samplers = max(chains, key=len)
        if not samplers:
            raise GraphError("no sampler leads to the saved image")
        passes: list[Pass] = []
        for node in samplers:
            passes.append(self._pass(node, passes[0] if passes else None))
        return passes

    def _pass(self, node: str, first: Pass | None) -> Pass:
        inputs = self.inputs(node)
        guider = self._linked_node(inputs.get("guider"))
        guided = self.inputs(guider) if guider else inputs
        sigmas = self._linked_node(inputs.get("sigmas"))
        schedule = self.inputs(sigmas) if sigmas else inputs
        chosen = self._linked_node(inputs.get("sampler"))
        model, loras = self._model(guided.get("model"))
        latent = self._latent(inputs.get("latent_image"))
        positive = guided.get("positive", guided.get("conditioning", guided.get("cond1")))
        kind = latent.kind
        if first is not None:
            kind = ("refiner" if model != first.model else
                    "hires" if latent.upscaled else "second pass")
        extra = {"node": node, "class_type": self.kind(node)}
        for name in ("start_at_step", "end_at_step", "add_noise", "return_with_leftover_noise"):
            if name in inputs:
                extra[name] = self.value(inputs[name])
        return Pass.model_validate({
            "kind": kind, "prompt": self._text(positive),
            "negative_prompt": self._text(guided.get("negative")),
            "seed": self._seed(inputs), "steps": self.value(schedule.get("steps")),
            "sampler": (self.value(inputs.get("sampler_name"))
                        or (self.value(self.inputs(chosen).get("sampler_name"))
                            if chosen else None)),
            "scheduler": (self.value(schedule.get("scheduler"))
                          or (self.kind(sigmas) if sigmas else None)),
            "cfg": self.value(guided.get("cfg")),
            "width": latent.width, "height": latent.height, "model": model, "loras": loras,
            "denoise": self.value(schedule.get("denoise")),
            "source_images": latent.source_images, "extra": extra})

    def _linked_node(self, raw: Any) -> str | None:
        linked = self.link(raw)
        return linked[0] if linked else None

    def _seed(self, inputs: dict[str, Any]) -> Any:
        for name in ("seed", "noise_seed"):
            if name in inputs:
                return self.value(inputs[name])
        noise = self._linked_node(inputs.get("noise"))  # a RandomNoise node
        if noise is not None:
            return self.value(self.inputs(noise).get("noise_seed"))
        return None

    def _text(self, raw: Any) -> str | None:
        """The prompt text behind a conditioning input: the text encoders it comes from,
        followed through combiners (and, for nodes that pass on a positive and a negative
        conditioning, through the one on the same output slot)."""
        texts: list[str] = []
        stack = [self.link(raw)]
        seen: set[tuple[str, int]] = set()
        while stack:
            linked = stack.pop()
            if linked is None or linked in seen or len(seen) > MAX_HOPS:
                continue
            seen.add(linked)
            node, slot = linked
            inputs = self.inputs(node)
            found = [self.value(inputs[n]) for n in _TEXT_INPUTS if n in inputs]
            found = [t for t in found if isinstance(t, str) and t.strip()]
            if found:
                texts += [t for t in found if t not in texts]
                continue
            if "positive" in inputs and "negative" in inputs:
                stack.append(self.link(inputs["negative" if slot == 1 else "positive"]))
                continue
            stack += [self.link(v) for k, v in reversed(list(inputs.items())) if "cond" in k]
        return "\n".join(texts) if texts else None

    def _model(self, raw: Any) -> tuple[str | None, list[Lora]]:
        """The model file behind a model input, and the LoRAs applied on the way (in the
        order they were applied)."""
        loras: list[Lora] = []
        for _ in range(MAX_HOPS):
            node = self._linked_node(raw)
            if node is None:
                return None, loras[::-1]
            inputs = self.inputs(node)
            name = next((inputs[n] for n in _MODEL_FILES if n in inputs), None)
            if isinstance(name, str):
                return name, loras[::-1]
            if "lora_name" in inputs:
                loras.append(Lora.model_validate({
                    "name": self.value(inputs["lora_name"]),
                    "weight": self.value(inputs.get("strength_model")),
                    "clip_weight": self.value(inputs.get("strength_clip"))}))
            # rgthree's Power Lora Loader: lora_1 = {"on": …, "lora": …, "strength": …}
            for value in reversed(list(inputs.values())):
                if isinstance(value, dict) and "lora" in value and value.get("on", True):
                    loras.append(Lora.model_validate({
                        "name": value["lora"], "weight": value.get("strength"),
                        "clip_weight": value.get("strengthTwo")}))
            raw = inputs.get("model")
        raise GraphError("a chain of model nodes runs too long")

    def _latent(self, raw: Any, depth: int = 0) -> _Latent:
        """Where a sampler's latent comes from: its size, and a source image if it was
        encoded from one."""
        if depth > MAX_SAMPLERS:
            raise GraphError("samplers feed each other in a loop")
        found = _Latent()
        scale = 1.0
        for _ in range(MAX_HOPS):
            node = self._linked_node(raw)
            if node is None:
                return found
            inputs = self.inputs(node)
            kind = self.kind(node)
            if kind in SAMPLERS:  # a later pass: the earlier one's latent, maybe upscaled
                earlier = self._latent(inputs.get("latent_image"), depth + 1)
                found.width = found.width or _scaled(earlier.width, scale)
                found.height = found.height or _scaled(earlier.height, scale)
                return found
            if "width" in inputs and "height" in inputs and found.width is None:
                found.width = integer(self.value(inputs["width"])) or None
                found.height = integer(self.value(inputs["height"])) or None
                if "Upscale" not in kind:
                    return found  # an empty latent: where the first pass starts
                found.upscaled = True
            elif "scale_by" in inputs:
                scale *= number(self.value(inputs["scale_by"])) or 1.0
                found.upscaled = True
            if "pixels" in inputs:  # encoded from an image: img2img, or inpainting
                found.kind = "inpaint" if "mask" in inputs or "Inpaint" in kind else "img2img"
                found.source_images += self._images(inputs["pixels"])
                return found
            raw = next((inputs[n] for n in ("samples", "latent", "latent_image", "samples_to")
                        if n in inputs), None)
        raise GraphError("a chain of latent nodes runs too long")

    def _images(self, raw: Any) -> list[str]:
        """The names of the image files loaded upstream of an image input."""
        node = self._linked_node(raw)
        if node is None:
            return []
        return [str(self.inputs(n).get("image")) for n in self.upstream(node)
                if self.kind(n).startswith("LoadImage") and "image" in self.inputs(n)]


def _scaled(size: int | None, scale: float) -> int | None:
    return round(size * scale) if size is not None else None
