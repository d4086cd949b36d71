"""Schema migrations: a first-release database upgrades intact, and models never drift.

Every test runs on SQLite and on PostgreSQL (a fresh schema each).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from offload.errors import StoreError
from offload.store import JobStore, migrate
from offload.store.schema import SCHEMA_REVISION, VERSION_TABLE, metadata
from tests import first_release_schema as first
from tests.conftest import ROOT

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def _first_release_database(url: str) -> None:
    """What the first release left: its tables made by create_all, rows, no version."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        first.metadata.create_all(conn)
        conn.execute(
            first.jobs.insert(),
            [
                {
                    "id": f"01kbf0000000000000000000{i:02d}",
                    "type": "demo.echo",
                    "status": status,
                    "payload": {"n": i, "text": "é ✓"},
                    "result": {"ok": True} if status == "succeeded" else None,
                    "request_id": f"req{i}",
                    "owner": "anonymous",
                    "idempotency_key": f"key{i}",
                    "attempts": 1,
                    "max_attempts": 5,
                    "deadline_seconds": 60.0,
                    "cancel_requested": False,
                    "created_at": NOW,
                    "updated_at": NOW,
                    "finished_at": NOW if status == "succeeded" else None,
                }
                for i, status in enumerate(["queued", "succeeded", "failed"])
            ],
        )
        conn.execute(
            first.attempts.insert(),
            {
                "job_id": "01kbf000000000000000000001",
                "number": 1,
                "started_at": NOW,
                "finished_at": NOW,
                "outcome": "succeeded",
            },
        )
    engine.dispose()


def test_a_first_release_database_upgrades_to_the_newest_revision_with_its_rows(
    store_url: str,
) -> None:
    _first_release_database(store_url)
    assert migrate.current_revision(store_url) is None

    migrate.upgrade(store_url)

    assert migrate.current_revision(store_url) == migrate.head_revision() == SCHEMA_REVISION
    store = JobStore(store_url)
    try:
        store.check_schema()
        done = store.get("01kbf000000000000000000001")
        assert done is not None
        assert done.status == "succeeded"
        assert done.payload == {"n": 1, "text": "é ✓"}
        assert done.result == {"ok": True}
        assert done.created_at == NOW
        assert [a.outcome for a in done.attempt_log] == ["succeeded"]
        assert {j.id for j in store.list(limit=10)} == {
            f"01kbf0000000000000000000{i:02d}" for i in range(3)
        }
        assert store.get_by_idempotency_key("anonymous", "key2") is not None
    finally:
        store.dispose()


def test_the_models_match_the_migrations(store_url: str) -> None:
    """A change to offload/store/schema.py without a migration fails here."""
    migrate.upgrade(store_url)
    engine = JobStore(store_url).engine
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == [], (
        "schema.py and the migrations differ: write one with "
        "`offload db revision -m '...'` (autogenerate)\n" + "\n".join(map(str, differences))
    )


def test_downgrade_to_base_and_upgrade_again(store_url: str) -> None:
    migrate.upgrade(store_url)
    migrate.downgrade(store_url, "base")
    assert migrate.current_revision(store_url) is None
    migrate.upgrade(store_url)
    assert migrate.current_revision(store_url) == SCHEMA_REVISION


def test_revisions_are_one_numbered_line_ending_at_the_code_s_revision() -> None:
    revisions = migrate.history()
    numbers = [r for r, _, _ in revisions]
    assert numbers == [f"{i:04d}" for i in range(1, len(numbers) + 1)]
    assert [p for _, p, _ in revisions] == [None, *numbers[:-1]]
    assert numbers[-1] == SCHEMA_REVISION == migrate.head_revision()
    for path in (ROOT / "offload/store/migrations/versions").glob("*.py"):
        if path.name != "__init__.py":
            assert re.match(r"^\d{4}_[a-z0-9_]+\.py$", path.name), path.name


def test_a_store_behind_the_code_is_refused_with_the_command_to_run(store_url: str) -> None:
    store = JobStore(store_url)
    try:
        with pytest.raises(StoreError, match="run `offload db upgrade`"):
            store.check_schema()
    finally:
        store.dispose()


def _offload(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offload.cli", *args],
        cwd=ROOT,
        env={**os.environ, "OFFLOAD_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_db_commands_upgrade_and_report(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'offload.db'}"
    behind = _offload("db", "current", url=url)
    assert behind.returncode == 1
    assert "none (behind: run offload db upgrade" in behind.stdout

    up = _offload("db", "upgrade", url=url)
    assert up.returncode == 0, up.stderr
    assert f"schema at revision {SCHEMA_REVISION}" in up.stdout
    current = _offload("db", "current", url=url)
    assert (current.returncode, current.stdout.strip()) == (0, f"{SCHEMA_REVISION} (up to date)")
    history = _offload("db", "history", url=url)
    assert history.stdout.startswith("base -> 0001")

    sql = _offload("db", "upgrade", "--sql", url=f"sqlite:///{tmp_path / 'other.db'}")
    assert sql.returncode == 0, sql.stderr
    assert "CREATE TABLE offload_jobs" in sql.stdout
    assert not (tmp_path / "other.db").exists() or (tmp_path / "other.db").stat().st_size == 0


@pytest.mark.e2e
@pytest.mark.parametrize("service", ["web", "worker"])
def test_a_service_on_an_unmigrated_database_refuses_to_start_in_one_line(
    tmp_path: Path, service: str
) -> None:
    env = {
        **os.environ,
        "OFFLOAD_DATABASE_URL": f"sqlite:///{tmp_path / 'offload.db'}",
        "OFFLOAD_LOG_DIR": "",
        "OFFLOAD_PLATFORM_TIMEOUT_SECONDS": "600",
    }
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--name", service]
    done = subprocess.run(
        [*gunicorn, "--bind", "127.0.0.1:0", "--workers", "1", f"{service}.main:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"offload {service}: cannot start: the job store's schema is at revision none" in (
        done.stderr
    )
    assert "run `offload db upgrade`" in done.stderr
    assert "Traceback" not in done.stderr
