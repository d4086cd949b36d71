"""Retries: the backoff formula, when retrying stops, Retry-After and throttling."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from google.cloud import tasks_v2

from emulator.retry import RetryPolicy, parse_retry_after
from tests.emulator.conftest import Answer, Emulator, Handler


def test_backoff_doubles_then_grows_linearly_then_caps() -> None:
    policy = RetryPolicy(min_backoff=10, max_backoff=300, max_doublings=3)
    assert [policy.backoff(i) for i in range(8)] == [10, 20, 40, 80, 160, 240, 300, 300]


def test_backoff_without_doublings_grows_linearly() -> None:
    policy = RetryPolicy(min_backoff=1, max_backoff=100, max_doublings=0)
    assert [policy.backoff(i) for i in range(4)] == [1, 2, 3, 4]


def test_backoff_with_huge_doublings_does_not_overflow() -> None:
    assert RetryPolicy(min_backoff=1, max_backoff=5, max_doublings=5000).backoff(4000) == 5


@pytest.mark.parametrize(
    ("attempts", "duration", "done", "elapsed", "stops"),
    [
        (3, 0, 2, 100, False),  # attempts left
        (3, 0, 3, 0, True),  # attempts used, duration unlimited
        (3, 10, 3, 5, False),  # attempts used but duration not: both must be used up
        (3, 10, 2, 50, False),  # duration used but attempts not
        (3, 10, 3, 10, True),
        (-1, 10, 1000, 9, False),  # unlimited attempts: only the duration counts
        (-1, 10, 1, 10, True),
        (-1, 0, 10**6, 10**6, False),  # both unlimited: forever
    ],
)
def test_retrying_stops_only_when_both_limits_are_used_up(
    attempts: int, duration: float, done: int, elapsed: float, stops: bool
) -> None:
    policy = RetryPolicy(max_attempts=attempts, max_retry_duration=duration)
    assert policy.exhausted(done, 1000.0, 1000.0 + elapsed) is stops


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_measured_backoff_intervals_follow_the_formula(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue(min_backoff=0.2, max_backoff=1.0, max_doublings=2)
    path = handler.path(500, 500, 500, 500, 500)
    emulator.client.create_task(
        parent=queue, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=handler.url + path))
    )
    seen = handler.wait(path, 6)
    gaps = [b.at - a.at for a, b in zip(seen, seen[1:], strict=False)]
    expected = [0.2, 0.4, 0.8, 1.0, 1.0]  # doubles twice, then 0.8 * 2 = 1.6 capped at 1.0
    for gap, want in zip(gaps, expected, strict=True):
        assert want - 0.02 <= gap <= want + 0.75, (gaps, expected)


def test_max_attempts_stops_retrying(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue(max_attempts=3, min_backoff=0.05, max_backoff=0.05)
    path = handler.path(*([500] * 10))
    emulator.client.create_task(
        parent=queue, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=handler.url + path))
    )
    handler.wait(path, 3)
    time.sleep(0.6)
    assert len(handler.requests(path)) == 3
    assert list(emulator.client.list_tasks(parent=queue)) == []


def test_attempts_go_on_until_the_retry_duration_is_used_up_too(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue(max_attempts=2, max_retry_duration=1.0, min_backoff=0.1, max_backoff=0.1)
    path = handler.path(*([500] * 100))
    emulator.client.create_task(
        parent=queue, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=handler.url + path))
    )
    handler.wait(path, 4)
    time.sleep(1.6)
    seen = handler.requests(path)
    assert len(seen) > 2
    assert seen[-1].at - seen[0].at >= 0.9
    time.sleep(0.5)
    assert len(handler.requests(path)) == len(seen)  # stopped


def test_unlimited_attempts_stop_at_the_retry_duration(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue(max_attempts=-1, max_retry_duration=0.5, min_backoff=0.1, max_backoff=0.1)
    path = handler.path(*([500] * 100))
    emulator.client.create_task(
        parent=queue, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=handler.url + path))
    )
    handler.wait(path, 2)
    time.sleep(1.2)
    seen = handler.requests(path)
    time.sleep(0.4)
    assert len(handler.requests(path)) == len(seen)
    assert 2 <= len(seen) <= 10


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_and_slows_the_whole_queue(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler, status: int
) -> None:
    queue = make_queue(min_backoff=0.05, max_backoff=0.05)
    slow = handler.path(Answer(status, {"Retry-After": "1"}))
    other = handler.path()
    emulator.client.create_task(
        parent=queue, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=handler.url + slow))
    )
    first = handler.wait(slow, 1)[0]
    time.sleep(0.1)
    emulator.client.create_task(
        parent=queue,
        task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=handler.url + other)),
    )
    retried = handler.wait(slow, 2)[1]
    later = handler.wait(other, 1)[0]
    assert retried.at - first.at >= 0.95
    assert later.at - first.at >= 0.9  # the queue held back, not only the task


def test_app_engine_503_throttles_the_queue(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue(min_backoff=0.05, max_backoff=0.05)
    path = handler.path(Answer(503, {"Retry-After": "1"}))
    emulator.client.create_task(
        parent=queue,
        task=tasks_v2.Task(
            app_engine_http_request=tasks_v2.AppEngineHttpRequest(relative_uri=path)
        ),
    )
    seen = handler.wait(path, 2)
    assert seen[1].at - seen[0].at >= 0.95
