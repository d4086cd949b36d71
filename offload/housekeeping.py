"""Housekeeping of the store, shared by the worker's cron route and the ``offload`` command."""

from __future__ import annotations

import datetime as dt
import logging

from offload.store import JobStore, utcnow

__all__ = ["expire_finished"]

log = logging.getLogger(__name__)


def expire_finished(store: JobStore, retention_seconds: int) -> int:
    """Delete jobs that finished more than ``retention_seconds`` ago; 0 keeps all."""
    if retention_seconds <= 0:
        return 0
    cutoff = utcnow() - dt.timedelta(seconds=retention_seconds)
    count = store.expire(finished_before=cutoff)
    log.info("expired %d jobs finished before %s", count, cutoff.isoformat())
    return count
