"""De-duplication: names stay taken while a task exists and for a while after."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from tests.emulator.conftest import PARENT, Emulator, Handler

RECENT = (
    "The task no longer exists, though a task with this name existed recently. "
    "The task either successfully completed or was deleted."
)


def named(queue: str, task_id: str, url: str) -> tasks_v2.Task:
    return tasks_v2.Task(
        name=f"{queue}/tasks/{task_id}", http_request=tasks_v2.HttpRequest(url=url)
    )


def gone(emulator: Emulator, name: str) -> str:
    deadline = time.monotonic() + 5
    while True:
        try:
            emulator.client.get_task(name=name)
        except exceptions.NotFound as e:
            return str(e.message)
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_name_is_taken_while_the_task_exists_and_after_it_ran(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    emulator.client.pause_queue(name=queue)
    task = named(queue, "once", handler.url + handler.path())
    emulator.client.create_task(parent=queue, task=task)
    with pytest.raises(exceptions.AlreadyExists) as e:
        emulator.client.create_task(parent=queue, task=task)
    assert e.value.message == "Requested entity already exists"
    emulator.client.resume_queue(name=queue)
    assert gone(emulator, task.name) == RECENT
    with pytest.raises(exceptions.AlreadyExists):
        emulator.client.create_task(parent=queue, task=task)


def test_a_deleted_task_name_is_tombstoned(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    emulator.client.pause_queue(name=queue)
    task = named(queue, "deleted", handler.url + "/x")
    emulator.client.create_task(parent=queue, task=task)
    emulator.client.delete_task(name=task.name)
    with pytest.raises(exceptions.NotFound) as e:
        emulator.client.get_task(name=task.name)
    assert e.value.message == RECENT
    with pytest.raises(exceptions.AlreadyExists):
        emulator.client.create_task(parent=queue, task=task)


def test_admin_endpoint_releases_names(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue, other = make_queue(), make_queue()
    for q in (queue, other):
        emulator.client.pause_queue(name=q)
        emulator.client.create_task(parent=q, task=named(q, "reuse", handler.url + "/x"))
        emulator.client.delete_task(name=f"{q}/tasks/reuse")
    released = emulator.post(f"/admin/release-names?queue={queue}")
    assert released == {"released": 1}
    emulator.client.create_task(parent=queue, task=named(queue, "reuse", handler.url + "/x"))
    with pytest.raises(exceptions.AlreadyExists):
        emulator.client.create_task(parent=other, task=named(other, "reuse", handler.url + "/x"))
    assert emulator.post("/admin/release-names")["released"] >= 1
    emulator.client.create_task(parent=other, task=named(other, "reuse", handler.url + "/x"))


def test_releasing_names_also_frees_deleted_queue_names(emulator: Emulator) -> None:
    name = f"{PARENT}/queues/released-queue"
    emulator.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))
    emulator.client.delete_queue(name=name)
    emulator.post("/admin/release-names", b'{"queue": "%s"}' % name.encode())
    emulator.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))


def test_tombstones_expire_after_the_configured_window(
    start_emulator: Callable[..., Emulator], handler: Handler
) -> None:
    emu = start_emulator("--tombstone-seconds", "0.5")
    queue = f"{PARENT}/queues/short-memory"
    emu.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=queue))
    task = named(queue, "again", handler.url + handler.path())
    emu.client.create_task(parent=queue, task=task)
    assert gone(emu, task.name) == RECENT
    time.sleep(0.6)
    with pytest.raises(exceptions.NotFound) as e:
        emu.client.get_task(name=task.name)
    assert e.value.message == "Requested entity was not found."
    emu.client.create_task(parent=queue, task=task)


def test_tombstone_seconds_zero_disables_deduplication_after_completion(
    start_emulator: Callable[..., Emulator], handler: Handler
) -> None:
    emu = start_emulator("--tombstone-seconds", "0")
    queue = f"{PARENT}/queues/no-memory"
    emu.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=queue))
    emu.client.pause_queue(name=queue)
    task = named(queue, "again", handler.url + "/x")
    emu.client.create_task(parent=queue, task=task)
    emu.client.delete_task(name=task.name)
    emu.client.create_task(parent=queue, task=task)


def test_name_windows_default_to_the_reference_4_hours_and_9_days(
    start_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    (tmp_path / "queue.yaml").write_text("queue:\n- name: from-yaml\n")
    emu = start_emulator("--queue-yaml", str(tmp_path / "queue.yaml"))
    emu.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=f"{PARENT}/queues/from-api"))
    with urllib.request.urlopen(f"{emu.http}/admin/queues", timeout=10) as r:
        windows = {q["name"].rsplit("/", 1)[1]: q["tombstone_seconds"] for q in json.load(r)}
    assert windows == {"from-yaml": 9 * 24 * 3600, "from-api": 4 * 3600}
