"""Fan-out, fan-in, batch submission and queues per type through the real processes.

One stack per store engine (SQLite, PostgreSQL). Child executions are counted from the
children's own side effect (demo.sleep's record file in OFFLOAD_DEMO_DIR), not from what
the framework stores.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import TEST_QUEUE_YAML, Stack, make_stack, stack_on_engine
from tests.processes import LOCATION, PROJECT
from tests.test_e2e_walkthrough import submit, wait_for

pytestmark = pytest.mark.e2e

FINAL = {"succeeded", "failed", "cancelled"}
WORKER_TIMEOUT = 20
QUEUE_YAML = TEST_QUEUE_YAML.replace("task_retry_limit: 10", "task_retry_limit: 100")


def _start(tmp: Path, database_url: str) -> Stack:
    return make_stack(
        tmp,
        env={"OFFLOAD_DATABASE_URL": database_url, "OFFLOAD_DISPATCH_MARGIN_SECONDS": "4"},
        worker_timeout=WORKER_TIMEOUT,
        queue_yaml=QUEUE_YAML,
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def fan(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A stack on each store engine."""
    tmp = tmp_path_factory.mktemp(f"fanout-{request.param}")
    yield from stack_on_engine(request.param, tmp, _start)


@pytest.fixture
def dump(request: pytest.FixtureRequest, fan: Stack) -> Iterator[Stack]:
    """The stack; its processes' output is printed if the test fails."""
    yield fan
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(fan.outputs())


def _get(stack: Stack, path: str) -> Any:
    return requests.get(f"{stack.web_url}{path}", timeout=10).json()


def _children(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    """Every child of the job, page by page."""
    items: list[dict[str, Any]] = []
    url: str | None = f"/jobs/{job_id}/children?limit=100"
    while url:
        page = _get(stack, url)
        items.extend(page["jobs"])
        url = page["next"]
    return items


def _executions(stack: Stack) -> list[tuple[str, float, float]]:
    """demo.sleep's own record: (job id, start, end) per execution."""
    path = stack.tmp / "demo" / "demo.sleep.txt"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        job_id, start, end = line.split()
        rows.append((job_id, float(start), float(end)))
    return rows


def _ts(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()


def test_a_fanout_of_250_children_runs_each_once_and_its_parent_waits_holding_no_worker(
    dump: Stack,
) -> None:
    before = {e[0] for e in _executions(dump)}
    payload = {"children": 250, "child_seconds": 0.02, "record": True}
    r = submit(dump, {"type": "demo.fanout", "payload": payload})
    assert r.status_code == 202, r.text
    parent_id = r.json()["id"]
    job = wait_for(dump, parent_id, FINAL, timeout=240)
    assert job["status"] == "succeeded", job
    assert job["result"] == {"children": 250, "total_slept": pytest.approx(250 * 0.02)}
    assert job["children"] == {"total": 250, "open": 0, "by_status": {"succeeded": 250}}

    children = _children(dump, parent_id)
    ids = [c["id"] for c in children]
    assert len(ids) == len(set(ids)) == 250
    assert all(c["parent_id"] == parent_id and c["status"] == "succeeded" for c in children)
    runs = [e for e in _executions(dump) if e[0] not in before]
    counts = Counter(e[0] for e in runs)
    assert set(counts) == set(ids) and set(counts.values()) == {1}, counts.most_common(3)

    # Ran before waiting and after: the first run spawned, the last one collected.
    log = job["attempt_log"]
    assert job["runs"] >= 2 and log[0]["outcome"] == "waiting_children", log
    assert log[-1]["outcome"] == "succeeded"
    # Held no worker while waiting: no run of the parent spans the children's work.
    first_start = min(e[1] for e in runs)
    last_end = max(e[2] for e in runs)
    for run in log:
        assert not (_ts(run["started_at"]) <= first_start and _ts(run["finished_at"]) >= last_end)
    assert _ts(log[-1]["started_at"]) >= last_end - 0.01  # woken after the last child
    busy = sum(_ts(a["finished_at"]) - _ts(a["started_at"]) for a in log)
    assert busy < last_end - first_start, (busy, last_end - first_start)


def test_a_parent_killed_right_after_spawning_creates_each_child_once_and_finishes(
    dump: Stack,
) -> None:
    before = {e[0] for e in _executions(dump)}
    r = submit(
        dump, {"type": "test.spawn_linger", "payload": {"children": 30, "linger_seconds": 8}}
    )
    parent_id = r.json()["id"]
    end = time.monotonic() + 60
    while time.monotonic() < end:  # until the spawn step is stored
        steps = _get(dump, f"/jobs/{parent_id}")["steps"]
        if any(s["name"] == "spawn-1" and s["status"] == "finished" for s in steps):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"never spawned: {_get(dump, f'/jobs/{parent_id}')}")
    dump.procs["worker"].stop(signal.SIGKILL)  # the arbiter and its workers, at once
    dump.start_service("worker", processes=2, timeout=WORKER_TIMEOUT)

    job = wait_for(dump, parent_id, FINAL, timeout=WORKER_TIMEOUT + 150)
    assert job["status"] == "succeeded", job
    assert job["result"] == {"children": 30}
    children = _children(dump, parent_id)
    assert len({c["id"] for c in children}) == len(children) == 30
    assert all(c["status"] == "succeeded" for c in children)
    assert [s["name"] for s in job["steps"]] == ["spawn-1"]
    runs = Counter(e[0] for e in _executions(dump) if e[0] not in before)
    # Each child ran; one the kill cut short may have run again (jobs are retried).
    assert set(runs) == {c["id"] for c in children}, runs
    assert "interrupted" in [a["outcome"] for a in job["attempt_log"]], job["attempt_log"]


def test_cancelling_a_parent_cancels_its_unfinished_children(dump: Stack) -> None:
    payload = {"children": 40, "child_seconds": 3}
    parent_id = submit(dump, {"type": "demo.fanout", "payload": payload}).json()["id"]
    wait_for(dump, parent_id, {"queued"}, timeout=30)
    end = time.monotonic() + 60
    while _get(dump, f"/jobs/{parent_id}")["children"] is None:
        assert time.monotonic() < end
        time.sleep(0.05)
    r = requests.delete(f"{dump.web_url}/jobs/{parent_id}", timeout=10)
    assert r.status_code in (202, 204), r.text
    job = wait_for(dump, parent_id, FINAL, timeout=30)
    assert job["status"] == "cancelled"
    end = time.monotonic() + 60
    while time.monotonic() < end:
        children = _children(dump, parent_id)
        if all(c["status"] in FINAL for c in children):
            break
        time.sleep(0.2)
    statuses = Counter(c["status"] for c in children)
    assert set(statuses) <= {"cancelled", "succeeded"} and statuses["cancelled"] >= 30, statuses
    assert _get(dump, f"/jobs/{parent_id}")["children"]["open"] == 0


def test_a_failed_child_fails_its_parent_naming_it_unless_failures_are_collected(
    dump: Stack,
) -> None:
    body = {"type": "test.fanout_fail", "payload": {"children": 3, "fail_index": 1}}
    job = wait_for(dump, submit(dump, body).json()["id"], FINAL, timeout=60)
    failed = [c for c in _children(dump, job["id"]) if c["status"] == "failed"]
    assert job["status"] == "failed" and len(failed) == 1, job
    assert failed[0]["id"] in job["error"]["message"], job["error"]
    assert "demo.fail" in job["error"]["message"]

    body["payload"]["collect"] = True
    job = wait_for(dump, submit(dump, body).json()["id"], FINAL, timeout=60)
    assert job["status"] == "succeeded", job
    assert job["result"][0] == {"i": 0} and job["result"][2] == {"i": 2}
    assert set(job["result"][1]) == {"failed"}


def test_a_batch_of_100_with_one_invalid_answers_99_jobs_and_one_422(dump: Stack) -> None:
    items: list[dict[str, Any]] = [{"type": "demo.echo", "payload": {"n": i}} for i in range(100)]
    items[37] = {"type": "demo.sleep", "payload": {"seconds": "long"}}
    items[5]["idempotency_key"] = "batch-key-5"
    r = requests.post(f"{dump.web_url}/jobs/batch", json={"jobs": items}, timeout=30)
    assert r.status_code == 200, r.text
    entries = r.json()["jobs"]
    assert len(entries) == 100
    assert [e["status"] for e in entries].count(202) == 99
    bad = entries[37]
    assert bad["status"] == 422 and bad["problem"]["status"] == 422
    assert bad["problem"]["errors"][0]["loc"][:3] == ["body", "jobs", 37]
    assert [e["job"]["payload"]["n"] for e in entries if "job" in e] == [
        i for i in range(100) if i != 37
    ]
    for entry in (entries[0], entries[99], entries[5]):
        job = wait_for(dump, entry["job"]["id"], FINAL, timeout=60)
        assert job["status"] == "succeeded"
    # The same key again answers the same job (200); with another body, a 422.
    again = [items[5], {**items[6], "idempotency_key": "batch-key-5"}]
    r = requests.post(f"{dump.web_url}/jobs/batch", json={"jobs": again}, timeout=30)
    first, second = r.json()["jobs"]
    assert first["status"] == 200 and first["job"]["id"] == entries[5]["job"]["id"]
    assert second["status"] == 422
    r = requests.post(f"{dump.web_url}/jobs/batch", json={"jobs": [items[0]] * 101}, timeout=30)
    assert r.status_code == 422


def test_a_job_type_with_its_own_queue_is_enqueued_and_run_there(dump: Stack) -> None:
    client = dump.tasks_client()
    later = {"type": "demo.report", "payload": {"accounts": 2}, "delay_seconds": 600}
    waiting = submit(dump, later).json()["id"]

    def task_ids(queue: str) -> set[str]:
        parent = client.queue_path(PROJECT, LOCATION, queue)
        return {t.name.rpartition("/")[2] for t in client.list_tasks(parent=parent)}

    assert any(waiting in t for t in task_ids("offload-reports"))
    assert not any(waiting in t for t in task_ids("offload-jobs"))
    assert requests.delete(f"{dump.web_url}/jobs/{waiting}", timeout=10).status_code == 204
    assert not any(waiting in t for t in task_ids("offload-reports"))

    job = submit(dump, {"type": "demo.report", "payload": {"accounts": 2}}).json()
    job = wait_for(dump, job["id"], FINAL, timeout=60)
    assert job["status"] == "succeeded", job


def test_the_worker_refuses_pushes_from_queues_it_does_not_declare(dump: Stack) -> None:
    r = requests.post(
        f"{dump.worker_url}/tasks/run",
        data=b'{"job_id": "01m8szmnbqrrezmmqs1yjdnp0p"}',
        headers={
            "X-AppEngine-QueueName": "some-other-queue",
            "X-AppEngine-TaskName": "t",
            "Content-Type": "application/json",
        },
        timeout=10,
    )
    assert r.status_code == 403


def test_the_client_and_the_cli_submit_batches(dump: Stack, tmp_path: Path) -> None:
    from offload.client import Client, Job, OffloadAPIError
    from tests.test_e2e_clientcli import offload

    items = [{"type": "demo.echo", "payload": {"n": i}} for i in range(150)]
    items[120] = {"type": "no.such.type"}
    with Client(dump.web_url) as client:
        entries = client.submit_batch(items)
    assert len(entries) == 150  # two requests: 100 and 50
    assert isinstance(entries[120], OffloadAPIError) and entries[120].status == 422
    jobs = [e for e in entries if isinstance(e, Job)]
    assert [j.raw["payload"]["n"] for j in jobs] == [i for i in range(150) if i != 120]

    lines = tmp_path / "jobs.jsonl"
    lines.write_text(
        "\n".join(json.dumps({"type": "demo.echo", "payload": {"n": i}}) for i in range(3))
        + "\n"
        + json.dumps({"type": "demo.sleep", "payload": {"seconds": -1}})
        + "\n"
    )
    result = offload(dump, "submit-batch", str(lines))
    out = result.stdout.splitlines()
    assert result.returncode == 6, result  # an API error for one item
    assert len(out) == 4 and out[3] == "-" and all(len(x) == 26 for x in out[:3]), out
    assert "submission 3: 422" in result.stderr and "3 of 4 jobs submitted" in result.stderr
    wait_for(dump, out[0], FINAL, timeout=30)
