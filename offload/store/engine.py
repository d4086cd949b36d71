"""Engines for the job store: SQLite (WAL, busy timeout) or PostgreSQL (a pool)."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

__all__ = ["engine_for"]


def engine_for(url: str, pool_size: int, application_name: str = "offload") -> Engine:
    """An engine for ``url``: SQLite tuned for several processes, else a PostgreSQL pool.

    PostgreSQL connections carry ``application_name`` (after the URL's own, if it names
    one), so an operator sees whose they are in ``pg_stat_activity``.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers and one writer work at once across processes;
            # busy_timeout makes a second writer wait instead of failing.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    base = parsed.query.get("application_name")
    name = f"{base}-{application_name}" if isinstance(base, str) else application_name
    parsed = parsed.difference_update_query(["application_name"])
    return create_engine(
        parsed,
        connect_args={"application_name": name[:63]},
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )
