"""The event hub wakes waiters on SQLite and PostgreSQL, also for out-of-order commits."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from offload.store import JobStore, utcnow
from offload.store import events as event_log
from tests.test_store import new_job
from web.waiting import EventHub


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    s = JobStore(store_url, pool_size=10)
    s.create_schema()
    yield s
    s.dispose()


@pytest.fixture
def hubs(store: JobStore) -> Iterator[list[EventHub]]:
    """The hubs a test makes, closed before its store is disposed (no read left open)."""
    made: list[EventHub] = []
    yield made
    for hub in made:
        hub.close()


@pytest.fixture
def hub_for(hubs: list[EventHub]) -> Callable[[JobStore], EventHub]:
    def make(store: JobStore) -> EventHub:
        hub = EventHub.for_dialect(store.events, store.dialect, poll_seconds=0.05, max_waiters=4)
        hubs.append(hub)
        return hub

    return make


def test_a_change_wakes_only_the_waiters_of_its_job(
    store: JobStore, hub_for: Callable[[JobStore], EventHub]
) -> None:
    hub = hub_for(store)
    a, _ = store.insert(new_job())
    b, _ = store.insert(new_job())
    with hub.watch(a.id) as wake_a, hub.watch(b.id) as wake_b:
        assert hub.waiting == 2
        store.cancel(a.id)
        assert wake_a.wait(10)
        assert not wake_b.is_set()
    assert hub.waiting == 0


def test_a_commit_that_lands_after_a_later_id_still_wakes_its_waiter(
    store: JobStore, hub_for: Callable[[JobStore], EventHub]
) -> None:
    hub = hub_for(store)
    slow, _ = store.insert(new_job())
    fast, _ = store.insert(new_job())
    with hub.watch(slow.id) as wake_slow, hub.watch(fast.id) as wake_fast:
        conn = store.engine.connect()
        txn = conn.begin()
        # The slow transaction takes its event id first and commits last (PostgreSQL;
        # SQLite makes the second writer wait for the first, so ids commit in order).
        event_log.append(conn, slow.id, event_log.STATUS, {"status": "x"}, utcnow())
        if store.dialect == "postgresql":
            store.cancel(fast.id)
            assert wake_fast.wait(10)
        txn.commit()
        conn.close()
        assert wake_slow.wait(10)


def test_the_hub_says_when_its_share_of_waiters_is_taken(
    store: JobStore, hub_for: Callable[[JobStore], EventHub]
) -> None:
    hub = hub_for(store)
    job, _ = store.insert(new_job())
    stack = [hub.watch(job.id) for _ in range(4)]
    for w in stack:
        w.__enter__()
    assert hub.full
    stack[0].__exit__(None, None, None)
    assert not hub.full
    for w in stack[1:]:
        w.__exit__(None, None, None)
    assert hub.waiting == 0
