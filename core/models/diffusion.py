"""What every diffusion layer records and shares: the model it named and the weights it
ran, the scheduler's full configuration, device, dtype, library versions and timings,
and PNG outputs that carry their own recipe.

Generation and the editing layers (inpaint, img2img) complete with a `DiffusionCompleted`
payload, so provenance reads one shape for all of them. Nothing here imports torch.

A text encoder reads a fixed window of tokens (77 for CLIP) and the pipeline cuts longer
prompts silently. `prompt_window_warnings` says so when a request is made, reading the
model's tokenizer files with the light `tokenizers` library (never transformers), and
`prompt_seen` gives the completion event the text the model actually read.
"""

from __future__ import annotations

import io
import json
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo

from strata.core.config import strata_version
from strata.core.ledger.event_types import DIGEST_PATTERN, JobCompleted, short
from strata.core.ledger.events import Payload, is_recorded
from strata.core.models.pipelines import SCHEDULERS, check_dtype, library_versions, parse_device

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from PIL import Image
    from tokenizers import Tokenizer

# transformers writes this (1e30) as model_max_length when a tokenizer has no limit.
_NO_LIMIT = 10**9
# Classifier-free guidance when neither the request nor the model's folder names one
# (Stable Diffusion's usual scale).
DEFAULT_CFG = 7.5


# The settings every diffusion request names, checked where the request is made. Requests
# recorded before a check existed still decode (the worker refuses what it cannot run).


def _known_scheduler(value: str | None) -> str | None:
    if value is not None and value not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {value!r}; use one of {', '.join(SCHEDULERS)}")
    return value


def _known_device(value: str | None, info: ValidationInfo) -> str | None:
    # Only the name: whether this machine has the device is the worker's question.
    if value is not None and not is_recorded(info):
        parse_device(value)
    return value


def _known_dtype(value: str | None, info: ValidationInfo) -> str | None:
    return value if value is None or is_recorded(info) else check_dtype(value)


SchedulerName = Annotated[str, AfterValidator(_known_scheduler)]
OptionalSchedulerName = Annotated[str | None, AfterValidator(_known_scheduler)]
DeviceName = Annotated[str | None, AfterValidator(_known_device)]
DtypeName = Annotated[str | None, AfterValidator(_known_dtype)]


class ModelRef(Payload):
    """A registered model: its name, where its files are, what its weights hash to."""

    name: str
    path: str
    digest: str = Field(pattern=DIGEST_PATTERN)


class SchedulerUsed(Payload):
    name: str
    class_name: str
    config: dict[str, Any]


class Timings(Payload):
    load_s: float
    generate_s: float
    store_s: float
    total_s: float


class DiffusionCompleted(JobCompleted):
    """Base of the completion payloads of layers that run a diffusers pipeline."""

    model: ModelRef  # the digest of the weights actually loaded
    scheduler: SchedulerUsed
    device: str
    dtype: str
    versions: dict[str, str]
    timings: Timings
    # Set only when the text encoder's window cut a prompt: the text the model read
    # (normalised as its tokenizer normalises, e.g. lower-cased for CLIP).
    prompt_seen: str | None = None
    negative_prompt_seen: str | None = None

    def summary(self) -> str:
        return f"{super().summary()} on {self.model.name} {short(self.model.digest)}"


def scheduler_used(pipeline: DiffusionPipeline, name: str) -> SchedulerUsed:
    """The scheduler a pipeline ran with, its whole configuration made JSON-safe."""
    config = dict(pipeline.scheduler.config)  # type: ignore[attr-defined]
    return SchedulerUsed(name=name, class_name=SCHEDULERS[name],
                         config=json.loads(json.dumps(config, default=str)))


def run_versions() -> dict[str, str]:
    """The versions of everything that shaped an output: libraries, Python, Strata."""
    return {**library_versions(), "python": platform.python_version(),
            "strata": strata_version()}


def encode_png(image: Image.Image, recipe: dict[str, Any]) -> bytes:
    """A PNG with the recipe in a `strata` text chunk, so the file explains itself.

    The recipe must be deterministic (no times, no job ids): the same request gives the
    same bytes, which reproduction relies on.
    """
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("strata", json.dumps(recipe, sort_keys=True))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def prompt_window_warnings(model_path: str | Path, prompts: Mapping[str, str | None]) -> list[str]:
    """One warning per prompt (keyed by how to call it, e.g. "prompt") that is longer than
    the text encoder's window of the model at `model_path`.

    The count is exact for a tokenizer saved as tokenizer.json and for CLIP's vocab.json +
    merges.txt (rebuilt as transformers builds it); for any other tokenizer, or a
    single-file checkpoint, nothing can be counted here and no warning is given — the
    completed event still records what the model read.
    """
    found = _prompt_tokenizer(Path(model_path) / "tokenizer")
    if found is None:
        return []
    window, tokenizer = found
    warnings = []
    for label, text in prompts.items():
        if not text:
            continue
        count = len(tokenizer.encode(text).ids)
        if count > window:
            warnings.append(
                f"the {label} is {count} tokens long but the model reads at most {window} "
                "(start and end markers included); the rest will be cut off, and the "
                "completed job records the text the model read"
            )
    return warnings


def prompt_seen(pipeline: DiffusionPipeline, text: str | None) -> str | None:
    """The part of `text` the pipeline's text encoder reads, when its window cuts `text`;
    None when it reads all of it. Tokenizes as diffusers' Stable Diffusion pipelines do."""
    tokenizer = getattr(pipeline, "tokenizer", None)
    if not text or tokenizer is None:
        return None
    window = tokenizer.model_max_length
    if len(tokenizer(text).input_ids) <= window:
        return None
    kept = tokenizer(text, truncation=True, max_length=window).input_ids
    return str(tokenizer.decode(kept, skip_special_tokens=True))


def _prompt_tokenizer(folder: Path) -> tuple[int, Tokenizer] | None:
    """The window and a tokenizer that counts as the model's does, if the files allow."""
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        window = config["model_max_length"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(window, int) or window >= _NO_LIMIT:
        return None
    try:
        from tokenizers import Tokenizer

        if (folder / "tokenizer.json").is_file():
            return window, Tokenizer.from_file(str(folder / "tokenizer.json"))
        if str(config.get("tokenizer_class", "")).startswith("CLIPTokenizer"):
            return window, _clip_tokenizer(folder)
    except Exception:
        # The warning is advice: files the tokenizers library cannot read (or no such
        # library) must not refuse a request that the worker may well run.
        return None
    return None


def _clip_tokenizer(folder: Path) -> Tokenizer:
    """CLIP's tokenizer from vocab.json and merges.txt, built the way transformers'
    CLIPTokenizer builds it, since Stable Diffusion folders seldom ship a tokenizer.json."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    vocab: dict[str, int] = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    pairs = [line.split() for line in lines if line and not line.startswith("#version")]
    merges = [(first, second) for first, second in pairs]
    bos, eos = "<|startoftext|>", "<|endoftext|>"
    # CLIP's end marker doubles as its unknown token.
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None,
                              continuing_subword_prefix="", end_of_word_suffix="</w>",
                              fuse_unk=False, unk_token=eos))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(
            Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|"""
                  r"""[\p{N}]|[^\s\p{L}\p{N}]+"""),
            behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tokenizer.post_processor = processors.RobertaProcessing(
        (eos, vocab[eos]), (bos, vocab[bos]), trim_offsets=False, add_prefix_space=False)
    return tokenizer
