"""Opening the data file at start: the SQLite database, loaded into the store.

``--data-file PATH`` names the database. A PATH ending in ``.json`` (the old format's
name, still the default of some set-ups) stands for the ``.sqlite3`` file beside it.
When the database is new and the old JSON file exists beside it, the JSON file is
migrated once into the database and renamed ``*.json.migrated``.
"""

from __future__ import annotations

import logging
import os
import time

from google.protobuf.message import DecodeError

from emulator import persist
from emulator.db import DatabaseError, Journal
from emulator.lro import Operations
from emulator.pbutil import Queue, Task
from emulator.queuestate import TaskRecord, task_policy
from emulator.state import Store

logger = logging.getLogger(__name__)


def paths(path: str) -> tuple[str, str]:
    """(database path, old JSON path) for a ``--data-file`` value."""
    root, ext = os.path.splitext(path)
    if ext == ".json":
        return root + ".sqlite3", path
    return path, root + ".json"


def open_data_file(
    store: Store, operations: Operations, path: str, *, sync: str = "normal"
) -> bytes | None:
    """Attach the database to ``store`` and load it; returns the saved OIDC key, if any."""
    db_path, json_path = paths(path)
    os.makedirs(os.path.dirname(os.path.abspath(db_path)), exist_ok=True)
    journal = Journal(db_path, sync=sync)
    if journal.is_empty() and os.path.exists(json_path):
        return _migrate(store, journal, json_path)
    try:
        _load(store, journal)
        operations.load(journal.operations(time.time()), time.time())
    except (TypeError, ValueError, DecodeError) as e:
        raise DatabaseError(f"{db_path}: damaged: {e!r}") from e
    store.journal = journal
    return journal.meta("oidc_key_pem")


def _load(store: Store, journal: Journal) -> None:
    now = time.time()
    for _name, pb, origin, iam in journal.queues():
        added = store.add_queue(Queue.FromString(pb), origin, now)
        added.journal = journal
        added.iam = iam
    for (
        queue,
        task_id,
        seq,
        pb,
        expiry,
        exec_count,
        prev_status,
        prev_reason,
        first_at,
    ) in journal.tasks(now):
        q = store.queues.get(queue)
        if q is None:
            continue
        store.seq = max(store.seq, seq)
        if pb is None:
            q.tombstones[task_id] = float(expiry)
            continue
        tpb = Task.FromString(pb)
        rec = TaskRecord(tpb, task_id, seq, task_policy(tpb, q.policy))
        rec.exec_count = exec_count
        rec.prev_status = prev_status
        rec.prev_reason = prev_reason or ""
        rec.first_attempt_at = first_at
        q.tasks[task_id] = rec
        q.schedule(rec, rec.eta)
    store.queue_tombstones = journal.queue_tombstones(now)
    store.cmek = {k: v.decode() for k, v in journal.meta_prefixed("cmek:").items()}
    journal.commit()


def _migrate(store: Store, journal: Journal, json_path: str) -> bytes | None:
    data = persist.read(json_path)
    if data is None:
        return None
    persist.restore(store, data)
    store.journal = journal
    for q in store.queues.values():
        q.journal = journal
        q.save()
        for rec in q.tasks.values():
            q.save_task(rec)
        for task_id, expiry in q.tombstones.items():
            journal.put_tombstone(q.name, task_id, 0, expiry)
    for name, expiry in store.queue_tombstones.items():
        journal.drop_queue(name, expiry)
    key = data.get("oidc_key_pem", "").encode() or None
    if key:
        journal.put_meta("oidc_key_pem", key)
    journal.commit()
    os.replace(json_path, json_path + ".migrated")
    logger.info(
        "migrated %s into the database (%d queues); the old file is now %s.migrated",
        json_path,
        len(store.queues),
        json_path,
    )
    return key
