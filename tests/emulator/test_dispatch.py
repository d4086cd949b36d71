"""What handlers receive: headers per attempt, retry counters, targets, task state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from tests.emulator.conftest import Emulator, Handler, seconds


def test_http_target_status_sequence_and_headers_of_each_attempt(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue(min_backoff=0.05, max_backoff=0.05)
    path = handler.path(503, 404, 429, 500, 302, 200)
    task = emulator.client.create_task(
        parent=queue,
        task=tasks_v2.Task(
            name=f"{queue}/tasks/seq-1",
            http_request=tasks_v2.HttpRequest(
                url=handler.url + path,
                headers={"X-Request-ID": "req-seq", "User-Agent": "mine", "X-Custom": "kept"},
                body=b'{"a": 1}',
            ),
        ),
    )
    seen = handler.wait(path, 6)
    assert [s.method for s in seen] == ["POST"] * 6
    queue_id = queue.rsplit("/", 1)[1]
    for s in seen:
        assert s.headers["x-cloudtasks-queuename"] == queue_id
        assert s.headers["x-cloudtasks-taskname"] == "seq-1"
        assert s.headers["user-agent"] == "Google-Cloud-Tasks"
        assert s.headers["x-request-id"] == "req-seq"
        assert s.headers["x-custom"] == "kept"
        assert "content-type" not in s.headers  # Cloud Tasks sets none for HTTP targets
        assert s.body == b'{"a": 1}'
        eta = float(s.headers["x-cloudtasks-tasketa"])
        assert abs(eta - time.time()) < 60
    assert [s.headers["x-cloudtasks-taskretrycount"] for s in seen] == list("012345")
    # Executions count answers, but not 5xx ones: 503 no, 404 yes, 429 yes, 500 no, 302 yes.
    assert [s.headers["x-cloudtasks-taskexecutioncount"] for s in seen] == list("001223")
    assert "x-cloudtasks-taskpreviousresponse" not in seen[0].headers
    assert "x-cloudtasks-taskretryreason" not in seen[0].headers
    assert [s.headers["x-cloudtasks-taskpreviousresponse"] for s in seen[1:]] == [
        "503", "404", "429", "500", "302",
    ]  # fmt: skip
    assert all(s.headers["x-cloudtasks-taskretryreason"] == "" for s in seen[1:])
    assert abs(float(seen[0].headers["x-cloudtasks-tasketa"]) - task_eta(task)) < 1e-5
    # Each retry's ETA is when that retry was scheduled, so the ETAs grow.
    etas = [float(s.headers["x-cloudtasks-tasketa"]) for s in seen]
    assert etas == sorted(etas)


def task_eta(task: tasks_v2.Task) -> float:
    return float(task.schedule_time.timestamp())


def test_task_state_reports_attempts(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue(min_backoff=1, max_backoff=1)
    path = handler.path(404, 500)
    name = f"{queue}/tasks/state-1"
    emulator.client.create_task(
        parent=queue,
        task=tasks_v2.Task(name=name, http_request=tasks_v2.HttpRequest(url=handler.url + path)),
    )
    handler.wait(path, 1)
    task = wait_for(lambda: emulator.client.get_task(name=name), lambda t: t.response_count == 1)
    assert task.dispatch_count == 1
    assert task.first_attempt.dispatch_time is not None
    assert task.last_attempt.response_status.code == 5  # NOT_FOUND
    assert task.schedule_time.timestamp() > time.time()  # the retry is scheduled
    handler.wait(path, 2)
    task = wait_for(lambda: emulator.client.get_task(name=name), lambda t: t.response_count == 2)
    assert task.last_attempt.response_status.code == 13  # INTERNAL
    listed = list(emulator.client.list_tasks(parent=queue))
    assert listed[0].dispatch_count == 2
    assert listed[0].response_count == 2


def wait_for(
    get: Callable[[], tasks_v2.Task], ok: Callable[[tasks_v2.Task], bool]
) -> tasks_v2.Task:
    deadline = time.monotonic() + 10
    while True:
        value = get()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_http_methods_and_query_pass_through(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    path = handler.path()
    emulator.client.create_task(
        parent=queue,
        task=tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(
                url=handler.url + path + "?x=1", http_method=tasks_v2.HttpMethod.PUT, body=b"b"
            )
        ),
    )
    emulator.client.create_task(
        parent=queue,
        task=tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(
                url=handler.url + path + "?x=1", http_method=tasks_v2.HttpMethod.GET
            )
        ),
    )
    seen = handler.wait(path + "?x=1", 2)
    assert sorted(s.method for s in seen) == ["GET", "PUT"]


def test_app_engine_target_headers_and_content_type(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue(min_backoff=0.05, max_backoff=0.05)
    path = handler.path(503, 404, 500, 200)
    emulator.client.create_task(
        parent=queue,
        task=tasks_v2.Task(
            name=f"{queue}/tasks/ae-1",
            app_engine_http_request=tasks_v2.AppEngineHttpRequest(
                relative_uri=path,
                app_engine_routing=tasks_v2.AppEngineRouting(service="worker"),
                headers={
                    "X-Request-ID": "req-ae",
                    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                    "X-AppEngine-FailFast": "true",
                    "X-AppEngine-QueueName": "forged",
                },
                body=b"payload",
            ),
        ),
    )
    seen = handler.wait(path, 4)
    queue_id = queue.rsplit("/", 1)[1]
    for s in seen:
        assert s.headers["x-appengine-queuename"] == queue_id
        assert s.headers["x-appengine-taskname"] == "ae-1"
        assert s.headers["user-agent"] == "AppEngine-Google; (+http://code.google.com/appengine)"
        assert s.headers["content-type"] == "application/octet-stream"
        assert s.headers["x-appengine-failfast"] == "true"
        assert s.headers["x-request-id"] == "req-ae"
        assert s.headers["traceparent"].startswith("00-0af76519")
        assert "x-appengine-taskname" in s.headers and "x-cloudtasks-taskname" not in s.headers
        assert s.body == b"payload"
    assert [s.headers["x-appengine-taskretrycount"] for s in seen] == list("0123")
    # App Engine counts every answer as an execution, 5xx included.
    assert [s.headers["x-appengine-taskexecutioncount"] for s in seen] == list("0123")
    assert [s.headers.get("x-appengine-taskpreviousresponse") for s in seen] == [
        None, "503", "404", "500",
    ]  # fmt: skip
    assert [s.headers.get("x-appengine-taskretryreason") for s in seen] == [
        None, "App Error", "App Error", "App Error",
    ]  # fmt: skip
    lines = attempt_lines(emulator, "ae-1", 4)
    labels = lines[-1]["logging.googleapis.com/labels"]
    assert labels["request_id"] == "req-ae"
    assert labels["attempt"] == "4"
    assert labels["status"] == "200"
    assert labels["queue"] == queue_id
    assert "latency" in labels
    assert lines[-1]["logging.googleapis.com/trace"].endswith(
        "/traces/0af7651916cd43dd8448eb211c80319c"
    )


def attempt_lines(emulator: Emulator, task_id: str, count: int) -> list[dict[str, Any]]:
    """The emulator's dispatch lines about ``task_id``, once there are ``count`` of them."""
    deadline = time.monotonic() + 5
    while True:
        lines = [
            line
            for line in emulator.log_lines()
            if line.get("logging.googleapis.com/labels", {}).get("task") == task_id
            and "status" in line["logging.googleapis.com/labels"]  # not the "created" line
        ]
        if len(lines) >= count or time.monotonic() > deadline:
            assert len(lines) == count
            return lines
        time.sleep(0.05)


def test_app_engine_routing_queue_override_then_task_service_then_default(
    start_emulator: Callable[..., Emulator], handler: Handler
) -> None:
    other = Handler()
    try:
        emu = start_emulator("--appengine-service", f"billing={other.url}")
        parent = "projects/emu-test/locations/us-central1"
        plain = f"{parent}/queues/plain"
        pinned = f"{parent}/queues/pinned"
        emu.client.create_queue(parent=parent, queue=tasks_v2.Queue(name=plain))
        emu.client.create_queue(
            parent=parent,
            queue=tasks_v2.Queue(
                name=pinned,
                app_engine_routing_override=tasks_v2.AppEngineRouting(service="worker"),
            ),
        )
        p1, p2, p3 = handler.path(), handler.path(), other.path()

        def ae(queue: str, path: str, service: str) -> None:
            emu.client.create_task(
                parent=queue,
                task=tasks_v2.Task(
                    app_engine_http_request=tasks_v2.AppEngineHttpRequest(
                        relative_uri=path,
                        app_engine_routing=tasks_v2.AppEngineRouting(service=service),
                    )
                ),
            )

        ae(pinned, p1, "billing")  # the queue's override wins: worker (handler)
        ae(plain, p2, "unmapped")  # no mapping: the default URL (handler)
        ae(plain, p3, "billing")  # the task's own service
        handler.wait(p1, 1)
        handler.wait(p2, 1)
        other.wait(p3, 1)
    finally:
        other.close()


def test_oauth_and_own_authorization_header(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    path = handler.path()
    emulator.client.create_task(
        parent=queue,
        task=tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(
                url=handler.url + path, headers={"Authorization": "Bearer mine"}
            )
        ),
    )
    assert handler.wait(path, 1)[0].headers["authorization"] == "Bearer mine"


def test_run_task_dispatches_at_once_even_when_paused(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    emulator.client.pause_queue(name=queue)
    path = handler.path()
    far = time.time() + 3600
    task = tasks_v2.Task(
        name=f"{queue}/tasks/run-me", http_request=tasks_v2.HttpRequest(url=handler.url + path)
    )
    task.schedule_time = tasks_v2.Task(schedule_time={"seconds": int(far)}).schedule_time
    emulator.client.create_task(parent=queue, task=task)
    time.sleep(0.3)
    assert handler.requests(path) == []
    ran = emulator.client.run_task(name=task.name)
    assert ran.name == task.name
    handler.wait(path, 1)
    with pytest.raises(exceptions.NotFound):
        wait_for(
            lambda: emulator.client.get_task(name=task.name), lambda t: False
        )  # gone after success


def test_schedule_time_in_the_future_is_waited_for(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    path = handler.path()
    start = time.time()
    task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=handler.url + path))
    task.schedule_time = tasks_v2.Task(
        schedule_time={"seconds": int(start) + 2, "nanos": 0}
    ).schedule_time
    emulator.client.create_task(parent=queue, task=task)
    handler.wait(path, 1)
    assert time.time() >= int(start) + 2 - 0.05


def test_deleted_task_is_not_dispatched(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    path = handler.path()
    task = tasks_v2.Task(
        name=f"{queue}/tasks/doomed",
        http_request=tasks_v2.HttpRequest(url=handler.url + path),
        schedule_time={"seconds": int(time.time()) + 1},
    )
    emulator.client.create_task(parent=queue, task=task)
    emulator.client.delete_task(name=task.name)
    time.sleep(1.5)
    assert handler.requests(path) == []


def test_task_retry_config_overrides_the_queue(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue(max_attempts=10)
    path = handler.path(*([500] * 10))
    emulator.client.create_task(
        parent=queue,
        task=tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(url=handler.url + path),
            retry_config=tasks_v2.RetryConfig(max_attempts=2, min_backoff=seconds(0.05)),
        ),
    )
    handler.wait(path, 2)
    time.sleep(0.5)
    assert len(handler.requests(path)) == 2
