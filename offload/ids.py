"""Job ids: time-ordered, URL- and task-name-safe."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time

__all__ = [
    "base32",
    "child_job_id",
    "continuation_task_id",
    "is_job_id",
    "new_job_id",
    "task_id_for",
]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_JOB_ID = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")


def base32(value: int, length: int) -> str:
    """``value`` as ``length`` Crockford base32 digits (the alphabet of job ids)."""
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


_last = [0, 0]  # milliseconds and random part of this process's last id
_lock = threading.Lock()


def new_job_id() -> str:
    """A 26-character ULID-style id: 48-bit milliseconds then 80 random bits.

    Ids sort by creation time, which lets ``GET /jobs`` page newest first by id alone.
    Within one millisecond a process's ids still increase (the random part is
    incremented, as monotonic ULIDs do); across processes they order by millisecond.
    Knowing an id grants nothing: every read checks the job's owner.
    """
    millis = time.time_ns() // 1_000_000
    with _lock:
        if millis <= _last[0] and _last[1] < 2**80 - 1:
            millis, rand = _last[0], _last[1] + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last[0], _last[1] = millis, rand
    return base32(millis, 10) + base32(rand, 16)


def is_job_id(value: str) -> bool:
    """Whether ``value`` has the shape of a job id."""
    return bool(_JOB_ID.match(value))


def task_id_for(job_id: str, number: int = 0) -> str:
    """The Cloud Tasks task id of a job's wake-up ``number``: stable, so a retried enqueue
    is deduplicated (``ALREADY_EXISTS``), never a second task.

    A short hash goes first because Cloud Tasks advises against sequential task names
    (time-ordered ids would concentrate load on one key range). Cloud Tasks keeps the
    name of a task that ran or was deleted reserved for hours, so a wake-up made again
    after its task vanished takes the next number.
    """
    prefix = hashlib.sha256(job_id.encode()).hexdigest()[:8] + "-" + job_id
    return prefix if number == 0 else f"{prefix}-{number}"


def lease_end_task_id(job_id: str, run: int) -> str:
    """The task id that looks at a job again when run ``run``'s lease ends.

    A delivery that finds the job held by run ``run`` makes it (the run may have died);
    a lease is set once, at its run's claim, so one such task per run is enough and a
    repeat is ``ALREADY_EXISTS``.
    """
    return f"{task_id_for(job_id)}-lease{run}"


def continuation_task_id(job_id: str, run: int) -> str:
    """The task id that wakes run ``run`` of a job continued by its previous run.

    Derived from the job id and the run number, so a repeated continuation of one run
    is ``ALREADY_EXISTS``, never a second task; runs only count up, so the name of an
    executed task (which Cloud Tasks keeps for hours or days) is never needed again.
    (The reconciler's renewed wake-ups end ``-<number>``, these ``-run<number>``.)
    """
    return f"{task_id_for(job_id)}-run{run}"


def child_job_id(parent_id: str, step: str, index: int) -> str:
    """The id of child ``index`` spawned by step ``step`` of a job: the same on every run.

    The parent's time part, then 80 bits of a hash of (parent, step, index): a spawn
    step that runs again (its run died before the step was stored) finds the children
    it inserted before instead of making new ones.
    """
    digest = hashlib.sha256(f"{parent_id}/{step}/{index}".encode()).digest()
    return parent_id[:10] + base32(int.from_bytes(digest[:10], "big"), 16)
