"""The data file: an SQLite database (WAL) written before each answer.

Every API call that changes something is one transaction, committed before the RPC
answers, so SIGKILL never loses what a client was told. The gRPC glue commits the calls
of one turn of the event loop together (group commit: :meth:`Journal.holding` and
:meth:`Journal.durable`); a caller that does not hold gets a commit per call. Dispatch
outcomes are written in the same transactions or, when no call comes, by a commit
at most 20 ms later: a kill in between loses only outcomes,
and those tasks are pushed again (at-least-once, as Cloud Tasks promises).
``synchronous=NORMAL`` in WAL mode survives the death of the process (the kernel holds
the written pages); ``--data-sync full`` also fsyncs every commit, for power loss, at
some cost in speed. Checkpoints run on a thread of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from typing import Any

SCHEMA_VERSION = 1
CHECKPOINT_EVERY_SECONDS = 1.0
OUTCOME_COMMIT_SECONDS = 0.02

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY, pb BLOB NOT NULL, origin TEXT NOT NULL, iam BLOB);
CREATE TABLE IF NOT EXISTS tasks (
    queue TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    pb BLOB,                       -- NULL: a tombstone until ``expiry``
    expiry REAL,
    exec_count INTEGER NOT NULL DEFAULT 0, prev_status INTEGER, prev_reason TEXT,
    first_at REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, id));
CREATE TABLE IF NOT EXISTS queue_tombstones (name TEXT PRIMARY KEY, expiry REAL NOT NULL);
CREATE TABLE IF NOT EXISTS operations (
    name TEXT PRIMARY KEY, request_id TEXT, request BLOB, pb BLOB NOT NULL,
    expiry REAL NOT NULL);
"""


class DatabaseError(Exception):
    """The data file exists but is not an emulator database this version can use."""


class NullJournal:
    """No data file: every write is a no-op (everything lives in memory only)."""

    enabled = False  # callers skip serializing what would not be written

    def put_queue(self, name: str, pb: bytes, origin: str, iam: bytes | None) -> None:
        """Insert or replace a queue."""

    def drop_queue(self, name: str, expiry: float | None) -> None:
        """Delete a queue and its tasks; keep its name until ``expiry`` (None: not at all)."""

    def put_task(
        self, queue: str, task_id: str, seq: int, pb: bytes, counters: tuple[Any, ...]
    ) -> None:
        """Insert or replace a pending task (exec_count, prev_status, prev_reason, first_at)."""

    def bury_task(self, queue: str, task_id: str, expiry: float | None) -> None:
        """A task is gone: a tombstone until ``expiry`` (None: forget the name at once)."""

    def bury_all(self, queue: str, expiry: float | None) -> None:
        """Every pending task of a queue is gone (PurgeQueue)."""

    def expire(self, queue: str, task_ids: Iterable[str]) -> None:
        """Forget expired tombstones."""

    def release(self, queue: str | None) -> None:
        """Forget the tombstones of one queue (its own name too) or of all queues."""

    def put_meta(self, key: str, value: bytes) -> None:
        """Set a key of the meta table."""

    def put_operation(
        self, name: str, request_id: str, request: bytes, pb: bytes, expiry: float
    ) -> None:
        """Insert or replace a long-running operation."""

    def commit(self) -> None:
        """Make everything written so far durable."""

    def commit_soon(self) -> None:
        """Commit within ``OUTCOME_COMMIT_SECONDS`` (dispatch outcomes)."""

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Inside, commit() only marks the work to commit; see :meth:`durable`."""
        yield

    async def durable(self) -> None:
        """Return once everything written so far is committed (one commit for many calls)."""

    def close(self) -> None:
        """Commit and close."""


class Journal(NullJournal):
    """The SQLite data file; used only from the event loop's thread."""

    enabled = True

    def __init__(self, path: str, *, sync: str = "normal") -> None:
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
            self.conn.executescript(_SCHEMA)
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as e:
            raise DatabaseError(f"{path}: {e}") from e
        if row is None:
            self.conn.execute(
                "INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION).encode(),)
            )
        elif bytes(row[0]) != str(SCHEMA_VERSION).encode():
            raise DatabaseError(f"{path}: schema {bytes(row[0])!r}, expected {SCHEMA_VERSION}")
        self._open = False
        self._scheduled = False
        self._hold = 0
        self._flush: asyncio.Future[None] | None = None
        # Checkpoints (copying the WAL into the database, with an fsync) run on a thread
        # with its own connection, so the event loop never waits for the disk.
        self.conn.execute("PRAGMA wal_autocheckpoint=0")
        self._path = path
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoints, name="emulator-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoints(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(CHECKPOINT_EVERY_SECONDS):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass  # busy or interrupted: the next round catches up
        finally:
            conn.close()

    def _w(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        if not self._open:
            self.conn.execute("BEGIN")
            self._open = True
        self.conn.execute(sql, args)

    def put_queue(self, name: str, pb: bytes, origin: str, iam: bytes | None) -> None:
        self._w("INSERT OR REPLACE INTO queues VALUES (?, ?, ?, ?)", (name, pb, origin, iam))

    def drop_queue(self, name: str, expiry: float | None) -> None:
        self._w("DELETE FROM queues WHERE name=?", (name,))
        self._w("DELETE FROM tasks WHERE queue=?", (name,))
        if expiry is not None:
            self._w("INSERT OR REPLACE INTO queue_tombstones VALUES (?, ?)", (name, expiry))

    def put_task(
        self, queue: str, task_id: str, seq: int, pb: bytes, counters: tuple[Any, ...]
    ) -> None:
        self._w(
            "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?)",
            (queue, task_id, seq, pb, *counters),
        )

    def put_tombstone(self, queue: str, task_id: str, seq: int, expiry: float) -> None:
        """A reserved name without a task (migration of the old data file)."""
        self._w(
            "INSERT OR REPLACE INTO tasks (queue, id, seq, expiry) VALUES (?, ?, ?, ?)",
            (queue, task_id, seq, expiry),
        )

    def bury_task(self, queue: str, task_id: str, expiry: float | None) -> None:
        if expiry is None:
            self._w("DELETE FROM tasks WHERE queue=? AND id=?", (queue, task_id))
        else:
            self._w(
                "UPDATE tasks SET pb=NULL, expiry=? WHERE queue=? AND id=?",
                (expiry, queue, task_id),
            )

    def bury_all(self, queue: str, expiry: float | None) -> None:
        if expiry is None:
            self._w("DELETE FROM tasks WHERE queue=? AND pb IS NOT NULL", (queue,))
        else:
            self._w(
                "UPDATE tasks SET pb=NULL, expiry=? WHERE queue=? AND pb IS NOT NULL",
                (expiry, queue),
            )

    def expire(self, queue: str, task_ids: Iterable[str]) -> None:
        if not self._open:
            self.conn.execute("BEGIN")
            self._open = True
        self.conn.executemany(
            "DELETE FROM tasks WHERE queue=? AND id=? AND pb IS NULL",
            ((queue, t) for t in task_ids),
        )

    def release(self, queue: str | None) -> None:
        if queue is None:
            self._w("DELETE FROM tasks WHERE pb IS NULL")
            self._w("DELETE FROM queue_tombstones")
        else:
            self._w("DELETE FROM tasks WHERE queue=? AND pb IS NULL", (queue,))
            self._w("DELETE FROM queue_tombstones WHERE name=?", (queue,))

    def put_meta(self, key: str, value: bytes) -> None:
        self._w("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def put_operation(
        self, name: str, request_id: str, request: bytes, pb: bytes, expiry: float
    ) -> None:
        self._w(
            "INSERT OR REPLACE INTO operations VALUES (?, ?, ?, ?, ?)",
            (name, request_id, request, pb, expiry),
        )

    def commit(self) -> None:
        if self._open and not self._hold:
            self.conn.execute("COMMIT")
            self._open = False

    def commit_soon(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            # Outcomes of many attempts share a commit; a kill within this window only
            # makes their tasks run again.
            asyncio.get_running_loop().call_later(OUTCOME_COMMIT_SECONDS, self._scheduled_commit)

    def _scheduled_commit(self) -> None:
        self._scheduled = False
        self.commit()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        self._hold += 1
        try:
            yield
        finally:
            self._hold -= 1

    async def durable(self) -> None:
        if not self._open:
            return
        if self._flush is None:
            self._flush = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._group_commit)
        await asyncio.shield(self._flush)

    def _group_commit(self) -> None:
        done, self._flush = self._flush, None
        assert done is not None
        try:
            self.commit()
        except sqlite3.Error as e:
            done.set_exception(e)
        else:
            done.set_result(None)

    def close(self) -> None:
        self.commit()
        self._stop.set()
        self._checkpointer.join(timeout=5)
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()

    # -- reading back at start ---------------------------------------------------------

    def is_empty(self) -> bool:
        """True when no queue was ever written (a new file)."""
        return self.conn.execute("SELECT 1 FROM queues LIMIT 1").fetchone() is None

    def meta(self, key: str) -> bytes | None:
        """A key of the meta table."""
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def meta_prefixed(self, prefix: str) -> dict[str, bytes]:
        """The meta keys starting with ``prefix`` (prefix removed) and their values."""
        rows = self.conn.execute(
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        )
        return {r[0][len(prefix) :]: bytes(r[1]) for r in rows}

    def queues(self) -> list[tuple[str, bytes, str, bytes | None]]:
        """Every queue: name, pb, origin, IAM policy."""
        return [(r[0], bytes(r[1]), r[2], r[3]) for r in self.conn.execute("SELECT * FROM queues")]

    def tasks(self, now: float) -> Iterator[tuple[Any, ...]]:
        """Pending tasks and live tombstones in creation order (expired ones are dropped)."""
        self.conn.execute("DELETE FROM tasks WHERE pb IS NULL AND expiry <= ?", (now,))
        yield from self.conn.execute("SELECT * FROM tasks ORDER BY seq")

    def queue_tombstones(self, now: float) -> dict[str, float]:
        """Deleted queue names still reserved."""
        self.conn.execute("DELETE FROM queue_tombstones WHERE expiry <= ?", (now,))
        return dict(self.conn.execute("SELECT name, expiry FROM queue_tombstones"))

    def operations(self, now: float) -> list[tuple[str, str, bytes, bytes]]:
        """Operations not yet expired: name, request id, request, pb."""
        self.conn.execute("DELETE FROM operations WHERE expiry <= ? OR pb = ''", (now,))
        rows = self.conn.execute("SELECT name, request_id, request, pb FROM operations")
        return [(r[0], r[1], bytes(r[2]), bytes(r[3])) for r in rows]
