"""BatchCreateTasks / BatchDeleteTasks as long-running operations, through the real client."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.longrunning import operations_pb2

from tests.emulator.conftest import PARENT, Emulator, Handler

CreateState = tasks_v2.BatchCreateTasksMetadata.State
DeleteState = tasks_v2.BatchDeleteTasksMetadata.State


def _req(queue: str, url: str, task_id: str | None = None) -> tasks_v2.CreateTaskRequest:
    task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=url, body=b"x"))
    if task_id:
        task.name = f"{queue}/tasks/{task_id}"
    return tasks_v2.CreateTaskRequest(parent=queue, task=task)


def test_batch_create_is_an_operation_with_results_and_failures_by_index(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    emulator.client.pause_queue(name=queue)
    url = handler.url + handler.path()
    emulator.client.create_task(request=_req(queue, url, "taken"))
    op = emulator.client.batch_create_tasks(
        parent=queue,
        requests=[_req(queue, url, "a"), _req(queue, url, "taken"), _req(queue, url)],
    )
    assert op.metadata.state == CreateState.RUNNING  # as Cloud Tasks answers at first
    result = op.result(timeout=10)  # polls GetOperation
    assert [t.name.rsplit("/", 1)[1] for t in result.tasks][0] == "a"
    assert len(result.tasks) == 2
    assert all(t.http_request.http_method == tasks_v2.HttpMethod.POST for t in result.tasks)
    assert op.metadata.state == CreateState.PARTIALLY_SUCCEEDED
    assert list(op.metadata.failed_requests) == [1]
    assert op.metadata.failed_requests[1].code == 6  # ALREADY_EXISTS
    assert op.metadata.end_time >= op.metadata.start_time
    names = {t.name for t in emulator.client.list_tasks(parent=queue)}
    assert f"{queue}/tasks/a" in names and len(names) == 3

    raw = emulator.client.get_operation(operations_pb2.GetOperationRequest(name=op.operation.name))
    assert raw.done and raw.name.startswith(f"{PARENT}/operations/")


def test_batch_create_request_id_makes_a_retry_do_nothing_twice(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    emulator.client.pause_queue(name=queue)
    url = handler.url + handler.path()
    reqs = [_req(queue, url) for _ in range(3)]
    first = emulator.client.batch_create_tasks(
        request=tasks_v2.BatchCreateTasksRequest(parent=queue, requests=reqs, request_id="r-1")
    )
    first.result(timeout=10)
    again = emulator.client.batch_create_tasks(
        request=tasks_v2.BatchCreateTasksRequest(parent=queue, requests=reqs, request_id="r-1")
    )
    assert again.operation.name == first.operation.name
    assert len(list(emulator.client.list_tasks(parent=queue))) == 3


def test_batch_create_refuses_too_many_mixed_queues_and_bad_names(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue, other = make_queue(), make_queue()
    url = handler.url + handler.path()
    with pytest.raises(exceptions.InvalidArgument) as e:
        emulator.client.batch_create_tasks(parent=queue, requests=[_req(queue, url)] * 101)
    assert "100" in e.value.message
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.batch_create_tasks(
            parent=queue, requests=[_req(queue, url), _req(other, url)]
        )
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.batch_create_tasks(parent="bad/name", requests=[_req(queue, url)])
    with pytest.raises(exceptions.NotFound):
        missing = f"{PARENT}/queues/no-such-queue"
        emulator.client.batch_create_tasks(parent=missing, requests=[_req(missing, url)])
    assert list(emulator.client.list_tasks(parent=queue)) == []


def test_batch_delete_reports_missing_tasks_by_index(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    emulator.client.pause_queue(name=queue)
    url = handler.url + handler.path()
    for i in range(3):
        emulator.client.create_task(request=_req(queue, url, f"d{i}"))
    op = emulator.client.batch_delete_tasks(
        parent=queue, names=[f"{queue}/tasks/d0", f"{queue}/tasks/nope", f"{queue}/tasks/d2"]
    )
    op.result(timeout=10)
    assert op.metadata.state == DeleteState.PARTIALLY_SUCCEEDED
    assert list(op.metadata.failed_requests) == [1]
    assert op.metadata.failed_requests[1].code == 5  # NOT_FOUND
    assert [t.name for t in emulator.client.list_tasks(parent=queue)] == [f"{queue}/tasks/d1"]
    done = emulator.client.batch_delete_tasks(parent=queue, names=[f"{queue}/tasks/d1"])
    done.result(timeout=10)
    assert done.metadata.state == DeleteState.SUCCEEDED
    lines = [
        line
        for line in emulator.log_lines()
        if line.get("message") == "task d1 deleted by BatchDeleteTasks"
    ]
    assert lines


def test_batch_delete_refuses_too_many_and_names_of_another_queue(
    emulator: Emulator, make_queue: Callable[..., str]
) -> None:
    queue, other = make_queue(), make_queue()
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.batch_delete_tasks(
            parent=queue, names=[f"{queue}/tasks/t{i}" for i in range(1001)]
        )
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.batch_delete_tasks(parent=queue, names=[f"{other}/tasks/t1"])
    with pytest.raises(exceptions.InvalidArgument) as e:
        emulator.client.batch_delete_tasks(parent=queue, names=["tasks/t1"])
    assert e.value.message.startswith("Task name must be formatted:")
