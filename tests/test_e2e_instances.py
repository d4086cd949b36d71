"""Two web and two worker instances on one PostgreSQL, through the whole system.

web (two gunicorns behind ``offload.front``) → emulator (``--appengine-service
worker=URL1,URL2``) → two worker gunicorns. Which instance ran a job, and how often, is
read from the ``test.where`` job's own side effect: one line ``<job id> <gunicorn master
pid>`` per run.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from offload.store import SUCCEEDED, JobStore
from tests.conftest import postgres_schema_url
from tests.processes import LASTING_QUEUE_YAML, Stack, make_stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def two_by_two(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    """Two web and two worker instances on a fresh PostgreSQL schema; its URL."""
    schemas = postgres_schema_url()
    url = next(schemas)
    # Only the test job types, so that the worker's timeout (and so the lease a killed run
    # holds) can be short: the longest dispatch deadline is test.mark's 25 s.
    env = {
        "OFFLOAD_DATABASE_URL": url,
        "OFFLOAD_JOB_MODULES": "tests.testjobs",
        "OFFLOAD_WORKER_TIMEOUT_SECONDS": "26",
    }
    stack = make_stack(
        tmp_path / "stack",
        env=env,
        queue_yaml=LASTING_QUEUE_YAML,
        worker_timeout=26,
        web_instances=2,
        worker_instances=2,
    )
    try:
        yield stack, url
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(stack.outputs())
        stack.stop()
        next(schemas, None)  # drops the schema


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def runs(path: Path) -> list[tuple[str, int]]:
    """(job id, master pid) per completed run."""
    if not path.exists():
        return []
    return [(a, int(b)) for a, b in (line.split() for line in path.read_text().splitlines())]


def submit_many(stack: Stack, n: int, path: Path, seconds: float = 0.0) -> list[str]:
    ids = []
    with requests.Session() as session:
        for _ in range(n):
            r = session.post(
                f"{stack.web_url}/jobs",
                json={"type": "test.where", "payload": {"path": str(path), "seconds": seconds}},
                timeout=30,
            )
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
    return ids


def all_succeeded(url: str, ids: list[str], timeout: float) -> None:
    store = JobStore(url, pool_size=1)
    try:

        def done() -> bool:
            return all((j := store.get(i)) is not None and j.status == SUCCEEDED for i in ids)

        wait_until(done, timeout, f"{len(ids)} jobs to succeed")
    finally:
        store.dispose()


def test_the_web_instances_share_the_front_and_the_store(two_by_two: tuple[Stack, str]) -> None:
    stack, _ = two_by_two
    assert stack.instances("web") == ["web-1", "web-2"]
    # A job submitted through one instance is read through the other (one store).
    r = requests.post(
        f"{stack.web_urls[0]}/jobs",
        json={"type": "test.where", "payload": {"path": str(stack.tmp / "where")}},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    other = requests.get(f"{stack.web_urls[1]}/jobs/{r.json()['id']}", timeout=30)
    assert other.status_code == 200 and other.json()["id"] == r.json()["id"]


def test_pushes_are_spread_over_both_workers_and_survive_the_sigkill_of_one(
    two_by_two: tuple[Stack, str],
) -> None:
    stack, url = two_by_two
    masters = {name: stack.procs[name].pid for name in ("worker-1", "worker-2")}
    marks = stack.tmp / "where"

    first = submit_many(stack, 20, marks)
    all_succeeded(url, first, 60)
    served = collections.Counter(pid for _, pid in runs(marks))
    # Both instances served pushes (round-robin: about half each).
    assert set(served) == set(masters.values()), served
    assert min(served.values()) >= 5, served

    # A whole instance killed with jobs on it: the killed runs are retried by the queue
    # on the other instance once their lease runs out; pushes refused by the dead
    # instance are retried at once.
    second = submit_many(stack, 20, marks, seconds=0.5)
    wait_until(lambda: len(runs(marks)) > len(first), 30, "the second batch to start")
    stack.kill_instance("worker-1")
    third = submit_many(stack, 10, marks)
    all_succeeded(url, second + third, 120)

    seen = runs(marks)
    counts = collections.Counter(job for job, _ in seen)
    # Every job ran to completion once: none lost, none run twice after it succeeded.
    assert all(counts[j] == 1 for j in first + third), counts
    # The one exception the contract allows: a run the kill cut off between the
    # handler's return and its final write, on the killed instance, runs again.
    for job in second:
        where = [pid for j, pid in seen if j == job]
        assert len(where) == 1 or (len(where) == 2 and where[0] == masters["worker-1"]), where
    after_kill = [pid for job, pid in seen if job in third]
    assert set(after_kill) == {masters["worker-2"]}
