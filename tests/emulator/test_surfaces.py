"""Batch calls with their operations, IAM and CMEK on every surface but v2 gRPC.

v2 over gRPC has its own tests; these prove the other surfaces (v2 REST, v2beta3 gRPC
and REST) reach the same calls with no code of their own per call.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from google.cloud import tasks_v2

from tests.emulator.clients import SURFACES, module, surface_fixture
from tests.emulator.conftest import PARENT, Emulator, Handler

surface = surface_fixture([s for s in SURFACES if s != ("v2", "grpc")])
_ids = itertools.count()


def paused_queue(emulator: Emulator) -> str:
    name = f"{PARENT}/queues/surf{next(_ids)}-{int(time.time() * 1000) % 10**8}"
    emulator.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))
    emulator.client.pause_queue(name=name)
    return name


def test_batch_create_and_delete_with_their_operations(
    surface: tuple[str, Any], emulator: Emulator, handler: Handler
) -> None:
    version, c = surface
    mod = module(version)
    queue = paused_queue(emulator)
    task = {"name": f"{queue}/tasks/a", "http_request": {"url": handler.url + "/x"}}
    op = c.batch_create_tasks(
        request={"parent": queue, "requests": [{"parent": queue, "task": task}] * 2}
    )
    result = op.result(timeout=10)  # polls GetOperation: the first answer is not done
    assert isinstance(result, mod.BatchCreateTasksResponse)
    assert [t.name for t in result.tasks] == [f"{queue}/tasks/a"]
    meta = op.metadata
    assert isinstance(meta, mod.BatchCreateTasksMetadata)
    assert meta.state == mod.BatchCreateTasksMetadata.State.PARTIALLY_SUCCEEDED
    assert list(meta.failed_requests) == [1]
    assert meta.failed_requests[1].code == 6  # ALREADY_EXISTS
    assert emulator.client.get_task(name=f"{queue}/tasks/a").name == f"{queue}/tasks/a"
    op = c.batch_delete_tasks(
        request={"parent": queue, "names": [f"{queue}/tasks/a", f"{queue}/tasks/gone"]}
    )
    op.result(timeout=10)
    assert op.metadata.failed_requests[1].code == 5  # NOT_FOUND
    assert list(emulator.client.list_tasks(parent=queue)) == []


def test_iam_policy_and_permissions(surface: tuple[str, Any], emulator: Emulator) -> None:
    _, c = surface
    queue = paused_queue(emulator)
    binding = {"role": "roles/cloudtasks.enqueuer", "members": ["user:ann@example.com"]}
    c.set_iam_policy(request={"resource": queue, "policy": {"bindings": [binding]}})
    seen = emulator.client.get_iam_policy(resource=queue)
    assert [(b.role, list(b.members)) for b in seen.bindings] == [
        ("roles/cloudtasks.enqueuer", ["user:ann@example.com"])
    ]
    assert c.get_iam_policy(resource=queue).bindings[0].role == "roles/cloudtasks.enqueuer"
    allowed = c.test_iam_permissions(
        request={"resource": queue, "permissions": ["cloudtasks.tasks.create"]}
    )
    assert list(allowed.permissions) == ["cloudtasks.tasks.create"]


def test_cmek_config(surface: tuple[str, Any], emulator: Emulator) -> None:
    _, c = surface
    got = c.get_cmek_config(name=f"{PARENT}/cmekConfig")
    assert got.name == f"{PARENT}/cmekConfig"
