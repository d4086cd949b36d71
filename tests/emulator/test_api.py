"""The API surface through the real google-cloud-tasks client: queues, tasks, errors."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2, timestamp_pb2

from tests.emulator.conftest import PARENT, Emulator, Handler, seconds

QUEUE_MISSING = (
    "Queue does not exist. If you just created the queue, wait at least a minute for "
    "the queue to initialize."
)


def http_task(url: str, **kw: object) -> tasks_v2.Task:
    return tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=url, **kw))


def test_create_get_list_queue_with_defaults(emulator: Emulator) -> None:
    name = f"{PARENT}/queues/defaults-q"
    created = emulator.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))
    assert created.state == tasks_v2.Queue.State.RUNNING
    assert created.rate_limits.max_dispatches_per_second == 500
    assert created.rate_limits.max_burst_size == 100
    assert created.rate_limits.max_concurrent_dispatches == 1000
    assert created.retry_config.max_attempts == 100
    assert created.retry_config.min_backoff == dt.timedelta(seconds=0.1)
    assert created.retry_config.max_backoff == dt.timedelta(seconds=3600)
    assert created.retry_config.max_doublings == 16
    assert emulator.client.get_queue(name=name) == created
    names = [q.name for q in emulator.client.list_queues(parent=PARENT)]
    assert name in names


def test_create_queue_twice_is_already_exists(emulator: Emulator) -> None:
    name = f"{PARENT}/queues/twice"
    emulator.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))
    with pytest.raises(exceptions.AlreadyExists, match="Queue already exists"):
        emulator.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))


def test_recreating_a_deleted_queue_is_refused_for_a_while(emulator: Emulator) -> None:
    name = f"{PARENT}/queues/deleted-recently"
    emulator.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))
    emulator.client.delete_queue(name=name)
    with pytest.raises(exceptions.FailedPrecondition) as e:
        emulator.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))
    assert e.value.message == (
        "The queue cannot be created because a queue with this name existed too recently."
    )


def test_missing_queue_errors(emulator: Emulator, handler: Handler) -> None:
    name = f"{PARENT}/queues/never-made"
    for call in (
        emulator.client.get_queue,
        emulator.client.pause_queue,
        emulator.client.resume_queue,
        emulator.client.purge_queue,
    ):
        with pytest.raises(exceptions.NotFound) as e:
            call(name=name)
        assert e.value.message == QUEUE_MISSING
    with pytest.raises(exceptions.NotFound) as e:
        emulator.client.create_task(parent=name, task=http_task(handler.url))
    assert e.value.message == QUEUE_MISSING
    with pytest.raises(exceptions.NotFound) as e:
        emulator.client.delete_queue(name=name)
    assert e.value.message == "Requested entity was not found."


def test_bad_queue_id_is_invalid_argument(emulator: Emulator) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.create_queue(
            parent=PARENT, queue=tasks_v2.Queue(name=f"{PARENT}/queues/bad_id")
        )


def test_rate_limits_above_the_maximum_are_refused(emulator: Emulator) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.create_queue(
            parent=PARENT,
            queue=tasks_v2.Queue(
                name=f"{PARENT}/queues/too-fast",
                rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=501),
            ),
        )


def test_list_queues_pages(emulator: Emulator) -> None:
    parent = "projects/paging/locations/us-central1"
    for i in range(5):
        emulator.client.create_queue(
            parent=parent, queue=tasks_v2.Queue(name=f"{parent}/queues/p{i}")
        )
    first = emulator.client.list_queues(
        request=tasks_v2.ListQueuesRequest(parent=parent, page_size=2)
    )
    pages = list(first.pages)
    assert [len(p.queues) for p in pages] == [2, 2, 1]
    assert [q.name.rsplit("/", 1)[1] for p in pages for q in p.queues] == [
        f"p{i}" for i in range(5)
    ]


def test_update_queue_changes_only_masked_fields_and_creates_when_missing(
    emulator: Emulator,
) -> None:
    name = f"{PARENT}/queues/updatable"
    emulator.client.create_queue(
        parent=PARENT,
        queue=tasks_v2.Queue(
            name=name, rate_limits=tasks_v2.RateLimits(max_concurrent_dispatches=7)
        ),
    )
    updated = emulator.client.update_queue(
        queue=tasks_v2.Queue(
            name=name,
            rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=2),
            retry_config=tasks_v2.RetryConfig(max_attempts=3),
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"]),
    )
    assert updated.rate_limits.max_dispatches_per_second == 2
    assert updated.rate_limits.max_concurrent_dispatches == 7
    assert updated.retry_config.max_attempts == 100  # not in the mask
    made = emulator.client.update_queue(
        queue=tasks_v2.Queue(name=f"{PARENT}/queues/upserted"),
        update_mask=field_mask_pb2.FieldMask(paths=[]),
    )
    assert made.state == tasks_v2.Queue.State.RUNNING


def test_pause_resume_purge_report_state(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    name = make_queue()
    assert emulator.client.pause_queue(name=name).state == tasks_v2.Queue.State.PAUSED
    path = handler.path()
    for _ in range(3):
        emulator.client.create_task(parent=name, task=http_task(handler.url + path))
    assert len(list(emulator.client.list_tasks(parent=name))) == 3
    purged = emulator.client.purge_queue(name=name)
    assert purged.purge_time is not None
    assert list(emulator.client.list_tasks(parent=name)) == []
    assert emulator.client.resume_queue(name=name).state == tasks_v2.Queue.State.RUNNING
    assert handler.requests(path) == []


def test_task_id_rules(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    emulator.client.pause_queue(name=queue)
    with pytest.raises(exceptions.InvalidArgument) as e:
        emulator.client.create_task(
            parent=queue, task=tasks_v2.Task(name=f"{queue}/tasks/bad.id", **_http(handler))
        )
    assert e.value.message == (
        'Task ID "bad.id" can contain only letters ([A-Za-z]), numbers ([0-9]), hyphens (-), '
        "or underscores (_). Task ID must between 1 and 500 characters."
    )
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.create_task(
            parent=queue, task=tasks_v2.Task(name=f"{queue}/tasks/{'a' * 501}", **_http(handler))
        )
    ok = emulator.client.create_task(
        parent=queue, task=tasks_v2.Task(name=f"{queue}/tasks/{'a' * 500}", **_http(handler))
    )
    assert ok.name.endswith("a" * 500)
    generated = emulator.client.create_task(parent=queue, task=http_task(handler.url))
    assert generated.name.startswith(queue + "/tasks/")
    assert generated.name.rsplit("/", 1)[1].isdigit()


def _http(handler: Handler) -> dict[str, object]:
    return {"http_request": tasks_v2.HttpRequest(url=handler.url + "/x")}


def test_task_in_another_queue_than_parent_is_invalid(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    a, b = make_queue(), make_queue()
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.create_task(
            parent=a, task=tasks_v2.Task(name=f"{b}/tasks/t1", **_http(handler))
        )


def test_http_url_rules(emulator: Emulator, make_queue: Callable[..., str]) -> None:
    queue = make_queue()
    with pytest.raises(exceptions.InvalidArgument) as e:
        emulator.client.create_task(parent=queue, task=http_task("ftp://example.com/x"))
    assert e.value.message == "HttpTarget.url must start with 'http://' or 'https://'."
    with pytest.raises(exceptions.InvalidArgument) as e:
        emulator.client.create_task(
            parent=queue, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(body=b"x"))
        )
    assert e.value.message == "HttpRequest.url is required."


def test_body_only_with_methods_that_carry_one(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    emulator.client.pause_queue(name=queue)
    for method in (tasks_v2.HttpMethod.GET, tasks_v2.HttpMethod.DELETE, tasks_v2.HttpMethod.HEAD):
        with pytest.raises(exceptions.InvalidArgument):
            emulator.client.create_task(
                parent=queue, task=http_task(handler.url, http_method=method, body=b"x")
            )
    for method in (tasks_v2.HttpMethod.POST, tasks_v2.HttpMethod.PUT, tasks_v2.HttpMethod.PATCH):
        emulator.client.create_task(
            parent=queue, task=http_task(handler.url, http_method=method, body=b"x")
        )
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.create_task(
            parent=queue,
            task=tasks_v2.Task(
                app_engine_http_request=tasks_v2.AppEngineHttpRequest(
                    http_method=tasks_v2.HttpMethod.PATCH, body=b"x"
                )
            ),
        )


def test_schedule_time_at_most_30_days_ahead(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    far = timestamp_pb2.Timestamp()
    far.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=31))
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.create_task(
            parent=queue, task=tasks_v2.Task(schedule_time=far, **_http(handler))
        )
    past = timestamp_pb2.Timestamp()
    past.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    emulator.client.pause_queue(name=queue)
    task = emulator.client.create_task(
        parent=queue, task=tasks_v2.Task(schedule_time=past, **_http(handler))
    )
    assert task.schedule_time >= dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


def test_dispatch_deadline_range_and_default(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    emulator.client.pause_queue(name=queue)
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.create_task(
            parent=queue, task=tasks_v2.Task(dispatch_deadline=seconds(1801), **_http(handler))
        )
    task = emulator.client.create_task(parent=queue, task=http_task(handler.url))
    assert task.dispatch_deadline == dt.timedelta(minutes=10)


def test_minimum_dispatch_deadline_is_15_seconds_by_default(
    start_emulator: Callable[..., Emulator], handler: Handler
) -> None:
    emu = start_emulator("--min-dispatch-deadline-seconds", "15")
    queue = f"{PARENT}/queues/deadlines"
    emu.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=queue))
    with pytest.raises(exceptions.InvalidArgument):
        emu.client.create_task(
            parent=queue, task=tasks_v2.Task(dispatch_deadline=seconds(14), **_http(handler))
        )
    emu.client.pause_queue(name=queue)
    emu.client.create_task(
        parent=queue, task=tasks_v2.Task(dispatch_deadline=seconds(15), **_http(handler))
    )


def test_response_view_basic_omits_the_body(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    emulator.client.pause_queue(name=queue)
    task = emulator.client.create_task(
        parent=queue, task=http_task(handler.url, body=b"secret payload")
    )
    assert task.view == tasks_v2.Task.View.BASIC
    assert task.http_request.body == b""
    full = emulator.client.get_task(
        request=tasks_v2.GetTaskRequest(name=task.name, response_view=tasks_v2.Task.View.FULL)
    )
    assert full.http_request.body == b"secret payload"
    assert full.view == tasks_v2.Task.View.FULL
    listed = list(
        emulator.client.list_tasks(
            request=tasks_v2.ListTasksRequest(parent=queue, response_view=tasks_v2.Task.View.FULL)
        )
    )
    assert listed[0].http_request.body == b"secret payload"
    assert list(emulator.client.list_tasks(parent=queue))[0].http_request.body == b""


def test_list_tasks_pages(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    emulator.client.pause_queue(name=queue)
    made = [
        emulator.client.create_task(
            parent=queue, task=tasks_v2.Task(name=f"{queue}/tasks/t{i}", **_http(handler))
        ).name
        for i in range(7)
    ]
    emulator.client.delete_task(name=made[3])
    pager = emulator.client.list_tasks(request=tasks_v2.ListTasksRequest(parent=queue, page_size=3))
    pages = list(pager.pages)
    assert [len(p.tasks) for p in pages] == [3, 3]
    assert [t.name for p in pages for t in p.tasks] == made[:3] + made[4:]


def test_task_errors(emulator: Emulator, make_queue: Callable[..., str]) -> None:
    queue = make_queue()
    for call in (emulator.client.get_task, emulator.client.delete_task, emulator.client.run_task):
        with pytest.raises(exceptions.NotFound) as e:
            call(name=f"{queue}/tasks/nope")
        assert e.value.message == "Requested entity was not found."


def test_task_larger_than_100_kb_is_refused(
    emulator: Emulator, make_queue: Callable[..., str], handler: Handler
) -> None:
    queue = make_queue()
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.create_task(
            parent=queue, task=http_task(handler.url, body=b"x" * (101 * 1024))
        )
