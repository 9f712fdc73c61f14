"""Devices, dtypes, schedulers and cached diffusers pipelines for the model executors.

Nothing here downloads: folders and single-file checkpoints are read from local disk only.
torch and diffusers are imported inside the functions that need them (design rule 6).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from strata.core.errors import ModelError
from strata.core.ledger.event_types import short

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

PIPELINE_KINDS: tuple[str, ...] = ("text2img", "img2img", "inpaint")
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
SINGLE_FILE_SUFFIXES: tuple[str, ...] = (".safetensors", ".ckpt")

# Class names rather than classes, so that listing the choices does not import diffusers.
SCHEDULERS: Mapping[str, str] = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
    "unipc": "UniPCMultistepScheduler",
}

# What the hub's own "set HF_HUB_OFFLINE=0" advice means for a Strata user.
_SINGLE_FILE_CONFIG_HINT = (
    " (a single-file checkpoint needs its architecture's diffusers configs in the local "
    "Hugging Face cache, and Strata never downloads them; convert the checkpoint to a "
    "diffusers folder and point Strata at that folder)"
)
# transformers announces on import that torchvision is missing (Strata does not need it);
# that notice would land in the middle of every generating command's output.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

_DEVICE_PATTERN = re.compile(r"cpu|mps|cuda(?::(?P<index>\d+))?")


class UnknownDevice(ModelError, ValueError):
    def __init__(self, device: str) -> None:
        super().__init__(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'mps'")
        self.device = device


class DeviceUnavailable(ModelError):
    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"device {device!r} is not available here: {reason}")
        self.device = device


class UnknownDtype(ModelError, ValueError):
    def __init__(self, dtype: str) -> None:
        super().__init__(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
        self.dtype = dtype


class UnknownScheduler(ModelError, ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown scheduler {name!r}: use one of {', '.join(SCHEDULERS)}")
        self.name = name


class UnknownPipelineKind(ModelError, ValueError):
    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown pipeline kind {kind!r}: use one of {', '.join(PIPELINE_KINDS)}")
        self.kind = kind


class ModelNotFound(ModelError, FileNotFoundError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"model folder or file {path} does not exist")
        self.path = path


class UnsupportedModel(ModelError, ValueError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot use {path} as a model: {reason}")
        self.path = path


class ModelDrift(ModelError):
    """The weights at a model's path are not the ones its registration names.

    Running them anyway would record one model's digest beside another model's images, so
    the job fails instead, saying how to make the record and the files agree again.
    """

    def __init__(self, name: str, path: Path, registered: str, found: str,
                 while_loading: bool = False) -> None:
        what = ("changed while they were being loaded" if while_loading
                else "are not the registered ones")
        super().__init__(
            f"the weights of model {name!r} at {path} {what}: registered "
            f"{short(registered)}, found {short(found)}; if the new files are meant, "
            f"re-register them with `strata model add {name} {path}`, otherwise restore "
            "the registered files"
        )
        self.name = name
        self.path = path
        self.registered = registered
        self.found = found


class ModelLoadFailed(ModelError):
    def __init__(self, path: Path, cause: BaseException, hint: str = "") -> None:
        super().__init__(
            f"could not load the model at {path} from local files: "
            f"{type(cause).__name__}: {cause}{hint}"
        )
        self.path = path


def parse_device(device: str) -> re.Match[str]:
    """The parts of a device name; an unknown name raises UnknownDevice (a ValueError,
    so request validators can use it too)."""
    match = _DEVICE_PATTERN.fullmatch(device)
    if match is None:
        raise UnknownDevice(device)
    return match


def check_dtype(dtype: str) -> str:
    """`dtype` if Strata knows it; otherwise UnknownDtype (a ValueError, as above)."""
    if dtype not in DTYPES:
        raise UnknownDtype(dtype)
    return dtype


def choose_device(preferred: str | None = None) -> str:
    """The device to run on: `preferred` if it is usable, else cuda, then mps, then cpu."""
    import torch

    if preferred is None:
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    match = parse_device(preferred)
    if preferred.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(preferred, "torch reports no CUDA device (or a CPU-only build)")
        index = match["index"]
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise DeviceUnavailable(preferred, f"only {count} CUDA device(s) are visible")
    elif preferred == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailable(preferred, "torch reports no Apple MPS backend")
    return preferred


def choose_dtype(device: str, preferred: str | None = None) -> str:
    """The weight dtype: `preferred` if valid, else float16 on CUDA and float32 elsewhere.

    float16 is not the default on CPU and MPS because several diffusion ops are missing or
    slow there in half precision, and CPU runs are the ones Strata reproduces bit for bit.
    """
    if preferred is not None:
        return check_dtype(preferred)
    return "float16" if device.startswith("cuda") else "float32"


def set_scheduler(pipeline: DiffusionPipeline, name: str) -> None:
    """Replace the pipeline's scheduler with the named one, keeping the model's schedule.

    Pipelines derived with `from_pipe` hold their own scheduler attribute, so swapping one
    does not change the others; a cached pipeline keeps whatever was set last, so callers
    should always set the scheduler they mean to record.
    """
    import diffusers

    class_name = SCHEDULERS.get(name)
    if class_name is None:
        raise UnknownScheduler(name)
    scheduler_class = getattr(diffusers, class_name)
    pipeline.scheduler = scheduler_class.from_config(pipeline.scheduler.config)  # type: ignore[attr-defined]  # set at run time


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a generated image, read without importing them."""
    versions: dict[str, str] = {}
    for package in ("torch", "diffusers", "transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


@contextmanager
def quiet_library_progress() -> Iterator[None]:
    """Hide diffusers' and transformers' own load and save progress bars for a while.

    Strata draws its own progress; the libraries' bars would interleave with it. The
    switches are process-wide, so the previous setting is restored afterwards.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    restore: list[ModuleType] = []
    for library in (diffusers_logging, transformers_logging):
        if library.is_progress_bar_enabled():
            library.disable_progress_bar()
            restore.append(library)
    try:
        yield
    finally:
        for library in restore:
            library.enable_progress_bar()


class PipelineCache:
    """Loads each set of weights once per device and dtype and hands out the same pipeline
    after.

    Pipelines are keyed by the digest of the weight files, not by their path: a path names
    whatever files are there now, so a path key would hand out the old weights after the
    files were replaced. img2img and inpaint pipelines are derived from the text2img one
    with `from_pipe`, so all three share one set of weights in memory.
    """

    def __init__(self) -> None:
        self._pipelines: dict[tuple[str, str, str, str], DiffusionPipeline] = {}
        # The digest last loaded from each path, so replaced weights can leave memory.
        self._loaded_from: dict[Path, str] = {}
        # Executors may run in threads; two of them must not load the same model twice.
        self._lock = threading.Lock()

    def get(
        self, model_path: Path, device: str, dtype: str, kind: str = "text2img", *,
        digest: str | None = None, name: str | None = None, digest_cache: Path | None = None,
    ) -> DiffusionPipeline:
        """The pipeline of the weights now at `model_path`.

        With `digest` (the model's registered digest), those weights must hash to it, before
        and after loading, or ModelDrift is raised: a caller that records `digest` then
        records what actually ran. `name` is the registered name the error suggests
        re-registering; `digest_cache` remembers per-file digests between calls (see
        `weights_digest`), so an unchanged model is not read again for every job.
        """
        from strata.core.models.digest import weights_digest  # it imports this module

        if kind not in PIPELINE_KINDS:
            raise UnknownPipelineKind(kind)
        check_dtype(dtype)
        parse_device(device)
        path = Path(model_path).expanduser().resolve()
        _check_model_path(path)
        with self._lock:
            found = weights_digest(path, digest_cache)
            if digest is not None and found != digest:
                raise ModelDrift(name or path.name, path, digest, found)
            return self._get_locked(
                path, found, device, dtype, kind,
                lambda: weights_digest(path, digest_cache), name or path.name)

    def _get_locked(self, path: Path, digest: str, device: str, dtype: str, kind: str,
                    digest_now: Callable[[], str], name: str) -> DiffusionPipeline:
        key = (digest, device, dtype, kind)
        cached = self._pipelines.get(key)
        if cached is not None:
            return cached
        if kind == "text2img":
            pipeline = _load_text2img(path, device, dtype)
            after = digest_now()
            if after != digest:  # replaced while loading: what is in memory is unknown
                raise ModelDrift(name, path, digest, after, while_loading=True)
            self._forget_replaced(path, digest)
        else:
            base = self._get_locked(path, digest, device, dtype, "text2img", digest_now, name)
            pipeline = _derive(base, kind)
        # Strata reports progress itself; diffusers' bars would garble its output.
        pipeline.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]
        self._pipelines[key] = pipeline
        return pipeline

    def _forget_replaced(self, path: Path, digest: str) -> None:
        """Drop the pipelines of weights that `path` held before, unless another path still
        holds them: a long-running worker should not keep two models in memory."""
        previous = self._loaded_from.get(path)
        self._loaded_from[path] = digest
        if previous is None or previous == digest or previous in self._loaded_from.values():
            return
        for key in [k for k in self._pipelines if k[0] == previous]:
            del self._pipelines[key]


def _check_model_path(path: Path) -> None:
    """Refuse, before reading any weights, a path that cannot be a diffusers model."""
    if not path.exists():
        raise ModelNotFound(path)
    if path.is_dir() and not (path / "model_index.json").is_file():
        raise UnsupportedModel(path, "the folder has no model_index.json (not a diffusers model)")
    if path.is_file() and path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise UnsupportedModel(
            path, f"single-file checkpoints must end in {' or '.join(SINGLE_FILE_SUFFIXES)}"
        )


def _load_text2img(path: Path, device: str, dtype: str) -> DiffusionPipeline:
    import torch
    from diffusers import AutoPipelineForText2Image, StableDiffusionPipeline
    from diffusers.utils import is_accelerate_available
    from huggingface_hub.errors import LocalEntryNotFoundError

    options = {
        "local_files_only": True,
        # diffusers 0.42 renamed torch_dtype to dtype and warns on the old name.
        "dtype": getattr(torch, dtype),
        # Asking for the low-memory loader without accelerate only earns a warning.
        "low_cpu_mem_usage": is_accelerate_available(),
    }
    try:
        with quiet_library_progress(), _hub_offline():
            if path.is_dir():
                pipeline = AutoPipelineForText2Image.from_pretrained(path, **options)
            else:
                pipeline = StableDiffusionPipeline.from_single_file(str(path), **options)
    except LocalEntryNotFoundError as error:
        raise ModelLoadFailed(path, error, _SINGLE_FILE_CONFIG_HINT) from error
    except Exception as error:
        # Loaders raise OSError, ValueError, KeyError, RuntimeError... for a bad model;
        # the user needs to know which model and why, whatever the type.
        raise ModelLoadFailed(path, error) from error
    return pipeline.to(device)


@contextmanager
def _hub_offline() -> Iterator[None]:
    """Make any Hugging Face Hub request fail while a model loads.

    `from_single_file` quietly overrides `local_files_only=True` and downloads the model's
    configs when they are not in the local cache; Strata must never download at run time.
    huggingface_hub reads this switch on every request, so setting it here takes effect.
    """
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def _derive(base: DiffusionPipeline, kind: str) -> DiffusionPipeline:
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    auto_class = AutoPipelineForImage2Image if kind == "img2img" else AutoPipelineForInpainting
    return auto_class.from_pipe(base)
