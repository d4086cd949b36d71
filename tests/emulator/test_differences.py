"""Smaller behaviours matched to Cloud Tasks: defaults returned, page tokens, messages, logs."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from tests.emulator.conftest import PARENT, Emulator, Handler


def test_a_task_without_http_method_is_returned_with_post(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    emulator.client.pause_queue(name=queue)
    created = emulator.client.create_task(
        parent=queue, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=handler.url))
    )
    app = emulator.client.create_task(
        parent=queue,
        task=tasks_v2.Task(app_engine_http_request=tasks_v2.AppEngineHttpRequest(relative_uri="/")),
    )
    post = tasks_v2.HttpMethod.POST
    assert created.http_request.http_method == post
    assert app.app_engine_http_request.http_method == post
    assert emulator.client.get_task(name=created.name).http_request.http_method == post
    listed = list(emulator.client.list_tasks(parent=queue))
    assert listed[0].http_request.http_method == post
    assert listed[1].app_engine_http_request.http_method == post


def test_page_tokens_not_made_by_the_emulator_are_invalid(
    emulator: Emulator, make_queue: Callable[..., str]
) -> None:
    queue = make_queue()
    for bad in ("###", "abc", "cTpub3Q"):
        with pytest.raises(exceptions.InvalidArgument):
            list(emulator.client.list_queues(request={"parent": PARENT, "page_token": bad}))
        with pytest.raises(exceptions.InvalidArgument):
            list(emulator.client.list_tasks(request={"parent": queue, "page_token": bad}))


def test_task_name_messages_are_cloud_tasks_own(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue, other = make_queue(), make_queue()
    with pytest.raises(exceptions.InvalidArgument) as e:
        emulator.client.get_task(name=f"{queue}/t1")
    assert e.value.message == (
        'Task name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/'
        '<QUEUE_ID>/tasks/<TASK_ID>"'
    )
    with pytest.raises(exceptions.InvalidArgument) as e:
        emulator.client.create_task(
            parent=queue,
            task=tasks_v2.Task(
                name=f"{other}/tasks/t1", http_request=tasks_v2.HttpRequest(url=handler.url)
            ),
        )
    assert e.value.message == (
        f"The queue name from request ('{queue}') must be the same as the queue name in the "
        f"named task ('{other}')."
    )


def _deleted_lines(emulator: Emulator, request_id: str) -> list[str]:
    return [
        str(line["message"])
        for line in emulator.log_lines()
        if line.get("logging.googleapis.com/labels", {}).get("request_id") == request_id
        and " deleted by " in str(line.get("message"))
    ]


def test_deleting_a_task_logs_a_line_with_its_request_id(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    stamp = str(time.time_ns())
    queues = [make_queue() for _ in range(3)]
    for i, queue in enumerate(queues):
        emulator.client.pause_queue(name=queue)
        emulator.client.create_task(
            parent=queue,
            task=tasks_v2.Task(
                name=f"{queue}/tasks/del{i}",
                http_request=tasks_v2.HttpRequest(
                    url=handler.url, headers={"X-Request-ID": f"req-{stamp}-{i}"}
                ),
            ),
        )
    emulator.client.delete_task(name=f"{queues[0]}/tasks/del0")
    emulator.client.purge_queue(name=queues[1])
    emulator.client.delete_queue(name=queues[2])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _deleted_lines(emulator, f"req-{stamp}-2"):
        time.sleep(0.05)
    assert _deleted_lines(emulator, f"req-{stamp}-0") == ["task del0 deleted by DeleteTask"]
    assert _deleted_lines(emulator, f"req-{stamp}-1") == ["task del1 deleted by PurgeQueue"]
    assert _deleted_lines(emulator, f"req-{stamp}-2") == ["task del2 deleted by DeleteQueue"]
