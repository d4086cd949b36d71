"""Queues, tasks and tombstones, and the API operations on them.

Everything here runs on the emulator's one event-loop thread, so there are no locks:
the gRPC handlers and the dispatcher take turns.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from emulator import errors, names
from emulator.db import NullJournal
from emulator.errors import ApiError, invalid, not_found
from emulator.pbutil import QUEUE_PAUSED, QUEUE_RUNNING, Queue, Task, ts_set
from emulator.queuestate import QueueState, TaskRecord, task_policy
from emulator.tasklog import log_deleted
from emulator.validate import Limits, check_task, fill_queue

__all__ = ["QueueState", "Store", "TaskRecord", "task_policy"]

# The current reference: a deleted or executed task's name "can take up to 4 hours (or
# 9 days ...)" to be released; 9 days is the figure for queues made by queue.yaml.
API_TOMBSTONE_SECONDS = 4 * 3600.0
YAML_TOMBSTONE_SECONDS = 9 * 24 * 3600.0
QUEUE_TOMBSTONE_SECONDS = 7 * 24 * 3600.0
MAX_PAGE = 1000


def _page_token(kind: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


def _read_token(kind: str, token: str) -> str:
    """The value of one of the emulator's own page tokens; anything else is INVALID_ARGUMENT."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii")).decode()
        if _page_token(kind, raw.partition(":")[2]) != token or not raw.startswith(kind + ":"):
            raise ValueError(token)
    except (ValueError, binascii.Error, UnicodeError) as e:
        raise invalid("Invalid page token.") from e
    return raw.partition(":")[2]


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
        self.journal: NullJournal = NullJournal()
        self.cmek: dict[str, str] = {}  # CmekConfig name -> KMS key ("" = off)
        self._depth = 0  # nested transaction() blocks; the outermost commits
        # Set by the dispatcher: a queue has new work; a task must run now (RunTask).
        self.on_ready: Callable[[QueueState], None] = lambda q: None
        self.on_run_now: Callable[[QueueState, TaskRecord], None] = lambda q, r: None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group one call's writes: committed (made durable) when the outermost block ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.journal.commit()

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
        q = QueueState(pb, origin, window, now, self.journal)
        self.queues[q.name] = q
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
        with self.transaction():
            q = self.add_queue(pb, "api", now)
            q.save()
        return q.pb

    def get_queue(self, name: str) -> Any:
        """GetQueue."""
        return self._queue(name).pb

    def list_queues(self, parent: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
        """ListQueues, in name order."""
        names.check_location(parent)
        after = _read_token("q", page_token) if page_token else ""
        size = page_size if 0 < page_size <= MAX_PAGE else MAX_PAGE
        prefix = parent + "/queues/"
        chosen = sorted(n for n in self.queues if n.startswith(prefix) and n > after)
        page = chosen[:size]
        token = _page_token("q", page[-1]) if len(chosen) > size else ""
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
        with self.transaction():
            q.save()
        self.on_ready(q)
        return pb

    def delete_queue(self, name: str) -> None:
        """DeleteQueue: its tasks go too, and the name is held for a while."""
        q = self._queue(name, errors.ENTITY_NOT_FOUND)
        now = time.time()
        gone = list(q.tasks.values())
        for rec in gone:
            rec.gone = True
        q.tasks.clear()
        q.heap.clear()
        q.deleted = True
        del self.queues[name]
        expiry = None
        if self.queue_tombstone_seconds > 0:
            expiry = self.queue_tombstones[name] = now + self.queue_tombstone_seconds
        with self.transaction():
            self.journal.drop_queue(name, expiry)
        for rec in gone:
            log_deleted(rec.pb, rec.task_id, "DeleteQueue")
        self.on_ready(q)

    def purge_queue(self, name: str) -> Any:
        """PurgeQueue: delete every task (their names become tombstones)."""
        q = self._queue(name)
        now = time.time()
        ts_set(q.pb.purge_time, now)
        with self.transaction():
            gone = q.bury_all(now)
            q.save()
        for rec in gone:
            log_deleted(rec.pb, rec.task_id, "PurgeQueue")
        return q.pb

    def set_paused(self, name: str, paused: bool) -> Any:
        """PauseQueue / ResumeQueue."""
        q = self._queue(name)
        q.pb.state = QUEUE_PAUSED if paused else QUEUE_RUNNING
        with self.transaction():
            q.save()
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
                raise invalid(errors.TASK_IN_OTHER_QUEUE.format(parent=parent, queue=queue_name))
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
        with self.transaction():
            q.save_task(rec)
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
        after = 0
        if page_token:
            value = _read_token("t", page_token)
            if not value.isdigit():
                raise invalid("Invalid page token.")
            after = int(value)
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
        return page, _page_token("t", str(page[-1].seq)) if more else ""

    def delete_task(self, name: str, why: str = "DeleteTask") -> None:
        """DeleteTask: gone at once, even mid-attempt; the name becomes a tombstone."""
        q, rec = self._task(name)
        with self.transaction():
            q.bury(rec, time.time())
        log_deleted(rec.pb, rec.task_id, why)

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
        with self.transaction():
            self.journal.release(queue_name)
        return count

    def sweep(self) -> None:
        """Expire old tombstones."""
        now = time.time()
        with self.transaction():
            for q in self.queues.values():
                q.sweep(now)
        for name, expiry in list(self.queue_tombstones.items()):
            if expiry <= now:
                del self.queue_tombstones[name]
