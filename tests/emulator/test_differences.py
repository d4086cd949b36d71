"""Smaller behaviours matched to Cloud Tasks: defaults returned, page tokens, messages, logs.

Defaults, page tokens and task-name messages are checked through every client surface (v2
and v2beta3, over gRPC and REST); the deletion log lines through v2 gRPC.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from tests.emulator.clients import SURFACES, module, status, surface_fixture
from tests.emulator.conftest import PARENT, Emulator, Handler

surface = surface_fixture(SURFACES)


def test_a_task_without_http_method_is_returned_with_post(
    surface: tuple[str, Any], make_queue: Callable[..., str], handler: Handler
) -> None:
    version, c = surface
    queue = make_queue()
    c.pause_queue(name=queue)
    created = c.create_task(parent=queue, task={"http_request": {"url": handler.url}})
    app = c.create_task(parent=queue, task={"app_engine_http_request": {"relative_uri": "/"}})
    post = module(version).HttpMethod.POST
    assert created.http_request.http_method == post
    assert app.app_engine_http_request.http_method == post
    assert c.get_task(name=created.name).http_request.http_method == post
    assert c.get_task(name=app.name).app_engine_http_request.http_method == post
    listed = list(c.list_tasks(parent=queue))
    assert [t.name for t in listed] == [created.name, app.name]
    assert listed[0].http_request.http_method == post
    assert listed[1].app_engine_http_request.http_method == post


def test_page_tokens_not_made_by_the_emulator_are_invalid(
    surface: tuple[str, Any], make_queue: Callable[..., str]
) -> None:
    _, c = surface
    queue = make_queue()
    calls: list[Callable[[str], Any]] = [
        lambda token: c.list_queues(request={"parent": PARENT, "page_token": token}),
        lambda token: c.list_tasks(request={"parent": queue, "page_token": token}),
    ]
    for bad in ("###", "abc", "cTpub3Q"):
        for call in calls:
            with pytest.raises(exceptions.BadRequest) as e:  # InvalidArgument over gRPC
                list(call(bad))
            assert status(e.value) == ("INVALID_ARGUMENT", "Invalid page token.")


TASK_NAME_FORMAT = (
    'Task name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/'
    '<QUEUE_ID>/tasks/<TASK_ID>"'
)


@pytest.mark.parametrize("call", ["get_task", "create_task"])
def test_a_malformed_task_name_has_cloud_tasks_message(
    surface: tuple[str, Any], make_queue: Callable[..., str], handler: Handler, call: str
) -> None:
    _, c = surface
    if call == "get_task" and c.transport.kind == "rest":
        pytest.skip(
            "the REST client refuses the name itself (ValueError: it matches no URL "
            "binding /v*/{name=projects/*/locations/*/queues/*/tasks/*}): no request is sent"
        )
    queue = make_queue()
    malformed = f"{queue}/t1"
    with pytest.raises(exceptions.BadRequest) as e:
        if call == "get_task":
            c.get_task(name=malformed)
        else:
            c.create_task(
                parent=queue, task={"name": malformed, "http_request": {"url": handler.url}}
            )
    assert status(e.value) == ("INVALID_ARGUMENT", TASK_NAME_FORMAT)


def test_a_task_named_under_another_queue_has_cloud_tasks_message(
    surface: tuple[str, Any], make_queue: Callable[..., str], handler: Handler
) -> None:
    _, c = surface
    queue, other = make_queue(), make_queue()
    with pytest.raises(exceptions.BadRequest) as e:
        c.create_task(
            parent=queue,
            task={"name": f"{other}/tasks/t1", "http_request": {"url": handler.url}},
        )
    assert status(e.value) == (
        "INVALID_ARGUMENT",
        f"The queue name from request ('{queue}') must be the same as the queue name in the "
        f"named task ('{other}').",
    )
    assert list(c.list_tasks(parent=queue)) == list(c.list_tasks(parent=other)) == []


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
