"""The model registry: names → local model files, identified by a digest of their weights.

Registering records `model.registered`; every job that uses a model records the digest
of the weights it actually loaded. Nothing here imports torch unless a tiny model is
being written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, select

from strata.core.errors import InvalidInput, ModelError
from strata.core.ledger.event_types import ModelRegistered
from strata.core.ledger.events import RecordedEvent
from strata.core.models.digest import weights_digest
from strata.core.models.pipelines import ModelDrift
from strata.core.projections.base import table
from strata.core.service import Strata
from strata.core.storage.schema import ModelRow

# What `strata model tiny --kind K` writes, and the name it registers by default: the image
# pipeline, a motion adapter for it (text-to-video) and a text-to-audio pipeline.
TINY_KINDS: dict[str, str] = {"image": "tiny", "video": "tiny-motion", "audio": "tiny-audio"}
Loaded = TypeVar("Loaded")
# A model folder may say which settings suit its weights (`recommended_cfg`): a file of
# Strata's beside diffusers' own, which diffusers never reads.
SETTINGS_FILE = "strata.json"


def digest_cache(strata: Strata) -> Path:
    return strata.store.settings.resolved_home / "cache" / "model-digests.json"


def model_digest(strata: Strata, path: Path) -> str:
    """The weights digest, read from the cache when the files have not changed."""
    cache = digest_cache(strata)
    cache.parent.mkdir(parents=True, exist_ok=True)
    return weights_digest(path, cache)


def register(strata: Strata, name: str, path: Path) -> RecordedEvent:
    path = path.expanduser().resolve()
    payload = ModelRegistered(
        name=name,
        path=str(path),
        digest=model_digest(strata, path),
        format="folder" if path.is_dir() else "single_file",
    )
    return strata.record(f"model:{name}", [payload])[0]


def write_tiny(strata: Strata, name: str | None = None, seed: int = 0,
               kind: str = "image") -> RecordedEvent:
    """Write a bundled tiny model of `kind` (image, video: a motion adapter for the image
    model, audio) under the store's models/ folder and register it (by default as
    TINY_KINDS[kind])."""
    from strata.core.models.tiny import write_tiny_pipeline
    from strata.core.models.tiny_audio import write_tiny_audio_pipeline
    from strata.core.models.tiny_video import write_tiny_motion_adapter

    writers: dict[str, Callable[[Path, int], Path]] = {
        "image": write_tiny_pipeline, "video": write_tiny_motion_adapter,
        "audio": write_tiny_audio_pipeline}
    if kind not in writers:
        raise ModelError(f"unknown tiny model kind {kind!r}: use one of {', '.join(writers)}")
    name = name or TINY_KINDS[kind]
    folder = strata.store.settings.resolved_home / "models" / name
    if not (folder.is_dir() and any(folder.iterdir())):
        writers[kind](folder, seed)
    return register(strata, name, folder)


def install_shapes(strata: Strata, name: str | None = None) -> RecordedEvent:
    """Copy the shipped shapes model (core/models/shapes/weights) under the store's
    models/ folder and register it (by default as "shapes"). The store keeps its own copy,
    so upgrading the package never changes the weights a registration names."""
    import shutil

    from strata.core.models.shapes import NAME, SHIPPED
    from strata.core.models.tiny import write_model_folder

    name = name or NAME
    folder = strata.store.settings.resolved_home / "models" / name
    if not (folder.is_dir() and any(folder.iterdir())):
        write_model_folder(folder, lambda staging: shutil.copytree(
            SHIPPED, staging, dirs_exist_ok=True))
    return register(strata, name, folder)


def load_registered(name: str, path: Path, digest: str, cache_file: Path | None,
                    load: Callable[[Path], Loaded]) -> Loaded:
    """`load(path)`, once the weights at `path` are known to be the registered ones
    (`digest`) before and after loading; otherwise ModelDrift, so that a job records the
    digest of what actually ran."""
    found = weights_digest(path, cache_file)
    if found != digest:
        raise ModelDrift(name, path, digest, found)
    loaded = load(path)
    after = weights_digest(path, cache_file)
    if after != digest:
        raise ModelDrift(name, path, digest, after, while_loading=True)
    return loaded


def lookup(conn: Connection, name: str) -> ModelRow:
    t = table(ModelRow)
    row = conn.execute(select(t).where(t.c.name == name)).first()
    if row is None:
        known = list(conn.scalars(select(t.c.name).order_by(t.c.name)))
        hint = f"registered: {', '.join(known)}" if known else "none is registered"
        raise ModelError(
            f"no model named {name!r} ({hint}); add one with `strata model add {name} PATH` "
            "or `strata model tiny`"
        )
    return ModelRow.model_validate(dict(row._mapping))


def recommended_cfg(name: str, path: str, operation: str) -> float | None:
    """The guidance scale the folder `path` of the model `name` recommends for
    `operation` (generation, inpaint, img2img, …), or None. Its strata.json says
    `"cfg": 2.0` (every operation) or `"cfg": {"generation": 2.0}` (those named).
    Requests that leave cfg out take it; the request records the value used, so a later
    change of the file changes no recorded recipe."""
    settings = Path(path) / SETTINGS_FILE
    if not settings.is_file():
        return None
    try:
        cfg = json.loads(settings.read_text(encoding="utf-8")).get("cfg")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
        raise InvalidInput(f"the model {name!r} has an unreadable {settings}: {error}; "
                           "fix it or remove it") from None
    if isinstance(cfg, dict):
        cfg = cfg.get(operation)
    if cfg is None:
        return None
    if isinstance(cfg, bool) or not isinstance(cfg, int | float) or not (
            math.isfinite(cfg) and 0 <= cfg <= 50):
        raise InvalidInput(f"the model {name!r} recommends cfg {cfg!r} in {settings}: "
                           "a number from 0 to 50 is needed")
    return float(cfg)


def all_models(conn: Connection) -> list[ModelRow]:
    t = table(ModelRow)
    return [ModelRow.model_validate(dict(r._mapping)) for r in
            conn.execute(select(t).order_by(t.c.name))]


@contextmanager
def quiet_diffusers_warnings() -> Iterator[None]:
    """Silence diffusers' warnings for a while: building a pipeline it has deprecated
    (AudioLDM) or deriving one by `from_pipe` (AnimateDiff) warns on every run in words
    that say nothing to a Strata user. Process-wide, so the level is restored after."""
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(verbosity)
