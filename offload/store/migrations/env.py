"""Alembic's environment: run the store's migrations on a connection or a URL.

``offload db`` (offload/store/migrate.py) passes a live connection in
``config.attributes["connection"]``; offline (``--sql``) it passes the URL only.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from offload.store.engine import engine_for
from offload.store.schema import VERSION_TABLE, metadata

# The same lock the first release took around create_all: never two upgrades at once.
ADVISORY_LOCK = 5186120


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things: Alembic copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # Autogenerate writes the project's column types as schema.UTCDateTime(...).
        user_module_prefix="schema.",
    )


def run_online() -> None:
    """Migrate through a connection, holding PostgreSQL's advisory lock meanwhile."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        engine = engine_for(str(context.config.get_main_option("sqlalchemy.url")), 1)
        with engine.connect() as conn:
            context.config.attributes["connection"] = conn
            try:
                run_online()
            finally:
                context.config.attributes["connection"] = None
        engine.dispose()
        return
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK})"))
        context.run_migrations()


def run_offline() -> None:
    """Print the SQL instead of running it (``offload db upgrade --sql``)."""
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
