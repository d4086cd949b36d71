"""The worker's store calls survive dropped PostgreSQL connections (real processes).

Each test holds a lock on the job's row from a connection of its own, so that the
worker's write is surely in flight (waiting for the lock) when the test terminates the
worker's connections with ``pg_terminate_backend``: only the connections whose
``application_name`` is this stack's worker, never anyone else's.
"""

from __future__ import annotations

import collections
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy
from sqlalchemy import text

from offload.store import SUCCEEDED, JobStore
from tests.conftest import POSTGRES_URL, postgres_schema_url
from tests.processes import Stack, make_stack

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Stack, str, str]]:
    """A stack on a fresh PostgreSQL schema; its URL; its worker's application_name."""
    schemas = postgres_schema_url()
    url = next(schemas)
    tag = "t" + secrets.token_hex(4)
    env = {
        "OFFLOAD_DATABASE_URL": f"{url}&application_name={tag}",
        **getattr(request, "param", {}),
    }
    stack = make_stack(tmp_path / "stack", env=env)
    try:
        yield stack, url, f"{tag}-offload-worker"
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(stack.outputs())
        stack.stop()
        next(schemas, None)  # drops the schema


@pytest.fixture
def admin() -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def lock_waiters(admin: sqlalchemy.Engine, app: str) -> list[int]:
    """Backends of ``app`` waiting for a lock (the worker's statement, blocked by ours)."""
    with admin.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE application_name = :app AND wait_event_type = 'Lock'"
                ),
                {"app": app},
            ).scalars()
        )


def terminate(admin: sqlalchemy.Engine, app: str) -> int:
    """``pg_terminate_backend`` of every connection of ``app``; how many there were."""
    with admin.connect() as conn:
        return len(
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = :app"
                ),
                {"app": app},
            ).all()
        )


def runs(mark: Path) -> collections.Counter[str]:
    return collections.Counter(mark.read_text().split()) if mark.exists() else collections.Counter()


def submit(stack: Stack, payload: dict[str, Any], **extra: Any) -> str:
    r = requests.post(
        f"{stack.web_url}/jobs", json={"type": "test.mark", "payload": payload, **extra}, timeout=30
    )
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


def row_locked(url: str, job_id: str) -> tuple[sqlalchemy.Engine, sqlalchemy.Connection]:
    engine = sqlalchemy.create_engine(url)
    conn = engine.connect()
    conn.begin()
    conn.execute(text("SELECT id FROM offload_jobs WHERE id = :id FOR UPDATE"), {"id": job_id})
    return engine, conn


def assert_ran_once_and_never_again(stack: Stack, url: str, job_id: str, mark: Path) -> None:
    store = JobStore(url, pool_size=1)
    try:
        job = wait_until(
            lambda: (j := store.get(job_id)) is not None and j.status == SUCCEEDED and j,
            what="the job to succeed",
        )
        assert [a.outcome for a in job.attempt_log] == ["succeeded"] and job.attempts == 1
        # Its task answered 204 and is gone: no delivery is left to run it again.
        from google.api_core import exceptions as gexc

        client = stack.tasks_client()

        def task_gone() -> bool:
            try:
                client.get_task(name=job.task_name)
            except gexc.NotFound:
                return True
            return False

        wait_until(task_gone, what="the task to end")
        assert runs(mark) == collections.Counter({job_id: 1})
    finally:
        store.dispose()


def test_a_connection_killed_between_the_handlers_return_and_its_write_loses_nothing(
    pg_stack: tuple[Stack, str, str], admin: sqlalchemy.Engine
) -> None:
    stack, url, app = pg_stack
    mark, gate = stack.tmp / "mark", stack.tmp / "gate"
    job_id = submit(stack, {"path": str(mark), "gate": str(gate)})
    wait_until(lambda: runs(mark)[job_id] == 1, what="the handler to start")
    engine, locker = row_locked(url, job_id)
    try:
        gate.touch()  # the handler returns; its final write waits for our lock
        wait_until(lambda: lock_waiters(admin, app), what="the final write")
        assert terminate(admin, app) >= 1
        wait_until(lambda: lock_waiters(admin, app), what="the write retried on a new connection")
    finally:
        locker.rollback()
        locker.close()
        engine.dispose()
    assert_ran_once_and_never_again(stack, url, job_id, mark)


def test_a_connection_killed_during_the_claim_runs_the_job_once(
    pg_stack: tuple[Stack, str, str], admin: sqlalchemy.Engine
) -> None:
    stack, url, app = pg_stack
    mark = stack.tmp / "mark"
    job_id = submit(stack, {"path": str(mark)}, delay_seconds=2)
    engine, locker = row_locked(url, job_id)
    try:
        wait_until(lambda: lock_waiters(admin, app), what="the claim")
        assert terminate(admin, app) >= 1
        wait_until(lambda: lock_waiters(admin, app), what="the claim retried on a new connection")
        assert runs(mark) == collections.Counter()
    finally:
        locker.rollback()
        locker.close()
        engine.dispose()
    assert_ran_once_and_never_again(stack, url, job_id, mark)


@pytest.mark.parametrize("pg_stack", [{"OFFLOAD_STORE_RETRY_SECONDS": "1"}], indirect=True)
def test_a_result_the_store_could_not_take_is_written_as_soon_as_it_is_back(
    pg_stack: tuple[Stack, str, str], admin: sqlalchemy.Engine
) -> None:
    stack, url, app = pg_stack
    mark, gate = stack.tmp / "mark", stack.tmp / "gate"
    job_id = submit(stack, {"path": str(mark), "gate": str(gate)})
    wait_until(lambda: runs(mark)[job_id] == 1, what="the handler to start")
    engine, locker = row_locked(url, job_id)
    try:
        gate.touch()
        wait_until(lambda: lock_waiters(admin, app), what="the final write")
        # Unreachable for longer than the worker's 1 s retry budget: every connection of
        # the worker is killed as soon as it waits on the row.
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            terminate(admin, app)
            time.sleep(0.05)
        worker_log = (stack.log_dir / "worker.log").read_text()
        assert "store unreachable" in worker_log
    finally:
        locker.rollback()
        locker.close()
        engine.dispose()
    released = time.monotonic()
    assert_ran_once_and_never_again(stack, url, job_id, mark)
    # Written behind within seconds, not when its 65 s lease ran out.
    assert time.monotonic() - released < 30
