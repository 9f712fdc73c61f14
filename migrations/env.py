"""Alembic environment: the same migrations serve SQLite and PostgreSQL.

`strata init` configures alembic in code (core.migrate) and hands over an open
connection; running `alembic upgrade head` from a checkout uses alembic.ini and
STRATA_DATABASE_URL / STRATA_HOME like every other command.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

# The modules whose tables share core.storage.schema's metadata, imported so that every
# table is in it when alembic compares the store with it.
import strata.core.auth.tokens
import strata.core.find.schema  # noqa: F401
from strata.core.config import Settings
from strata.core.storage import schema
from strata.core.storage.db import make_engine

target_metadata = schema.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(Settings().effective_database_url)
    with engine.connect() as conn:
        _run(conn)
