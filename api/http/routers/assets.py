"""Assets: the gallery list, streaming upload, metadata, bytes (ETag, conditional GET,
Range), thumbnails, lineage, provenance and audit."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from strata.api.http.deps import StrataDep, WriterDep
from strata.api.http.fast_json import FastJSONResponse
from strata.api.http.problems import HttpProblem, responses
from strata.core.errors import AssetNotFound, InvalidInput
from strata.core.imaging.thumbnails import thumbnail
from strata.core.projections import gallery, views
from strata.core.projections import lineage as queries
from strata.core.provenance.report import FORMATS
from strata.core.service import Strata
from strata.core.storage.local import LocalBlobStore

router = APIRouter(prefix="/assets", tags=["assets"])

AsOf = Annotated[int | None, Query(ge=0, le=2**62, description="the state at this log position")]
CHUNK = 1024 * 1024
UPLOAD_TYPES = ("application/octet-stream", "image/", "video/", "audio/", "multipart/form-data")
SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]")
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class AssetCard(BaseModel):
    digest: str
    media_type: str
    size: int
    width: int | None
    height: int | None
    duration: float | None
    layer: str
    operation: str
    job_id: str | None
    created_position: int
    created_at: str
    rating: int | None
    decision: str | None
    review: str | None
    final: bool
    branches: list[str]


class AssetPage(BaseModel):
    assets: list[AssetCard]
    total: int  # a lower bound when total_exact is false (a search past 1,000 matches)
    total_exact: bool


class Stored(BaseModel):
    digest: str
    media_type: str
    size: int
    width: int | None = None
    height: int | None = None
    event_id: str
    created: bool  # False: the same bytes were stored already


class Node(BaseModel):
    digest: str
    media_type: str | None
    layer: str | None
    operation: str


class GraphEdge(BaseModel):
    from_: str = Field(alias="from")
    to: str
    role: str
    layer: str
    operation: str


class Graph(BaseModel):
    asset: str
    direction: str
    nodes: list[Node]
    edges: list[GraphEdge]


@router.get("", response_model=AssetPage)
def list_assets(
    strata: StrataDep,
    layer: str | None = None,
    branch: str | None = None,
    rating_min: Annotated[int | None, Query(ge=1, le=5)] = None,
    final: bool | None = None,
    media: Annotated[str | None, Query(max_length=100,
                                       description="image, video, audio or a media type")]
    = None,
    q: Annotated[str | None, Query(max_length=2000, description="a find query")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> dict[str, Any]:
    """Assets, newest first, with what a gallery card shows; `total` counts every match
    (with `q`, exactly up to 1,000 and then as a lower bound: `total_exact` says which)."""
    where = gallery.AssetFilter(layer, branch, rating_min, final, media, q)
    page = gallery.list_assets(strata, where, limit, offset)
    return {"assets": page.rows, "total": page.total, "total_exact": page.total_exact}


@router.post("", status_code=201, response_model=Stored,
             responses={200: {"model": Stored, "description": "the bytes were stored already"},
                        **responses(413, 415)},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string",
                                                         "format": "binary"}},
                 "multipart/form-data": {"schema": {
                     "type": "object", "required": ["file"],
                     "properties": {"file": {"type": "string", "format": "binary"}}}}}}})
async def upload(
    request: Request,
    strata: WriterDep,
    name: Annotated[str | None, Query(max_length=255, description="the original file name")]
    = None,
    sha256: Annotated[str | None, Query(pattern=r"^(sha256:)?[0-9a-fA-F]{64}$")] = None,
) -> Response:
    """Store a file streamed as the raw body (its media type as Content-Type) or as the
    multipart field `file`, through the same import as `strata add` (metadata parsing
    included). 201 new, 200 stored already, 422 when `sha256` does not match."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not content_type.startswith(UPLOAD_TYPES):
        raise HttpProblem(415, f"upload a file as the raw body with its media type (image/*, "
                          f"video/*, audio/*, application/octet-stream) or as the multipart "
                          f"field 'file', not {content_type or 'no Content-Type'}")
    limit = strata.blobs.max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit and content_type != "multipart/form-data":
        raise HttpProblem(413, _too_large(limit))
    strata.blobs.spool.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=strata.blobs.spool, prefix="upload-"))
    try:
        if content_type == "multipart/form-data":
            path, digest = await _receive_form(request, folder, name, limit)
        else:
            path = folder / _file_name(name)
            digest = await _receive(request.stream(), path, limit)
        if sha256 is not None and digest != "sha256:" + sha256.lower().removeprefix("sha256:"):
            raise InvalidInput(f"the body hashes to {digest}, not the expected "
                               f"sha256:{sha256.lower().removeprefix('sha256:')}; nothing was "
                               "stored")
        with strata.view() as conn:
            known = views.asset_row(conn, digest)
        if known is not None:  # nothing to record: the same bytes are an asset already
            body = Stored(**known, event_id=known["created_event_id"], created=False)
            return JSONResponse(body.model_dump(), status_code=200)
        event = (await anyio.to_thread.run_sync(strata.add_files, [path]))[0]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    asset = event.data.get("asset") or event.data["output"]["asset"]
    body = Stored(**asset, event_id=event.event_id, created=True)
    return JSONResponse(body.model_dump(), status_code=201)


def _too_large(limit: int) -> str:
    return f"the upload is larger than the limit of {limit:,} bytes (STRATA_MAX_UPLOAD_BYTES)"


def _file_name(name: str | None) -> str:
    cleaned = SAFE_NAME.sub("_", Path(name or "").name).strip(" .")
    return cleaned or "upload"


async def _receive(chunks: Any, path: Path, limit: int) -> str:
    """Write the streamed body to `path` (never all in memory): its digest."""
    hasher, size = hashlib.sha256(), 0
    with path.open("wb") as out:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise HttpProblem(413, _too_large(limit))
            hasher.update(chunk)
            out.write(chunk)
    return f"sha256:{hasher.hexdigest()}"


async def _receive_form(request: Request, folder: Path, name: str | None,
                        limit: int) -> tuple[Path, str]:
    # Starlette spools each part to a temporary file past 1 MB, so this is not held in
    # memory either; it is copied to the upload folder under its own name.
    async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidInput("the multipart body has no file field named 'file'")

        async def chunks() -> Any:
            while chunk := await upload.read(CHUNK):
                yield chunk

        path = folder / _file_name(name or upload.filename)
        return path, await _receive(chunks(), path, limit)


def _asset(strata: Strata, ref: str, as_of: int | None = None) -> dict[str, Any]:
    with strata.view(as_of) as conn:
        row = views.asset_row(conn, strata.resolve_asset(ref, conn))
    assert row is not None  # resolved in the same view
    return row


@router.get("/{ref}", response_model=dict[str, Any])
def show(strata: StrataDep, ref: str, as_of: AsOf = None) -> Response:
    """Everything known about an asset: what `strata show --json` prints."""
    from strata.core.lookup import AssetFound, lookup

    found = lookup(strata, ref, as_of)
    if not isinstance(found, AssetFound):  # the prefix named an event
        raise AssetNotFound(f"no asset matches {ref!r}")
    # Sent as built: the rows and events are JSON's types already, and validating the
    # return value would cost a worker-thread hop and a second pass over every value.
    # For the same reason the edges are the one level converted (`dataclasses.asdict`
    # would copy every row and value again), into what `strata show --json` prints.
    details = found.details
    return FastJSONResponse({**vars(details), "parents": [vars(e) for e in details.parents],
                         "children": [vars(e) for e in details.children],
                         "recipe": found.recipe,
                         "recorded_by": found.created.meta if found.created else None})


@router.get("/{ref}/content", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "the bytes, ETag = digest"},
                       206: {"description": "the requested range"},
                       304: {"description": "not modified (If-None-Match)"},
                       **responses(416)})
def content(request: Request, strata: StrataDep, ref: str) -> Response:
    """The asset's bytes, with `ETag` = its digest (`If-None-Match` → 304) and one byte
    range (`Range: bytes=a-b` → 206, 416 when past the end)."""
    row = _asset(strata, ref)
    digest, size, media_type = row["digest"], row["size"], row["media_type"]
    etag = f'"{digest}"'
    headers = {"ETag": etag, "Accept-Ranges": "bytes",
               "Cache-Control": "private, max-age=31536000, immutable"}
    wanted = request.headers.get("if-none-match")
    if wanted and (wanted.strip() == "*" or etag in [t.strip().removeprefix("W/")
                                                      for t in wanted.split(",")]):
        return Response(status_code=304, headers=headers)
    asked = request.headers.get("range")
    span = _range(asked, size)
    if span is None:
        # FileResponse (sendfile where the server has it) would act on a Range header
        # itself; one this route ignores is not shown to it.
        if isinstance(strata.blobs, LocalBlobStore) and asked is None:
            return FileResponse(strata.blobs.path_of(digest), media_type=media_type,
                                headers={**headers, "Content-Length": str(size)})
        return StreamingResponse(_read(strata, digest, 0, size), media_type=media_type,
                                 headers={**headers, "Content-Length": str(size)})
    start, end = span
    return StreamingResponse(
        _read(strata, digest, start, end - start + 1), status_code=206, media_type=media_type,
        headers={**headers, "Content-Range": f"bytes {start}-{end}/{size}",
                 "Content-Length": str(end - start + 1)})


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range asked for (first, last), or None for the whole file: no Range,
    a malformed one or several ranges (RFC 9110 lets a server ignore them)."""
    match = RANGE.match(header.strip()) if header else None
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise HttpProblem(416, f"the range {header} is outside the asset's {size:,} bytes",
                          {"Content-Range": f"bytes */{size}"})
    return start, end


def _read(strata: Strata, digest: str, start: int, length: int) -> Iterator[bytes]:
    with strata.blobs.open_seekable(digest) as handle:
        handle.seek(start)
        while length > 0 and (chunk := handle.read(min(CHUNK, length))):
            length -= len(chunk)
            yield chunk


@router.get("/{ref}/thumbnail", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}},
                             "description": "a thumbnail (audio: 404)"}})
def get_thumbnail(strata: StrataDep, ref: str,
                  size: Annotated[int, Query(ge=16, le=1024)] = 256) -> FileResponse:
    """A thumbnail fitting in size x size (derived on first request, cached on disk; never
    an event). Images and videos (first frame); audio has none (404)."""
    path, media_type = thumbnail(strata, _asset(strata, ref), size)
    return FileResponse(path, media_type=media_type,
                        headers={"Cache-Control": "private, max-age=86400"})


@router.get("/{ref}/lineage", response_model=Graph, response_model_by_alias=True)
def lineage(
    strata: StrataDep,
    ref: str,
    direction: gallery.GraphDirection = "ancestors",
    depth: Annotated[int, Query(ge=1, le=queries.MAX_DEPTH)] = queries.MAX_DEPTH,
    as_of: AsOf = None,
) -> Response:
    """The lineage as nodes and edges (from parent to child, with the parent's role):
    what made the asset, what was made from it, or both."""
    # Graph documents the shape; the graph is sent as built (see `show`).
    return FastJSONResponse(gallery.lineage_graph(strata, ref, direction, depth, as_of))


PROVENANCE_TYPES = {"json": "application/json", "prov-json": "application/json",
                    "prov-xml": "application/xml", "markdown": "text/markdown",
                    "tree": "text/plain", "prov-n": "text/plain"}
assert set(PROVENANCE_TYPES) == set(FORMATS), "a provenance format without a media type"


@router.get("/{ref}/provenance", response_class=Response,
            responses={200: {"content": {t: {} for t in sorted(set(PROVENANCE_TYPES.values()))},
                             "description": "the whole ancestry in the chosen format"}})
def provenance(
    strata: StrataDep,
    ref: str,
    format: Literal["json", "markdown", "tree", "prov-json", "prov-n", "prov-xml"] = "json",
    as_of: AsOf = None,
) -> Response:
    """The whole ancestry of an asset, in every format `strata provenance` has."""
    from strata.core.provenance.report import render

    text = render(strata, ref, format, as_of)
    return Response(text, media_type=PROVENANCE_TYPES[format])


@router.get("/{ref}/audit")
def audit(strata: StrataDep, ref: str, as_of: AsOf = None) -> dict[str, Any]:
    """Every event that touched the asset or its ancestry, in log order."""
    from strata.core.provenance.audit import audit as read_audit

    found: dict[str, Any] = read_audit(strata, ref, as_of).to_json()
    return found
