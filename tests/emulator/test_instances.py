"""One service, several instances: pushes spread round-robin; a refused one is retried."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from google.cloud import tasks_v2

from tests.emulator.conftest import PARENT, Emulator, Handler, free_port, seconds


@pytest.fixture
def second() -> Iterator[Handler]:
    """Another receiver: the second instance of a service."""
    h = Handler()
    yield h
    h.close()


def _queue(emu: Emulator, name: str, service: str = "") -> str:
    queue = tasks_v2.Queue(
        name=f"{PARENT}/queues/{name}",
        retry_config=tasks_v2.RetryConfig(
            min_backoff=seconds(0.05), max_backoff=seconds(0.1), max_attempts=-1
        ),
    )
    if service:
        queue.app_engine_routing_override = tasks_v2.AppEngineRouting(service=service)
    emu.client.create_queue(parent=PARENT, queue=queue)
    return queue.name


def _app_task(path: str) -> tasks_v2.Task:
    return tasks_v2.Task(
        app_engine_http_request=tasks_v2.AppEngineHttpRequest(relative_uri=path, body=b"x")
    )


def test_appengine_pushes_spread_over_instances_and_skip_a_refusing_one(
    start_emulator: Callable[..., Emulator], handler: Handler, second: Handler
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    emu = start_emulator(
        "--appengine-service", f"pair={handler.url},{second.url}",
        "--appengine-service", f"half={second.url},{down}",
    )  # fmt: skip
    pair = _queue(emu, "pair", "pair")
    path = handler.path()
    second.scripts[path] = []
    for _ in range(10):
        emu.client.create_task(parent=pair, task=_app_task(path))
    first_seen = handler.wait(path, 5)
    second_seen = second.wait(path, 5)
    assert len(first_seen) == 5 and len(second_seen) == 5  # round-robin, one each in turn

    half = _queue(emu, "half", "half")
    other = second.path()
    for _ in range(6):
        emu.client.create_task(parent=half, task=_app_task(other))
    seen = second.wait(other, 6)
    retried = [s for s in seen if s.headers["x-appengine-taskretrycount"] != "0"]
    assert retried, "some pushes met the refusing instance first"
    for s in retried:  # as App Engine reports an instance it could not reach
        assert s.headers["x-appengine-taskpreviousresponse"] == "0"
        assert s.headers["x-appengine-taskretryreason"] == "Instance Unavailable"
    statuses = [
        line["logging.googleapis.com/labels"]["status"]
        for line in emu.log_lines()
        if str(line.get("message", "")).startswith("dispatch half/")
    ]
    assert "unreachable" in statuses


def test_http_target_alias_spreads_pushes_over_urls(
    start_emulator: Callable[..., Emulator], handler: Handler, second: Handler
) -> None:
    emu = start_emulator(
        "--http-target-alias", f"http://worker.internal={handler.url},{second.url}"
    )
    queue = _queue(emu, "alias")
    path = handler.path()
    second.scripts[path] = []
    for _ in range(4):
        emu.client.create_task(
            parent=queue,
            task=tasks_v2.Task(
                http_request=tasks_v2.HttpRequest(url=f"http://worker.internal{path}")
            ),
        )
    assert len(handler.wait(path, 2)) == 2
    assert len(second.wait(path, 2)) == 2
