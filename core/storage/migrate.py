"""Schema management: alembic configured in code, so an installed Strata needs no checkout."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

from strata.core.config import strata_version
from strata.core.errors import StoreFromNewerVersion, StoreNotInitialised


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("strata.migrations")))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations package has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    _refuse_newer_schema(engine)
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def require_current_schema(engine: Engine) -> None:
    """Refuse to work on a database that `strata init` has not brought to this version."""
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
