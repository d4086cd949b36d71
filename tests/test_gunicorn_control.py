"""No gunicorn of ours opens the control socket every gunicorn on a machine would share."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from offload.store import migrate
from tests.processes import Proc, free_port, http_ok

pytestmark = pytest.mark.e2e


def test_web_under_gunicorn_makes_no_shared_control_socket(tmp_path: Path) -> None:
    """gunicorn's default is ~/.gunicorn/gunicorn.ctl: one socket for every stack's services."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    database = f"sqlite:///{tmp_path / 'offload.db'}"
    migrate.upgrade(database)
    env = {
        "HOME": str(home),
        "XDG_RUNTIME_DIR": "",
        "OFFLOAD_DATABASE_URL": database,
        "OFFLOAD_LOG_DIR": "",
        "OFFLOAD_TASKS_EMULATOR_HOST": f"127.0.0.1:{free_port()}",
    }
    argv = [
        sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--name", "web",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "web.main:app",
    ]  # fmt: skip
    proc = Proc("web", argv, env, tmp_path / "web.out")
    try:
        proc.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"))
        assert not (home / ".gunicorn").exists(), sorted(p.name for p in home.rglob("*"))
    finally:
        proc.stop()
