"""Continuations through the worker in process, with the in-memory Cloud Tasks client.

The same paths run on the wire (emulator, gunicorn, SQLite and PostgreSQL) in
test_e2e_durable.py; here each push is made by hand, so every answer can be checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from offload.enqueue import TaskQueue
from offload.flaskapp import get_settings
from offload.ids import continuation_task_id
from offload.testing import InMemoryCloudTasks
from tests.conftest import app_config
from tests.test_worker_unit import add_job, job, push


@pytest.fixture
def durable_worker(tmp_path: Path) -> Iterator[tuple[Flask, InMemoryCloudTasks]]:
    """A worker with 1 s slices whose continuation tasks go to an in-memory Cloud Tasks."""
    from worker import create_app

    app = create_app(app_config(tmp_path, SLICE_SECONDS=1.0, DEMO_DIR=str(tmp_path / "demo")))
    client = InMemoryCloudTasks()
    app.extensions["offload.tasks"] = TaskQueue(get_settings(app), client=client)
    yield app, client
    app.extensions["offload.store"].dispose()


def _long(app: Flask) -> str:
    # 0.4 s steps in 1 s slices: after one step 0.6 s are left, less than a step + 0.5 s.
    return add_job(app, "demo.long", {"steps": 3, "step_seconds": 0.4}, deadline_seconds=600)


def test_a_spent_slice_answers_204_and_creates_the_continuation_task(
    durable_worker: tuple[Flask, InMemoryCloudTasks],
) -> None:
    app, tasks = durable_worker
    job_id = _long(app)
    answers = []
    for run in range(2, 10):
        answers.append(push(app, job_id).status_code)
        if job(app, job_id).finished:
            break
        # The next run's wake-up exists, named from the job id and the run number.
        name = f"{tasks.queue_path('offload-test', 'us-central1', 'offload-jobs')}/tasks/"
        name += continuation_task_id(job_id, run)
        assert name in tasks.tasks, sorted(tasks.tasks)
        assert job(app, job_id).task_name == name
        tasks.run(name)
    done = job(app, job_id)
    assert done.status == "succeeded", done
    assert set(answers) == {204} and done.runs == len(answers) >= 2
    assert done.result == {"executions": {"0": 1, "1": 1, "2": 1}}
    assert done.attempts == 1 and done.spent_seconds > 0
    assert [a.outcome for a in done.attempt_log] == ["continued"] * (done.runs - 1) + ["succeeded"]


def test_a_continuation_cloud_tasks_refuses_is_retried_and_uses_no_attempt(
    durable_worker: tuple[Flask, InMemoryCloudTasks],
) -> None:
    app, tasks = durable_worker
    job_id = _long(app)
    tasks.unavailable = True
    first = push(app, job_id)
    assert first.status_code == 500  # retry this task: it is the job's wake-up now
    waiting = job(app, job_id)
    assert (waiting.status, waiting.continuing, waiting.attempts) == ("queued", True, 1)
    tasks.unavailable = False
    # Cloud Tasks is back (a fresh queue client: the old one's circuit breaker is open).
    app.extensions["offload.tasks"] = TaskQueue(get_settings(app), client=tasks)
    assert push(app, job_id, retry_count=1).status_code == 204
    again = job(app, job_id)
    assert again.attempts == 1 and again.runs == 2  # the retry continued the job
    assert [a.outcome for a in again.attempt_log][:2] == ["continued", "continued"]


def test_a_job_that_stores_nothing_never_continues_and_meets_its_deadline(
    durable_worker: tuple[Flask, InMemoryCloudTasks],
) -> None:
    app, tasks = durable_worker
    # demo.sleep stores no step or checkpoint: a continuation would start it over, so
    # the slice ends it with DeadlineExceededError, as deadlines always did.
    job_id = add_job(app, "demo.sleep", {"seconds": 5}, max_attempts=1)
    assert push(app, job_id).status_code == 204
    failed = job(app, job_id)
    assert (failed.status, failed.reason, failed.runs) == ("failed", "deadline_exceeded", 1)
    assert tasks.tasks == {}


def test_a_step_that_overruns_its_slice_gets_the_deadline_and_keeps_the_steps_done(
    tmp_path: Path,
) -> None:
    """The step in flight is interrupted and retried; a finished step never runs again."""
    from worker import create_app

    app = create_app(app_config(tmp_path, SLICE_SECONDS=1.0, JOB_MODULES="jobs,tests.testjobs"))
    app.extensions["offload.tasks"] = TaskQueue(get_settings(app), client=InMemoryCloudTasks())
    record = tmp_path / "executions.txt"
    try:
        job_id = add_job(app, "test.overrun", {"seconds": 5, "record": str(record)}, max_attempts=2)
        assert push(app, job_id).status_code == 500  # DeadlineExceededError: retry it
        first = job(app, job_id)
        assert (first.status, first.reason, first.attempts) == ("queued", "deadline_exceeded", 1)
        assert push(app, job_id, retry_count=1).status_code == 204  # the last attempt
        done = job(app, job_id)
        assert (done.status, done.reason, done.attempts) == ("failed", "deadline_exceeded", 2)
        # The quick step ran once; the slow one was started by each attempt.
        assert record.read_text().split() == ["quick", "slow", "slow"]
        assert {s.name: s.status for s in done.steps} == {"quick": "finished", "slow": "failed"}
    finally:
        app.extensions["offload.store"].dispose()
