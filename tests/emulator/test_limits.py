"""Rate limits, concurrency, dispatch deadlines: observed over time."""

from __future__ import annotations

import time
from collections.abc import Callable

from google.cloud import tasks_v2

from tests.emulator.conftest import Answer, Emulator, Handler, free_port, seconds
from tests.emulator.test_dispatch import wait_for


def create(emulator: Emulator, queue: str, url: str, **kw: object) -> tasks_v2.Task:
    return emulator.client.create_task(
        parent=queue, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=url), **kw)
    )


def test_dispatch_rate_is_limited_by_the_token_bucket(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue(rate=5)  # burst derived: 5 / 5 = 1
    emulator.client.pause_queue(name=queue)
    path = handler.path()
    for _ in range(8):
        create(emulator, queue, handler.url + path)
    emulator.client.resume_queue(name=queue)
    seen = handler.wait(path, 8)
    span = seen[-1].at - seen[0].at
    assert span >= 7 / 5 * 0.85, span  # one token every 0.2 s after the first


def test_concurrent_dispatches_stay_under_the_limit(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue(concurrent=2)
    path = handler.path(*[Answer(200, delay=0.3) for _ in range(6)])
    for _ in range(6):
        create(emulator, queue, handler.url + path)
    handler.wait(path, 6)
    time.sleep(0.4)
    assert handler.max_in_flight[path] == 2


def test_a_slow_handler_blocks_neither_other_queues_nor_its_own_queue(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    q1, q2 = make_queue(concurrent=10), make_queue()
    slow = handler.path(Answer(200, delay=2.0))
    fast1, fast2 = handler.path(), handler.path()
    create(emulator, q1, handler.url + slow)
    handler.wait(slow, 1)
    start = time.monotonic()
    for _ in range(3):
        create(emulator, q1, handler.url + fast1)
        create(emulator, q2, handler.url + fast2)
    handler.wait(fast1, 3)
    handler.wait(fast2, 3)
    assert time.monotonic() - start < 1.5


def test_dispatch_deadline_fails_the_attempt_with_504_and_ignores_the_late_answer(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue(min_backoff=0.5, max_backoff=0.5)
    path = handler.path(Answer(200, delay=1.2), Answer(200))
    task = create(
        emulator,
        queue,
        handler.url + path,
        name=f"{queue}/tasks/late",
        dispatch_deadline=seconds(0.4),
    )
    handler.wait(path, 1)
    after = wait_for(
        lambda: emulator.client.get_task(name=task.name),
        lambda t: t.dispatch_count == 1 and t.last_attempt.response_status.code != 0,
    )
    assert after.last_attempt.response_status.code == 4  # DEADLINE_EXCEEDED
    assert after.response_count == 0
    seen = handler.wait(path, 2)
    assert seen[1].at - seen[0].at >= 0.4 + 0.5 - 0.05
    assert seen[1].headers["x-cloudtasks-taskpreviousresponse"] == "504"
    assert seen[1].headers["x-cloudtasks-taskretrycount"] == "1"
    assert seen[1].headers["x-cloudtasks-taskexecutioncount"] == "0"
    time.sleep(1.0)
    assert len(handler.requests(path)) == 2  # the late 200 did not count twice nor retry


def test_app_engine_dispatch_deadline_is_instance_unavailable(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue(min_backoff=0.1, max_backoff=0.1)
    path = handler.path(Answer(200, delay=1.0))
    emulator.client.create_task(
        parent=queue,
        task=tasks_v2.Task(
            app_engine_http_request=tasks_v2.AppEngineHttpRequest(relative_uri=path),
            dispatch_deadline=seconds(0.3),
        ),
    )
    seen = handler.wait(path, 2)
    assert seen[1].headers["x-appengine-taskpreviousresponse"] == "0"
    assert seen[1].headers["x-appengine-taskretryreason"] == "Instance Unavailable"
    assert seen[1].headers["x-appengine-taskexecutioncount"] == "0"


def test_unreachable_target_fails_the_attempt_and_is_retried(
    emulator: Emulator, make_queue: Callable[..., str]
) -> None:
    queue = make_queue(max_attempts=3, min_backoff=5, max_backoff=5)
    task = create(
        emulator, queue, f"http://127.0.0.1:{free_port()}/nobody", name=f"{queue}/tasks/lost"
    )
    after = wait_for(
        lambda: emulator.client.get_task(name=task.name),
        lambda t: t.last_attempt.response_status.code != 0,
    )
    assert after.dispatch_count == 1
    assert after.response_count == 0
    assert after.last_attempt.response_status.code == 14  # UNAVAILABLE
    assert after.schedule_time.timestamp() > time.time() + 3  # the retry waits its backoff
