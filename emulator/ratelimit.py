"""A token bucket for ``max_dispatches_per_second`` / ``max_burst_size``."""

from __future__ import annotations


class TokenBucket:
    """Tokens refill at ``rate`` per second up to ``burst``; each dispatch takes one."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = float(self.burst)  # a fresh queue may burst at once, like Cloud Tasks
        self.stamp = now

    def configure(self, rate: float, burst: int) -> None:
        """Change the limits, keeping the tokens already earned (up to the new burst)."""
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = min(self.tokens, float(self.burst))

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float) -> float:
        """Take a token and return 0, or return the seconds until one is available."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        if self.rate <= 0:
            return 3600.0  # rate 0 means "dispatch nothing"; look again later
        return (1.0 - self.tokens) / self.rate
