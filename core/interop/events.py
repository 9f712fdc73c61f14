"""The payload `strata export` records: `asset.exported` (how the file is written is in
core.interop.export).

Kept apart from the export so that every process that opens a store can register and
decode the event (the layer registry imports this module) without importing Pillow's
writers, the provenance report and the service behind the export: this module imports
nothing but the ledger's payload base.
"""

from __future__ import annotations

from pydantic import Field

from strata.core.ledger.event_types import DIGEST_PATTERN, Digest, short
from strata.core.ledger.events import Payload, registry


@registry.register("asset.exported")
class AssetExported(Payload):
    """An asset written out of the store, with its provenance inside or beside it."""

    digest: Digest = Field(pattern=DIGEST_PATTERN)
    path: str
    format: str  # png, jpeg, webp, or the media type of a file written as stored
    exported_digest: Digest = Field(pattern=DIGEST_PATTERN)  # of the bytes written
    size: int = Field(ge=0)
    sidecar: str | None = None
    c2pa: bool = False  # signed with Content Credentials (its bytes are in the blob store)

    def summary(self) -> str:
        signed = ", signed" if self.c2pa else ""
        return f"{short(self.digest)} → {self.path} ({self.format}{signed})"
