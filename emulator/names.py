"""Resource names: parsing, validation and generated task ids."""

from __future__ import annotations

import random
import re

from emulator.errors import BAD_TASK_ID, TASK_NAME_FORMAT, invalid

_LOCATION = re.compile(r"^projects/([A-Za-z0-9._:-]+)/locations/([A-Za-z0-9-]+)$")
_QUEUE = re.compile(r"^(projects/[A-Za-z0-9._:-]+/locations/[A-Za-z0-9-]+)/queues/([^/]*)$")
_TASK = re.compile(r"^(projects/[^/]+/locations/[^/]+/queues/[^/]+)/tasks/([^/]*)$")
_QUEUE_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")

_random = random.SystemRandom()


def check_location(parent: str) -> str:
    """Validate ``projects/P/locations/L`` and return it."""
    if not _LOCATION.match(parent):
        raise invalid(f'Invalid resource field value in the request: "{parent}".')
    return parent


def split_queue(name: str) -> tuple[str, str]:
    """Split a queue name into (location name, queue id), validating both."""
    m = _QUEUE.match(name)
    if not m:
        raise invalid(f'Invalid resource field value in the request: "{name}".')
    if not _QUEUE_ID.match(m.group(2)):
        raise invalid(
            f'Queue ID "{m.group(2)}" can contain only letters ([A-Za-z]), numbers ([0-9]), '
            "or hyphens (-). Queue ID must be between 1 and 100 characters."
        )
    return m.group(1), m.group(2)


def split_task(name: str) -> tuple[str, str]:
    """Split a task name into (queue name, task id), validating the task id."""
    m = _TASK.match(name)
    if not m:
        raise invalid(TASK_NAME_FORMAT)
    task_id = m.group(2)
    if not _TASK_ID.match(task_id):
        raise invalid(BAD_TASK_ID.format(id=task_id))
    return m.group(1), task_id


def short_id(name: str) -> str:
    """The last path segment of a resource name."""
    return name.rsplit("/", 1)[-1]


def new_task_id() -> str:
    """A generated task id; real Cloud Tasks generates long decimal numbers too."""
    return str(_random.randrange(10**18, 10**19))
