"""The log: events by filter or id, and a live Server-Sent Events stream of it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from strata.api.http.deps import StrataDep, http_settings
from strata.core.ledger.events import RecordedEvent
from strata.core.ledger.notify import EventWaiter
from strata.core.service import Strata

router = APIRouter(prefix="/events", tags=["events"])

STREAM_PAGE = 500


class Event(BaseModel):
    """An event as `strata log --json` prints it (docs/cli-json.md)."""

    position: int
    event_id: str
    stream: str
    version: int
    type: str
    model_config = ConfigDict(populate_by_name=True)

    schema_: int = Field(alias="schema")  # named as in the log
    data: dict[str, Any]
    meta: dict[str, Any]
    recorded_at: str
    prev_hash: str
    hash: str


class EventPage(BaseModel):
    events: list[Event]
    next: int | None  # the `from` of the next page; None when this page reached the end


def event_json(event: RecordedEvent) -> dict[str, Any]:
    return {**event.envelope(), "prev_hash": event.prev_hash, "hash": event.hash}


@router.get("", response_model=EventPage)
def list_events(
    strata: StrataDep,
    stream: str | None = None,
    type_: Annotated[list[str] | None, Query(alias="type")] = None,
    from_: Annotated[int, Query(alias="from", ge=1, le=2**62)] = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Events in log order from position `from`; `next` pages on."""
    found = list(strata.ledger.read_all(from_, limit=limit + 1, types=type_ or None,
                                        streams=[stream] if stream else None))
    page = found[:limit]
    return {"events": [event_json(e) for e in page],
            "next": found[limit].position if len(found) > limit else None}


@router.get("/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`id: <position>`, `event: <type>`, "
                             "`data: <event JSON>` per message; a comment every 15 s idle"}})
def stream_events(
    request: Request,
    strata: StrataDep,
    from_: Annotated[int | None, Query(alias="from", ge=1, le=2**62)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The log as Server-Sent Events, following it live: from position `from`, or after
    the `Last-Event-ID` a reconnecting client sends, or (neither) from the next event."""
    if last_event_id is not None and last_event_id.strip().isdigit():
        start = int(last_event_id) + 1
    elif from_ is not None:
        start = from_
    else:
        start = strata.ledger.head_position() + 1
    settings = http_settings(request)
    return StreamingResponse(
        _follow(strata, start, settings.stream_poll_seconds, settings.keepalive_seconds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _follow(strata: Strata, position: int, poll: float,
                  keepalive: float) -> AsyncIterator[str]:
    # The ledger's waiter wakes on PostgreSQL's NOTIFY (polling is only its fallback) and
    # polls the head on SQLite. Starlette ends this generator when the client goes away.
    waiter = EventWaiter(strata.store.engine, poll_seconds=poll)
    quiet_since = time.monotonic()
    yield "retry: 1000\n\n"
    while True:
        found = await asyncio.to_thread(_page, strata, position)
        for event in found:
            data = json.dumps(event_json(event), ensure_ascii=False, separators=(",", ":"))
            yield f"id: {event.position}\nevent: {event.type}\ndata: {data}\n\n"
            position = event.position + 1
        if found:
            quiet_since = time.monotonic()
            continue
        if time.monotonic() - quiet_since >= keepalive:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        # Short waits: a thread outlives a client that left by one wait at most.
        wait = min(1.0, max(keepalive - (time.monotonic() - quiet_since), 0.01))
        await asyncio.to_thread(waiter.wait, position - 1, wait)


def _page(strata: Strata, position: int) -> list[RecordedEvent]:
    return list(strata.ledger.read_all(position, limit=STREAM_PAGE))


@router.get("/{event_id}", response_model=Event)
def get_event(strata: StrataDep, event_id: str) -> dict[str, Any]:
    """One event by its id or a unique prefix of it (4 hex digits at least)."""
    return event_json(strata.resolve_event(event_id))
