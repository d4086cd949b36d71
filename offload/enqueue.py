"""Creating and deleting the Cloud Task of a job, through the real client library.

One :class:`TaskQueue` per process (in ``app.extensions``). Pointed at the emulator by
``OFFLOAD_TASKS_EMULATOR_HOST``; at real Cloud Tasks with Application Default
Credentials when that is empty.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from google.protobuf import duration_pb2, timestamp_pb2

from offload.breaker import HALF_OPEN, CircuitBreaker
from offload.envelope import TaskEnvelope, TaskSpec, queue_of
from offload.errors import CloudTasksUnavailableError, ConfigError, EnqueueError
from offload.settings import Settings

__all__ = [
    "CHANNEL_OPTIONS",
    "WEBHOOK_PATH",
    "TaskQueue",
    "dispatch_deadline_for",
]

log = logging.getLogger(__name__)

# Cloud Tasks' accepted dispatch_deadline ranges (see shared/CLOUD_TASKS.md).
_MIN_DISPATCH = 15.0
_MAX_DISPATCH = {"appengine": 24 * 3600.0 + 15.0, "http": 30 * 60.0}
# The worker route that sends one webhook delivery (worker/webhooks.py).
WEBHOOK_PATH = "/tasks/webhook"
_RETRYABLE = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError)
# Cloud Tasks' limits per batch call.
BATCH_CREATE_MAX = 100
BATCH_DELETE_MAX = 1000
_ALREADY_EXISTS = 6  # google.rpc.Code
_NOT_FOUND = 5

# Why an enqueue used to give up while Cloud Tasks was back: after a lost connection
# gRPC waits 1 s, 1.6 s, 2.6 s, 4.1 s ... (jittered) between reconnect attempts, and an
# RPC made meanwhile fails at once with UNAVAILABLE; the retry spent its budget on such
# instant failures and gave up before the next reconnect. Reconnect attempts at most a
# second apart, and waitForReady (the service config's own switch) so that an RPC waits
# for the connection within its deadline instead of failing fast.
_SERVICE_CONFIG = {
    "methodConfig": [
        {"name": [{"service": "google.cloud.tasks.v2.CloudTasks"}], "waitForReady": True}
    ]
}
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]
# Errors that say Cloud Tasks is unreachable (the breaker counts them); any other answer
# means it is up, even a refusal.
_UNAVAILABLE = (*_RETRYABLE, gexc.RetryError)


def dispatch_deadline_for(budget_seconds: float, margin_seconds: float, target: str) -> float:
    """The task's dispatch_deadline: the job's budget plus a margin, in Cloud Tasks' range."""
    return min(max(budget_seconds + margin_seconds, _MIN_DISPATCH), _MAX_DISPATCH[target])


class TaskQueue:
    """The queues jobs are enqueued on: the default one and those job types name."""

    def __init__(self, settings: Settings, *, client: Any = None) -> None:
        """A queue per ``settings``; ``client`` replaces the Cloud Tasks client (tests)."""
        self.target = settings.task_target
        self.worker_service = settings.worker_service
        self.worker_url = settings.worker_url.rstrip("/")
        self.task_path = settings.task_path
        self.service_account = settings.task_service_account
        self.audience = settings.oidc_audience or self.worker_url
        self.timeout = settings.enqueue_timeout_seconds
        self.margin = settings.dispatch_margin_seconds
        # A run lasts at most one slice however long the job's budget: so does a dispatch.
        self.slice = settings.slice_seconds
        if self.target == "http" and not (self.worker_url and self.service_account):
            raise ConfigError(
                "HTTP targets need OFFLOAD_WORKER_URL and OFFLOAD_TASK_SERVICE_ACCOUNT"
            )
        self.probe_timeout = min(settings.breaker_probe_timeout_seconds, self.timeout)
        # Read by web's readiness check: closed, open or half-open.
        self.breaker = CircuitBreaker(
            failure_threshold=settings.breaker_failure_threshold,
            reset_seconds=settings.breaker_reset_seconds,
        )
        emulator = settings.tasks_emulator_host
        self._channel: grpc.Channel | None = None
        if client is not None:
            self.client = client
        else:
            if emulator:
                self._channel = grpc.insecure_channel(emulator, options=CHANNEL_OPTIONS)
            else:
                self._channel = CloudTasksGrpcTransport.create_channel(
                    "cloudtasks.googleapis.com:443", options=CHANNEL_OPTIONS
                )
            transport = CloudTasksGrpcTransport(channel=self._channel)
            self.client = tasks_v2.CloudTasksClient(transport=transport)
        self.project, self.location = settings.project_id, settings.location
        self.queue_path = self.path_of(settings.queue)
        self._retry = gretry.Retry(
            initial=0.1,
            maximum=1.0,
            multiplier=2.0,
            timeout=self.timeout,
            predicate=gretry.if_exception_type(*_RETRYABLE),
        )

    def path_of(self, queue: str | None) -> str:
        """The full resource name of queue id ``queue`` (None: the default queue)."""
        if not queue:
            return self.queue_path
        path: str = self.client.queue_path(
            project=self.project, location=self.location, queue=queue
        )
        return path

    def task_name(self, task_id: str, queue: str | None = None) -> str:
        """The full resource name of a task of ``queue`` (None: the default queue)."""
        return f"{self.path_of(queue)}/tasks/{task_id}"

    def _task(
        self,
        name: str,
        envelope: TaskEnvelope,
        headers: Mapping[str, str],
        budget_seconds: float,
        schedule_time: dt.datetime | None,
        path: str | None,
    ) -> tasks_v2.Task:
        """The task named ``name`` that pushes ``envelope`` to the worker."""
        all_headers = {"Content-Type": "application/json", **headers}
        task = tasks_v2.Task(
            name=name,
            dispatch_deadline=duration_pb2.Duration(
                seconds=int(
                    dispatch_deadline_for(min(budget_seconds, self.slice), self.margin, self.target)
                )
            ),
        )
        if self.target == "appengine":
            task.app_engine_http_request = tasks_v2.AppEngineHttpRequest(
                http_method=tasks_v2.HttpMethod.POST,
                app_engine_routing=tasks_v2.AppEngineRouting(service=self.worker_service),
                relative_uri=path or self.task_path,
                headers=all_headers,
                body=envelope.encode(),
            )
        else:
            task.http_request = tasks_v2.HttpRequest(
                http_method=tasks_v2.HttpMethod.POST,
                url=self.worker_url + (path or self.task_path),
                headers=all_headers,
                body=envelope.encode(),
                oidc_token=tasks_v2.OidcToken(
                    service_account_email=self.service_account, audience=self.audience
                ),
            )
        if schedule_time is not None:
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(schedule_time)
            task.schedule_time = stamp
        return task

    def enqueue(
        self,
        *,
        task_id: str,
        envelope: TaskEnvelope,
        headers: Mapping[str, str],
        budget_seconds: float,
        schedule_time: dt.datetime | None = None,
        path: str | None = None,
        queue: str | None = None,
        name: str | None = None,
    ) -> str:
        """Create the task; an ``ALREADY_EXISTS`` (a retried enqueue) counts as done.

        ``name`` (a full task name, which names its queue) overrides ``task_id``/``queue``.
        """
        name = name or self.task_name(task_id, queue)
        task = self._task(name, envelope, headers, budget_seconds, schedule_time, path)
        try:
            self._call(self.client.create_task, parent=queue_of(name), task=task)
        except gexc.AlreadyExists:
            log.info("task %s already exists: an earlier enqueue of this job succeeded", name)
        except gexc.GoogleAPICallError as e:
            raise EnqueueError(f"Cloud Tasks refused the task: {e.code} {e.message}") from e
        return name

    def _call(self, method: Any, **kwargs: Any) -> Any:
        """One RPC through the breaker: refused at once while Cloud Tasks is known down."""
        state = self.breaker.allow()
        if state is None:
            raise CloudTasksUnavailableError("Cloud Tasks is unreachable (circuit open)")
        if state == HALF_OPEN:
            # The trial after an outage runs in the background with a short timeout, so no
            # request waits on a Cloud Tasks that may still be dead; this caller's work is
            # left to the reconciler (if the trial made its task, that is ALREADY_EXISTS).
            threading.Thread(
                target=self._attempt,
                args=(method, self.probe_timeout),
                kwargs=kwargs,
                name="offload-breaker-trial",
                daemon=True,
            ).start()
            raise CloudTasksUnavailableError("Cloud Tasks was unreachable; trying it again")
        return self._attempt(method, self.timeout, **kwargs)

    def _attempt(self, method: Any, timeout: float, **kwargs: Any) -> Any:
        retry = self._retry.with_timeout(timeout)
        try:
            result = method(retry=retry, timeout=timeout, **kwargs)
        except _UNAVAILABLE as e:
            self.breaker.record_failure()
            raise CloudTasksUnavailableError(
                f"Cloud Tasks did not answer within {timeout:g}s: {type(e).__name__}"
            ) from e
        except BaseException:
            self.breaker.record_success()  # it answered, if only to refuse
            raise
        self.breaker.record_success()
        return result

    def enqueue_webhook(self, *, task_id: str, delivery_id: str, headers: Mapping[str, str]) -> str:
        """Create the task that sends one webhook delivery (the worker signs at send time)."""
        envelope = TaskEnvelope.for_webhook(delivery_id)
        return self.enqueue(
            task_id=task_id, envelope=envelope, headers=headers, budget_seconds=0, path=WEBHOOK_PATH
        )

    def enqueue_many(self, specs: Sequence[TaskSpec]) -> list[EnqueueError | None]:
        """Create many tasks with BatchCreateTasks (100 per call, one queue per call).

        Answers one entry per spec, in order: None when the task exists now (an
        ``ALREADY_EXISTS`` counts as done), else the EnqueueError of that task alone.
        """
        outcome: list[EnqueueError | None] = [None] * len(specs)
        by_queue: dict[str, list[int]] = {}
        for i, spec in enumerate(specs):
            by_queue.setdefault(queue_of(spec.name), []).append(i)
        for parent, indexes in by_queue.items():
            for start in range(0, len(indexes), BATCH_CREATE_MAX):
                chunk = indexes[start : start + BATCH_CREATE_MAX]
                errors = self._create_batch(parent, [specs[i] for i in chunk])
                for i, error in zip(chunk, errors, strict=True):
                    outcome[i] = error
        return outcome

    def _create_batch(self, parent: str, specs: Sequence[TaskSpec]) -> list[EnqueueError | None]:
        tasks = [
            self._task(s.name, s.envelope, s.headers, s.budget_seconds, s.schedule_time, None)
            for s in specs
        ]
        if not hasattr(self.client, "batch_create_tasks"):  # the in-memory client of unit tests
            return [self._create_one(parent, t) for t in tasks]
        request = tasks_v2.BatchCreateTasksRequest(
            parent=parent,
            requests=[tasks_v2.CreateTaskRequest(parent=parent, task=t) for t in tasks],
            # The same id on the library's retries: Cloud Tasks does the batch once.
            request_id=uuid.uuid4().hex,
        )
        try:
            operation = self._call(self.client.batch_create_tasks, request=request)
            operation.result(timeout=self.timeout)
        except EnqueueError as e:
            return [e] * len(tasks)
        except (gexc.GoogleAPICallError, gexc.RetryError, TimeoutError) as e:
            error = EnqueueError(f"Cloud Tasks refused the batch of {len(tasks)} tasks: {e}")
            return [error] * len(tasks)
        failed = operation.metadata.failed_requests if operation.metadata else {}
        errors: list[EnqueueError | None] = []
        for i in range(len(tasks)):
            status = failed.get(i)
            if status is None or status.code == _ALREADY_EXISTS:
                errors.append(None)
            else:
                errors.append(EnqueueError(f"Cloud Tasks refused the task: {status.message}"))
        return errors

    def _create_one(self, parent: str, task: tasks_v2.Task) -> EnqueueError | None:
        try:
            self._call(self.client.create_task, parent=parent, task=task)
        except gexc.AlreadyExists:
            return None
        except EnqueueError as e:
            return e
        except (gexc.GoogleAPICallError, gexc.RetryError) as e:
            return EnqueueError(f"Cloud Tasks refused the task: {e}")
        return None

    def delete_many(self, task_names: Sequence[str]) -> int:
        """Delete tasks with BatchDeleteTasks (1,000 per call); how many were deleted.

        A task that no longer exists (it ran, or was deleted) is no error.
        """
        by_queue: dict[str, list[str]] = {}
        for name in task_names:
            by_queue.setdefault(queue_of(name), []).append(name)
        deleted = 0
        for parent, names in by_queue.items():
            for start in range(0, len(names), BATCH_DELETE_MAX):
                chunk = names[start : start + BATCH_DELETE_MAX]
                if not hasattr(self.client, "batch_delete_tasks"):
                    deleted += sum(self.delete(n) for n in chunk)
                    continue
                request = tasks_v2.BatchDeleteTasksRequest(
                    parent=parent, names=chunk, request_id=uuid.uuid4().hex
                )
                try:
                    operation = self.client.batch_delete_tasks(
                        request=request, retry=self._retry, timeout=self.timeout
                    )
                    operation.result(timeout=self.timeout)
                except (gexc.GoogleAPICallError, gexc.RetryError, TimeoutError) as e:
                    raise EnqueueError(f"could not delete {len(chunk)} tasks: {e}") from e
                failed = operation.metadata.failed_requests if operation.metadata else {}
                deleted += len(chunk) - len(failed)
        return deleted

    def delete(self, task_name: str) -> bool:
        """Delete a task; False when it no longer exists (ran or was deleted already)."""
        try:
            self._call(self.client.delete_task, name=task_name)
        except gexc.NotFound:
            return False
        except gexc.GoogleAPICallError as e:
            raise EnqueueError(f"could not delete task {task_name}: {e}") from e
        return True

    def exists(self, task_name: str) -> bool:
        """Whether Cloud Tasks holds this task (False once it ran, was deleted or lost)."""
        try:
            self._call(self.client.get_task, name=task_name)
        except gexc.NotFound:
            return False
        except gexc.GoogleAPICallError as e:
            raise EnqueueError(f"could not read task {task_name}: {e}") from e
        return True

    def close(self) -> None:
        """Close the gRPC channel."""
        if self._channel is not None:
            self._channel.close()
