"""One queue's in-memory state: its config, pending tasks (a heap by ETA), tombstones.

Every change that must survive a restart also goes to the queue's journal (``db.py``).
"""

from __future__ import annotations

import asyncio
import heapq
import math
from typing import Any

from emulator import names
from emulator.db import NullJournal
from emulator.pbutil import QUEUE_RUNNING, ts_get
from emulator.ratelimit import TokenBucket
from emulator.retry import RetryPolicy, policy_from_pb


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

    def __init__(
        self,
        pb: Any,
        origin: str,
        tombstone_seconds: float,
        now: float,
        journal: NullJournal | None = None,
    ) -> None:
        self.pb = pb
        self.journal = journal or NullJournal()
        self.iam: bytes | None = None  # the serialized IAM policy, when one was set
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

    def save(self) -> None:
        """Write the queue's config (and IAM policy) to the journal."""
        self.journal.put_queue(self.name, self.pb.SerializeToString(), self.origin, self.iam)

    def save_task(self, rec: TaskRecord) -> None:
        """Write a pending task, with the counters its next attempt's headers need."""
        if not self.journal.enabled:
            return
        self.journal.put_task(
            self.name,
            rec.task_id,
            rec.seq,
            rec.pb.SerializeToString(),
            (rec.exec_count, rec.prev_status, rec.prev_reason, rec.first_attempt_at),
        )

    def schedule(self, rec: TaskRecord, eta: float) -> None:
        """(Re)queue a task for dispatch at ``eta``."""
        rec.gen += 1
        rec.eta = eta
        heapq.heappush(self.heap, (eta, rec.seq, rec.gen, rec))

    def bury(self, rec: TaskRecord, now: float) -> None:
        """Remove a task for good and keep its name as a tombstone."""
        rec.gone = True
        if self.tasks.pop(rec.task_id, None) is None:
            return
        if self.tombstone_seconds > 0:
            self.tombstones[rec.task_id] = self._expiry_at(now)
            self.journal.bury_task(self.name, rec.task_id, self._expiry)
        else:
            self.journal.bury_task(self.name, rec.task_id, None)

    def bury_all(self, now: float) -> list[TaskRecord]:
        """Remove every pending task (PurgeQueue); returns them."""
        gone = list(self.tasks.values())
        expiry = self._expiry_at(now) if self.tombstone_seconds > 0 else None
        for rec in gone:
            rec.gone = True
            if expiry is not None:
                self.tombstones[rec.task_id] = expiry
        self.tasks.clear()
        self.heap.clear()
        self.journal.bury_all(self.name, expiry)
        return gone

    def _expiry_at(self, now: float) -> float:
        # Rounded up to 0.1 s so the tombstones of one instant share a float object.
        expiry = math.ceil((now + self.tombstone_seconds) * 10) / 10
        if expiry != self._expiry:
            self._expiry = expiry
        return self._expiry

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
            self.journal.expire(self.name, (k for k, v in tomb.items() if v <= now))
        # Drop heap entries left behind by deleted or rescheduled tasks.
        if len(self.heap) > 2 * len(self.tasks) + 1024:
            self.heap = [e for e in self.heap if not e[3].gone and e[3].gen == e[2]]
            heapq.heapify(self.heap)


def task_policy(task: Any, queue_policy: RetryPolicy) -> RetryPolicy:
    """The task's own RetryConfig over the queue's, when it has one."""
    if task.HasField("retry_config"):
        return policy_from_pb(task.retry_config, queue_policy)
    return queue_policy
