"""The job store, on SQLite and on PostgreSQL (same tests, both engines)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator

import pytest

from offload.ids import new_job_id
from offload.store import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    JobStore,
    NewJob,
    utcnow,
)


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    s = JobStore(store_url, pool_size=10)
    s.create_schema()
    yield s
    s.dispose()


def new_job(job_type: str = "demo.echo", key: str | None = None, **kw: object) -> NewJob:
    job_id = new_job_id()
    return NewJob(
        id=job_id,
        type=job_type,
        payload={"n": 1},
        request_id="req-1",
        trace="0" * 31 + "1",
        max_attempts=3,
        deadline_seconds=10.0,
        task_name=f"q/tasks/{job_id}",
        idempotency_key=key,
        request_hash="h1" if key else None,
        **kw,  # type: ignore[arg-type]
    )


def test_insert_then_get_returns_the_queued_job(store: JobStore) -> None:
    job, created = store.insert(new_job())
    assert created
    got = store.get(job.id)
    assert got is not None
    assert (got.status, got.payload, got.attempts, got.request_id) == (QUEUED, {"n": 1}, 0, "req-1")
    assert got.created_at.tzinfo is not None


def test_create_schema_twice_is_harmless(store: JobStore) -> None:
    store.create_schema()
    store.insert(new_job())


def test_same_idempotency_key_returns_the_first_job(store: JobStore) -> None:
    first, created = store.insert(new_job(key="k1"))
    second, created_again = store.insert(new_job(key="k1"))
    assert created and not created_again
    assert second.id == first.id


def test_a_job_is_recorded_with_its_wakeup_due_after_the_grace(store: JobStore) -> None:
    job, _ = store.insert(new_job(wakeup_grace_seconds=30.0))
    assert (job.wakeup, job.wakeup_number) == ("enqueuing", 0)
    assert store.due_wakeups(now=utcnow(), limit=10) == []
    later = utcnow() + dt.timedelta(seconds=31)
    assert [j.id for j in store.due_wakeups(now=later, limit=10)] == [job.id]


def test_a_pending_wakeup_is_due_at_once_and_renewed_once(store: JobStore) -> None:
    job, _ = store.insert(new_job())
    store.mark_wakeup_pending(job.id)
    due = store.due_wakeups(now=utcnow(), limit=10)
    assert [(j.id, j.wakeup) for j in due] == [(job.id, "pending")]
    assert due[0].to_resource()["wakeup"] == "pending"
    renewed = store.renew_wakeup(job.id, number=0, task_name="q/tasks/x-1", now=utcnow())
    assert renewed is not None and (renewed.wakeup_number, renewed.task_name) == (1, "q/tasks/x-1")
    # A second reconciler that read the same row renews nothing.
    assert store.renew_wakeup(job.id, number=0, task_name="q/tasks/x-1b", now=utcnow()) is None
    later = utcnow() + dt.timedelta(seconds=60)
    assert store.confirm_wakeup(job.id, number=1, next_look=later)
    stored = store.get(job.id)
    assert stored is not None and stored.to_resource()["wakeup"] == "enqueued"
    assert store.due_wakeups(now=utcnow(), limit=10) == []


def test_a_finished_job_has_no_wakeup_to_renew(store: JobStore) -> None:
    job, _ = store.insert(new_job())
    store.cancel(job.id)
    assert store.renew_wakeup(job.id, number=0, task_name="n", now=utcnow()) is None
    assert store.due_wakeups(now=utcnow() + dt.timedelta(hours=1), limit=10) == []


def test_only_a_run_whose_lease_ran_out_is_renewed(store: JobStore) -> None:
    job, _ = store.insert(new_job())
    assert store.claim(job.id, attempt=1, lease_seconds=60).won
    soon = utcnow() + dt.timedelta(seconds=5)
    assert store.dead_runs(lease_expired_before=soon, limit=10) == []
    assert (
        store.renew_wakeup(job.id, number=0, task_name="n", now=utcnow(), lease_expired_before=soon)
        is None
    )
    past_lease = utcnow() + dt.timedelta(seconds=61)
    assert [j.id for j in store.dead_runs(lease_expired_before=past_lease, limit=10)] == [job.id]
    renewed = store.renew_wakeup(
        job.id, number=0, task_name="n", now=utcnow(), lease_expired_before=past_lease
    )
    assert renewed is not None and (renewed.status, renewed.wakeup_number) == (RUNNING, 1)


def test_list_pages_newest_first_and_filters(store: JobStore) -> None:
    ids = [store.insert(new_job("demo.echo" if i % 2 else "demo.sleep"))[0].id for i in range(7)]
    page1 = store.list(limit=3)
    assert [j.id for j in page1] == ids[::-1][:3]
    page2 = store.list(limit=3, before=page1[-1].id)
    assert [j.id for j in page2] == ids[::-1][3:6]
    echoes = store.list(type="demo.echo", limit=10)
    assert [j.id for j in echoes] == [i for n, i in enumerate(ids) if n % 2][::-1]
    store.cancel(ids[0])
    assert [j.id for j in store.list(status=CANCELLED)] == [ids[0]]


def test_claim_then_finish_records_one_attempt(store: JobStore) -> None:
    job, _ = store.insert(new_job())
    claim = store.claim(job.id, attempt=1, lease_seconds=30)
    assert claim.won and claim.token and claim.job is not None
    assert claim.job.status == RUNNING and claim.job.attempts == 1
    assert store.finish(
        job.id, claim.token, status=SUCCEEDED, result={"ok": True}, outcome="succeeded"
    )
    done = store.get(job.id)
    assert done is not None
    assert (done.status, done.result, done.attempts) == (SUCCEEDED, {"ok": True}, 1)
    assert done.started_at is not None and done.finished_at is not None
    assert [(a.number, a.outcome) for a in done.attempt_log] == [(1, "succeeded")]


def test_a_finished_job_never_moves_back_to_running(store: JobStore) -> None:
    job, _ = store.insert(new_job())
    claim = store.claim(job.id, attempt=1, lease_seconds=0.0)
    assert claim.token
    store.finish(job.id, claim.token, status=FAILED, reason="permanent_error", outcome="x")
    time.sleep(0.01)
    assert not store.claim(job.id, attempt=2, lease_seconds=30).won
    assert not store.release(job.id, claim.token, outcome="x", error={"message": "m"})
    assert store.cancel(job.id) is not None
    final = store.get(job.id)
    assert final is not None and final.status == FAILED


def test_a_second_claim_loses_while_the_lease_holds(store: JobStore) -> None:
    job, _ = store.insert(new_job())
    assert store.claim(job.id, attempt=1, lease_seconds=30).won
    lost = store.claim(job.id, attempt=1, lease_seconds=30)
    assert not lost.won and lost.job is not None and lost.job.status == RUNNING


def test_an_expired_lease_is_reclaimed_and_the_dead_attempt_marked_interrupted(
    store: JobStore,
) -> None:
    job, _ = store.insert(new_job())
    assert store.claim(job.id, attempt=1, lease_seconds=0.05).won
    time.sleep(0.1)
    second = store.claim(job.id, attempt=2, lease_seconds=30)
    assert second.won and second.job is not None
    logged = store.get(job.id)
    assert logged is not None
    assert [(a.number, a.outcome) for a in logged.attempt_log] == [
        (1, "interrupted"),
        (2, None),
    ]
    assert second.job.attempts == 2


def test_stale_token_cannot_finish_a_reclaimed_job(store: JobStore) -> None:
    job, _ = store.insert(new_job())
    first = store.claim(job.id, attempt=1, lease_seconds=0.05)
    time.sleep(0.1)
    second = store.claim(job.id, attempt=2, lease_seconds=30)
    assert first.token and second.token
    assert not store.finish(job.id, first.token, status=SUCCEEDED, outcome="succeeded")
    assert store.finish(job.id, second.token, status=SUCCEEDED, outcome="succeeded")


def test_concurrent_claims_have_exactly_one_winner(store: JobStore) -> None:
    for _ in range(5):
        job, _ = store.insert(new_job())
        barrier = threading.Barrier(8)
        wins: list[bool] = []

        def claim(
            job_id: str = job.id,
            barrier: threading.Barrier = barrier,
            wins: list[bool] = wins,
        ) -> None:
            barrier.wait()
            wins.append(store.claim(job_id, attempt=1, lease_seconds=30).won)

        threads = [threading.Thread(target=claim) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins) == [False] * 7 + [True]


def test_cancel_of_queued_running_and_finished_jobs(store: JobStore) -> None:
    queued, _ = store.insert(new_job())
    outcome = store.cancel(queued.id)
    assert outcome is not None and outcome.outcome == "cancelled"
    assert outcome.job.status == CANCELLED

    running, _ = store.insert(new_job())
    claim = store.claim(running.id, attempt=1, lease_seconds=30)
    outcome = store.cancel(running.id)
    assert outcome is not None and outcome.outcome == "requested"
    assert store.cancel_requested(running.id)
    assert claim.token
    store.finish(running.id, claim.token, status=CANCELLED, outcome="cancelled")

    outcome = store.cancel(running.id)
    assert outcome is not None and outcome.outcome == "finished"
    assert store.cancel("0" * 26) is None


def test_a_cancelled_queued_job_cannot_be_claimed(store: JobStore) -> None:
    job, _ = store.insert(new_job())
    store.cancel(job.id)
    assert not store.claim(job.id, attempt=1, lease_seconds=30).won


def test_progress_is_stored_for_the_claim_holder(store: JobStore) -> None:
    job, _ = store.insert(new_job())
    claim = store.claim(job.id, attempt=1, lease_seconds=30)
    assert claim.token
    store.set_progress(job.id, claim.token, 0.5, "half")
    store.set_progress(job.id, "not-the-token", 0.9, "forged")
    got = store.get(job.id)
    assert got is not None and (got.progress, got.progress_message) == (0.5, "half")


def test_release_puts_the_job_back_in_the_queue(store: JobStore) -> None:
    job, _ = store.insert(new_job())
    claim = store.claim(job.id, attempt=1, lease_seconds=30)
    assert claim.token
    assert store.release(job.id, claim.token, outcome="transient_error", error={"message": "boom"})
    got = store.get(job.id)
    assert got is not None and got.status == QUEUED
    assert [(a.outcome, a.error) for a in got.attempt_log] == [("transient_error", "boom")]
    assert store.claim(job.id, attempt=2, lease_seconds=30).won


def test_ids_made_in_one_millisecond_still_list_in_creation_order(store: JobStore) -> None:
    ids = [store.insert(new_job())[0].id for _ in range(50)]
    assert ids == sorted(ids)
    assert [j.id for j in store.list(limit=50)] == ids[::-1]


def test_insert_returns_what_a_read_returns(store: JobStore) -> None:
    job, _ = store.insert(new_job(key="k-read"))
    read = store.get(job.id)
    assert read is not None and read.to_resource() == job.to_resource()


def test_reap_fails_only_runs_whose_lease_ran_out_before_the_cutoff(store: JobStore) -> None:
    dead, _ = store.insert(new_job())
    alive, _ = store.insert(new_job())
    store.claim(dead.id, attempt=1, lease_seconds=0.0)
    store.claim(alive.id, attempt=1, lease_seconds=3600)
    time.sleep(0.01)
    assert store.reap(lease_expired_before=utcnow()) == 1
    reaped = store.get(dead.id)
    assert reaped is not None and (reaped.status, reaped.reason) == (FAILED, "interrupted")
    assert [a.outcome for a in reaped.attempt_log] == ["interrupted"]
    still = store.get(alive.id)
    assert still is not None and still.status == RUNNING
