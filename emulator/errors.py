"""The API's errors: a gRPC status code and the message real Cloud Tasks sends."""

from __future__ import annotations

import grpc

QUEUE_EXISTS = "Queue already exists"
QUEUE_RECENTLY_DELETED = (
    "The queue cannot be created because a queue with this name existed too recently."
)
QUEUE_NOT_FOUND = (
    "Queue does not exist. If you just created the queue, wait at least a minute for "
    "the queue to initialize."
)
ENTITY_NOT_FOUND = "Requested entity was not found."
ENTITY_EXISTS = "Requested entity already exists"
TASK_RECENTLY_GONE = (
    "The task no longer exists, though a task with this name existed recently. "
    "The task either successfully completed or was deleted."
)
BAD_TASK_ID = (
    'Task ID "{id}" can contain only letters ([A-Za-z]), numbers ([0-9]), hyphens (-), '
    "or underscores (_). Task ID must between 1 and 500 characters."
)
TASK_NAME_FORMAT = (
    'Task name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/'
    '<QUEUE_ID>/tasks/<TASK_ID>"'
)
TASK_IN_OTHER_QUEUE = (
    "The queue name from request ('{parent}') must be the same as the queue name in the "
    "named task ('{queue}')."
)
URL_SCHEME = "HttpTarget.url must start with 'http://' or 'https://'."
URL_REQUIRED = "HttpRequest.url is required."


class ApiError(Exception):
    """An RPC failure to send back to the client as a gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ApiError:
    """An INVALID_ARGUMENT error."""
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str = ENTITY_NOT_FOUND) -> ApiError:
    """A NOT_FOUND error."""
    return ApiError(grpc.StatusCode.NOT_FOUND, message)
