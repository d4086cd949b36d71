"""Durable jobs through the real processes: steps, checkpoints, continuations, recovery.

One stack per store engine (SQLite, PostgreSQL), with a 4 s slice so that a job of a few
seconds needs several runs. The step executions are counted by the demo job itself, in
a file of its own (under the stack's temporary folder), not by the framework.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import TEST_QUEUE_YAML, Stack, make_stack, stack_on_engine
from tests.test_e2e_walkthrough import submit, wait_for

pytestmark = pytest.mark.e2e

FINAL = {"succeeded", "failed", "cancelled"}
SLICE = 4.0
MARGIN = 4  # dispatch margin: Cloud Tasks' 15 s minimum dispatch_deadline still applies
WORKER_TIMEOUT = 16  # gunicorn's --timeout follows the slice: >= the 15 s dispatch deadline
# Deliveries answered "busy" while a killed run's lease runs out count as task retries.
QUEUE_YAML = TEST_QUEUE_YAML.replace("task_retry_limit: 10", "task_retry_limit: 200")


def _start(tmp: Path, database_url: str) -> Stack:
    return make_stack(
        tmp,
        env={
            "OFFLOAD_DATABASE_URL": database_url,
            "OFFLOAD_SLICE_SECONDS": str(SLICE),
            "OFFLOAD_DISPATCH_MARGIN_SECONDS": str(MARGIN),
        },
        worker_timeout=WORKER_TIMEOUT,
        queue_yaml=QUEUE_YAML,
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def durable(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A stack with short slices, on each store engine."""
    tmp = tmp_path_factory.mktemp(f"durable-{request.param}")
    yield from stack_on_engine(request.param, tmp, _start)


@pytest.fixture
def dump(request: pytest.FixtureRequest, durable: Stack) -> Iterator[Stack]:
    """The durable stack; its processes' output is printed if the test fails."""
    yield durable
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(durable.outputs())


def _get(stack: Stack, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = requests.get(f"{stack.web_url}/jobs/{job_id}", timeout=5).json()
    return job


def _time(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_a_long_job_continues_over_several_runs_and_runs_each_step_once(dump: Stack) -> None:
    r = submit(dump, {"type": "demo.long", "payload": {"steps": 6, "step_seconds": 1.5}})
    assert r.status_code == 202, r.text
    job = wait_for(dump, r.json()["id"], FINAL, timeout=90)
    assert job["status"] == "succeeded", job
    assert job["result"] == {"executions": {str(i): 1 for i in range(6)}}
    # 1.5 s steps in a 4 s slice: at most two per run (a third would overrun the slice,
    # so the run continues before it), hence at least three runs; how many more depends
    # on the machine's load, none of them ends any other way than by continuing.
    runs = job["runs"]
    outcomes = [a["outcome"] for a in job["attempt_log"]]
    assert runs >= 3 and outcomes == ["continued"] * (runs - 1) + ["succeeded"], outcomes
    assert [a["run"] for a in job["attempt_log"]] == list(range(1, runs + 1))
    assert job["attempts"] == 1  # continuations use no attempt
    assert [s["name"] for s in job["steps"]] == [str(i) for i in range(6)]
    assert {s["status"] for s in job["steps"]} == {"finished"}
    per_run = [s["run"] for s in job["steps"]]
    assert per_run == sorted(per_run) and max(per_run.count(r) for r in per_run) <= 2
    # Each continuation is its own Cloud Task, named after the job id and the run number.
    created = [
        json.loads(line)["message"]
        for line in (dump.log_dir / "emulator.log").read_text().splitlines()
        if job["id"] in line and "created" in line
    ]
    for run in range(2, runs + 1):
        assert sum(f"{job['id']}-run{run} created" in m for m in created) == 1, created
    # ctx.logger's lines carry the job's labels (and the submitting request's id).
    lines = [json.loads(x) for x in (dump.log_dir / "worker.log").read_text().splitlines()]
    mine = [x for x in lines if x.get("message", "").startswith("step ") and job["id"] in str(x)]
    assert [x["message"] for x in mine] == [f"step {i} running" for i in range(6)]
    assert len(mine) == 6, mine
    for line in mine:
        labels = line["logging.googleapis.com/labels"]
        assert labels["job_id"] == job["id"] and labels["job_type"] == "demo.long"
        assert labels["request_id"] == job["request_id"]
        assert 1 <= int(labels["run"]) <= runs


def test_a_cursor_loop_resumes_at_its_last_checkpoint(dump: Stack) -> None:
    r = submit(dump, {"type": "demo.iterate", "payload": {"items": 24, "item_seconds": 0.4}})
    job = wait_for(dump, r.json()["id"], FINAL, timeout=90)
    assert job["status"] == "succeeded", job
    # 9.6 s of items in 4 s slices: at least two continuations, each resuming the cursor.
    assert job["result"]["processed"] == 24
    assert job["result"]["restarts"] == job["runs"] - 1 >= 2
    assert job["checkpoint_at"] is not None
    assert [a["outcome"] for a in job["attempt_log"]][-1] == "succeeded"
    assert job["attempts"] == 1


def test_a_job_that_stores_nothing_runs_as_before_within_one_run(dump: Stack) -> None:
    r = submit(dump, {"type": "demo.sleep", "payload": {"seconds": 1}})
    job = wait_for(dump, r.json()["id"], FINAL)
    assert job["status"] == "succeeded" and job["runs"] == 1 and job["steps"] == []
    assert [a["outcome"] for a in job["attempt_log"]] == ["succeeded"]


def test_a_job_killed_mid_run_resumes_after_its_last_finished_step(dump: Stack) -> None:
    r = submit(dump, {"type": "demo.long", "payload": {"steps": 5, "step_seconds": 1.5}})
    job_id = r.json()["id"]
    end = time.monotonic() + 60
    while time.monotonic() < end:  # until a step has finished and another one runs
        steps = _get(dump, job_id)["steps"]
        if any(s["status"] == "finished" for s in steps) and steps[-1]["status"] == "running":
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"no step ever ran: {_get(dump, job_id)}")
    dump.procs["worker"].stop(signal.SIGKILL)  # the arbiter and its workers, at once
    killed_at = dt.datetime.now(dt.UTC)
    # Nothing of the dead run writes any more: what the store holds now finished before.
    before = {s["name"] for s in _get(dump, job_id)["steps"] if s["status"] == "finished"}
    assert before
    dump.start_service("worker", processes=2, timeout=WORKER_TIMEOUT)

    job = wait_for(dump, job_id, FINAL, timeout=SLICE + 90)
    assert job["status"] == "succeeded", job
    executions = job["result"]["executions"]
    assert all(executions[name] == 1 for name in before), (before, executions)
    # The step running at the kill may have run twice (steps should be idempotent).
    assert all(1 <= n <= 2 for n in executions.values()), executions
    assert "interrupted" in [a["outcome"] for a in job["attempt_log"]], job["attempt_log"]
    # Taken back once the dead run's lease (gunicorn's timeout + 10 s) ran out.
    assert (_time(job["finished_at"]) - killed_at).total_seconds() < SLICE + 60
    # Runs never overlapped: each began after the one before it had ended.
    log = job["attempt_log"]
    for earlier, later in zip(log, log[1:], strict=False):
        assert earlier["finished_at"] is not None
        assert _time(later["started_at"]) >= _time(earlier["finished_at"]), log


def test_a_worker_told_to_stop_hands_its_job_over_at_the_next_step(dump: Stack) -> None:
    """SIGTERM (an instance stopping) continues the job at once: no lease to wait out."""
    r = submit(dump, {"type": "demo.long", "payload": {"steps": 5, "step_seconds": 1.5}})
    job_id = r.json()["id"]
    end = time.monotonic() + 60
    while time.monotonic() < end:  # until a step has finished and another one runs
        steps = _get(dump, job_id)["steps"]
        if any(s["status"] == "finished" for s in steps) and steps[-1]["status"] == "running":
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"no step ever ran: {_get(dump, job_id)}")
    stopped_at = dt.datetime.now(dt.UTC)
    assert dump.procs["worker"].stop(signal.SIGTERM) == 0  # gunicorn's graceful stop
    dump.start_service("worker", processes=2, timeout=WORKER_TIMEOUT)

    job = wait_for(dump, job_id, FINAL, timeout=90)
    assert job["status"] == "succeeded", job
    # The step running at the stop finished, then the run handed over: nothing ran twice
    # and no run was interrupted.
    assert set(job["result"]["executions"].values()) == {1}, job["result"]
    outcomes = [a["outcome"] for a in job["attempt_log"]]
    assert "interrupted" not in outcomes and job["attempts"] == 1, outcomes
    # Sooner than the dead run's lease (gunicorn's timeout + 10 s) would have allowed.
    lease = WORKER_TIMEOUT + 10
    next_run = next(a for a in job["attempt_log"] if _time(a["started_at"]) > stopped_at)
    assert (_time(next_run["started_at"]) - stopped_at).total_seconds() < lease
