"""Steps, checkpoints and slices of the job context, and the store under them (both engines)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from offload.context import JobContext, Journal
from offload.deadline import Deadline
from offload.errors import CancelledError, LeaseLostError, SliceSpentError, StepError
from offload.ids import continuation_task_id, new_job_id, task_id_for
from offload.store import JobStore, NewJob, utcnow


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_ctx(
    clock: Clock,
    *,
    slice_seconds: float | None = 10.0,
    journal: Journal | None = None,
    cancel: Callable[[], bool] = lambda: False,
) -> JobContext:
    deadline = Deadline(slice_seconds or 100.0, clock=clock)
    return JobContext(
        job_id="j",
        job_type="t",
        attempt=1,
        run=1,
        max_attempts=3,
        request_id="r",
        deadline=deadline,
        save_progress=lambda f, m: None,
        read_cancel_requested=cancel,
        journal=journal or Journal(),
        slice_deadline=deadline if slice_seconds else None,
        clock=clock,
        progress_interval=0.0,
    )


class Recorder(Journal):
    """An in-memory journal that remembers what the run wrote."""

    def __init__(self, results: dict[str, Any] | None = None, saved: Any = None) -> None:
        super().__init__(results=dict(results or {}), saved=saved)
        self.events: list[tuple[str, ...]] = []
        self.start_step = lambda name: self.events.append(("start", name))
        self.finish_step = lambda name, r: self.events.append(("finish", name, repr(r)))
        self.fail_step = lambda name, e: self.events.append(("fail", name))
        self.save_checkpoint = lambda v: self.events.append(("checkpoint", repr(v)))


def test_a_step_runs_once_and_a_later_run_gets_its_stored_result_without_calling_it() -> None:
    calls: list[int] = []

    def body(n: int) -> dict[str, Any]:
        calls.append(n)
        return {"n": n, "pair": (n, n)}

    journal = Recorder()
    first = make_ctx(Clock(), journal=journal).step("a", body, 7)
    assert first == {"n": 7, "pair": [7, 7]}  # as JSON gives it back, on every run alike
    assert journal.events == [("start", "a"), ("finish", "a", repr(first))]
    again = make_ctx(Clock(), journal=Recorder(results={"a": first})).step("a", body, 7)
    assert again == first and calls == [7]


def test_step_names_are_unique_within_a_job() -> None:
    ctx = make_ctx(Clock())
    ctx.step("a", lambda: 1)
    with pytest.raises(StepError, match="used twice"):
        ctx.step("a", lambda: 2)
    with pytest.raises(StepError, match="1 to 200 characters"):
        ctx.step("", lambda: 2)


def test_a_result_json_cannot_hold_is_an_error_at_the_step_which_is_marked_failed() -> None:
    journal = Recorder()
    with pytest.raises(StepError, match="the result of step 'when' is a datetime"):
        make_ctx(Clock(), journal=journal).step("when", utcnow)
    assert journal.events == [("start", "when"), ("fail", "when")]
    with pytest.raises(StepError, match="JSON cannot hold"):
        make_ctx(Clock()).step("nan", lambda: float("nan"))


def test_steps_do_not_nest() -> None:
    ctx = make_ctx(Clock())
    with pytest.raises(StepError, match="steps do not nest"):
        ctx.step("outer", lambda: ctx.step("inner", lambda: 1))


def test_a_step_that_raises_is_marked_failed_and_the_error_goes_on() -> None:
    journal = Recorder()

    def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        make_ctx(Clock(), journal=journal).step("x", boom)
    assert journal.events == [("start", "x"), ("fail", "x")]


def test_the_slice_ends_at_the_boundary_before_a_step_that_would_overrun_it() -> None:
    clock = Clock()
    ctx = make_ctx(clock, slice_seconds=10.0)

    def work() -> int:
        clock.now += 4.0
        return 1

    ctx.step("0", work)  # 0 -> 4 s
    ctx.step("1", work)  # 4 s left at 4 s... 6 s left: another 4 s step fits
    with pytest.raises(SliceSpentError):
        ctx.step("2", work)  # 2 s left: a 4 s step would overrun the slice
    assert clock.now == 1008.0  # it never started


def test_no_continuation_before_the_run_stored_anything_nor_when_the_budget_binds() -> None:
    clock = Clock()
    ctx = make_ctx(clock, slice_seconds=10.0)
    clock.now += 9.9
    ctx.check()  # nothing stored yet: a new run would start over, so run on
    budget_bound = make_ctx(clock, slice_seconds=None)
    budget_bound.step("0", lambda: 1)
    clock.now += 99.0
    budget_bound.check()  # the budget ends this run: continuing would not give more time


def test_a_checkpoint_is_stored_seen_as_saved_and_is_a_boundary() -> None:
    clock = Clock()
    journal = Recorder(saved={"next": 3})
    ctx = make_ctx(clock, slice_seconds=10.0, journal=journal)
    assert ctx.saved == {"next": 3}
    ctx.checkpoint({"next": 4})
    assert ctx.saved == {"next": 4} and journal.events == [("checkpoint", "{'next': 4}")]
    clock.now += 9.8
    with pytest.raises(SliceSpentError):
        ctx.checkpoint({"next": 5})
    assert journal.events[-1] == ("checkpoint", "{'next': 5}")  # saved before continuing
    with pytest.raises(StepError, match="the checkpoint is a set"):
        ctx.checkpoint({1, 2})


def test_progress_never_continues_the_job_but_still_sees_a_cancel() -> None:
    clock = Clock()
    cancelled = [False]
    ctx = make_ctx(clock, slice_seconds=10.0, cancel=lambda: cancelled[0])
    ctx.step("0", lambda: 1)
    clock.now += 9.9
    ctx.progress(0.5)
    cancelled[0] = True
    with pytest.raises(CancelledError):
        ctx.progress(0.6)


def test_continuation_task_ids_derive_from_the_job_id_and_the_run_number() -> None:
    job_id = new_job_id()
    assert continuation_task_id(job_id, 2) == f"{task_id_for(job_id)}-run2"
    assert continuation_task_id(job_id, 2) != continuation_task_id(job_id, 3)


# -- the store ---------------------------------------------------------------------


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    from offload.store import migrate

    migrate.upgrade(store_url)
    s = JobStore(store_url)
    yield s
    s.dispose()


def _new(store: JobStore) -> str:
    job_id = new_job_id()
    store.insert(
        NewJob(
            id=job_id,
            type="demo.long",
            payload={},
            request_id="r",
            trace=None,
            max_attempts=3,
            deadline_seconds=60.0,
            task_name="q/tasks/" + job_id,
        )
    )
    return job_id


def test_steps_and_checkpoints_are_stored_and_read_back_by_the_next_run(store: JobStore) -> None:
    job_id = _new(store)
    claim = store.claim(job_id, attempt=1, lease_seconds=60)
    assert claim.token
    now = utcnow()
    store.start_step(job_id, claim.token, name="a", run=1, now=now)
    store.finish_step(job_id, claim.token, name="a", result={"x": [1, 2]}, now=now)
    store.start_step(job_id, claim.token, name="none", run=1, now=now)
    store.finish_step(job_id, claim.token, name="none", result=None, now=now)
    store.start_step(job_id, claim.token, name="b", run=1, now=now)
    store.save_checkpoint(job_id, claim.token, value={"next": 9}, now=now)
    state = store.run_state(job_id)
    # b never finished: it runs again; a step that returned None is finished all the same.
    assert state.results == {"a": {"x": [1, 2]}, "none": None}
    assert state.checkpoint == {"next": 9}
    job = store.get(job_id)
    assert job is not None and job.checkpoint_at is not None
    steps = [e.data for e in store.events.after(job_id, 0) if e.kind == "step"]
    assert steps == [
        {"name": "a", "status": "running", "run": 1},
        {"name": "a", "status": "finished", "run": 1},
        {"name": "none", "status": "running", "run": 1},
        {"name": "none", "status": "finished", "run": 1},
        {"name": "b", "status": "running", "run": 1},
    ]
    assert sorted((s.name, s.status, s.run) for s in job.steps) == [
        ("a", "finished", 1),
        ("b", "running", 1),
        ("none", "finished", 1),
    ]


def test_a_continued_run_uses_no_attempt_and_goes_on_spending_the_budget(store: JobStore) -> None:
    job_id = _new(store)
    first = store.claim(job_id, attempt=1, lease_seconds=60)
    assert first.token and first.job and (first.job.attempts, first.job.runs) == (1, 1)
    assert store.continue_run(job_id, first.token, task_name="q/tasks/x-run2", spent_seconds=4.0)
    waiting = store.get(job_id)
    assert waiting is not None and (waiting.status, waiting.continuing) == ("queued", True)
    assert waiting.task_name == "q/tasks/x-run2"
    second = store.claim(job_id, attempt=1, lease_seconds=60)
    assert second.token and second.job
    assert (second.job.attempts, second.job.runs, second.job.spent_seconds) == (1, 2, 4.0)
    # A retry is a new attempt with a fresh budget.
    assert store.release(job_id, second.token, outcome="error", error={"type": "e", "message": ""})
    third = store.claim(job_id, attempt=2, lease_seconds=60)
    assert third.job and (third.job.attempts, third.job.runs, third.job.spent_seconds) == (2, 3, 0)
    log = store.get(job_id)
    assert log is not None
    assert [(a.run, a.outcome) for a in log.attempt_log] == [
        (1, "continued"),
        (2, "error"),
        (3, None),
    ]


def test_a_run_whose_job_was_taken_over_can_write_nothing(store: JobStore) -> None:
    job_id = _new(store)
    stale = store.claim(job_id, attempt=1, lease_seconds=0.001)
    assert stale.token
    store.start_step(job_id, stale.token, name="a", run=1, now=utcnow())
    later = utcnow() + dt.timedelta(seconds=1)
    while utcnow() < later:  # the lease (1 ms) is surely over
        pass
    fresh = store.claim(job_id, attempt=2, lease_seconds=60)
    assert fresh.won and fresh.token
    now = utcnow()
    with pytest.raises(LeaseLostError):
        store.finish_step(job_id, stale.token, name="a", result=1, now=now)
    with pytest.raises(LeaseLostError):
        store.start_step(job_id, stale.token, name="b", run=1, now=now)
    with pytest.raises(LeaseLostError):
        store.save_checkpoint(job_id, stale.token, value=1, now=now)
    assert not store.continue_run(job_id, stale.token, task_name="t", spent_seconds=1)
    assert not store.finish(job_id, stale.token, status="succeeded", outcome="succeeded")
    assert store.run_state(job_id).results == {} and store.run_state(job_id).checkpoint is None
    job = store.get(job_id)
    assert job is not None and job.status == "running" and job.lease_token == fresh.token


def test_a_worker_shutting_down_hands_over_at_the_next_boundary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    ctx = make_ctx(clock, slice_seconds=None)  # even when the budget ends the run
    ctx.check()
    monkeypatch.setattr("offload.context.draining", lambda: True)
    ctx.check()  # nothing stored yet: a new run would start over
    ctx.step("0", lambda: 1)
    with pytest.raises(SliceSpentError, match="shutting down"):
        ctx.step("1", lambda: 2)
