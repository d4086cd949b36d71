"""Queues, tasks and tombstones, and the API operations on them.

Everything here runs on the emulator's one event-loop thread, so there are no locks:
the gRPC handlers and the dispatcher take turns.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import math
import time
from collections.abc import Callable
from typing import Any

import grpc

from emulator import errors, names
from emulator.errors import ApiError, invalid, not_found
from emulator.pbutil import (
    QUEUE_PAUSED,
    QUEUE_RUNNING,
    Queue,
    Task,
    ts_get,
    ts_set,
)
from emulator.ratelimit import TokenBucket
from emulator.retry import RetryPolicy, policy_from_pb
from emulator.validate import Limits, check_task, fill_queue

API_TOMBSTONE_SECONDS = 3600.0
YAML_TOMBSTONE_SECONDS = 9 * 24 * 3600.0
QUEUE_TOMBSTONE_SECONDS = 7 * 24 * 3600.0
MAX_PAGE = 1000


class TaskRecord:
    """A task waiting, running or between attempts, plus the counters its headers need."""

    __slots__ = (
        "pb",
        "task_id",
        "seq",
        "gen",
        "eta",
        "running",
        "gone",
        "exec_count",
        "prev_status",
        "prev_reason",
        "first_attempt_at",
        "policy",
    )

    def __init__(self, pb: Any, task_id: str, seq: int, policy: RetryPolicy) -> None:
        self.pb = pb
        self.task_id = task_id
        self.seq = seq
        self.gen = 0  # bumped on each (re)schedule; older heap entries are stale
        self.eta = ts_get(pb.schedule_time)
        self.running = False
        self.gone = False  # deleted, purged or finished: an attempt in flight is ignored
        self.exec_count = 0  # responses that count for X-CloudTasks-TaskExecutionCount
        self.prev_status: int | None = None
        self.prev_reason = ""
        self.first_attempt_at = 0.0
        self.policy = policy


class QueueState:
    """One queue: its config, pending tasks (a heap by ETA), tombstones, limiters."""

    def __init__(self, pb: Any, origin: str, tombstone_seconds: float, now: float) -> None:
        self.pb = pb
        self.name: str = pb.name
        self.queue_id = names.short_id(self.name)
        self.origin = origin  # "api" or "yaml": decides the tombstone window
        self.tombstone_seconds = tombstone_seconds
        self.tasks: dict[str, TaskRecord] = {}
        self.heap: list[tuple[float, int, int, TaskRecord]] = []
        # task id -> expiry. A plain dict: insertion order is expiry order (one window
        # per queue), and ~100 bytes an entry keeps 100,000 finished tasks cheap.
        self.tombstones: dict[str, float] = {}
        self._expiry = 0.0
        rl = pb.rate_limits
        self.bucket = TokenBucket(rl.max_dispatches_per_second, rl.max_burst_size, now)
        self.policy = policy_from_pb(pb.retry_config, literal_doublings=True)
        self.running = 0
        self.throttle_until = 0.0  # after a 429/503: no dispatch before this time
        self.deleted = False
        # Owned by the dispatcher: the queue loop and the event that wakes it.
        self.wakeup: asyncio.Event | None = None
        self.loop_task: asyncio.Task[None] | None = None

    def reconfigure(self) -> None:
        """Pick up a changed config (UpdateQueue, queue.yaml)."""
        rl = self.pb.rate_limits
        self.bucket.configure(rl.max_dispatches_per_second, rl.max_burst_size)
        self.policy = policy_from_pb(self.pb.retry_config, literal_doublings=True)
        for rec in self.tasks.values():
            rec.policy = task_policy(rec.pb, self.policy)

    @property
    def paused(self) -> bool:
        """True unless the queue is RUNNING."""
        return int(self.pb.state) != QUEUE_RUNNING

    def schedule(self, rec: TaskRecord, eta: float) -> None:
        """(Re)queue a task for dispatch at ``eta``."""
        rec.gen += 1
        rec.eta = eta
        heapq.heappush(self.heap, (eta, rec.seq, rec.gen, rec))

    def bury(self, rec: TaskRecord, now: float) -> None:
        """Remove a task for good and keep its name as a tombstone."""
        rec.gone = True
        if self.tasks.pop(rec.task_id, None) is not None and self.tombstone_seconds > 0:
            # Rounded up to 0.1 s so the tombstones of one instant share a float object.
            expiry = math.ceil((now + self.tombstone_seconds) * 10) / 10
            if expiry != self._expiry:
                self._expiry = expiry
            self.tombstones[rec.task_id] = self._expiry

    def tombstoned(self, task_id: str, now: float) -> bool:
        """True while the name of a finished or deleted task is still reserved."""
        expiry = self.tombstones.get(task_id)
        if expiry is None:
            return False
        if expiry <= now:
            del self.tombstones[task_id]
            return False
        return True

    def sweep(self, now: float) -> None:
        """Drop expired tombstones (oldest first: one window per queue keeps them in order)."""
        tomb = self.tombstones
        if tomb and next(iter(tomb.values())) <= now:
            # Rebuilding beats popping the front one by one: deleted slots at a dict's
            # front make each next(iter()) rescan them.
            self.tombstones = {k: v for k, v in tomb.items() if v > now}
        # Drop heap entries left behind by deleted or rescheduled tasks.
        if len(self.heap) > 2 * len(self.tasks) + 1024:
            self.heap = [e for e in self.heap if not e[3].gone and e[3].gen == e[2]]
            heapq.heapify(self.heap)


def task_policy(task: Any, queue_policy: RetryPolicy) -> RetryPolicy:
    """The task's own RetryConfig over the queue's, when it has one."""
    if task.HasField("retry_config"):
        return policy_from_pb(task.retry_config, queue_policy)
    return queue_policy


def _page_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _read_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except ValueError as e:
        raise invalid("Invalid page token.") from e


class Store:
    """All queues; each method is one API operation and raises ApiError on refusal."""

    def __init__(
        self,
        *,
        limits: Limits,
        api_tombstone_seconds: float = API_TOMBSTONE_SECONDS,
        yaml_tombstone_seconds: float = YAML_TOMBSTONE_SECONDS,
        queue_tombstone_seconds: float = QUEUE_TOMBSTONE_SECONDS,
    ) -> None:
        self.limits = limits
        self.api_tombstone_seconds = api_tombstone_seconds
        self.yaml_tombstone_seconds = yaml_tombstone_seconds
        self.queue_tombstone_seconds = queue_tombstone_seconds
        self.queues: dict[str, QueueState] = {}
        self.queue_tombstones: dict[str, float] = {}
        self.seq = 0
        self.changes = 0  # bumped on every change, so the data file is saved only when needed
        # Set by the dispatcher: a queue has new work; a task must run now (RunTask).
        self.on_ready: Callable[[QueueState], None] = lambda q: None
        self.on_run_now: Callable[[QueueState, TaskRecord], None] = lambda q, r: None

    # -- queues ------------------------------------------------------------------

    def _queue(self, name: str, message: str = errors.QUEUE_NOT_FOUND) -> QueueState:
        q = self.queues.get(name)
        if q is None:
            names.split_queue(name)  # a malformed name is INVALID_ARGUMENT, not NOT_FOUND
            raise not_found(message)
        return q

    def add_queue(self, pb: Any, origin: str, now: float) -> QueueState:
        """Install a (validated) queue."""
        window = self.yaml_tombstone_seconds if origin == "yaml" else self.api_tombstone_seconds
        q = QueueState(pb, origin, window, now)
        self.queues[q.name] = q
        self.changes += 1
        return q

    def create_queue(self, parent: str, queue: Any) -> Any:
        """CreateQueue."""
        names.check_location(parent)
        location, _ = names.split_queue(queue.name)
        if location != parent:
            raise invalid("Queue.name must be in the parent location.")
        now = time.time()
        if queue.name in self.queues:
            raise ApiError(grpc.StatusCode.ALREADY_EXISTS, errors.QUEUE_EXISTS)
        expiry = self.queue_tombstones.get(queue.name)
        if expiry is not None and expiry > now:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, errors.QUEUE_RECENTLY_DELETED)
        pb = Queue()
        pb.CopyFrom(queue)
        pb.ClearField("purge_time")
        if pb.state not in (0, QUEUE_RUNNING):
            raise invalid("Queue.state is output only.")
        fill_queue(pb)
        return self.add_queue(pb, "api", now).pb

    def get_queue(self, name: str) -> Any:
        """GetQueue."""
        return self._queue(name).pb

    def list_queues(self, parent: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
        """ListQueues, in name order."""
        names.check_location(parent)
        after = _read_token(page_token) if page_token else ""
        size = page_size if 0 < page_size <= MAX_PAGE else MAX_PAGE
        prefix = parent + "/queues/"
        chosen = sorted(n for n in self.queues if n.startswith(prefix) and n > after)
        page = chosen[:size]
        token = _page_token(page[-1]) if len(chosen) > size else ""
        return [self.queues[n].pb for n in page], token

    def update_queue(self, queue: Any, paths: list[str]) -> Any:
        """UpdateQueue: only the masked fields (all when no mask); creates a missing queue."""
        location, _ = names.split_queue(queue.name)
        q = self.queues.get(queue.name)
        if q is None:
            return self.create_queue(location, queue)
        pb = Queue()
        pb.CopyFrom(q.pb)
        if not paths:
            paths = ["app_engine_routing_override", "http_target", "rate_limits", "retry_config"]
        for path in paths:
            if path in ("name", "state", "purge_time"):
                raise invalid(f"Queue.{path} cannot be updated.")
            head, _, field = path.partition(".")
            if head not in Queue.DESCRIPTOR.fields_by_name:
                raise invalid(f"Invalid update mask path: {path}.")
            if field:
                src, dst = getattr(queue, head), getattr(pb, head)
                if field not in src.DESCRIPTOR.fields_by_name:
                    raise invalid(f"Invalid update mask path: {path}.")
                value = getattr(src, field)
                if hasattr(value, "CopyFrom"):
                    getattr(dst, field).CopyFrom(value)
                else:
                    setattr(dst, field, value)
            elif queue.HasField(head):
                getattr(pb, head).CopyFrom(getattr(queue, head))
            else:
                pb.ClearField(head)
        fill_queue(pb)  # an API update makes the burst derived again, as the docs say
        q.pb = pb
        q.reconfigure()
        self.changes += 1
        self.on_ready(q)
        return pb

    def delete_queue(self, name: str) -> None:
        """DeleteQueue: its tasks go too, and the name is held for a while."""
        q = self._queue(name, errors.ENTITY_NOT_FOUND)
        now = time.time()
        for rec in list(q.tasks.values()):
            rec.gone = True
        q.tasks.clear()
        q.heap.clear()
        q.deleted = True
        del self.queues[name]
        if self.queue_tombstone_seconds > 0:
            self.queue_tombstones[name] = now + self.queue_tombstone_seconds
        self.changes += 1
        self.on_ready(q)

    def purge_queue(self, name: str) -> Any:
        """PurgeQueue: delete every task (their names become tombstones)."""
        q = self._queue(name)
        now = time.time()
        for rec in list(q.tasks.values()):
            q.bury(rec, now)
        q.heap.clear()
        ts_set(q.pb.purge_time, now)
        self.changes += 1
        return q.pb

    def set_paused(self, name: str, paused: bool) -> Any:
        """PauseQueue / ResumeQueue."""
        q = self._queue(name)
        q.pb.state = QUEUE_PAUSED if paused else QUEUE_RUNNING
        self.changes += 1
        self.on_ready(q)
        return q.pb

    # -- tasks -------------------------------------------------------------------

    def create_task(self, parent: str, task: Any) -> TaskRecord:
        """CreateTask: validate, de-duplicate, schedule."""
        names.split_queue(parent)
        q = self._queue(parent)
        now = time.time()
        pb = Task()
        pb.CopyFrom(task)
        if pb.name:
            queue_name, task_id = names.split_task(pb.name)
            if queue_name != parent:
                raise invalid("The task's queue does not match the request's parent.")
        else:
            task_id = names.new_task_id()
            pb.name = f"{parent}/tasks/{task_id}"
        check_task(pb, now=now, limits=self.limits)
        if task_id in q.tasks or q.tombstoned(task_id, now):
            raise ApiError(grpc.StatusCode.ALREADY_EXISTS, errors.ENTITY_EXISTS)
        self.seq += 1
        rec = TaskRecord(pb, task_id, self.seq, task_policy(pb, q.policy))
        q.tasks[task_id] = rec
        q.schedule(rec, rec.eta)
        self.changes += 1
        self.on_ready(q)
        return rec

    def _task(self, name: str) -> tuple[QueueState, TaskRecord]:
        queue_name, task_id = names.split_task(name)
        q = self.queues.get(queue_name)
        rec = q.tasks.get(task_id) if q is not None else None
        if q is None or rec is None:
            if q is not None and q.tombstoned(task_id, time.time()):
                raise not_found(errors.TASK_RECENTLY_GONE)
            raise not_found()
        return q, rec

    def get_task(self, name: str) -> TaskRecord:
        """GetTask."""
        return self._task(name)[1]

    def list_tasks(
        self, parent: str, page_size: int, page_token: str
    ) -> tuple[list[TaskRecord], str]:
        """ListTasks, in creation order."""
        q = self._queue(parent)
        after = int(_read_token(page_token) or "0") if page_token else 0
        size = page_size if 0 < page_size <= MAX_PAGE else MAX_PAGE
        page: list[TaskRecord] = []
        more = False
        for rec in q.tasks.values():
            if rec.seq <= after:
                continue
            if len(page) == size:
                more = True
                break
            page.append(rec)
        return page, _page_token(str(page[-1].seq)) if more else ""

    def delete_task(self, name: str) -> None:
        """DeleteTask: gone at once, even mid-attempt; the name becomes a tombstone."""
        q, rec = self._task(name)
        q.bury(rec, time.time())
        self.changes += 1

    def run_task(self, name: str) -> TaskRecord:
        """RunTask: dispatch now, whatever the rate limits, pause or schedule say."""
        q, rec = self._task(name)
        if not rec.running:
            rec.gen += 1  # its heap entry is stale now
            self.on_run_now(q, rec)
        return rec

    # -- names -------------------------------------------------------------------

    def release_names(self, queue_name: str | None = None) -> int:
        """Forget tombstones (all, or one queue's) so tests can reuse names; returns how many."""
        count = 0
        for q in self.queues.values():
            if queue_name is None or q.name == queue_name:
                count += len(q.tombstones)
                q.tombstones.clear()
        if queue_name is None:
            count += len(self.queue_tombstones)
            self.queue_tombstones.clear()
        else:
            count += 1 if self.queue_tombstones.pop(queue_name, None) is not None else 0
        self.changes += 1
        return count

    def sweep(self) -> None:
        """Expire old tombstones."""
        now = time.time()
        for q in self.queues.values():
            q.sweep(now)
        for name, expiry in list(self.queue_tombstones.items()):
            if expiry <= now:
                del self.queue_tombstones[name]
