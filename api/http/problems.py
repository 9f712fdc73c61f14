"""Errors as `application/problem+json` (RFC 9457), mapped in this one place: Strata's
error tree through the table the command line shares (api/errors.py), request validation
as 422, and Starlette's own HTTP errors (404 for an unknown path, 405, …)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from strata.api.errors import family_of
from strata.core.errors import ConcurrencyError, StrataError

MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details; conflicts add `expected_version` and `actual_version`."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None


def _documented(status: int, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {MEDIA_TYPE: {"schema": Problem.model_json_schema()}}}


# The errors any route may answer with; each router adds the ones only it gives.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _documented(401, "no valid token (bearer header or access_token parameter)"),
    403: _documented(403, "the token lacks the scope this needs"),
    404: _documented(404, "not found"),
    422: _documented(422, "invalid input"),
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Documentation of the problem responses `statuses` for one route."""
    return {status: _documented(status, HTTPStatus(status).phrase) for status in statuses}


def problem(status: int, detail: str | None, title: str | None = None,
            type_: str = "about:blank", headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body = {"type": type_, "title": title or HTTPStatus(status).phrase, "status": status,
            "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


class HttpProblem(Exception):
    """An HTTP-level refusal that the error tree does not describe (401, 403, 413, 415)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def strata_problem(error: StrataError) -> JSONResponse:
    family = family_of(error)
    extra: dict[str, Any] = {}
    if isinstance(error, ConcurrencyError):
        extra = {"stream": error.stream, "expected_version": error.expected,
                 "actual_version": error.actual}
    return problem(family.status, str(error), family.title,
                   f"urn:strata:error:{type(error).__name__}", **extra)


def install(app: FastAPI) -> None:
    async def on_strata(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StrataError)
        return strata_problem(error)

    async def on_http(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HttpProblem)
        return problem(error.status, error.detail, headers=error.headers)

    async def on_validation(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        return problem(422, where, "Invalid input",
                       errors=[{"loc": list(e["loc"]), "msg": e["msg"]}
                               for e in error.errors()])

    async def on_starlette(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        return problem(error.status_code, str(error.detail),
                       headers=dict(error.headers) if error.headers else None)

    app.add_exception_handler(StrataError, on_strata)
    app.add_exception_handler(HttpProblem, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_starlette)
