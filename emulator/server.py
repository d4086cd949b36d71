"""The ``google.cloud.tasks.v2.CloudTasks`` and ``google.longrunning.Operations`` gRPC services.

Each RPC is a plain method of a servicer class taking the raw (upb) request message and
returning the raw response; the state logic lives in ``state.py`` and its helpers, so
other transports (REST, v2beta3) can call the same methods. No server stubs ship with
google-cloud-tasks, so the methods are registered through a generic handler with the
messages' own (de)serializers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeAlias

import grpc
from google.cloud import tasks_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.longrunning import operations_pb2

from emulator import batch, policies
from emulator.db import NullJournal
from emulator.errors import ApiError
from emulator.lro import Operations
from emulator.pbutil import Empty, Queue, Task, task_view
from emulator.state import Store
from emulator.tasklog import log_created

logger = logging.getLogger(__name__)

SERVICE = "google.cloud.tasks.v2.CloudTasks"
OPERATIONS_SERVICE = "google.longrunning.Operations"


def _pb(name: str) -> Any:
    return getattr(tasks_v2, name).pb()


CmekConfig: Any = _pb("CmekConfig")
Operation: Any = operations_pb2.Operation


class CloudTasksServicer:
    """One method per CloudTasks RPC: raw request in, raw response out, ApiError on refusal."""

    def __init__(self, store: Store, operations: Operations) -> None:
        self.store = store
        self.operations = operations

    # -- queues ------------------------------------------------------------------------

    def ListQueues(self, r: Any) -> Any:
        """ListQueues."""
        queues, token = self.store.list_queues(r.parent, r.page_size, r.page_token)
        out = _pb("ListQueuesResponse")()
        out.queues.extend(queues)
        out.next_page_token = token
        return out

    def GetQueue(self, r: Any) -> Any:
        """GetQueue."""
        return self.store.get_queue(r.name)

    def CreateQueue(self, r: Any) -> Any:
        """CreateQueue."""
        return self.store.create_queue(r.parent, r.queue)

    def UpdateQueue(self, r: Any) -> Any:
        """UpdateQueue."""
        return self.store.update_queue(r.queue, list(r.update_mask.paths))

    def DeleteQueue(self, r: Any) -> Any:
        """DeleteQueue."""
        self.store.delete_queue(r.name)
        return Empty()

    def PurgeQueue(self, r: Any) -> Any:
        """PurgeQueue."""
        return self.store.purge_queue(r.name)

    def PauseQueue(self, r: Any) -> Any:
        """PauseQueue."""
        return self.store.set_paused(r.name, True)

    def ResumeQueue(self, r: Any) -> Any:
        """ResumeQueue."""
        return self.store.set_paused(r.name, False)

    # -- tasks -------------------------------------------------------------------------

    def ListTasks(self, r: Any) -> Any:
        """ListTasks."""
        recs, token = self.store.list_tasks(r.parent, r.page_size, r.page_token)
        out = _pb("ListTasksResponse")()
        out.tasks.extend(task_view(rec.pb, r.response_view) for rec in recs)
        out.next_page_token = token
        return out

    def GetTask(self, r: Any) -> Any:
        """GetTask."""
        return task_view(self.store.get_task(r.name).pb, r.response_view)

    def CreateTask(self, r: Any) -> Any:
        """CreateTask (logs a "task created" line with the task's request id)."""
        rec = self.store.create_task(r.parent, r.task)
        log_created(rec.pb, rec.task_id)
        return task_view(rec.pb, r.response_view)

    def DeleteTask(self, r: Any) -> Any:
        """DeleteTask."""
        self.store.delete_task(r.name)
        return Empty()

    def RunTask(self, r: Any) -> Any:
        """RunTask."""
        return task_view(self.store.run_task(r.name).pb, r.response_view)

    def BatchCreateTasks(self, r: Any) -> Any:
        """BatchCreateTasks: a long-running operation."""
        return batch.batch_create_tasks(self.store, self.operations, r)

    def BatchDeleteTasks(self, r: Any) -> Any:
        """BatchDeleteTasks: a long-running operation."""
        return batch.batch_delete_tasks(self.store, self.operations, r)

    # -- IAM and CMEK ----------------------------------------------------------------------

    def GetIamPolicy(self, r: Any) -> Any:
        """GetIamPolicy of a queue."""
        return policies.get_iam_policy(self.store, r)

    def SetIamPolicy(self, r: Any) -> Any:
        """SetIamPolicy of a queue."""
        return policies.set_iam_policy(self.store, r)

    def TestIamPermissions(self, r: Any) -> Any:
        """TestIamPermissions on a queue."""
        return policies.test_iam_permissions(self.store, r)

    def GetCmekConfig(self, r: Any) -> Any:
        """GetCmekConfig of a location."""
        return policies.get_cmek_config(self.store, r.name, CmekConfig)

    def UpdateCmekConfig(self, r: Any) -> Any:
        """UpdateCmekConfig of a location."""
        return policies.update_cmek_config(
            self.store, r.cmek_config, list(r.update_mask.paths), CmekConfig
        )


class OperationsServicer:
    """``google.longrunning.Operations``, which the client's operation futures poll."""

    def __init__(self, operations: Operations) -> None:
        self.operations = operations

    def GetOperation(self, r: Any) -> Any:
        """GetOperation."""
        return self.operations.get(r.name)

    def ListOperations(self, r: Any) -> Any:
        """ListOperations."""
        return self.operations.list(r.name, r.page_size, r.page_token)

    def DeleteOperation(self, r: Any) -> Any:
        """DeleteOperation."""
        self.operations.delete(r.name)
        return Empty()

    def CancelOperation(self, r: Any) -> Any:
        """CancelOperation: every operation is finished already, so nothing changes."""
        self.operations.get(r.name)
        return Empty()

    def WaitOperation(self, r: Any) -> Any:
        """WaitOperation: every operation is finished already."""
        return self.operations.get(r.name)


_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

# method -> (request class, response class)
TASKS_METHODS: dict[str, tuple[Any, Any]] = {
    "ListQueues": (_pb("ListQueuesRequest"), _pb("ListQueuesResponse")),
    "GetQueue": (_pb("GetQueueRequest"), Queue),
    "CreateQueue": (_pb("CreateQueueRequest"), Queue),
    "UpdateQueue": (_pb("UpdateQueueRequest"), Queue),
    "DeleteQueue": (_pb("DeleteQueueRequest"), Empty),
    "PurgeQueue": (_pb("PurgeQueueRequest"), Queue),
    "PauseQueue": (_pb("PauseQueueRequest"), Queue),
    "ResumeQueue": (_pb("ResumeQueueRequest"), Queue),
    "ListTasks": (_pb("ListTasksRequest"), _pb("ListTasksResponse")),
    "GetTask": (_pb("GetTaskRequest"), Task),
    "CreateTask": (_pb("CreateTaskRequest"), Task),
    "DeleteTask": (_pb("DeleteTaskRequest"), Empty),
    "RunTask": (_pb("RunTaskRequest"), Task),
    "BatchCreateTasks": (_pb("BatchCreateTasksRequest"), Operation),
    "BatchDeleteTasks": (_pb("BatchDeleteTasksRequest"), Operation),
    "GetIamPolicy": (iam_policy_pb2.GetIamPolicyRequest, policy_pb2.Policy),
    "SetIamPolicy": (iam_policy_pb2.SetIamPolicyRequest, policy_pb2.Policy),
    "TestIamPermissions": (
        iam_policy_pb2.TestIamPermissionsRequest,
        iam_policy_pb2.TestIamPermissionsResponse,
    ),
    "GetCmekConfig": (_pb("GetCmekConfigRequest"), CmekConfig),
    "UpdateCmekConfig": (_pb("UpdateCmekConfigRequest"), CmekConfig),
}
OPERATIONS_METHODS: dict[str, tuple[Any, Any]] = {
    "GetOperation": (operations_pb2.GetOperationRequest, Operation),
    "ListOperations": (operations_pb2.ListOperationsRequest, operations_pb2.ListOperationsResponse),
    "DeleteOperation": (operations_pb2.DeleteOperationRequest, Empty),
    "CancelOperation": (operations_pb2.CancelOperationRequest, Empty),
    "WaitOperation": (operations_pb2.WaitOperationRequest, Operation),
}


def _unary(
    fn: Callable[[Any], Any], request: Any, response: Any, journal: Callable[[], NullJournal]
) -> _Handler:
    async def behavior(req: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        j = journal()
        try:
            with j.holding():
                out = fn(req)
        except ApiError as e:
            await j.durable()  # a refusal may rest on state not yet committed too
            await context.abort(e.code, e.message)
        # Answer only once the state this answer shows is on disk; the calls answered in
        # one turn of the loop share one commit.
        await j.durable()
        return out

    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=request.FromString,
        response_serializer=response.SerializeToString,
    )


def generic_handler(
    service: str, servicer: Any, methods: dict[str, tuple[Any, Any]], store: Store
) -> grpc.GenericRpcHandler[Any, Any]:
    """A generic handler serving ``methods`` of ``servicer`` as gRPC service ``service``."""
    handlers = {
        name: _unary(getattr(servicer, name), req, resp, lambda: store.journal)
        for name, (req, resp) in methods.items()
    }
    return grpc.method_handlers_generic_handler(service, handlers)


def build_handlers(store: Store, operations: Operations) -> tuple[Any, ...]:
    """The generic handlers answering every CloudTasks and Operations method."""
    return (
        generic_handler(SERVICE, CloudTasksServicer(store, operations), TASKS_METHODS, store),
        generic_handler(
            OPERATIONS_SERVICE, OperationsServicer(operations), OPERATIONS_METHODS, store
        ),
    )
