"""The web page: `/` and its static files (`/web/...`), served from the installed package.

The page is plain HTML, CSS and ES modules (no build step, nothing from a CDN); it talks to
the same API as every other client, so this router holds no logic but serving files. The
files are public: a store that needs a token asks for it in the page, when the API answers
401, so the page itself must load without one.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from strata.core.errors import NotFound

WEB_ROOT = (Path(__file__).resolve().parent.parent / "web").resolve()

# Stated here rather than taken from the platform's table: some systems map `.js` to
# text/plain, and browsers refuse to run a module script served as that.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# Revalidated on every load (ETag and Last-Modified answer cheaply), so an upgraded Strata
# never runs an old module beside a new one.
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(include_in_schema=False)


def _file(relative: str) -> FileResponse:
    path = (WEB_ROOT / relative).resolve()
    media_type = MEDIA_TYPES.get(path.suffix)
    # Only files inside the page's folder, of the kinds it ships (no `..` escapes).
    if media_type is None or not path.is_relative_to(WEB_ROOT) or not path.is_file():
        raise NotFound(f"the web page has no file {relative!r}")
    return FileResponse(path, media_type=media_type, headers=HEADERS)


@router.get("/")
def index() -> FileResponse:
    return _file("index.html")


@router.get("/web/{relative:path}")
def static(relative: str) -> FileResponse:
    return _file(relative)
