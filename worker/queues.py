"""The queues the worker takes pushes from: OFFLOAD_QUEUE and those its job types name."""

from __future__ import annotations

import os

import yaml

from offload.errors import ConfigError
from offload.registry import JobRegistry
from offload.requestctx import HeaderMap
from offload.settings import Settings
from worker.auth import configured_queues

__all__ = ["check_queues", "declared_queues", "push_queue"]

# The header Cloud Tasks sets on a push, per target (clients cannot forge App Engine's).
_QUEUE_HEADER = {"appengine": "X-AppEngine-QueueName", "http": "X-CloudTasks-QueueName"}


def declared_queues(settings: Settings, registry: JobRegistry) -> frozenset[str]:
    """Every queue a job of this worker is enqueued on: OFFLOAD_QUEUE's and the types'."""
    return configured_queues(settings) | {t.queue for t in registry if t.queue}


def push_queue(headers: HeaderMap, target: str) -> str:
    """The queue a push names in its target's header ("" when it names none)."""
    return headers.get(_QUEUE_HEADER[target], "")


def check_queues(settings: Settings, registry: JobRegistry) -> None:
    """Refuse job types routed to a queue that queue.yaml (when present) does not declare.

    Uploading a queue.yaml disables every queue it omits (App Engine), and the emulator
    loads only its queues: a type on another queue would never run.
    """
    path = settings.queue_yaml
    if not path or not os.path.exists(path):
        return  # Cloud Run: the queues are created by API (docs/DEPLOY.md)
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not YAML: {e}") from None
    names = {q.get("name") for q in data.get("queue") or [] if isinstance(q, dict)}
    missing = sorted(declared_queues(settings, registry) - names)
    if missing:
        users = [t.name for t in registry if (t.queue or settings.queue) in missing]
        raise ConfigError(
            f"queues {', '.join(missing)} (of job types {', '.join(users)}) are not in {path}"
        )
