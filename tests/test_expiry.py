"""Expiry of finished jobs: the store call, the cron route, and the command."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from flask import Flask

from offload.store import JobStore, utcnow
from tests.conftest import ROOT
from tests.test_worker_unit import add_job, push


def test_expire_deletes_only_finished_jobs_older_than_the_cutoff(worker_app: Flask) -> None:
    store: JobStore = worker_app.extensions["offload.store"]
    done = add_job(worker_app, "demo.echo", {})
    push(worker_app, done)
    waiting = add_job(worker_app, "demo.echo", {})
    assert store.expire(finished_before=utcnow() - dt.timedelta(hours=1)) == 0
    assert store.expire(finished_before=utcnow() + dt.timedelta(seconds=1)) == 1
    assert store.get(done) is None
    assert store.get(waiting) is not None


def test_cron_route_needs_app_engine_cron_header(worker_app: Flask) -> None:
    http = worker_app.test_client()
    assert http.get("/cron/expire").status_code == 403
    r = http.get("/cron/expire", headers={"X-Appengine-Cron": "true"})
    assert r.status_code == 200
    assert r.get_json() == {"expired": 0, "reaped": 0}


def test_offload_jobs_expire_command(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OFFLOAD_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "OFFLOAD_LOG_DIR": "",
        "OFFLOAD_PLATFORM_TIMEOUT_SECONDS": "600",
    }
    expire = [sys.executable, "-m", "offload.cli", "jobs", "expire", "--older-than", "60"]
    refused = subprocess.run(expire, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "run `offload db upgrade`" in refused.stderr and "Traceback" not in refused.stderr
    subprocess.run(
        [sys.executable, "-m", "offload.cli", "db", "upgrade"],
        cwd=ROOT, env=env, capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    out = subprocess.run(expire, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "expired 0 jobs" in out.stdout
