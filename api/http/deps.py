"""What routes are handed: the store's service (opened once, in the app's lifespan) for
the caller, after the caller's token has been checked for the scope the route needs.

Tokens come as `Authorization: Bearer …` or, for what cannot send headers (`<img>`,
`<video>`, `EventSource`), as the `access_token` query parameter. With no token created
and the server on a loopback address, every request is allowed and events name the
CLI's default actor; a server on any other address always requires a token. What the
tokens table says is kept for a second (core.auth.tokens.TokenCache): a token revoked by
another process may work for that long.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from strata.api.http.problems import HttpProblem
from strata.api.http.settings import HttpSettings
from strata.core.auth import tokens
from strata.core.auth.actor import ActingStrata
from strata.core.auth.tokens import Principal
from strata.core.service import Strata

_bearer = HTTPBearer(auto_error=False, description="a token from `strata token create`")
_query = APIKeyQuery(name="access_token", auto_error=False,
                     description="the same token, for <img>, <video> and EventSource")

_OPEN = Principal("", frozenset({"admin"}))  # loopback, no token created: the CLI's actor


def service(request: Request) -> Strata:
    strata: Strata = request.app.state.strata
    return strata


def http_settings(request: Request) -> HttpSettings:
    settings: HttpSettings = request.app.state.http
    return settings


async def principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    query_token: Annotated[str | None, Depends(_query)],
) -> Principal:
    # Async, so that a request does not wait for a worker thread only to read the token
    # cache; the store is asked from one when the cache has no fresh answer.
    secret = bearer.credentials if bearer is not None else query_token
    known: tokens.TokenCache = request.app.state.tokens
    if known.holds(secret):
        return _principal(request, known, secret)
    return await run_in_threadpool(_principal, request, known, secret)


def _principal(request: Request, known: tokens.TokenCache, secret: str | None) -> Principal:
    if secret is None:
        if http_settings(request).loopback and not known.any_token():
            return _OPEN
        raise HttpProblem(401, "a token is required: send `Authorization: Bearer <token>` "
                          "(or ?access_token=); create one with `strata token create`",
                          {"WWW-Authenticate": "Bearer"})
    found = known.authenticate(secret)
    if found is None:
        raise HttpProblem(401, "the token is not valid (unknown or revoked)",
                          {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return found


def _scoped(scope: str):  # type: ignore[no-untyped-def]
    async def for_scope(request: Request,
                        who: Annotated[Principal, Depends(principal)]) -> Strata:
        if not who.allows(scope):
            raise HttpProblem(403, f"this needs the {scope!r} scope; the token "
                              f"{who.name!r} has {', '.join(sorted(who.scopes))}")
        strata = service(request)
        return strata if who is _OPEN else ActingStrata(strata.store, who.name)

    return for_scope


StrataDep = Annotated[Strata, Depends(_scoped("read"))]
"""The service, for a caller allowed to read."""
WriterDep = Annotated[Strata, Depends(_scoped("write"))]
"""The service recording as the caller, who is allowed to write."""
AdminDep = Annotated[Strata, Depends(_scoped("admin"))]
