"""SIGKILL of the emulator loses nothing it acknowledged (the data file is written first)."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import timestamp_pb2

from tests.emulator.conftest import PARENT, Emulator, Handler

TASKS = 1000
THREADS = 4


def _task(queue: str, url: str, i: int) -> tasks_v2.Task:
    task = tasks_v2.Task(
        name=f"{queue}/tasks/t{i}",
        http_request=tasks_v2.HttpRequest(url=url, body=b"%d" % i),
    )
    if i % 5 == 0:  # every fifth task is delayed past the kill and the restart
        when = timestamp_pb2.Timestamp()
        when.FromNanoseconds(int((time.time() + 1.5) * 1e9))
        task.schedule_time = when
    return task


def _create_all(
    emu: Emulator, queue: str, url: str, todo: list[int], *, retry: bool = False
) -> set[int]:
    """Create ``todo`` over a few threads until done (or the emulator dies); the acknowledged.

    With ``retry`` a call that timed out (a loaded machine) is tried again, up to 5 times.
    """
    acked: set[int] = set()
    lock = threading.Lock()

    def work(k: int) -> None:
        for i in todo[k::THREADS]:
            for _ in range(5 if retry else 1):
                try:
                    emu.client.create_task(parent=queue, task=_task(queue, url, i), timeout=10)
                except exceptions.AlreadyExists:
                    pass  # made before the kill: stored, so it counts as acknowledged
                except (exceptions.DeadlineExceeded, exceptions.ServiceUnavailable):
                    continue
                except (exceptions.GoogleAPICallError, ValueError):
                    return  # the emulator is gone (or its channel closed): not acknowledged
                with lock:
                    acked.add(i)
                break
            else:
                return

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acked


def test_sigkill_at_a_random_moment_loses_no_acknowledged_task(
    start_emulator: Callable[..., Emulator], handler: Handler, tmp_path: Path
) -> None:
    data = tmp_path / "emulator.sqlite3"
    emu = start_emulator("--data-file", str(data))
    queue = f"{PARENT}/queues/sigkill"
    emu.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=queue))
    path = handler.path()
    url = handler.url + path

    # A random moment (printed); SIGKILL_AFTER_SECONDS=1.7 replays one.
    kill_after = float(os.environ.get("SIGKILL_AFTER_SECONDS") or random.uniform(0.2, 1.8))
    killer = threading.Timer(kill_after, emu.kill)
    killer.start()
    acked = _create_all(emu, queue, url, list(range(TASKS)))
    killer.join()
    assert emu.proc.returncode == -9
    print(f"killed after {kill_after:.2f}s with {len(acked)} tasks acknowledged")

    again = start_emulator("--data-file", str(data))
    missing = [i for i in range(TASKS) if i not in acked]
    acked |= _create_all(again, queue, url, missing, retry=True)
    assert sorted(set(range(TASKS)) - acked) == []

    deadline = time.monotonic() + 60
    received: set[int] = set()
    while time.monotonic() < deadline:
        received = {int(s.body) for s in handler.requests(path)}
        if received >= acked:
            break
        time.sleep(0.1)
    lost = sorted(acked - received)
    if lost:
        states = []
        for i in lost[:5]:
            try:
                t = again.client.get_task(name=f"{queue}/tasks/t{i}")
                states.append(f"t{i}: pending, {t.dispatch_count} dispatches, {t.last_attempt}")
            except exceptions.NotFound as e:
                states.append(f"t{i}: {e.message}")
        raise AssertionError(f"{len(lost)} acknowledged tasks never delivered: {states}")


def test_outcomes_written_before_a_sigkill_are_kept(
    start_emulator: Callable[..., Emulator], handler: Handler, tmp_path: Path
) -> None:
    data = tmp_path / "emulator.sqlite3"
    emu = start_emulator("--data-file", str(data))
    queue = f"{PARENT}/queues/outcomes"
    emu.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=queue))
    path = handler.path(500)  # the first attempt fails, the second succeeds
    url = handler.url + path
    emu.client.create_task(parent=queue, task=_task(queue, url, 1))
    handler.wait(path, 2)
    deadline = time.monotonic() + 10
    while list(emu.client.list_tasks(parent=queue)) and time.monotonic() < deadline:
        time.sleep(0.02)  # the success is recorded on the next turn of the emulator's loop
    emu.kill()
    again = start_emulator("--data-file", str(data))
    assert list(again.client.list_tasks(parent=queue)) == []
    try:
        again.client.get_task(name=f"{queue}/tasks/t1")
    except exceptions.NotFound as e:
        assert "existed recently" in e.message  # the success, tombstone and all, was kept
    else:
        raise AssertionError("the finished task came back")
