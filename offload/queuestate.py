"""What the console shows of a queue: its state, rate and pending tasks, read in a budget."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from google.api_core import exceptions as gexc

from offload.enqueue import TaskQueue

__all__ = ["QueueState", "queue_state"]

log = logging.getLogger(__name__)

# Reading the queue for the console: short, so a page never waits on an unreachable API.
_STATE_TIMEOUT = 2.0
_STATE_PAGES = 5  # ListTasks pages of 1,000 counted at most; more shows as "5000+"
_QUEUE_STATES = {1: "running", 2: "paused", 3: "disabled"}


@dataclass(frozen=True)
class QueueState:
    """What the console shows of the queue; ``error`` set when Cloud Tasks could not say."""

    name: str
    state: str | None = None
    max_dispatches_per_second: float | None = None
    max_concurrent_dispatches: int | None = None
    pending: int | None = None
    pending_more: bool = False  # more tasks than were counted
    error: str | None = None


def queue_state(
    tasks: TaskQueue, queue: str | None = None, *, timeout: float = _STATE_TIMEOUT
) -> QueueState:
    """A queue's state, rate and pending tasks, all within ``timeout``, or why not."""
    end = time.monotonic() + timeout
    path = tasks.path_of(queue)
    try:
        answer = tasks.client.get_queue(name=path, retry=None, timeout=timeout)
    except (gexc.GoogleAPICallError, gexc.RetryError) as e:
        log.warning("cannot read queue %s: %s", path, e)
        code = getattr(e, "code", None)
        return QueueState(path, error=f"cannot reach Cloud Tasks ({code or e})")
    pending, more = _count_tasks(tasks, path, end)
    return QueueState(
        path,
        state=_QUEUE_STATES.get(int(answer.state), "unknown"),
        max_dispatches_per_second=answer.rate_limits.max_dispatches_per_second,
        max_concurrent_dispatches=answer.rate_limits.max_concurrent_dispatches,
        pending=pending,
        pending_more=more,
    )


def _count_tasks(tasks: TaskQueue, path: str, end: float) -> tuple[int | None, bool]:
    """Tasks in the queue (Cloud Tasks v2 has no count): ListTasks pages until ``end``.

    Returns the count and whether there are more than were counted; None when not
    even the first page could be read.
    """
    pending, token = 0, ""
    for _ in range(_STATE_PAGES):
        left = end - time.monotonic()
        if left <= 0:
            return pending, True
        try:
            # One page per call: iterating the pager would fetch every page, unbounded.
            page = tasks.client.list_tasks(
                request={"parent": path, "page_size": 1000, "page_token": token},
                retry=None,
                timeout=left,
            )
        except (gexc.GoogleAPICallError, gexc.RetryError) as e:
            log.warning("cannot list the tasks of %s: %s", path, e)
            return (pending, True) if token else (None, False)
        pending += len(page.tasks)
        token = page.next_page_token
        if not token:
            return pending, False
    return pending, True
