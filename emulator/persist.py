"""The optional data file: queues, tasks, tombstones and the OIDC key across restarts.

Written atomically (temp file, fsync, rename) every few seconds when something changed
and at shutdown. A crash (SIGKILL, power loss) loses the changes since the last write;
a task in flight at save time is saved as pending and is delivered again after a
restart, which at-least-once delivery allows.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
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


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def snapshot(store: Store, key_pem: bytes) -> dict[str, Any]:
    """A JSON-ready copy of the store (cheap: protobufs are serialized in C)."""
    queues = []
    for q in store.queues.values():
        queues.append(
            {
                "pb": _b64(q.pb.SerializeToString()),
                "origin": q.origin,
                "tombstones": list(q.tombstones.items()),
                "tasks": [
                    [
                        _b64(r.pb.SerializeToString()),
                        r.seq,
                        r.exec_count,
                        r.prev_status,
                        r.prev_reason,
                        r.first_attempt_at,
                    ]
                    for r in q.tasks.values()
                ],
            }
        )
    return {
        "version": VERSION,
        "saved_at": time.time(),
        "seq": store.seq,
        "oidc_key_pem": key_pem.decode("ascii"),
        "queues": queues,
        "queue_tombstones": store.queue_tombstones,
    }


def write(path: str, data: dict[str, Any]) -> None:
    """Write the snapshot atomically: readers see the old file or the new one, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".emulator-data-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
