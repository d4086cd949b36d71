"""Waiting for a job's events without a query per waiter.

One thread per web process (the hub) reads the events table every ``poll_seconds``
with one indexed ``id > last`` query and wakes the requests waiting on the jobs it saw
change; each woken request then reads its own job's new events. So 200 waiters cost
what one does, and a change wakes its waiters within ``poll_seconds`` (0.2 s).

On PostgreSQL ids come from a sequence and two transactions may commit out of id
order, so the hub looks back ``_PG_LOOKBACK`` ids behind its cursor and remembers the
ids it has seen; SQLite commits one writer at a time, in id order.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from offload.store.events import EventLog

__all__ = ["EventHub"]

log = logging.getLogger(__name__)

_PG_LOOKBACK = 200
_BATCH = 1000


class EventHub:
    """Wakes the requests waiting on a job when one of its events is committed."""

    def __init__(
        self, events: EventLog, *, poll_seconds: float, lookback: int = 0, max_waiters: int = 96
    ) -> None:
        self.events = events
        self.max_waiters = max_waiters
        self.poll_seconds = poll_seconds
        self.lookback = lookback
        self._lock = threading.Condition()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._cursor: int | None = None
        self._seen: deque[int] = deque(maxlen=4 * max(lookback, 1))
        self._seen_set: set[int] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    def close(self) -> None:
        """Stop the polling thread and wait for it (its store reads end before the store)."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=10)

    @classmethod
    def for_dialect(
        cls, events: EventLog, dialect: str, *, poll_seconds: float, max_waiters: int
    ) -> EventHub:
        """A hub with the look-back the store's engine needs."""
        lookback = _PG_LOOKBACK if dialect == "postgresql" else 0
        return cls(events, poll_seconds=poll_seconds, lookback=lookback, max_waiters=max_waiters)

    @contextmanager
    def watch(self, job_id: str) -> Iterator[threading.Event]:
        """An event set whenever ``job_id`` has new events; register before reading them."""
        signal = threading.Event()
        with self._lock:
            if self._cursor is None:
                # Everything committed before this point the waiter reads itself; within
                # the look-back only ids that commit later are news.
                self._cursor = self.events.last_id()
                if self.lookback:
                    for event_id, _ in self.events.recent(max(self._cursor - self.lookback, 0)):
                        self._remember(event_id)
            self._waiters.setdefault(job_id, set()).add(signal)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="event-hub", daemon=True)
                self._thread.start()
            self._lock.notify()
        try:
            yield signal
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id)
                if waiting is not None:
                    waiting.discard(signal)
                    if not waiting:
                        del self._waiters[job_id]

    @property
    def waiting(self) -> int:
        """How many requests wait right now."""
        with self._lock:
            return sum(len(s) for s in self._waiters.values())

    @property
    def full(self) -> bool:
        """Whether this process already has as many waiters as it lets wait.

        A waiter holds a thread; the threads beyond the limit stay free for submits.
        """
        return self.waiting >= self.max_waiters

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiters and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
            try:
                self.poll()
            except Exception:
                # A store hiccup must not kill the hub; waiters also re-read on their own.
                log.warning("event hub could not read events", exc_info=True)
            with self._lock:
                self._lock.wait(self.poll_seconds)

    def poll(self) -> None:
        """Read the events committed since the last poll and wake their jobs' waiters."""
        with self._lock:
            cursor = self._cursor or 0
        while True:
            rows = self.events.recent(max(cursor - self.lookback, 0), limit=_BATCH)
            changed: set[str] = set()
            for event_id, job_id in rows:
                if event_id in self._seen_set:
                    continue
                if event_id <= cursor - self.lookback:
                    continue
                self._remember(event_id)
                changed.add(job_id)
                cursor = max(cursor, event_id)
            with self._lock:
                self._cursor = cursor
                for job_id in changed:
                    for signal in self._waiters.get(job_id, ()):
                        signal.set()
            if len(rows) < _BATCH:
                return

    def _remember(self, event_id: int) -> None:
        if not self.lookback:
            return
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(event_id)
        self._seen_set.add(event_id)
