"""`show`: what a name a user typed refers to — an asset (by hash prefix) or an event (by
id prefix) — as the log stood now or at an earlier position."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from strata.core.errors import AmbiguousReference, AssetNotFound, EventNotFound, InvalidInput
from strata.core.ledger.event_types import DIGEST_PATTERN
from strata.core.ledger.events import RecordedEvent
from strata.core.ledger.log import event_by_id
from strata.core.projections import views
from strata.core.service import Strata

WHOLE_DIGEST = re.compile(DIGEST_PATTERN)


@dataclass(frozen=True)
class AssetFound:
    details: views.AssetDetails
    created: RecordedEvent | None  # the event that recorded it
    recipe: dict[str, Any]  # what made it (core.provenance.recipe)


@dataclass(frozen=True)
class EventFound:
    event: RecordedEvent


def lookup(strata: Strata, ref: str, as_of: int | None = None) -> AssetFound | EventFound:
    """The asset a hash prefix names, else the event an id prefix names.

    An ambiguous asset prefix is an error (not a reason to try events); with `as_of`, only
    what existed at that position counts.
    """
    from strata.core.provenance.recipe import recipe_of

    with strata.view(as_of) as conn:
        try:
            # A whole digest (what the HTTP API's clients send) needs no resolving: the
            # details say whether it is an asset.
            named = ref if WHOLE_DIGEST.fullmatch(ref) else strata.resolve_asset(ref, conn)
            details = views.asset_details(conn, named)
            digest: str | None = named
            # The current view's database holds the log; a view as of a position may not.
            created = (event_by_id(conn, details.asset["created_event_id"])
                       if as_of is None else None)
        except AmbiguousReference:
            raise
        except (AssetNotFound, InvalidInput):  # not an asset's name: perhaps an event's
            digest = None
    if digest is None:
        try:
            event = strata.resolve_event(ref)
        except EventNotFound:
            when = f" at position {as_of}" if as_of is not None else ""
            raise EventNotFound(f"no asset or event matches {ref!r}{when}") from None
        except AmbiguousReference:
            raise
        except InvalidInput:  # the event resolver's words would say only "an event"
            raise InvalidInput(f"{ref!r} does not name an asset or an event: give at least 4 "
                               "hex digits of its hash or id") from None
        if as_of is not None and event.position > as_of:
            raise EventNotFound(
                f"event {event.event_id} was recorded at position {event.position}, after "
                f"position {as_of}")
        return EventFound(event)
    if created is None:
        created = strata.ledger.get(details.asset["created_event_id"])
    # What made an asset never changes once it exists, so the recipe is the same as of any
    # position at which the asset is there.
    return AssetFound(details, created, recipe_of(strata, details.asset, created))
