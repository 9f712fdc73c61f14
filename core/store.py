"""Opening a Strata store: settings → database engine, blob store, ledger, projections."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from strata.core import layers
from strata.core.config import S3BlobLocation, Settings
from strata.core.errors import StoreNotInitialised
from strata.core.ledger.log import Ledger
from strata.core.projections.builtin import BUILTIN_PROJECTIONS
from strata.core.projections.runner import ProjectionRunner
from strata.core.storage import migrate
from strata.core.storage.blobs import BlobStore
from strata.core.storage.db import make_engine
from strata.core.storage.local import LocalBlobStore


def make_blob_store(settings: Settings) -> BlobStore:
    location = settings.blob_location
    if isinstance(location, S3BlobLocation):
        # Imported here: boto3 costs a read command that never touches a blob its start-up.
        from strata.core.storage.s3 import S3BlobStore

        return S3BlobStore(
            location.bucket,
            location.prefix,
            spool=settings.resolved_home / "spool",
            max_image_pixels=settings.max_image_pixels,
            max_bytes=settings.max_upload_bytes,
        )
    return LocalBlobStore(
        location.folder,
        max_image_pixels=settings.max_image_pixels,
        max_bytes=settings.max_upload_bytes,
    )


@dataclass
class Store:
    settings: Settings
    engine: Engine
    ledger: Ledger
    blobs: BlobStore
    projections: ProjectionRunner

    @classmethod
    def open(cls, settings: Settings | None = None, *, create: bool = False) -> Store:
        """Open the configured store; with `create`, make it and migrate it to head."""
        settings = settings or Settings()
        if create and not settings.database_url:
            settings.resolved_home.mkdir(parents=True, exist_ok=True)
        elif not settings.database_url and not settings.resolved_home.is_dir():
            raise StoreNotInitialised(
                f"no Strata store at {settings.resolved_home}; run `strata init` first "
                "(or set STRATA_HOME)"
            )
        engine = make_engine(settings.effective_database_url)
        if create:
            migrate.upgrade(engine)
        else:
            migrate.require_current_schema(engine)
        blobs = make_blob_store(settings)
        runner = ProjectionRunner(engine, BUILTIN_PROJECTIONS + layers.projections())
        return cls(settings, engine, Ledger(engine), blobs, runner)

    def close(self) -> None:
        self.engine.dispose()
