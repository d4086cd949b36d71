"""Fixtures: apps for the in-process test client, and the real processes on loopback.

The real-process fixtures start the Cloud Tasks emulator and both gunicorn services on
free loopback ports, wait until each answers, and stop them by PID (process group) at
teardown. Their output goes to files under the test's temporary folder, printed when a
test fails.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.processes import (  # noqa: F401 - re-exported for the tests
    LOCATION,
    PROJECT,
    QUEUE,
    ROOT,
    TEST_QUEUE_YAML,
    Proc,
    Stack,
    free_port,
    make_stack,
)

POSTGRES_URL = os.environ.get(
    "OFFLOAD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Emulator, web and worker, shared by the end-to-end tests of a session."""
    s = make_stack(tmp_path_factory.mktemp("stack"))
    yield s
    s.stop()


@pytest.fixture
def dump_stack_on_failure(request: pytest.FixtureRequest, stack: Stack) -> Iterator[Stack]:
    """The shared stack; its processes' output is printed if the test fails."""
    yield stack
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(stack.outputs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report


# -- in-process apps ---------------------------------------------------------------


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A lone emulator (no worker behind it) for the in-process web tests."""
    s = Stack(tmp=tmp_path_factory.mktemp("emulator"), env={})
    s.start_emulator()
    yield s
    s.stop()


def app_config(tmp: Path, **overrides: Any) -> dict[str, Any]:
    """Configuration for an in-process app writing under ``tmp`` (its database migrated)."""
    from offload.store import migrate

    config = {
        "PROJECT_ID": PROJECT,
        "LOCATION": LOCATION,
        "QUEUE": QUEUE,
        "DATABASE_URL": f"sqlite:///{tmp / 'offload.db'}",
        "LOG_DIR": "",
        "CONSOLE_SECRET_KEY_FILE": str(tmp / "console-secret-key"),
        "HARD_GRACE_SECONDS": 0.0,
        "PROGRESS_INTERVAL_SECONDS": 0.0,
        "PLATFORM_TIMEOUT_SECONDS": 600,
        **overrides,
    }
    migrate.upgrade(str(config["DATABASE_URL"]))
    return config


@pytest.fixture
def web_app(tmp_path: Path) -> Iterator[Flask]:
    """The web app in process, on the in-memory Cloud Tasks (no emulator process)."""
    from offload.testing import InMemoryCloudTasks
    from web import create_app

    app = create_app(app_config(tmp_path), tasks_client=InMemoryCloudTasks())
    yield app
    app.extensions["offload.store"].dispose()


@pytest.fixture
def web_app_on_emulator(tmp_path: Path, emulator: Stack) -> Iterator[Flask]:
    """The web app in process, enqueuing on the real emulator over gRPC."""
    from web import create_app

    app = create_app(
        app_config(tmp_path, TASKS_EMULATOR_HOST=f"127.0.0.1:{emulator.emulator_port}")
    )
    yield app
    app.extensions["offload.tasks"].close()
    app.extensions["offload.store"].dispose()


@pytest.fixture
def client(web_app: Flask) -> FlaskClient:
    """Test client of :func:`web_app`."""
    return web_app.test_client()


@pytest.fixture
def worker_app(tmp_path: Path) -> Iterator[Flask]:
    """The worker app in process, on the same store file as :func:`web_app`."""
    from worker import create_app

    app = create_app(app_config(tmp_path))
    yield app
    app.extensions["offload.store"].dispose()


# -- stores ----------------------------------------------------------------------


def postgres_schema_url() -> Iterator[str]:
    """A URL into a fresh PostgreSQL schema, dropped when the generator is resumed."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(POSTGRES_URL)
        with engine.connect():
            pass
    except Exception as e:  # noqa: BLE001 - any failure means "no server here"
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {type(e).__name__}")
    schema = "offload_test_" + secrets.token_hex(4)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for each engine the store supports (a fresh schema each test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield from postgres_schema_url()


def stack_on_engine(engine: str, tmp: Path, start: Callable[[Path, str], Stack]) -> Iterator[Stack]:
    """A stack ``start`` makes on SQLite or a fresh PostgreSQL schema, stopped after."""
    urls = (
        iter([f"sqlite:///{tmp / 'offload.db'}"]) if engine == "sqlite" else postgres_schema_url()
    )
    stack = start(tmp, next(urls))
    try:
        yield stack
    finally:
        stack.stop()
        if engine != "sqlite":
            urls.close()  # type: ignore[attr-defined]  # the generator drops the schema
