"""Human decisions about an asset: pick, reject, rate, review, final (events without a
job, through the functions the command line calls)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from strata.api.http.deps import WriterDep
from strata.api.http.routers.events import Event, event_json
from strata.core.decisions import curation

router = APIRouter(prefix="/assets", tags=["decisions"])


class Note(BaseModel):
    note: str | None = Field(default=None, max_length=10_000)


class Selection(Note):
    decision: Literal["pick", "reject"]


class Rating(Note):
    rating: int = Field(ge=1, le=5)


class Review(Note):
    verdict: Literal["approve", "reject", "changes"]


@router.post("/{ref}/selection", status_code=201, response_model=Event)
def select(strata: WriterDep, ref: str, body: Selection) -> dict[str, Any]:
    """Keep (pick) or drop (reject) an asset; nothing is deleted."""
    decide = curation.pick if body.decision == "pick" else curation.reject
    return event_json(decide(strata, ref, body.note))


@router.post("/{ref}/rating", status_code=201, response_model=Event)
def rate(strata: WriterDep, ref: str, body: Rating) -> dict[str, Any]:
    """Rate an asset from 1 to 5."""
    return event_json(curation.rate(strata, ref, body.rating, body.note))


@router.post("/{ref}/review", status_code=201, response_model=Event)
def review(strata: WriterDep, ref: str, body: Review) -> dict[str, Any]:
    """Record a review verdict."""
    return event_json(curation.review(strata, ref, body.verdict, body.note))


@router.post("/{ref}/final", status_code=201, response_model=Event)
def final(strata: WriterDep, ref: str, body: Note | None = None) -> dict[str, Any]:
    """Mark an asset as a final output."""
    return event_json(curation.mark_final(strata, ref, body.note if body else None))
