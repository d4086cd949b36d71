"""The events table and webhook outbox, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from offload.store import FAILED, SUCCEEDED, JobStore
from tests.test_store import new_job


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    s = JobStore(store_url, pool_size=10)
    s.create_schema()
    yield s
    s.dispose()


def kinds(store: JobStore, job_id: str) -> list[tuple[str, dict[str, object]]]:
    return [(e.kind, e.data) for e in store.events.after(job_id, 0)]


def test_every_change_of_a_job_appends_an_event_in_order(store: JobStore) -> None:
    job, _ = store.insert(new_job())
    claim = store.claim(job.id, attempt=1, lease_seconds=60)
    assert claim.token
    store.set_progress(job.id, claim.token, 0.5, "half")
    assert store.release(job.id, claim.token, outcome="transient_error", error={"message": "x"})
    again = store.claim(job.id, attempt=2, lease_seconds=60)
    assert again.token
    assert store.finish(job.id, again.token, status=SUCCEEDED, result=1, outcome="succeeded")
    assert kinds(store, job.id) == [
        ("status", {"status": "queued"}),
        ("attempt", {"number": 1, "delivery": 1, "run": 1}),
        ("status", {"status": "running", "attempts": 1}),
        ("progress", {"fraction": 0.5, "message": "half"}),
        ("attempt", {"number": 1, "outcome": "transient_error"}),
        (
            "status",
            {
                "status": "queued",
                "reason": "transient_error",
                "attempts": 1,
                "cancel_requested": False,
            },
        ),
        ("attempt", {"number": 2, "delivery": 2, "run": 2}),
        ("status", {"status": "running", "attempts": 2}),
        ("attempt", {"number": 2, "outcome": "succeeded"}),
        ("finished", {"status": "succeeded", "reason": None}),
    ]
    ids = [e.id for e in store.events.after(job.id, 0)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # A reader that saw the first three gets exactly the rest.
    assert [e.id for e in store.events.after(job.id, ids[2])] == ids[3:]


def test_first_started_at_stays_while_started_at_follows_the_last_attempt(
    store: JobStore,
) -> None:
    job, _ = store.insert(new_job())
    first = store.claim(job.id, attempt=1, lease_seconds=60)
    assert first.token and first.job
    store.release(job.id, first.token, outcome="error", error={"message": "x"})
    second = store.claim(job.id, attempt=2, lease_seconds=60)
    assert second.job
    got = store.get(job.id)
    assert got is not None and got.first_started_at == first.job.started_at
    assert got.started_at == second.job.started_at and got.started_at != got.first_started_at


def test_a_finish_with_a_notify_url_writes_its_delivery_and_runs_the_hooks(
    store: JobStore,
) -> None:
    seen: list[str] = []
    store.on_delivery.append(seen.append)
    job, _ = store.insert(new_job(notify_url="https://example.com/hook"))
    plain, _ = store.insert(new_job())
    for j in (job, plain):
        claim = store.claim(j.id, attempt=1, lease_seconds=60)
        assert claim.token
        store.finish(j.id, claim.token, status=FAILED, reason="permanent_error", outcome="x")
    assert seen == [job.id]  # a job without a notify URL has no delivery to send
    got = store.get(job.id)
    assert got is not None
    assert [(d.event, d.state, d.attempts) for d in got.deliveries] == [
        ("job.failed", "pending", 0)
    ]
    assert store.deliveries.pending_for(job.id) == [got.deliveries[0].id]
    assert store.deliveries.pending_for(plain.id) == []


def test_cancelling_a_queued_job_is_a_finish_event(store: JobStore) -> None:
    job, _ = store.insert(new_job(notify_url="https://example.com/hook"))
    store.cancel(job.id)
    assert kinds(store, job.id)[-1] == (
        "finished",
        {"status": "cancelled", "reason": "cancelled_by_client"},
    )
    got = store.get(job.id)
    assert got is not None and got.deliveries[0].event == "job.cancelled"


def test_expiry_deletes_a_jobs_events_and_deliveries(store: JobStore) -> None:
    job, _ = store.insert(new_job(notify_url="https://example.com/hook"))
    store.cancel(job.id)
    assert store.events.after(job.id, 0)
    assert store.expire(finished_before=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)) == 1
    assert store.events.after(job.id, 0) == []
    assert store.deliveries.pending_for(job.id) == []
    assert store.events.last_id() >= 0
