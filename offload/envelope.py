"""A task's body (its envelope) and what a batch creates: the shape of a task, no client.

The body is small JSON naming the job (id, type, request id); the payload stays in the
store. :class:`TaskSpec` is one task of a BatchCreateTasks call (``TaskQueue.enqueue_many``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from offload.errors import EnvelopeError
from offload.ids import is_job_id

__all__ = ["TaskEnvelope", "TaskSpec", "queue_of"]

_ENVELOPE_KEYS = frozenset({"job_id", "type", "request_id"})


class TaskEnvelope(dict[str, str]):
    """A task's small JSON body: job id, type, request id (the payload stays in the store)."""

    @classmethod
    def make(cls, *, job_id: str, job_type: str, request_id: str) -> TaskEnvelope:
        """Build an envelope from its three ids."""
        return cls(job_id=job_id, type=job_type, request_id=request_id)

    def encode(self) -> bytes:
        """The task body."""
        return json.dumps(self, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, body: bytes) -> TaskEnvelope:
        """The envelope in a task body; :class:`EnvelopeError` if it is not one."""
        data = _json_object(body)
        job_id = data.get("job_id")
        if not isinstance(job_id, str) or not is_job_id(job_id):
            raise EnvelopeError("the task body names no job id")
        return cls({k: v for k, v in data.items() if k in _ENVELOPE_KEYS and isinstance(v, str)})

    @classmethod
    def for_webhook(cls, delivery_id: str) -> TaskEnvelope:
        """The envelope of a webhook delivery's task (the worker's /tasks/webhook)."""
        return cls(delivery_id=delivery_id)

    @classmethod
    def decode_webhook(cls, body: bytes) -> str:
        """The delivery id in a webhook task's body; :class:`EnvelopeError` if none."""
        delivery_id = _json_object(body).get("delivery_id")
        if not isinstance(delivery_id, str) or not 0 < len(delivery_id) <= 40:
            raise EnvelopeError("the task body names no webhook delivery")
        return delivery_id

    @property
    def job_id(self) -> str:
        """The id of the job to run."""
        return self["job_id"]

    @property
    def job_type(self) -> str | None:
        """The job's type, as the submitter recorded it (for log labels)."""
        return self.get("type")


@dataclass(frozen=True)
class TaskSpec:
    """One task to create in a batch: its full name (which names its queue) and request."""

    name: str
    envelope: TaskEnvelope
    headers: Mapping[str, str]
    budget_seconds: float
    schedule_time: dt.datetime | None = None


def queue_of(task_name: str) -> str:
    """The queue path a full task name belongs to."""
    return task_name.rsplit("/tasks/", 1)[0]


def _json_object(body: bytes) -> dict[str, Any]:
    """The task body as a JSON object; :class:`EnvelopeError` if it is not one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise EnvelopeError(f"the task body is not JSON ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise EnvelopeError("the task body is not a JSON object")
    return data
