"""The reconciler and the breaker on the in-memory Cloud Tasks client and a real store.

Fast checks of each decision; the end-to-end tests (tests/test_e2e_outbox.py) do the
same through the real processes, with crashes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from offload.enqueue import TaskQueue
from offload.ids import new_job_id, task_id_for
from offload.outbox import Reconciler
from offload.settings import load_settings
from offload.store import RUNNING, JobStore, NewJob, utcnow
from offload.testing import InMemoryCloudTasks
from tests.conftest import app_config

SETTINGS = {
    "RECONCILE_GRACE_SECONDS": 0,
    "RECONCILE_RECHECK_SECONDS": 60,
    "BREAKER_RESET_SECONDS": 0.05,
}


@pytest.fixture
def cloud_tasks() -> InMemoryCloudTasks:
    return InMemoryCloudTasks()


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    s = JobStore(store_url, pool_size=2)
    s.create_schema()
    yield s
    s.dispose()


@pytest.fixture
def reconciler(store: JobStore, cloud_tasks: InMemoryCloudTasks) -> Reconciler:
    settings = load_settings(SETTINGS, environ={})
    return Reconciler(store, TaskQueue(settings, client=cloud_tasks), settings)


def record(reconciler: Reconciler, **kw: object) -> str:
    """A job as web records it (the task name of wake-up 0), with no task made."""
    job_id = new_job_id()
    reconciler.store.insert(
        NewJob(
            id=job_id,
            type="demo.echo",
            payload={},
            request_id="req-1",
            trace="ab" * 16,
            max_attempts=3,
            deadline_seconds=10,
            task_name=reconciler.tasks.task_name(task_id_for(job_id)),
            wakeup_grace_seconds=0,
            **kw,  # type: ignore[arg-type]
        )
    )
    return job_id


def names(cloud_tasks: InMemoryCloudTasks) -> set[str]:
    return {n.rpartition("/")[2] for n in cloud_tasks.tasks}


def test_a_pending_wakeup_is_created_under_its_own_name(
    reconciler: Reconciler, cloud_tasks: InMemoryCloudTasks
) -> None:
    job_id = record(reconciler, wakeup="pending")
    report = reconciler.run_once()
    assert (report.enqueued, report.looked_at) == (1, 1)
    assert names(cloud_tasks) == {task_id_for(job_id)}
    job = reconciler.store.get(job_id)
    assert job is not None and job.to_resource()["wakeup"] == "enqueued"
    # Confirmed: the next pass leaves it alone until the recheck time.
    assert reconciler.run_once().looked_at == 0


def test_a_job_whose_web_died_before_its_task_gets_the_next_name(
    reconciler: Reconciler, cloud_tasks: InMemoryCloudTasks
) -> None:
    job_id = record(reconciler)  # enqueuing, its task never made
    assert reconciler.run_once().enqueued == 1
    assert names(cloud_tasks) == {task_id_for(job_id, 1)}
    job = reconciler.store.get(job_id)
    assert job is not None and job.wakeup_number == 1 and job.task_name.endswith("-1")


def test_a_task_still_in_cloud_tasks_is_only_confirmed(
    reconciler: Reconciler, cloud_tasks: InMemoryCloudTasks
) -> None:
    job_id = record(reconciler)
    job = reconciler.store.get(job_id)
    assert job is not None
    from offload.outbox import enqueue_job

    enqueue_job(reconciler.tasks, job)
    report = reconciler.run_once()
    assert (report.enqueued, report.confirmed) == (0, 1)
    assert names(cloud_tasks) == {task_id_for(job_id)}


def test_a_vanished_task_of_a_delayed_job_is_made_again_for_the_same_time(
    reconciler: Reconciler, cloud_tasks: InMemoryCloudTasks
) -> None:
    later = utcnow() + dt.timedelta(minutes=10)
    job_id = record(reconciler, scheduled_at=later)
    job = reconciler.store.get(job_id)
    assert job is not None
    from offload.outbox import enqueue_job

    enqueue_job(reconciler.tasks, job)
    cloud_tasks.run(job.task_name or "")  # gone (lost, or given up), its name reserved
    assert reconciler.run_once().enqueued == 1
    (task,) = cloud_tasks.tasks.values()
    assert task.name.endswith(task_id_for(job_id, 1))
    assert abs(task.schedule_time.timestamp() - later.timestamp()) < 1


def test_a_dead_run_whose_task_is_gone_is_woken_again(
    reconciler: Reconciler, cloud_tasks: InMemoryCloudTasks
) -> None:
    job_id = record(reconciler)
    assert reconciler.store.claim(job_id, attempt=1, lease_seconds=0.01).won
    end = time.monotonic() + 5
    while not reconciler.store.dead_runs(lease_expired_before=utcnow(), limit=1):
        assert time.monotonic() < end
    assert reconciler.run_once().enqueued == 1
    job = reconciler.store.get(job_id)
    assert job is not None and job.status == RUNNING and job.wakeup_number == 1
    assert names(cloud_tasks) == {task_id_for(job_id, 1)}


def test_an_unreachable_cloud_tasks_ends_the_pass_and_the_next_ones_catch_up(
    reconciler: Reconciler, cloud_tasks: InMemoryCloudTasks
) -> None:
    ids = [record(reconciler, wakeup="pending") for _ in range(3)]
    cloud_tasks.unavailable = True
    report = reconciler.run_once()
    assert report.stopped and report.looked_at == 1 and report.enqueued == 0
    assert reconciler.tasks.breaker.state == "open"
    cloud_tasks.unavailable = False
    end = time.monotonic() + 10
    while len(names(cloud_tasks)) < 3:  # the trial runs in the background, then it closes
        assert time.monotonic() < end, reconciler.tasks.breaker.state
        reconciler.run_once()
    assert names(cloud_tasks) == {task_id_for(i) for i in ids}


def test_web_answers_202_pending_while_cloud_tasks_is_down_and_the_reconciler_wakes_it(
    tmp_path: Path, cloud_tasks: InMemoryCloudTasks
) -> None:
    from web import create_app

    config = app_config(tmp_path, **{**SETTINGS, "BREAKER_RESET_SECONDS": 60})
    app: Flask = create_app(config, tasks_client=cloud_tasks)
    client = app.test_client()
    cloud_tasks.unavailable = True
    first = client.post("/jobs", json={"type": "demo.echo"})
    assert first.status_code == 202 and first.get_json()["wakeup"] == "pending"
    calls = len(cloud_tasks.calls)
    second = client.post("/jobs", json={"type": "demo.echo"})
    assert second.status_code == 202 and second.get_json()["wakeup"] == "pending"
    assert len(cloud_tasks.calls) == calls  # the open circuit did not call Cloud Tasks
    assert client.delete(f"/jobs/{second.get_json()['id']}").status_code == 204
    cloud_tasks.unavailable = False
    settings = load_settings(SETTINGS, environ={})
    store: JobStore = app.extensions["offload.store"]
    reconciler = Reconciler(store, TaskQueue(settings, client=cloud_tasks), settings)
    assert reconciler.run_once().enqueued == 1  # the cancelled one needs no task
    assert names(cloud_tasks) == {task_id_for(first.get_json()["id"])}
    store.dispose()


def test_a_waiting_parent_whose_wakeup_was_never_created_is_woken_by_the_next_pass(
    reconciler: Reconciler, cloud_tasks: InMemoryCloudTasks
) -> None:
    """Cloud Tasks down as the last child finished: the wake-up is the reconciler's."""
    store = reconciler.store
    parent = record(reconciler)
    claim = store.claim(parent, attempt=1, lease_seconds=60)
    assert claim.won and claim.token
    wake_name = reconciler.tasks.task_name(task_id_for(parent, 1))
    assert store.wait_children(parent, claim.token, task_name=wake_name, spent_seconds=0) == 0
    assert reconciler.run_once().parents_woken == 1
    assert wake_name in cloud_tasks.tasks
    # A second pass makes no second task (the name is the wait's own): ALREADY_EXISTS.
    reconciler.run_once()
    assert list(cloud_tasks.tasks).count(wake_name) == 1
