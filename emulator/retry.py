"""Retry arithmetic: backoff intervals, when to give up, ``Retry-After``."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_ATTEMPTS = 100
DEFAULT_MIN_BACKOFF = 0.1
DEFAULT_MAX_BACKOFF = 3600.0
DEFAULT_MAX_DOUBLINGS = 16


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A queue's (or task's) ``RetryConfig`` in seconds; -1 attempts and 0 duration = unlimited."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_retry_duration: float = 0.0
    min_backoff: float = DEFAULT_MIN_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    max_doublings: int = DEFAULT_MAX_DOUBLINGS

    def backoff(self, retry_index: int) -> float:
        """Seconds to wait before retry number ``retry_index`` (0 = the first retry).

        Doubles ``max_doublings`` times from ``min_backoff``, then grows linearly by
        ``2**max_doublings * min_backoff``, capped at ``max_backoff``: with 10 s, 300 s
        and 3 doublings that gives 10, 20, 40, 80, 160, 240, 300, 300 ...
        """
        i = max(0, retry_index)
        d = self.max_doublings
        if i <= d:
            # 2.0 ** 1024 overflows a float; any cap past max_backoff gives the same answer.
            value = self.min_backoff * 2.0 ** min(i, 1000)
        else:
            step = self.min_backoff * 2.0 ** min(d, 1000)
            value = step * (1 + i - d)
        return min(value, self.max_backoff)

    def exhausted(self, attempts: int, first_attempt: float, now: float) -> bool:
        """True when retrying must stop: only once BOTH limits are used up.

        An unlimited limit (-1 attempts, 0 duration) never holds retrying back by
        itself, so with both unlimited the task is retried forever.
        """
        attempts_unlimited = self.max_attempts < 0
        duration_unlimited = self.max_retry_duration <= 0
        if attempts_unlimited and duration_unlimited:
            return False
        attempts_used = attempts_unlimited or attempts >= self.max_attempts
        duration_used = duration_unlimited or now - first_attempt >= self.max_retry_duration
        return attempts_used and duration_used


def duration_seconds(d: Any) -> float:
    """A protobuf Duration as float seconds."""
    return float(d.seconds) + float(d.nanos) / 1e9


def policy_from_pb(
    cfg: Any, base: RetryPolicy | None = None, *, literal_doublings: bool = False
) -> RetryPolicy:
    """A RetryPolicy from a ``RetryConfig`` message; unset fields come from ``base``.

    ``max_doublings`` has no presence in proto3, so 0 means "unset" in a request but
    is a real value in a queue's stored (already defaulted) config: ``literal_doublings``.
    """
    b = base or RetryPolicy()
    return RetryPolicy(
        max_attempts=cfg.max_attempts if cfg.max_attempts != 0 else b.max_attempts,
        max_retry_duration=duration_seconds(cfg.max_retry_duration)
        if cfg.HasField("max_retry_duration")
        else b.max_retry_duration,
        min_backoff=duration_seconds(cfg.min_backoff)
        if cfg.HasField("min_backoff")
        else b.min_backoff,
        max_backoff=duration_seconds(cfg.max_backoff)
        if cfg.HasField("max_backoff")
        else b.max_backoff,
        max_doublings=cfg.max_doublings
        if cfg.max_doublings or literal_doublings
        else b.max_doublings,
    )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
