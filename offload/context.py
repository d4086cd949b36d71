"""What a running job sees: its ids, its deadline, progress, cancellation, steps, checkpoints.

A job may run in several requests (runs). ``ctx.step(name, fn, *args)`` stores ``fn``'s
JSON result, and every later run returns the stored result instead of calling ``fn``;
``ctx.checkpoint(value)`` stores a cursor the next run starts from (``ctx.saved``).
When the run's slice of time is nearly spent, the next step boundary, checkpoint or
``ctx.check()`` raises :class:`~offload.errors.SliceSpentError`; the worker then creates
a continuation task and the job goes on in a new request.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from offload.deadline import Deadline
from offload.draining import draining
from offload.errors import (
    CancelledError,
    ChildFailedError,
    SliceSpentError,
    StepError,
    WaitingError,
)

__all__ = ["JobContext", "Journal", "json_value"]

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_STEP_NAME = 200
# A boundary continues the job when less than the longest stretch of work seen in this
# run, plus this, is left of the slice: the next stretch would likely overrun it.
BOUNDARY_MARGIN_SECONDS = 0.5


def json_value(value: Any, what: str) -> Any:
    """``value`` as JSON gives it back (tuples become lists...); StepError if it cannot."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as e:
        raise StepError(
            f"{what} is a {type(value).__name__}, which JSON cannot hold ({e}): return "
            "dicts, lists, strings, numbers, booleans or None (a pydantic model: "
            ".model_dump(mode='json'))"
        ) from e


def _nothing(*_args: Any) -> None:
    return None


def _outside_worker(*_args: Any) -> Any:
    raise StepError("child jobs are spawned and awaited only in the worker")


# How wait_for treats a child that failed or was cancelled.
FAILURES = ("raise", "collect")


@dataclass
class Journal:
    """The job's durable state as this run found it, and how the run writes to it.

    The default keeps everything in memory (a job called outside the worker); the
    worker's journal reads the store on first use (a job that uses no step or
    checkpoint costs no read) and writes to it, fenced by the run's claim token.
    """

    results: dict[str, Any] = field(default_factory=dict)  # finished steps of earlier runs
    saved: Any = None  # the last checkpoint
    start_step: Callable[[str], None] = _nothing
    finish_step: Callable[[str, Any], None] = _nothing
    fail_step: Callable[[str, str], None] = _nothing
    save_checkpoint: Callable[[Any], None] = _nothing
    load: Callable[[], tuple[dict[str, Any], Any]] | None = None  # (results, saved)

    def loaded(self) -> Journal:
        """This journal, with the stored results and checkpoint read in if not yet."""
        if self.load is not None:
            load, self.load = self.load, None
            results, saved = load()
            self.results.update(results)
            self.saved = saved
        return self


@dataclass
class JobContext:
    """Passed to every job handler as its first argument.

    ``progress`` writes are rate-limited (at most one store write per
    ``progress_interval`` seconds, the last one always kept) so a chatty job cannot
    hammer the store; each write also checks for a cancel request.
    """

    job_id: str
    job_type: str
    attempt: int  # this delivery: Cloud Tasks' retry count + 1
    run: int  # which attempt this is: the runs that used an attempt, this one included
    max_attempts: int
    request_id: str
    deadline: Deadline  # this run's: the slice, or what is left of the attempt's budget
    save_progress: Callable[[float, str | None], None]
    read_cancel_requested: Callable[[], bool]
    progress_interval: float = 1.0
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("offload.job"))
    run_number: int = 1  # the job's run counter, continuations included
    journal: Journal = field(default_factory=Journal)
    # Set when this run ends with its slice (not with the attempt's budget): then a
    # boundary may continue the job in a new run instead of overrunning.
    slice_deadline: Deadline | None = None
    clock: Callable[[], float] = time.monotonic  # the deadlines' clock (tests pass a fake)
    _last_write: float = field(default=float("-inf"), repr=False)
    _cancelled: bool = field(default=False, repr=False)
    _used: set[str] = field(default_factory=set, repr=False)
    _in_step: str | None = field(default=None, repr=False)
    _progressed: bool = field(default=False, repr=False)  # a step or checkpoint stored
    _last_boundary: float | None = field(default=None, repr=False)
    _longest_stretch: float = field(default=0.0, repr=False)
    # Fan-out (worker-provided): spawn_children(step, type, payloads) -> child ids, run
    # inside the spawn step; read_children(ids) -> {id: outcome with status/result/error}.
    spawn_children: Callable[[str, str, list[Any]], list[str]] = _outside_worker
    read_children: Callable[[list[str]], dict[str, Any]] = _outside_worker
    _spawns: int = field(default=0, repr=False)

    @property
    def is_last_attempt(self) -> bool:
        """Whether a failure now fails the job for good (its runs are used up)."""
        return self.run >= self.max_attempts

    @property
    def cancelled(self) -> bool:
        """Whether a client asked to cancel this job (checked against the store)."""
        if not self._cancelled:
            self._cancelled = self.read_cancel_requested()
        return self._cancelled

    @property
    def saved(self) -> Any:
        """The last value given to :meth:`checkpoint` (by this run or an earlier one), or None."""
        return self.journal.loaded().saved

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress in [0, 1]; raises CancelledError or DeadlineExceededError if due."""
        fraction = min(1.0, max(0.0, float(fraction)))
        now = self.clock()
        if now - self._last_write >= self.progress_interval or fraction >= 1.0:
            self._last_write = now
            self.save_progress(fraction, message)
            # Not a boundary that continues the job: only steps, checkpoints and check().
            if self.cancelled:
                raise CancelledError("the job was cancelled")
        self.deadline.check()

    def check(self) -> None:
        """A checkpoint: raise CancelledError if cancelled, DeadlineExceededError if late.

        After this run stored a step or a checkpoint, it may also raise SliceSpentError
        when the slice is nearly spent: the job continues in a new run from there.
        """
        if self.cancelled:
            raise CancelledError("the job was cancelled")
        self._boundary()
        self.deadline.check()

    def _boundary(self) -> None:
        if self._in_step is not None:  # a check inside a step: the step is not stored yet
            return
        now = self.clock()
        since = self.deadline.started_at if self._last_boundary is None else self._last_boundary
        self._longest_stretch = max(self._longest_stretch, now - since)
        self._last_boundary = now
        # Without stored progress a new run would start over: let the deadline decide.
        if not self._progressed:
            return
        if draining():  # this process is being stopped: hand over before it is killed
            raise SliceSpentError("the worker is shutting down")
        if self.slice_deadline is None:
            return
        if self.slice_deadline.remaining() < self._longest_stretch + BOUNDARY_MARGIN_SECONDS:
            raise SliceSpentError(
                f"slice of {self.slice_deadline.seconds:g}s nearly spent after run "
                f"{self.run_number}'s stored progress"
            )

    def step(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` once for this job and store its JSON result.

        Every later run of the job (retry, continuation, recovery after a crash) returns
        the stored result without calling ``fn``. Names are unique within a job. A step
        interrupted by a crash runs again, so a step should be idempotent.
        """
        if not isinstance(name, str) or not 0 < len(name) <= MAX_STEP_NAME:
            raise StepError(f"a step name is a string of 1 to {MAX_STEP_NAME} characters")
        if self._in_step is not None:
            raise StepError(
                f"step {name!r} started inside step {self._in_step!r}: steps do not nest"
            )
        if name in self._used:
            raise StepError(f"step {name!r} used twice: step names are unique within a job")
        self._used.add(name)
        if name in self.journal.loaded().results:
            stored: T = self.journal.results[name]
            return stored
        self.check()  # a boundary: cancel, the slice, the deadline
        self.journal.start_step(name)
        self._in_step = name
        try:
            result: T = json_value(fn(*args), f"the result of step {name!r}")
        except BaseException as e:
            self._mark_failed(name, e)
            raise
        finally:
            self._in_step = None
        self.journal.finish_step(name, result)
        self._progressed = True
        return result

    def _mark_failed(self, name: str, exc: BaseException) -> None:
        try:
            self.journal.fail_step(name, str(exc) or type(exc).__name__)
        except Exception:  # the error being raised matters more than this record
            log.warning("could not record the failure of step %r", name, exc_info=True)

    def checkpoint(self, value: Any) -> None:
        """Store ``value`` (JSON) as the job's cursor: its next run starts with ``ctx.saved``.

        Each call is one store write: checkpoint every few seconds of work, not every
        item. Also a boundary (cancel, slice, deadline), as :meth:`check` is.
        """
        stored = json_value(value, "the checkpoint")
        self.journal.loaded().save_checkpoint(stored)
        self.journal.saved = stored
        self._progressed = True
        self.check()

    def spawn_many(
        self, job_type: str, payloads: Sequence[Any], *, name: str | None = None
    ) -> list[str]:
        """Create child jobs of ``job_type``, one per payload, as one durable step.

        Answers the children's ids (pass them to :meth:`wait_for`). A later run returns
        the same ids without creating anything: the step is stored, and its children's
        ids are derived from this job's id, the step's name and the index. The default
        name counts the spawns of a run (``spawn-1``, ``spawn-2`` ...), so the handler
        must spawn in the same order every run, or name its spawns.
        """
        self._spawns += 1
        step = name or f"spawn-{self._spawns}"
        items = json_value(list(payloads), f"the payloads of {step!r}")
        ids: list[str] = self.step(step, self.spawn_children, step, job_type, items)
        return ids

    def spawn(self, job_type: str, payload: Any, *, name: str | None = None) -> str:
        """Create one child job (a durable step, as :meth:`spawn_many`); its id."""
        return self.spawn_many(job_type, [payload], name=name)[0]

    def wait_for(self, children: str | Sequence[str], *, failures: str = "raise") -> list[Any]:
        """The children's results in their order, once every one has finished.

        While any is unfinished this run ends here (the worker is free meanwhile) and the
        job continues in a new run when its last child finishes; that run calls
        ``wait_for`` again and gets the results. A child that failed or was cancelled
        raises :class:`ChildFailedError` naming it (the job fails); with
        ``failures="collect"`` its entry is that error instead, and nothing is raised.
        """
        if failures not in FAILURES:
            raise ValueError(f"failures is one of {FAILURES}, not {failures!r}")
        if self._in_step is not None:
            raise StepError(f"wait_for inside step {self._in_step!r}: wait between steps")
        ids = [children] if isinstance(children, str) else list(children)
        outcomes = self.read_children(ids) if ids else {}
        pending = sum(1 for i in ids if i in outcomes and not outcomes[i].finished)
        if pending:
            if self.cancelled:
                raise CancelledError("the job was cancelled")
            raise WaitingError(f"waiting for {pending} of {len(ids)} child jobs")
        results: list[Any] = []
        for child_id in ids:
            outcome = outcomes.get(child_id)
            if outcome is not None and outcome.status == "succeeded":
                results.append(outcome.result)
                continue
            failure = _child_failure(child_id, outcome)
            if failures == "raise":
                raise failure
            results.append(failure)
        return results


def _child_failure(child_id: str, outcome: Any) -> ChildFailedError:
    """The error that names a child which did not succeed."""
    if outcome is None:
        return ChildFailedError(
            f"child job {child_id} no longer exists", job_id=child_id, status="unknown"
        )
    error = outcome.error or {}
    message = error.get("message") if isinstance(error, dict) else None
    return ChildFailedError(
        f"child job {child_id} ({outcome.type}) {outcome.status}"
        + (f": {message}" if message else ""),
        job_id=child_id,
        status=outcome.status,
        error=outcome.error,
    )
