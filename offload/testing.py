"""An in-memory stand-in for the Cloud Tasks client, for fast unit tests of ``web``.

Like dramatiq's ``StubBroker``: the real :class:`~offload.enqueue.TaskQueue` runs on top
of it, so everything above the client (task names, envelopes, errors) is the code that
runs in production. It keeps tasks in a dict and answers as Cloud Tasks does
(``ALREADY_EXISTS`` for a name in use or used recently, ``NOT_FOUND`` for a missing
task); it dispatches nothing. End-to-end tests use the real emulator instead.

    app = web.create_app(config, tasks_client=InMemoryCloudTasks())
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

__all__ = ["InMemoryCloudTasks"]


def _error(kind: type[gexc.GoogleAPICallError], message: str) -> gexc.GoogleAPICallError:
    """The google.api_core error the real client raises for that gRPC status."""
    return kind(message)


class InMemoryCloudTasks:
    """The calls of ``tasks_v2.CloudTasksClient`` that Offload makes, kept in memory."""

    queue_path = staticmethod(tasks_v2.CloudTasksClient.queue_path)
    task_path = staticmethod(tasks_v2.CloudTasksClient.task_path)

    def __init__(self) -> None:
        self.tasks: dict[str, tasks_v2.Task] = {}
        self.gone: set[str] = set()  # names deleted or run: reserved, as in Cloud Tasks
        self.unavailable = False  # set to answer every call UNAVAILABLE (an outage)
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.unavailable:
            raise _error(gexc.ServiceUnavailable, "the in-memory Cloud Tasks is unavailable")

    def create_task(self, *, parent: str, task: tasks_v2.Task, **_options: Any) -> tasks_v2.Task:
        """Store ``task`` under ``parent``; a used name is ALREADY_EXISTS."""
        self._call("create_task")
        with self._lock:
            name = task.name or f"{parent}/tasks/{next(self._ids)}"
            if not name.startswith(parent + "/tasks/"):
                raise _error(gexc.InvalidArgument, "the task's name is not in the parent queue")
            if name in self.tasks or name in self.gone:
                raise _error(gexc.AlreadyExists, "Requested entity already exists")
            stored = tasks_v2.Task(task)
            stored.name = name
            self.tasks[name] = stored
            return stored

    def get_task(self, *, name: str, **_options: Any) -> tasks_v2.Task:
        """The task called ``name``, or NOT_FOUND."""
        self._call("get_task")
        with self._lock:
            if name not in self.tasks:
                raise _error(gexc.NotFound, "Requested entity was not found.")
            return self.tasks[name]

    def delete_task(self, *, name: str, **_options: Any) -> None:
        """Delete the task called ``name``; its name stays reserved."""
        self._call("delete_task")
        with self._lock:
            if self.tasks.pop(name, None) is None:
                raise _error(gexc.NotFound, "Requested entity was not found.")
            self.gone.add(name)

    def get_queue(self, *, name: str, **_options: Any) -> tasks_v2.Queue:
        """A running queue called ``name`` (the console reads its state)."""
        self._call("get_queue")
        return tasks_v2.Queue(
            name=name,
            state=tasks_v2.Queue.State.RUNNING,
            rate_limits=tasks_v2.RateLimits(
                max_dispatches_per_second=500, max_concurrent_dispatches=1000
            ),
        )

    def list_tasks(self, *, request: dict[str, Any], **_options: Any) -> tasks_v2.ListTasksResponse:
        """Every task of the queue, on one page."""
        self._call("list_tasks")
        prefix = str(request["parent"]) + "/tasks/"
        with self._lock:
            tasks = [t for n, t in self.tasks.items() if n.startswith(prefix)]
        return tasks_v2.ListTasksResponse(tasks=tasks)

    def run(self, name: str) -> tasks_v2.Task:
        """Take a task out as if Cloud Tasks had dispatched it successfully."""
        with self._lock:
            task = self.tasks.pop(name)
            self.gone.add(name)
            return task
