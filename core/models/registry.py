"""The model registry: names → local model files, identified by a digest of their weights.

Registering records `model.registered`; every job that uses a model records the digest
of the weights it actually loaded. Nothing here imports torch unless a tiny model is
being written.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, select

from strata.core.errors import ModelError
from strata.core.ledger.event_types import ModelRegistered
from strata.core.ledger.events import RecordedEvent
from strata.core.models.digest import weights_digest
from strata.core.projections.base import table
from strata.core.service import Strata
from strata.core.storage.schema import ModelRow

DEFAULT_MODEL = "tiny"


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


def write_tiny(strata: Strata, name: str = DEFAULT_MODEL, seed: int = 0) -> RecordedEvent:
    """Write the bundled tiny pipeline under the store's models/ folder and register it."""
    from strata.core.models.tiny import write_tiny_pipeline

    folder = strata.store.settings.resolved_home / "models" / name
    if not (folder.is_dir() and any(folder.iterdir())):
        write_tiny_pipeline(folder, seed=seed)
    return register(strata, name, folder)


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


def all_models(conn: Connection) -> list[ModelRow]:
    t = table(ModelRow)
    return [ModelRow.model_validate(dict(r._mapping)) for r in
            conn.execute(select(t).order_by(t.c.name))]
