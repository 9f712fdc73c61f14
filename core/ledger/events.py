"""Events: the envelope, and the registry of typed payloads with their upcasters.

An event's payload is a pydantic model registered under its type name and schema
version. Readers upcast old payloads through registered functions, so code only ever
sees the current shape; an event type this version does not know reads back as raw
data (`UnknownPayload`) and never crashes a reader. Appending an unknown type, or a
payload that does not validate, is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo

from strata.core.errors import InvalidInput, UnknownEventType

GENESIS_HASH = "0" * 64


class Payload(BaseModel):
    """Base of every typed event payload: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def summary(self) -> str:
        """One line saying what matters about this event (`strata log`). Every payload
        type says its own; this generic one names the fields that are set."""
        fields = [f"{name}={value!r}" for name, value in self if value not in (None, [], {})]
        line = ", ".join(fields)
        return line if len(line) <= 80 else line[:79] + "…"


@dataclass(frozen=True)
class UnknownPayload:
    """The raw data of an event whose type (or schema) this version does not know."""

    type: str
    schema: int
    data: dict[str, Any]


@dataclass(frozen=True)
class NewEvent:
    """An event about to be appended; the ledger assigns position, version and hashes."""

    type: str
    data: dict[str, Any]
    schema: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Set by `of`: the data was dumped from a registered, validated payload model, so
    # the ledger need not validate it again.
    validated: bool = field(default=False, compare=False, repr=False)

    @classmethod
    def of(cls, payload: Payload, meta: dict[str, Any] | None = None) -> NewEvent:
        event_type, schema = registry.name_of(type(payload))
        return cls(
            type=event_type,
            schema=schema,
            data=payload.model_dump(mode="json"),
            meta=meta if meta is not None else {},
            validated=True,
        )


class RecordedEvent(NamedTuple):
    """The envelope of an event as it stands in the log.

    A named tuple rather than a frozen dataclass: as immutable, and several times cheaper
    to build, which matters when a rebuild makes one per event of the log.
    """

    position: int
    event_id: str
    stream: str
    version: int
    type: str
    schema: int
    data: dict[str, Any]
    meta: dict[str, Any]
    recorded_at: str
    prev_hash: str
    hash: str

    def envelope(self) -> dict[str, Any]:
        """The fields the hash covers (everything but the hashes themselves)."""
        return {
            "position": self.position,
            "event_id": self.event_id,
            "stream": self.stream,
            "version": self.version,
            "type": self.type,
            "schema": self.schema,
            "data": self.data,
            "meta": self.meta,
            "recorded_at": self.recorded_at,
        }

    @property
    def payload(self) -> Payload | UnknownPayload:
        return registry.decode(self.type, self.schema, self.data)


# The validation context of events read back from the log. A check added to a payload in a
# later version (a device name, say) must not turn an event recorded before it into an
# undecodable one, which would stop the projections: such checks skip recorded events.
RECORDED = {"recorded": True}


def is_recorded(info: ValidationInfo) -> bool:
    """Whether a validator runs on an event read back from the log (see RECORDED)."""
    return bool(info.context and info.context.get("recorded"))


def explain(error: ValidationError) -> str:
    """A pydantic validation error in one line a user can act on."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "value"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


P = TypeVar("P", bound=type[Payload])
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventRegistry:
    """Event type name ↔ payload model, with upcasters between schema versions."""

    def __init__(self) -> None:
        self._models: dict[str, tuple[int, type[Payload]]] = {}
        self._names: dict[type[Payload], tuple[str, int]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, schema: int = 1) -> Callable[[P], P]:
        def decorate(model: P) -> P:
            if event_type in self._models:
                raise ValueError(f"event type {event_type!r} registered twice")
            self._models[event_type] = (schema, model)
            self._names[model] = (event_type, schema)
            return model

        return decorate

    def upcaster(self, event_type: str, from_schema: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function turning schema `from_schema` data into `from_schema + 1`."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_schema)] = fn
            return fn

        return decorate

    def name_of(self, model: type[Payload]) -> tuple[str, int]:
        try:
            return self._names[model]
        except KeyError:
            raise UnknownEventType(f"{model.__name__} is not a registered event") from None

    def known(self, event_type: str) -> bool:
        return event_type in self._models

    def current_schema(self, event_type: str) -> int:
        return self._require(event_type)[0]

    def _require(self, event_type: str) -> tuple[int, type[Payload]]:
        try:
            return self._models[event_type]
        except KeyError:
            raise UnknownEventType(
                f"unknown event type {event_type!r}; known types: {', '.join(sorted(self._models))}"
            ) from None

    def validate(self, event: NewEvent) -> None:
        """Refuse, before anything is written, an event that readers could not decode."""
        schema, model = self._require(event.type)
        if event.schema != schema:
            raise InvalidInput(
                f"{event.type} events are written at schema {schema}, not {event.schema}"
            )
        try:
            model.model_validate(event.data)
        except ValidationError as exc:
            raise InvalidInput(f"invalid {event.type} event data: {explain(exc)}") from exc

    def upcast(self, event_type: str, schema: int, data: dict[str, Any]) -> tuple[int, dict]:
        current = self._models[event_type][0] if event_type in self._models else schema
        while schema < current:
            step = self._upcasters.get((event_type, schema))
            if step is None:
                break
            data, schema = step(dict(data)), schema + 1
        return schema, data

    def decode(
        self, event_type: str, schema: int, data: dict[str, Any]
    ) -> Payload | UnknownPayload:
        if event_type not in self._models:
            return UnknownPayload(event_type, schema, data)
        current, model = self._models[event_type]
        upcast_schema, upcast_data = self.upcast(event_type, schema, data)
        if upcast_schema != current:
            return UnknownPayload(event_type, schema, data)
        try:
            return model.model_validate(upcast_data, context=RECORDED)
        except ValidationError:
            return UnknownPayload(event_type, schema, data)


registry = EventRegistry()
