"""Schema management: alembic configured in code, so an installed Strata needs no checkout.

Alembic (with mako and its script loading) is imported only to migrate or to explain a
schema that is not current: every command checks the schema at start, and the common
case — the store is at this version's head — is one plain query against the revision
the version files name (`_head_from_sources`)."""

from __future__ import annotations

import re
from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from strata.core.config import strata_version
from strata.core.errors import StoreFromNewerVersion, StoreNotInitialised

if TYPE_CHECKING:
    from alembic.config import Config

# How every file in migrations/versions/ names itself and its parent (alembic's template).
_REVISION = re.compile(r"""^revision(?:\s*:\s*str)?\s*=\s*["']([^"']+)["']\s*$""", re.M)
_DOWN_REVISION = re.compile(
    r"""^down_revision(?:\s*:[^=]+)?\s*=\s*(?:None|["']([^"']+)["'])\s*$""", re.M)


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("strata.migrations")))
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations package has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    _refuse_newer_schema(engine)
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def require_current_schema(engine: Engine) -> None:
    """Refuse to work on a database that `strata init` has not brought to this version."""
    if _at_head_cheaply(engine):
        return
    current = current_revision(engine)
    if current == head_revision():
        return
    _refuse_newer_schema(engine)
    where = engine.url.render_as_string(hide_password=True)
    if current is None:
        raise StoreNotInitialised(f"no Strata store at {where}; run `strata init` first")
    raise StoreNotInitialised(
        f"the store at {where} is at schema {current}, this Strata needs {head_revision()}; "
        "run `strata init` to upgrade it"
    )


def _refuse_newer_schema(engine: Engine) -> None:
    """A schema revision this code does not know was written by a newer Strata: neither
    reading with older code nor "upgrading" it (a downgrade in disguise) is safe."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    current = current_revision(engine)
    if current is None:
        return
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(current)
    except CommandError:
        where = engine.url.render_as_string(hide_password=True)
        raise StoreFromNewerVersion(
            f"the store at {where} is at schema {current}, which this Strata "
            f"({strata_version()}) does not know: it was written by a newer version. "
            "Upgrade Strata on this machine; nothing was changed"
        ) from None


def _at_head_cheaply(engine: Engine) -> bool:
    """Whether the store is at this version's head, without alembic; False whenever that
    is not plainly so (no table yet, several rows, files this cannot read), and the
    caller asks alembic."""
    head = _head_from_sources()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:
        return False
    return [tuple(row) for row in stored] == [(head,)]


def _head_from_sources() -> str | None:
    """The one revision no other names as its parent, read from the version files' text
    (tests/api/cli/test_startup.py checks it against alembic's head); None if a file does
    not name both plainly or the files have several heads."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for entry in (files("strata.migrations") / "versions").iterdir():
        if not entry.name.endswith(".py") or entry.name.startswith("_"):
            continue
        source = entry.read_text(encoding="utf-8")
        revision, parent = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or parent is None:
            return None
        revisions.add(revision[1])
        if parent[1]:
            parents.add(parent[1])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None
