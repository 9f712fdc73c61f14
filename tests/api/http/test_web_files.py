"""The web page's files as served: the page at `/`, its modules with a JavaScript media
type, nothing outside its folder, and nothing fetched from another origin."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from strata.api.http.routers.web import WEB_ROOT

# `import … from "./x.js"` and `<script src>` / `<link href>`: what the browser fetches.
IMPORTS = re.compile(r"""^import\s[^"']*["']([^"']+)["']""", re.MULTILINE)
HTML_REFS = re.compile(r"""(?:src|href)="(?!data:)([^"#]+)\"""")


@pytest.fixture
def backend() -> str:
    return "sqlite"  # static files: one backend says it all


def test_the_page_and_every_module_it_loads_are_served(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    queue = [f"/{ref}" for ref in HTML_REFS.findall(page.text)]
    seen: set[str] = set()
    while queue:  # follow the module graph as the browser would
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        answer = client.get(url)
        assert answer.status_code == 200, url
        if url.endswith(".js"):
            # A module script with any other media type is refused by the browser.
            assert answer.headers["content-type"].startswith("text/javascript"), url
            base = url.rsplit("/", 1)[0]
            queue += [f"{base}/{ref.removeprefix('./')}" for ref in IMPORTS.findall(answer.text)]
    assert {"/web/style.css", "/web/js/app.js", "/web/js/lineage.js"} <= seen


@pytest.mark.parametrize("path", ["/web/../app.py", "/web/%2e%2e/app.py",
                                  "/web/..%2fapp.py", "/web/js/missing.js", "/web/"])
def test_nothing_but_the_page_files_is_served(client: Any, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


def test_the_page_loads_nothing_from_another_origin() -> None:
    files = [p for p in WEB_ROOT.rglob("*") if p.is_file()]
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        # The SVG namespace is a name, not something fetched.
        remote = [url for url in re.findall(r"https?://[^\s\"')]+", text)
                  if url != "http://www.w3.org/2000/svg"]
        assert not remote, f"{Path(path).relative_to(WEB_ROOT)} refers to {remote}"
