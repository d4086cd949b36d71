"""Reading the old JSON data file (version 1), so ``datafile.py`` can migrate it once.

Up to this version the emulator wrote a JSON snapshot every two seconds, which lost the
last seconds on SIGKILL; it now keeps an SQLite database instead (``db.py``).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from google.protobuf.message import DecodeError

from emulator import names
from emulator.errors import ApiError
from emulator.pbutil import Queue, Task
from emulator.state import QueueState, Store, TaskRecord, task_policy

VERSION = 1


class DataFileError(Exception):
    """The data file exists but cannot be read back."""


def read(path: str) -> dict[str, Any] | None:
    """The saved snapshot, or None when there is no file yet."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise DataFileError(f"{path}: {e}") from e
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise DataFileError(f"{path}: not an emulator data file of version {VERSION}")
    return data


def restore(store: Store, data: dict[str, Any]) -> None:
    """Load a snapshot into an empty store; every saved task is scheduled again."""
    try:
        _restore(store, data)
    except (KeyError, TypeError, ValueError, DecodeError, ApiError) as e:
        raise DataFileError(f"the data file is damaged: {e!r}") from e


def _restore(store: Store, data: dict[str, Any]) -> None:
    now = time.time()
    store.seq = int(data.get("seq", 0))
    store.queue_tombstones = {
        k: float(v) for k, v in data.get("queue_tombstones", {}).items() if float(v) > now
    }
    for qd in data.get("queues", []):
        pb = Queue.FromString(base64.b64decode(qd["pb"], validate=True))
        names.split_queue(pb.name)
        q: QueueState = store.add_queue(pb, qd.get("origin", "api"), now)
        for task_id, expiry in qd.get("tombstones", []):
            if expiry > now:
                q.tombstones[task_id] = float(expiry)
        for raw, seq, exec_count, prev_status, prev_reason, first_at in qd.get("tasks", []):
            tpb = Task.FromString(base64.b64decode(raw, validate=True))
            task_id = names.split_task(tpb.name)[1]
            rec = TaskRecord(tpb, task_id, int(seq), task_policy(tpb, q.policy))
            rec.exec_count = int(exec_count)
            rec.prev_status = prev_status
            rec.prev_reason = prev_reason
            rec.first_attempt_at = float(first_at)
            q.tasks[task_id] = rec
            q.schedule(rec, rec.eta)
            store.seq = max(store.seq, rec.seq)
