"""Store calls that survive a dropped connection: retried on a fresh one, bounded.

A PostgreSQL connection can drop at any moment (a Cloud SQL failover, an idle timeout,
``pg_terminate_backend``); ``pool_pre_ping`` only catches the ones already dead when
they are checked out. SQLAlchemy invalidates the pool on a disconnect, so a retry gets
a fresh connection. Only calls that are safe to repeat go through here: reads, and
conditional writes that check on a retry whether their first try landed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from offload.errors import StoreError

__all__ = ["is_connection_error", "retrying", "write_behind"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the store being unreachable (worth a retry), not a bad statement."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError)


def retrying(fn: Callable[[], T], *, what: str, budget: float) -> T:
    """``fn()``, tried again on a fresh connection while the store is unreachable.

    Gives up with :class:`StoreError` once ``budget`` seconds are spent.
    """
    deadline = time.monotonic() + budget
    delay = 0.05
    while True:
        try:
            return fn()
        except (OperationalError, InterfaceError, DBAPIError) as e:
            if not is_connection_error(e):
                raise
            cause = type(e.orig).__name__ if e.orig is not None else type(e).__name__
            if time.monotonic() + delay > deadline:
                raise StoreError(f"{what}: store unreachable for {budget:g}s ({cause})") from e
            log.warning("%s: store connection lost (%s), retrying on a fresh one", what, cause)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def write_behind(fn: Callable[[], object], *, what: str, give_up_after: float) -> None:
    """Keep trying an idempotent write in a background thread until it lands.

    For a job's final write when the store stays unreachable past the retry budget: the
    job's lease is released as soon as the store is back, not held to its end.
    """

    def run() -> None:
        end = time.monotonic() + give_up_after
        while time.monotonic() < end:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - anything: try again later
                if not is_connection_error(e):
                    log.error("%s: gave up, the write itself failed", what, exc_info=e)
                    return
                time.sleep(1.0)
                continue
            log.warning("%s: written once the store was back", what)
            return
        log.error("%s: store unreachable for %gs, gave up", what, give_up_after)

    threading.Thread(target=run, name="offload-write-behind", daemon=True).start()
