"""The web page in a real browser: Debian's headless Chromium driven by Playwright, against
a real server on a loopback port over a SQLite store with real assets.

The browser is never downloaded: without /usr/bin/chromium these tests skip, or fail when
CI=true (CI installs it). Screenshots go to $STRATA_TEST_ARTIFACTS when set, else to the
test's temporary folder.
"""

from __future__ import annotations

import io
import os
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from strata.core import layers
from strata.core.auth import tokens
from strata.core.decisions import branches, curation
from strata.core.projections import views
from strata.core.projections.lineage import walk
from strata.core.service import Strata
from tests.helpers import png_bytes

CHROMIUM = Path("/usr/bin/chromium")
PAGE_SIZE = 24  # as gallery.js pages
WAIT_MS = 15_000  # generous: the page answers in well under a second on a quiet machine


@pytest.fixture
def backend() -> str:
    """The browser tests need one real store, not both backends (the API's own tests cover
    PostgreSQL): this overrides the suite's parametrised backend."""
    return "sqlite"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, live_server: Any, request: pytest.FixtureRequest,
         tmp_path: Path) -> Iterator[Any]:
    """A fresh page; JavaScript errors fail the test; a screenshot is saved at the end.

    It depends on `live_server` so that it closes first: the page holds the event stream
    open, and the server waits for open connections when it stops."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    folder = Path(os.environ.get("STRATA_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    opened.screenshot(path=str(folder / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@dataclass
class Family:
    """root → a, root → b; (a source, b mask) → child; child → grandchild; plus a loner."""

    root: str
    a: str
    b: str
    child: str
    grandchild: str
    loner: str

    @property
    def all(self) -> list[str]:
        return [self.root, self.a, self.b, self.child, self.grandchild, self.loner]


def add_png(strata: Strata, folder: Path, seed: int,
            parents: list[tuple[str, str]] | None = None) -> str:
    path = folder / f"picture-{seed}.png"
    path.write_bytes(png_bytes(seed))
    event = strata.add_files([path], parents or [])[0]
    data = event.data
    return str(data["output"]["asset"]["digest"] if "output" in data
               else data["asset"]["digest"])


@pytest.fixture
def family(live_server: Any, tmp_path: Path) -> Family:
    strata: Strata = live_server.strata
    root = add_png(strata, tmp_path, 1)
    a = add_png(strata, tmp_path, 2, [(root, "source")])
    b = add_png(strata, tmp_path, 3, [(root, "source")])
    child = add_png(strata, tmp_path, 4, [(a, "source"), (b, "mask")])
    grandchild = add_png(strata, tmp_path, 5, [(child, "source")])
    loner = add_png(strata, tmp_path, 6)
    return Family(root, a, b, child, grandchild, loner)


def lineage_in_database(strata: Strata, digest: str) -> set[str]:
    """The assets of the lineage graph of `digest`: it, its ancestors, its descendants."""
    with strata.view() as conn:
        edges = walk(conn, digest, "up") + walk(conn, digest, "down")
    return {digest} | {e.input_digest for e in edges} | {e.output_digest for e in edges}


def rendered(page: Any, selector: str, attribute: str) -> set[str]:
    return set(page.eval_on_selector_all(
        selector, f"nodes => nodes.map(n => n.getAttribute({attribute!r}))"))


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """For the database side of an action the page started (the page is waited on by
    Playwright); polls, with a deadline only so that a broken build cannot hang."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_gallery_shows_every_asset_with_its_thumbnail(
        page: Any, live_server: Any, family: Family) -> None:
    page.goto(live_server.url + "/")
    page.wait_for_function("document.querySelectorAll('.gallery .card').length === 6")

    assert rendered(page, ".gallery .card", "data-digest") == set(family.all)
    # Newest first, as the API lists them.
    assert page.get_attribute(".gallery .card", "data-digest") == family.loner
    # Every thumbnail was served and decoded by the browser (an <img> that failed is
    # replaced by a placeholder, and one still loading has no natural width).
    page.wait_for_function(
        "[...document.querySelectorAll('.gallery .card img')]"
        ".every(img => img.complete && img.naturalWidth > 0)")
    assert page.locator(".gallery .card img").count() == 6
    assert page.locator(".gallery .card img:not([alt])").count() == 0
    assert "1\N{EN DASH}6 of 6" in page.inner_text(".pager")


def test_gallery_filter_narrows_the_list(page: Any, live_server: Any, family: Family) -> None:
    page.goto(live_server.url + "/")
    page.wait_for_selector(".gallery .card")
    # Every registered layer is offered (read from the API's job endpoints), and the two
    # ways an asset is made outside a job.
    offered = page.eval_on_selector_all("#f-layer option", "options => options.map(o => o.value)")
    assert set(offered) == {"", "import", "external", *layers.names()}
    page.select_option("#f-layer", "import")  # applies at once, kept in the address

    page.wait_for_function("document.querySelectorAll('.gallery .card').length === 2")
    assert rendered(page, ".gallery .card", "data-digest") == {family.root, family.loner}
    assert "layer=import" in page.url


def test_gallery_filters_by_rating_and_final(
        page: Any, live_server: Any, family: Family) -> None:
    curation.rate(live_server.strata, family.a, 3)
    curation.rate(live_server.strata, family.child, 5)
    curation.mark_final(live_server.strata, family.grandchild)
    page.goto(live_server.url + "/")
    page.wait_for_selector(".gallery .card")

    page.select_option("#f-rating", "3")
    page.wait_for_function("document.querySelectorAll('.gallery .card').length === 2")
    assert rendered(page, ".gallery .card", "data-digest") == {family.a, family.child}
    assert page.get_attribute(f".card[data-digest='{family.child}'] .rating",
                              "aria-label") == "rated 5 of 5"

    page.select_option("#f-rating", "")
    page.check("#f-final")
    page.wait_for_function("document.querySelectorAll('.gallery .card').length === 1")
    assert page.get_attribute(".gallery .card", "data-digest") == family.grandchild
    assert "final=true" in page.url


def test_gallery_pages(page: Any, live_server: Any, family: Family, tmp_path: Path) -> None:
    more = [tmp_path / f"more-{seed}.png" for seed in range(100, 120)]
    for seed, path in enumerate(more, start=100):
        path.write_bytes(png_bytes(seed))
    live_server.strata.add_files(more)  # 26 assets in all: a full page and 2 more
    page.goto(live_server.url + "/")
    page.wait_for_function(f"document.querySelectorAll('.gallery .card').length === {PAGE_SIZE}")
    first = rendered(page, ".gallery .card", "data-digest")

    page.click(".pager a[rel=next]")
    page.wait_for_function("document.querySelectorAll('.gallery .card').length === 2")
    # The oldest two, which the first page did not show.
    assert rendered(page, ".gallery .card", "data-digest") == {family.root, family.a}
    assert not first & {family.root, family.a}
    assert "page=2" in page.url
    assert "25\N{EN DASH}26 of 26" in page.inner_text(".pager")


def test_asset_page_draws_the_lineage_graph_from_the_database(
        page: Any, live_server: Any, family: Family) -> None:
    expected = lineage_in_database(live_server.strata, family.child)
    assert len(expected) == 5  # all but the loner: ancestors on two paths, a descendant
    curation.review(live_server.strata, family.child, "changes", note="too dark")
    curation.review(live_server.strata, family.child, "approve", note="ship it")

    page.goto(f"{live_server.url}/#/asset/{family.child}")
    page.wait_for_selector("svg.lineage .node")

    assert rendered(page, "svg.lineage .node", "data-digest") == expected
    assert page.locator("svg.lineage .node").count() == len(expected)
    assert page.get_attribute("svg.lineage .node.current", "data-digest") == family.child
    roles = page.eval_on_selector_all("svg.lineage .edge .role",
                                      "nodes => nodes.map(n => n.textContent)")
    assert "source" in roles and "mask" in roles
    # Thumbnails at the nodes (audio has none; these are all pictures).
    assert page.locator("svg.lineage .node image").count() == len(expected)
    page.wait_for_function("!document.querySelector('#provenance .loading')"
                           " && document.querySelector('#provenance pre').textContent.length")
    assert page.locator("#provenance .error").count() == 0
    # Its reviews, oldest first, and its recipe (what made it: inputs with their roles).
    reviews = page.locator("#reviews li")
    reviews.nth(1).wait_for()
    assert "too dark" in reviews.nth(0).inner_text()
    assert "ship it" in reviews.nth(1).inner_text()
    assert "mask" in page.inner_text("#recipe")

    # Clicking a node goes to that asset.
    page.click(f"svg.lineage .node[data-digest='{family.grandchild}']")
    page.wait_for_selector(f"svg.lineage .node.current[data-digest='{family.grandchild}']")
    assert family.grandchild in page.url


def test_a_new_asset_appears_live_without_a_reload(
        page: Any, live_server: Any, family: Family, tmp_path: Path) -> None:
    page.goto(live_server.url + "/")
    page.wait_for_function("document.querySelectorAll('.gallery .card').length === 6")
    page.wait_for_selector("#live[data-state='open']")  # following the stream
    page.evaluate("window.notReloaded = true")

    fresh = add_png(live_server.strata, tmp_path, 99, [(family.grandchild, "source")])

    page.wait_for_selector(f".gallery .card[data-digest='{fresh}']")
    assert page.evaluate("window.notReloaded") is True
    assert page.get_attribute(".gallery .card", "data-digest") == fresh
    assert "New asset" in page.inner_text("#announce")

    curation.mark_final(live_server.strata, fresh)  # a decision updates its card live too
    page.wait_for_selector(f".gallery .card[data-digest='{fresh}'] .final")
    assert page.evaluate("window.notReloaded") is True


def test_rollback_from_the_branch_page_moves_the_head(
        page: Any, live_server: Any, family: Family) -> None:
    strata: Strata = live_server.strata
    branches.create(strata, "look/dev", family.a)
    branches.advance(strata, "look/dev", family.child)
    branches.advance(strata, "look/dev", family.grandchild)

    page.goto(f"{live_server.url}/#/branches")  # the list, then the branch from it
    page.click("tr[data-branch='look/dev'] th a")
    page.wait_for_selector(".history .move")
    assert page.locator(".history .move").count() == 3
    page.click(f".history .move[data-head='{family.a}'] button.rollback")

    def head() -> str | None:
        with strata.view() as conn:
            row = views.branch(conn, "look/dev")
        assert row is not None
        return row["head"]

    wait_until(lambda: head() == family.a, "the branch head to move back")
    # The page shows the new head and the rollback in its history.
    page.wait_for_selector(f".history .move.current[data-head='{family.a}']")
    assert page.locator(".history .move").count() == 4
    assert "rolled back" in page.inner_text(".history .move >> nth=0")


def wav_bytes(seconds: float = 0.5, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x10" * round(seconds * rate))
    return buffer.getvalue()


def add_bytes(strata: Strata, path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(strata.add_files([path])[0].data["asset"]["digest"])


@pytest.mark.parametrize("kind", ["audio", "video"])
def test_audio_and_video_play_in_place(
        page: Any, live_server: Any, tmp_path: Path, kind: str) -> None:
    if kind == "audio":
        digest = add_bytes(live_server.strata, tmp_path / "tone.wav", wav_bytes())
    else:
        from PIL import Image

        from strata.core.av import encode_mp4

        frames = [Image.new("RGB", (64, 64), (i * 20, 80, 160)) for i in range(8)]
        digest = add_bytes(live_server.strata, tmp_path / "clip.mp4",
                           encode_mp4(frames, 8, (64, 64)))

    page.goto(f"{live_server.url}/#/asset/{digest}")
    player = page.wait_for_selector(f"figure.media {kind}[controls]")
    # The browser read the stream's header from /content (HAVE_METADATA) and can play it.
    page.wait_for_function(f"document.querySelector('figure.media {kind}').readyState >= 1")
    assert player.evaluate("media => media.duration") == pytest.approx(0.5 if kind == "audio"
                                                                      else 1.0, abs=0.15)
    assert player.evaluate("media => media.play().then(() => !media.paused)") is True


def test_search_box_asks_the_api_and_shows_its_error(
        page: Any, live_server: Any, family: Family) -> None:
    page.goto(live_server.url + "/")
    page.wait_for_selector(".gallery .card")
    page.fill("#f-q", "layer:import")
    page.press("#f-q", "Enter")
    page.wait_for_function("document.querySelectorAll('.gallery .card').length === 2")
    assert rendered(page, ".gallery .card", "data-digest") == {family.root, family.loner}

    page.fill("#f-q", "rating>>")
    page.press("#f-q", "Enter")
    error = page.wait_for_selector(".results .error")
    assert "Search failed" in error.inner_text()
    assert page.locator(".gallery .card").count() == 0


def test_a_token_is_asked_for_once_kept_and_sent(
        page: Any, live_server: Any, family: Family) -> None:
    _, secret = tokens.create(live_server.strata.store.engine, ["read"], "viewer")

    page.goto(live_server.url + "/")
    page.wait_for_selector("#token-dialog[open]")  # the API answered 401
    page.fill("#token-input", secret)
    page.click("#token-dialog button[value=ok]")

    page.wait_for_function("document.querySelectorAll('.gallery .card').length === 6")
    # Thumbnails (an <img> cannot send headers) came with ?access_token=.
    page.wait_for_function(
        "[...document.querySelectorAll('.gallery .card img')]"
        ".every(img => img.complete && img.naturalWidth > 0)")
    page.wait_for_selector("#live[data-state='open']")
    assert page.evaluate("localStorage.getItem('strata.token')") == secret

    page.reload()  # kept: not asked again
    page.wait_for_function("document.querySelectorAll('.gallery .card').length === 6")
    assert page.locator("#token-dialog[open]").count() == 0
