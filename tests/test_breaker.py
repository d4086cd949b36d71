"""The circuit breaker, with a clock the test moves."""

from __future__ import annotations

from offload.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_it_opens_after_the_threshold_and_refuses_until_the_reset_time() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, reset_seconds=2.0, clock=clock)
    assert breaker.allow() == CLOSED
    breaker.record_failure()
    assert breaker.state == CLOSED and breaker.allow() == CLOSED
    breaker.record_failure()
    assert breaker.state == OPEN and breaker.is_open() and breaker.allow() is None
    clock.now += 1.9
    assert breaker.allow() is None


def test_half_open_lets_one_trial_through_and_its_success_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_seconds=2.0, clock=clock)
    breaker.record_failure()
    clock.now += 2.0
    assert breaker.state == HALF_OPEN and not breaker.is_open()
    assert breaker.allow() == HALF_OPEN
    assert breaker.allow() is None and breaker.is_open()  # one trial at a time
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.allow() == CLOSED


def test_a_failed_trial_opens_it_again_for_a_full_reset_time() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_seconds=2.0, clock=clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 2.5
    assert breaker.allow() == HALF_OPEN
    breaker.record_failure()  # one failed trial is enough, whatever the threshold
    assert breaker.state == OPEN
    clock.now += 1.0
    assert breaker.allow() is None
    clock.now += 1.0
    assert breaker.allow() == HALF_OPEN


def test_a_success_resets_the_count_of_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_seconds=2.0, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == CLOSED
