"""Configuration: one settings object, read from the environment once."""

from __future__ import annotations

from functools import cached_property, lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where Strata keeps its log, projections and blobs.

    Every field can be set from the environment with the ``STRATA_`` prefix, e.g.
    ``STRATA_HOME=/data/strata`` or ``STRATA_DATABASE_URL=postgresql+psycopg://…``.
    """

    model_config = SettingsConfigDict(env_prefix="STRATA_", extra="ignore")

    home: Path = Field(default=Path(".strata"), description="store folder (SQLite, objects)")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file strata.db in home"
    )
    blob_url: str | None = Field(
        default=None, description="blob store location; default: the objects/ folder in home"
    )
    max_image_pixels: int = Field(
        default=178_956_970, description="images with more pixels are refused as bombs"
    )
    max_upload_bytes: int = Field(
        default=4 * 1024**3, description="files larger than this are refused on ingest"
    )

    @cached_property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_home / 'strata.db'}"

    @property
    def objects_dir(self) -> Path:
        if self.blob_url:
            if self.blob_url.startswith("file://"):
                return Path(self.blob_url.removeprefix("file://"))
            if "://" not in self.blob_url:
                return Path(self.blob_url)
        return self.resolved_home / "objects"


@lru_cache(maxsize=1)  # reading package metadata costs a millisecond; it cannot change
def strata_version() -> str:
    try:
        return version("strata")
    except PackageNotFoundError:
        return "0+unknown"
