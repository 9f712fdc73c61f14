"""Bearer tokens of the HTTP API.

A token is a high-entropy secret shown once, when it is created; the store keeps only its
SHA-256 (a fast hash is enough for 256 random bits: there is nothing to guess), its name
and its scopes. Tokens are runtime state, not events: a credential has no place in an
append-only log, and revoking one removes its row.

Scopes are ordered: `admin` includes `write`, which includes `read`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Engine, String, Table, delete, exists, insert, select
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from strata.core.errors import InvalidInput, NotFound
from strata.core.ledger.log import utc_iso
from strata.core.projections.base import table
from strata.core.storage.schema import Rows, metadata

SCOPES = ("read", "write", "admin")
PREFIX = "strata_"  # makes a leaked token recognisable to secret scanners and people
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


class TokenNotFound(NotFound):
    pass


class ApiToken(Rows):
    __table__ = Table(
        "api_tokens", metadata,
        Column("name", String(200), primary_key=True),
        Column("token_hash", String(64), nullable=False, unique=True),
        Column("scopes", String(100), nullable=False),  # comma-separated, as granted
        Column("created_at", String(40), nullable=False),
    )


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name (recorded as the events' actor) and its scopes."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return any(SCOPES.index(granted) >= SCOPES.index(scope) for granted in self.scopes)


@dataclass(frozen=True)
class TokenInfo:
    name: str
    scopes: list[str]
    created_at: str


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _scopes(given: Iterable[str]) -> list[str]:
    scopes = sorted(set(given), key=SCOPES.index) if set(given) <= set(SCOPES) else None
    if not scopes:
        raise InvalidInput(f"scopes are {', '.join(SCOPES)} (admin includes write, write "
                           f"includes read), not {', '.join(map(repr, given)) or 'none'}")
    return scopes


# Bumped by every create and revoke in this process, so that a TokenCache here sees them
# at once; another process's changes reach it when its entries expire.
_changes = 0


def _changed() -> None:
    global _changes
    _changes += 1


def create(engine: Engine, scopes: Iterable[str], name: str | None = None) -> tuple[str, str]:
    """A new token: (its name, the secret, shown once and never stored)."""
    granted = _scopes(list(scopes))
    secret = PREFIX + secrets.token_urlsafe(32)
    name = name or f"token-{secrets.token_hex(4)}"
    if not NAME.match(name):
        raise InvalidInput(f"invalid token name {name!r}: use letters, digits, '.', '_', "
                           "'-' and '@'")
    try:
        with engine.begin() as conn:
            conn.execute(insert(table(ApiToken)).values(
                name=name, token_hash=hash_token(secret), scopes=",".join(granted),
                created_at=utc_iso(datetime.now(UTC))))
    except SqlIntegrityError:
        raise InvalidInput(f"a token named {name!r} exists already; revoke it or choose "
                           "another name") from None
    _changed()
    return name, secret


def list_tokens(engine: Engine) -> list[TokenInfo]:
    t = table(ApiToken)
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.name, t.c.scopes, t.c.created_at).order_by(t.c.name))
        return [TokenInfo(r.name, r.scopes.split(","), r.created_at) for r in rows]


def revoke(engine: Engine, name: str) -> None:
    t = table(ApiToken)
    with engine.begin() as conn:
        if conn.execute(delete(t).where(t.c.name == name)).rowcount == 0:
            raise TokenNotFound(f"no token named {name!r}; `strata token list` shows them")
    _changed()


def any_token(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.scalar(select(exists().where(table(ApiToken).c.name.isnot(None)))))


def authenticate(engine: Engine, secret: str) -> Principal | None:
    """The token's holder, or None for a secret that is no (longer a) token."""
    t = table(ApiToken)
    with engine.connect() as conn:
        row = conn.execute(select(t.c.name, t.c.scopes)
                           .where(t.c.token_hash == hash_token(secret))).first()
    return Principal(row.name, frozenset(row.scopes.split(","))) if row else None


class TokenCache:
    """`any_token` and `authenticate` for a server, each answer kept for `ttl` seconds:
    they would otherwise cost a query on every request. A token created or revoked in
    this process counts at once; one revoked by another process (`strata token revoke`
    beside a running server) is still accepted for up to `ttl` seconds."""

    MAX_ENTRIES = 1024  # unknown secrets are remembered too; this bounds them

    def __init__(self, engine: Engine, ttl: float = 1.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self._any: tuple[float, bool] | None = None
        self._found: dict[str, tuple[float, Principal | None]] = {}
        self._seen_changes = _changes

    def _fresh(self) -> float:
        """The time now, after forgetting everything if tokens changed here meanwhile."""
        if self._seen_changes != _changes:
            self._any, self._found, self._seen_changes = None, {}, _changes
        return time.monotonic()

    def holds(self, secret: str | None) -> bool:
        """Whether the answer for `secret` (None: `any_token`'s) is kept and fresh: then
        asking costs no query."""
        now = self._fresh()
        kept = self._any if secret is None else self._found.get(hash_token(secret))
        return kept is not None and now - kept[0] < self.ttl

    def any_token(self) -> bool:
        now = self._fresh()
        if self._any is None or now - self._any[0] >= self.ttl:
            self._any = (now, any_token(self.engine))
        return self._any[1]

    def authenticate(self, secret: str) -> Principal | None:
        now = self._fresh()
        key = hash_token(secret)
        known = self._found.get(key)
        if known is None or now - known[0] >= self.ttl:
            if len(self._found) >= self.MAX_ENTRIES:
                self._found = {}
            known = (now, authenticate(self.engine, secret))
            self._found[key] = known
        return known[1]
