"""The store side of fan-out on SQLite and PostgreSQL: counts, waits, wakes, cancels."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from offload.errors import LeaseLostError
from offload.ids import child_job_id
from offload.store import CANCELLED, QUEUED, SUCCEEDED, JobStore
from tests.test_store import new_job, store  # noqa: F401  (the fixture)


def _parent(store: JobStore) -> tuple[str, str]:  # noqa: F811
    job, _ = store.insert(new_job("demo.fanout"))
    claim = store.claim(job.id, attempt=1, lease_seconds=60)
    assert claim.won and claim.token
    return job.id, claim.token


def _spawn(store: JobStore, parent: str, token: str, n: int) -> list[str]:  # noqa: F811
    kids = [
        replace(new_job("demo.sleep"), id=child_job_id(parent, "spawn-1", i), parent_id=parent)
        for i in range(n)
    ]
    store.spawn_children(parent, token, kids)
    return [k.id for k in kids]


def _finish(store: JobStore, job_id: str) -> None:  # noqa: F811
    claim = store.claim(job_id, attempt=1, lease_seconds=60)
    assert claim.won and claim.token
    assert store.finish(job_id, claim.token, status=SUCCEEDED, result=1, outcome="succeeded")


def test_spawning_twice_inserts_the_children_once_and_counts_them_once(store: JobStore) -> None:  # noqa: F811
    parent, token = _parent(store)
    ids = _spawn(store, parent, token, 5)
    again = _spawn(store, parent, token, 5)
    assert ids == again and len(set(ids)) == 5
    got = store.get(parent)
    assert got is not None and got.children_open == 5
    assert got.children == {QUEUED: 5}
    assert [c.id for c in store.children(parent, limit=10)] == sorted(ids)


def test_spawning_under_a_lost_claim_writes_nothing(store: JobStore) -> None:  # noqa: F811
    parent, _ = _parent(store)
    with pytest.raises(LeaseLostError):
        _spawn(store, parent, "not-the-token", 3)
    assert store.children(parent) == []


def test_the_last_child_wakes_a_waiting_parent_exactly_once(store: JobStore) -> None:  # noqa: F811
    woken: list[str] = []
    store.on_wake.append(woken.append)
    parent, token = _parent(store)
    ids = _spawn(store, parent, token, 20)
    assert store.wait_children(parent, token, task_name="q/tasks/p-run2", spent_seconds=0.1) == 20
    threads = [threading.Thread(target=_finish, args=(store, i)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert woken == [parent]
    got = store.get(parent)
    assert got is not None and got.children_open == 0 and got.waiting and got.status == QUEUED


def test_children_done_before_the_wait_leave_the_wake_to_the_parent(store: JobStore) -> None:  # noqa: F811
    woken: list[str] = []
    store.on_wake.append(woken.append)
    parent, token = _parent(store)
    for child in _spawn(store, parent, token, 3):
        _finish(store, child)
    assert woken == []  # not waiting yet: no child wakes it
    assert store.wait_children(parent, token, task_name="q/tasks/p-run2", spent_seconds=0) == 0


def test_cancelling_children_cancels_the_queued_and_asks_the_running(store: JobStore) -> None:  # noqa: F811
    parent, token = _parent(store)
    ids = _spawn(store, parent, token, 4)
    running = store.claim(ids[0], attempt=1, lease_seconds=60)
    assert running.won
    names = store.cancel_children(parent)
    assert len(names) == 3
    states = {c.id: (c.status, c.cancel_requested) for c in store.children(parent)}
    assert states[ids[0]] == ("running", True)
    assert all(states[i] == (CANCELLED, True) for i in ids[1:])
    got = store.get(parent)
    assert got is not None and got.children_open == 1
