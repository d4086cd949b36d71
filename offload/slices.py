"""How long one run of a job may last, and how long its claim (lease) holds.

A job runs in slices: each request (run) lasts at most ``OFFLOAD_SLICE_SECONDS``, or what
is left of its attempt's budget (``deadline_seconds``) if that is less. The worker's
gunicorn ``--timeout`` follows the slice (slice + dispatch margin + a few seconds), and
a run's lease outlasts that timeout by ``LEASE_MARGIN_SECONDS``: gunicorn's arbiter has
killed a run stuck anywhere (even in C code) before anyone else may take its job, and
a killed run's job is taken back about one slice after the run began.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from offload.enqueue import dispatch_deadline_for
from offload.settings import Settings

__all__ = [
    "LEASE_MARGIN_SECONDS",
    "RunLimit",
    "lease_seconds",
    "run_limit",
    "slice_seconds",
    "worker_timeout_for",
]

# gunicorn's arbiter looks at its workers about once a second and sends SIGKILL on the
# look after SIGABRT; the rest covers clock differences between instances.
LEASE_MARGIN_SECONDS = 10.0
_SHORTEST_RUN = 0.001


@dataclass(frozen=True)
class RunLimit:
    """A run's time: ``seconds``, and whether the slice (not the budget) is what ends it."""

    seconds: float
    by_slice: bool


def slice_seconds(settings: Settings) -> float:
    """The configured slice, capped so that its task's dispatch_deadline is allowed."""
    margin = settings.dispatch_margin_seconds
    longest = dispatch_deadline_for(math.inf, 0.0, settings.task_target) - margin
    return max(_SHORTEST_RUN, min(settings.slice_seconds, longest))


def run_limit(budget_left: float, settings: Settings) -> RunLimit:
    """The time of a run that has ``budget_left`` seconds of its attempt's budget."""
    slice_ = slice_seconds(settings)
    if slice_ < budget_left:
        return RunLimit(slice_, True)
    return RunLimit(max(budget_left, _SHORTEST_RUN), False)


def worker_timeout_for(settings: Settings) -> int:
    """The worker's gunicorn ``--timeout`` for the configured slice (what `make run` passes)."""
    return math.ceil(slice_seconds(settings) + settings.dispatch_margin_seconds) + 5


def lease_seconds(settings: Settings) -> float:
    """How long a claim holds: past gunicorn's timeout, which kills any run still going."""
    return settings.worker_timeout_seconds + LEASE_MARGIN_SECONDS
