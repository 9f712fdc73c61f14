"""Recording on someone's behalf: the application service with the caller's name as the
`actor` of every event it records (the HTTP API's token holders)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

from strata.core.ledger.events import Payload, RecordedEvent
from strata.core.service import Strata
from strata.core.store import Store


class ActingStrata(Strata):
    """`Strata` over the same store, whose events name `actor` in their meta. Cheap to
    make (it holds references only), so a face makes one per request."""

    def __init__(self, store: Store, actor: str) -> None:
        super().__init__(store)
        self.actor = actor

    def record_together(
        self,
        parts: Sequence[tuple[str, Sequence[Payload], int]],
        idempotency_key: str | None = None,
        meta: dict[str, Any] | None = None,
        within: Callable[[Connection, list[RecordedEvent]], None] | None = None,
    ) -> list[RecordedEvent]:
        return super().record_together(parts, idempotency_key,
                                       {**(meta or {}), "actor": self.actor}, within)
