"""Configuration: one settings object, read from the environment once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from strata.core.errors import InvalidInput
from strata.core.models.shapes import NAME as SHAPES

# S3's rules for bucket names (the common subset every S3-compatible store accepts).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class LocalBlobLocation:
    """Blobs in a folder of this machine."""

    folder: Path


@dataclass(frozen=True)
class S3BlobLocation:
    """Blobs in an S3-compatible bucket, under a key prefix ("" for the whole bucket)."""

    bucket: str
    prefix: str


BlobLocation = LocalBlobLocation | S3BlobLocation


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
        default=None,
        description="blob store location: a folder, file:///folder or s3://bucket/prefix; "
        "default: the objects/ folder in home",
    )
    max_image_pixels: int = Field(
        default=178_956_970, description="images with more pixels are refused as bombs"
    )
    max_upload_bytes: int = Field(
        default=4 * 1024**3, description="files larger than this are refused on ingest"
    )
    default_model: str = Field(
        default=SHAPES, description="the registered model that diffusion requests naming "
        "none use: the shipped shapes model unless set (tests set the faster tiny)"
    )

    @cached_property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_home / 'strata.db'}"

    @cached_property
    def blob_location(self) -> BlobLocation:
        """Where the blobs live, parsed from STRATA_BLOB_URL; InvalidInput for a URL that
        names no place Strata can keep blobs."""
        if not self.blob_url:
            return LocalBlobLocation(self.resolved_home / "objects")
        return parse_blob_url(self.blob_url)

    @property
    def objects_dir(self) -> Path:
        """The folder of the local blob store; InvalidInput when the blobs live elsewhere."""
        location = self.blob_location
        if not isinstance(location, LocalBlobLocation):
            raise InvalidInput(f"STRATA_BLOB_URL={self.blob_url!r} names no local folder")
        return location.folder


def parse_blob_url(url: str) -> BlobLocation:
    """A folder path, `file:///folder` or `s3://bucket/prefix`; anything else is refused,
    never mistaken for a folder."""
    parts = urlsplit(url)
    if len(parts.scheme) <= 1:  # a plain path (one letter: a Windows drive)
        return LocalBlobLocation(Path(url).expanduser().resolve())
    setting = f"STRATA_BLOB_URL={url!r}"
    if parts.query or parts.fragment:
        raise InvalidInput(f"{setting} has a query or fragment; blob URLs take neither")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput(
                f"{setting} names a folder on host {parts.netloc!r}; a file URL names a "
                "folder of this machine, file:///absolute/path"
            )
        return LocalBlobLocation(Path(unquote(parts.path)).resolve())
    if parts.scheme == "s3":
        if not _BUCKET_RE.fullmatch(parts.netloc):
            raise InvalidInput(
                f"{setting} does not name a bucket: expected s3://bucket/prefix with a bucket "
                "name of 3-63 lowercase letters, digits, dots and hyphens"
            )
        return S3BlobLocation(bucket=parts.netloc, prefix=parts.path.strip("/"))
    raise InvalidInput(
        f"{setting} has the unknown scheme {parts.scheme!r}; use a folder path, "
        "file:///folder or s3://bucket/prefix"
    )


@lru_cache(maxsize=1)  # reading package metadata costs a millisecond; it cannot change
def strata_version() -> str:
    try:
        return version("strata")
    except PackageNotFoundError:
        return "0+unknown"
