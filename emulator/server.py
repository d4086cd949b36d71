"""The ``google.cloud.tasks.v2.CloudTasks`` gRPC service over a Store.

No server stubs ship with google-cloud-tasks, so the methods are registered through a
generic handler with the messages' own (de)serializers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeAlias

import grpc
from google.cloud import tasks_v2

from emulator.dispatch import task_log_context
from emulator.errors import ApiError
from emulator.pbutil import Empty, Queue, Task, task_view
from emulator.state import Store, TaskRecord

logger = logging.getLogger(__name__)

SERVICE = "google.cloud.tasks.v2.CloudTasks"
_UNIMPLEMENTED = (
    "GetIamPolicy",
    "SetIamPolicy",
    "TestIamPermissions",
    "BatchCreateTasks",
    "BatchDeleteTasks",
    "UpdateCmekConfig",
    "GetCmekConfig",
)


def _created(rec: TaskRecord) -> Task:
    """Log the new task, labelled with its request id and trace, and return it."""
    with task_log_context(rec.pb, task=rec.task_id):
        logger.info(
            "task %s created, first dispatch at %s",
            rec.task_id,
            rec.pb.schedule_time.ToJsonString(),
        )
    return rec.pb


def _pb(name: str) -> Any:
    return getattr(tasks_v2, name).pb()


_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def _unary(fn: Callable[[Any], Any], request: str, response: Any) -> _Handler:
    async def behavior(req: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return fn(req)
        except ApiError as e:
            await context.abort(e.code, e.message)

    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=_pb(request).FromString,
        response_serializer=response.SerializeToString,
    )


def _unimplemented(name: str) -> _Handler:
    async def behavior(req: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"{name} is not implemented by the emulator."
        )

    return grpc.unary_unary_rpc_method_handler(behavior, request_deserializer=lambda b: b)


def build_handler(store: Store) -> grpc.GenericRpcHandler[Any, Any]:
    """The generic handler answering every CloudTasks method."""

    def list_queues(r: Any) -> Any:
        queues, token = store.list_queues(r.parent, r.page_size, r.page_token)
        out = _pb("ListQueuesResponse")()
        out.queues.extend(queues)
        out.next_page_token = token
        return out

    def list_tasks(r: Any) -> Any:
        recs, token = store.list_tasks(r.parent, r.page_size, r.page_token)
        out = _pb("ListTasksResponse")()
        out.tasks.extend(task_view(rec.pb, r.response_view) for rec in recs)
        out.next_page_token = token
        return out

    def delete_queue(r: Any) -> Any:
        store.delete_queue(r.name)
        return Empty()

    def delete_task(r: Any) -> Any:
        store.delete_task(r.name)
        return Empty()

    methods: dict[str, _Handler] = {
        "ListQueues": _unary(list_queues, "ListQueuesRequest", _pb("ListQueuesResponse")),
        "GetQueue": _unary(lambda r: store.get_queue(r.name), "GetQueueRequest", Queue),
        "CreateQueue": _unary(
            lambda r: store.create_queue(r.parent, r.queue), "CreateQueueRequest", Queue
        ),
        "UpdateQueue": _unary(
            lambda r: store.update_queue(r.queue, list(r.update_mask.paths)),
            "UpdateQueueRequest",
            Queue,
        ),
        "DeleteQueue": _unary(delete_queue, "DeleteQueueRequest", Empty),
        "PurgeQueue": _unary(lambda r: store.purge_queue(r.name), "PurgeQueueRequest", Queue),
        "PauseQueue": _unary(lambda r: store.set_paused(r.name, True), "PauseQueueRequest", Queue),
        "ResumeQueue": _unary(
            lambda r: store.set_paused(r.name, False), "ResumeQueueRequest", Queue
        ),
        "ListTasks": _unary(list_tasks, "ListTasksRequest", _pb("ListTasksResponse")),
        "GetTask": _unary(
            lambda r: task_view(store.get_task(r.name).pb, r.response_view),
            "GetTaskRequest",
            Task,
        ),
        "CreateTask": _unary(
            lambda r: task_view(_created(store.create_task(r.parent, r.task)), r.response_view),
            "CreateTaskRequest",
            Task,
        ),
        "DeleteTask": _unary(delete_task, "DeleteTaskRequest", Empty),
        "RunTask": _unary(
            lambda r: task_view(store.run_task(r.name).pb, r.response_view),
            "RunTaskRequest",
            Task,
        ),
    }
    for name in _UNIMPLEMENTED:
        methods[name] = _unimplemented(name)
    return grpc.method_handlers_generic_handler(SERVICE, methods)
