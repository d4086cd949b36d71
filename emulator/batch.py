"""BatchCreateTasks and BatchDeleteTasks: many task calls in one transaction, as an LRO."""

from __future__ import annotations

import time
from typing import Any

from google.cloud import tasks_v2
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2
from google.rpc import status_pb2

from emulator import names
from emulator.errors import ApiError, invalid
from emulator.lro import Operations
from emulator.pbutil import task_view, ts_set
from emulator.state import Store
from emulator.tasklog import log_created

MAX_CREATE = 100
MAX_DELETE = 1000
CreateMetadata: Any = tasks_v2.BatchCreateTasksMetadata.pb()
CreateResponse: Any = tasks_v2.BatchCreateTasksResponse.pb()
DeleteMetadata: Any = tasks_v2.BatchDeleteTasksMetadata.pb()
# Both metadata enums: RUNNING 1, SUCCEEDED 2; PARTIALLY_SUCCEEDED is 5 for create, 3 for delete.
RUNNING, SUCCEEDED = 1, 2
CREATE_PARTIAL, DELETE_PARTIAL = 5, 3


def _status(e: ApiError) -> Any:
    return status_pb2.Status(code=e.code.value[0], message=e.message)


def _operation(metadata: Any, response: Any | None, started: float) -> tuple[Any, Any]:
    """(the finished operation kept for GetOperation, the RUNNING one the call answers)."""
    ts_set(metadata.start_time, started)
    running_meta = type(metadata)()
    running_meta.start_time.CopyFrom(metadata.start_time)
    running_meta.state = RUNNING
    ts_set(metadata.end_time, time.time())
    done = operations_pb2.Operation(done=True)
    done.metadata.Pack(metadata)
    if response is not None:
        done.response.Pack(response)
    else:
        done.response.Pack(empty_pb2.Empty())
    first = operations_pb2.Operation(done=False)
    first.metadata.Pack(running_meta)
    return done, first


def batch_create_tasks(store: Store, ops: Operations, request: Any) -> Any:
    """BatchCreateTasks: up to 100 CreateTaskRequests of one queue; failures by index."""
    parent = request.parent
    location, _ = names.split_queue(parent)
    if not request.requests:
        raise invalid("BatchCreateTasksRequest.requests must not be empty.")
    if len(request.requests) > MAX_CREATE:
        raise invalid(f"The maximum number of requests is {MAX_CREATE}.")
    for i, r in enumerate(request.requests):
        if r.parent != parent:
            raise invalid(
                f"requests[{i}].parent ('{r.parent}') must be the same as the parent of the "
                f"batch ('{parent}')."
            )
    store.get_queue(parent)  # NOT_FOUND for the whole batch
    old = ops.existing("BatchCreateTasks", request.request_id)
    if old is not None:
        return old  # a retried call: the first call's operation, nothing done twice
    started = time.time()
    metadata = CreateMetadata()
    response = CreateResponse()
    created = []
    with store.transaction():
        for i, r in enumerate(request.requests):
            try:
                rec = store.create_task(parent, r.task)
            except ApiError as e:
                metadata.failed_requests[i].CopyFrom(_status(e))
                continue
            created.append(rec)
            response.tasks.append(task_view(rec.pb, r.response_view))
        metadata.state = CREATE_PARTIAL if metadata.failed_requests else SUCCEEDED
        done, first = _operation(metadata, response, started)
        ops.record(
            location=location, method="BatchCreateTasks", request_id=request.request_id, op=done
        )
    for rec in created:
        log_created(rec.pb, rec.task_id)
    first.name = done.name
    return first


def batch_delete_tasks(store: Store, ops: Operations, request: Any) -> Any:
    """BatchDeleteTasks: up to 1,000 task names of one queue; a missing task fails its index."""
    parent = request.parent
    location, _ = names.split_queue(parent)
    if not request.names:
        raise invalid("BatchDeleteTasksRequest.names must not be empty.")
    if len(request.names) > MAX_DELETE:
        raise invalid(f"A maximum of {MAX_DELETE} tasks can be deleted in a batch.")
    for name in request.names:
        queue_name, _ = names.split_task(name)
        if queue_name != parent:
            raise invalid(f"The task {name} is not in the queue {parent}.")
    store.get_queue(parent)
    old = ops.existing("BatchDeleteTasks", request.request_id)
    if old is not None:
        return old  # a retried call: the first call's operation, nothing done twice
    started = time.time()
    metadata = DeleteMetadata()
    with store.transaction():
        for i, name in enumerate(request.names):
            try:
                store.delete_task(name, "BatchDeleteTasks")
            except ApiError as e:
                metadata.failed_requests[i].CopyFrom(_status(e))
        metadata.state = DELETE_PARTIAL if metadata.failed_requests else SUCCEEDED
        done, first = _operation(metadata, None, started)
        ops.record(
            location=location, method="BatchDeleteTasks", request_id=request.request_id, op=done
        )
    first.name = done.name
    return first
