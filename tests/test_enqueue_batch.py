"""Many tasks at once: BatchCreateTasks, 100 per call, on the real emulator."""

from __future__ import annotations

import datetime as dt
from typing import Any

from offload.enqueue import BATCH_CREATE_MAX, TaskQueue
from offload.envelope import TaskEnvelope, TaskSpec
from offload.ids import new_job_id, task_id_for
from offload.settings import load_settings
from offload.store import utcnow
from tests.processes import LOCATION, PROJECT, QUEUE, Stack


def test_250_tasks_go_in_three_batch_calls_of_100_100_and_50(emulator: Stack) -> None:
    tasks = TaskQueue(
        load_settings(
            {
                "PROJECT_ID": PROJECT,
                "LOCATION": LOCATION,
                "QUEUE": QUEUE,
                "TASKS_EMULATOR_HOST": f"127.0.0.1:{emulator.emulator_port}",
            },
            environ={},
        )
    )
    sizes: list[int] = []
    batch = tasks.client.batch_create_tasks

    def spy(*args: Any, request: Any, **kw: Any) -> Any:
        sizes.append(len(request.requests))
        return batch(*args, request=request, **kw)

    tasks.client.batch_create_tasks = spy  # type: ignore[method-assign]
    later = utcnow() + dt.timedelta(hours=1)  # nothing is pushed while the test looks
    ids = [new_job_id() for _ in range(250)]
    specs = [
        TaskSpec(
            name=tasks.task_name(task_id_for(job_id)),
            envelope=TaskEnvelope.make(job_id=job_id, job_type="demo.echo", request_id="r"),
            headers={},
            budget_seconds=10,
            schedule_time=later,
        )
        for job_id in ids
    ]
    try:
        assert tasks.enqueue_many(specs) == [None] * 250
        assert BATCH_CREATE_MAX == 100 and sizes == [100, 100, 50]
        # Every task is there under its own name; a repeat is ALREADY_EXISTS, i.e. done.
        for spec in specs[::50]:
            assert tasks.client.get_task(name=spec.name).name == spec.name
        assert tasks.enqueue_many(specs[:3]) == [None] * 3
    finally:
        emulator.tasks_client().purge_queue(name=tasks.queue_path)
        tasks.close()
