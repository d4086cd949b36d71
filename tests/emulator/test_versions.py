"""v2beta3 and v2beta2 through the real clients (gRPC and REST), over the same state as v2."""

from __future__ import annotations

import datetime as dt
import itertools
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2, tasks_v2beta2, tasks_v2beta3
from google.protobuf import duration_pb2, field_mask_pb2

from emulator.convert import Converter
from emulator.state import API_TOMBSTONE_SECONDS
from tests.emulator.clients import TRANSPORTS, client
from tests.emulator.conftest import PARENT, Emulator, Handler

_ids = itertools.count()


def qname(prefix: str) -> str:
    return f"{PARENT}/queues/{prefix}{next(_ids)}-{int(time.time() * 1000) % 10**8}"


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def beta3(emulator: Emulator, transport: str) -> Any:
    return client(emulator, "v2beta3", transport)


@pytest.fixture
def beta2(emulator: Emulator, transport: str) -> Any:
    return client(emulator, "v2beta2", transport)


def test_a_v2_queue_and_task_are_seen_through_v2beta3_and_back(
    emulator: Emulator, beta3: Any, handler: Handler
) -> None:
    name = qname("v2-made")
    emulator.client.create_queue(
        parent=PARENT,
        queue=tasks_v2.Queue(
            name=name,
            app_engine_routing_override=tasks_v2.AppEngineRouting(service="worker"),
            rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=7),
        ),
    )
    emulator.client.pause_queue(name=name)
    seen = beta3.get_queue(name=name)
    assert seen.app_engine_http_queue.app_engine_routing_override.service == "worker"
    assert seen.rate_limits.max_dispatches_per_second == 7
    assert seen.state == tasks_v2beta3.Queue.State.PAUSED
    assert seen.type_ == tasks_v2beta3.Queue.Type.PUSH
    assert seen.task_ttl == dt.timedelta(days=31)
    assert seen.tombstone_ttl == dt.timedelta(seconds=API_TOMBSTONE_SECONDS)
    # A task made through v2beta3 (whose field numbers differ from v2's) reads the same in v2.
    made = beta3.create_task(
        request={
            "parent": name,
            "task": tasks_v2beta3.Task(
                name=f"{name}/tasks/from-beta3",
                http_request=tasks_v2beta3.HttpRequest(
                    url=handler.url + "/x",
                    http_method=tasks_v2beta3.HttpMethod.PUT,
                    headers={"X-Thing": "1"},
                    body=b"payload",
                ),
                dispatch_deadline=duration_pb2.Duration(seconds=77),
            ),
            "response_view": tasks_v2beta3.Task.View.FULL,
        }
    )
    assert made.http_request.body == b"payload"
    v2 = emulator.client.get_task(
        request={"name": made.name, "response_view": tasks_v2.Task.View.FULL}
    )
    assert v2.http_request.url == handler.url + "/x"
    assert v2.http_request.http_method == tasks_v2.HttpMethod.PUT
    assert v2.http_request.headers["X-Thing"] == "1"
    assert v2.http_request.body == b"payload"
    assert v2.dispatch_deadline == dt.timedelta(seconds=77)
    assert v2.schedule_time == made.schedule_time
    listed = list(beta3.list_tasks(parent=name))
    assert [t.name for t in listed] == [made.name]
    assert listed[0].http_request.body == b""  # BASIC view


def test_a_v2beta3_queue_is_a_v2_queue(emulator: Emulator, beta3: Any) -> None:
    name = qname("b3-made")
    created = beta3.create_queue(
        parent=PARENT,
        queue=tasks_v2beta3.Queue(
            name=name,
            app_engine_http_queue=tasks_v2beta3.AppEngineHttpQueue(
                app_engine_routing_override=tasks_v2beta3.AppEngineRouting(service="svc")
            ),
            retry_config=tasks_v2beta3.RetryConfig(max_attempts=4),
            tombstone_ttl=duration_pb2.Duration(seconds=7200),
        ),
    )
    assert created.tombstone_ttl == dt.timedelta(hours=2)
    v2 = emulator.client.get_queue(name=name)
    assert v2.app_engine_routing_override.service == "svc"
    assert v2.retry_config.max_attempts == 4
    assert name in [q.name for q in beta3.list_queues(parent=PARENT)]
    # Only an extra field in the mask: nothing else changes (v2 would read an empty mask
    # as "every field").
    updated = beta3.update_queue(
        queue=tasks_v2beta3.Queue(name=name, tombstone_ttl=duration_pb2.Duration(seconds=3 * 3600)),
        update_mask=field_mask_pb2.FieldMask(paths=["tombstone_ttl"]),
    )
    assert updated.tombstone_ttl == dt.timedelta(hours=3)
    assert updated.retry_config.max_attempts == 4
    moved = beta3.update_queue(
        queue=tasks_v2beta3.Queue(
            name=name,
            app_engine_http_queue=tasks_v2beta3.AppEngineHttpQueue(
                app_engine_routing_override=tasks_v2beta3.AppEngineRouting(service="other")
            ),
        ),
        update_mask=field_mask_pb2.FieldMask(
            paths=["app_engine_http_queue.app_engine_routing_override"]
        ),
    )
    assert moved.app_engine_http_queue.app_engine_routing_override.service == "other"
    assert emulator.client.get_queue(name=name).app_engine_routing_override.service == "other"


def test_tombstone_ttl_is_the_queues_deduplication_window(
    emulator: Emulator, beta3: Any, handler: Handler
) -> None:
    name = qname("ttl")
    beta3.create_queue(
        parent=PARENT,
        queue=tasks_v2beta3.Queue(name=name, tombstone_ttl=duration_pb2.Duration(seconds=3600)),
    )
    emulator.client.pause_queue(name=name)
    task = f"{name}/tasks/once"
    http = tasks_v2.HttpRequest(url=handler.url + "/x")
    emulator.client.create_task(parent=name, task=tasks_v2.Task(name=task, http_request=http))
    emulator.client.delete_task(name=task)
    with pytest.raises(exceptions.Conflict):
        emulator.client.create_task(parent=name, task=tasks_v2.Task(name=task, http_request=http))


def test_ttls_out_of_range_are_invalid(beta3: Any) -> None:
    for field, value in (("tombstone_ttl", 60), ("task_ttl", 3600)):
        with pytest.raises(exceptions.BadRequest, match=field):
            beta3.create_queue(
                parent=PARENT,
                queue=tasks_v2beta3.Queue(
                    name=qname("bad-ttl"), **{field: duration_pb2.Duration(seconds=value)}
                ),
            )


def test_stats_only_with_the_read_mask(emulator: Emulator, beta3: Any, handler: Handler) -> None:
    name = qname("stats")
    emulator.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))
    emulator.client.pause_queue(name=name)
    for _ in range(3):
        emulator.client.create_task(
            parent=name,
            task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=handler.url + "/x")),
        )
    plain = beta3.get_queue(name=name)
    assert not tasks_v2beta3.Queue.pb(plain).HasField("stats")
    masked = beta3.get_queue(request={"name": name, "read_mask": {"paths": ["stats"]}})
    assert masked.stats.tasks_count == 3
    assert masked.stats.oldest_estimated_arrival_time is not None
    assert masked.stats.effective_execution_rate == 0  # paused
    listed = beta3.list_queues(
        request={"parent": PARENT, "read_mask": {"paths": ["stats", "state"]}}
    )
    mine = next(q for q in listed if q.name == name)
    assert mine.stats.tasks_count == 3
    assert mine.state == tasks_v2beta3.Queue.State.PAUSED


def test_pull_queues_and_tasks_are_refused(beta3: Any, beta2: Any, emulator: Emulator) -> None:
    with pytest.raises(exceptions.MethodNotImplemented):
        beta3.create_queue(
            parent=PARENT,
            queue=tasks_v2beta3.Queue(name=qname("pull"), type_=tasks_v2beta3.Queue.Type.PULL),
        )
    with pytest.raises(exceptions.MethodNotImplemented):
        beta2.create_queue(
            parent=PARENT,
            queue=tasks_v2beta2.Queue(name=qname("pull"), pull_target=tasks_v2beta2.PullTarget()),
        )
    name = qname("push")
    emulator.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))
    with pytest.raises(exceptions.MethodNotImplemented):
        beta2.lease_tasks(
            request={"parent": name, "lease_duration": duration_pb2.Duration(seconds=10)}
        )


def test_errors_are_the_v2_errors(beta3: Any) -> None:
    with pytest.raises(exceptions.NotFound) as e:
        beta3.get_queue(name=f"{PARENT}/queues/never-made-b3")
    assert "Queue does not exist." in str(e.value)
    with pytest.raises(exceptions.BadRequest):
        beta3.get_queue(name=f"{PARENT}/queues/bad_id")


def test_v2beta2_renamed_fields_and_task_status(
    emulator: Emulator, beta2: Any, handler: Handler
) -> None:
    name = qname("b2")
    created = beta2.create_queue(
        parent=PARENT,
        queue=tasks_v2beta2.Queue(
            name=name,
            rate_limits=tasks_v2beta2.RateLimits(
                max_tasks_dispatched_per_second=9, max_concurrent_tasks=3
            ),
            retry_config=tasks_v2beta2.RetryConfig(unlimited_attempts=True),
        ),
    )
    assert created.rate_limits.max_tasks_dispatched_per_second == 9
    assert created.retry_config.unlimited_attempts
    v2 = emulator.client.get_queue(name=name)
    assert v2.rate_limits.max_dispatches_per_second == 9
    assert v2.rate_limits.max_concurrent_dispatches == 3
    assert v2.retry_config.max_attempts == -1
    path = handler.path(*[500] * 100)
    task = beta2.create_task(
        parent=name,
        task=tasks_v2beta2.Task(http_request=tasks_v2beta2.HttpRequest(url=handler.url + path)),
    )
    handler.wait(path, 2)
    deadline = time.monotonic() + 10
    while (got := beta2.get_task(name=task.name)).status.attempt_response_count < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert got.status.attempt_dispatch_count >= 2
    assert got.status.first_attempt_status.dispatch_time is not None
    assert got.status.last_attempt_status.response_status.code == 13  # HTTP 500
    beta2.delete_task(name=task.name)


def test_conversion_round_trips_every_field_of_a_full_queue_and_task() -> None:
    queue = tasks_v2.Queue.pb()()
    queue.name = f"{PARENT}/queues/q"
    queue.app_engine_routing_override.service = "s"
    queue.http_target.uri_override.host = "h"
    queue.http_target.uri_override.port = 0  # present though zero
    queue.http_target.header_overrides.add().header.key = "k"
    queue.http_target.oidc_token.audience = "a"
    queue.rate_limits.max_dispatches_per_second = 3
    queue.rate_limits.max_concurrent_dispatches = 4
    queue.retry_config.max_attempts = -1
    queue.retry_config.min_backoff.seconds = 2
    queue.state = 2
    queue.purge_time.seconds = 5
    queue.stackdriver_logging_config.sampling_ratio = 0.5
    task = tasks_v2.Task.pb()()
    task.name = queue.name + "/tasks/t"
    task.http_request.url = "http://x/y"
    task.http_request.headers["a"] = "b"
    task.http_request.body = b"z"
    task.http_request.http_method = 4
    task.dispatch_deadline.seconds = 30
    task.dispatch_count = 2
    task.response_count = 1
    task.first_attempt.dispatch_time.seconds = 9
    task.last_attempt.response_status.code = 13
    task.view = 2
    task.retry_config.max_doublings = 3
    for version, skip in (("v2beta3", ()), ("v2beta2", ("stackdriver_logging_config",))):
        conv = Converter(version)
        for msg in (queue, task):
            back = conv.to_v2(conv.from_v2(msg))
            want = type(msg)()
            want.CopyFrom(msg)
            for field in skip:
                if field in want.DESCRIPTOR.fields_by_name:
                    want.ClearField(field)
            if version == "v2beta2" and want.DESCRIPTOR.name == "Task":
                # v2beta2 tasks have no dispatch_deadline or retry_config.
                want.ClearField("dispatch_deadline")
                want.ClearField("retry_config")
            if version == "v2beta2" and want.DESCRIPTOR.name == "Queue":
                # one target per v2beta2 queue: the HTTP one wins over App Engine routing.
                want.ClearField("app_engine_routing_override")
            assert back == want, version


def test_v2beta3_ttls_survive_a_restart_with_the_data_file(
    start_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    data = tmp_path / "data" / "emulator.sqlite3"
    emu = start_emulator("--data-file", str(data))
    name = f"{PARENT}/queues/ttl-kept"
    client(emu, "v2beta3", "grpc").create_queue(
        parent=PARENT,
        queue=tasks_v2beta3.Queue(
            name=name,
            task_ttl=duration_pb2.Duration(seconds=20 * 86400),
            tombstone_ttl=duration_pb2.Duration(seconds=5 * 3600),
        ),
    )
    assert emu.stop(signal.SIGKILL) != 0  # written before the answer, not at shutdown
    again = start_emulator("--data-file", str(data))
    for transport in TRANSPORTS:
        seen = client(again, "v2beta3", transport).get_queue(name=name)
        assert seen.task_ttl == dt.timedelta(days=20)
        assert seen.tombstone_ttl == dt.timedelta(hours=5)


def test_a_pull_message_task_is_refused(emulator: Emulator, beta3: Any) -> None:
    name = qname("no-pull")
    emulator.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))
    with pytest.raises(exceptions.MethodNotImplemented):
        beta3.create_task(
            parent=name, task=tasks_v2beta3.Task(pull_message={"payload": b"x", "tag": "t"})
        )


def test_malformed_request_bytes_are_invalid_argument(emulator: Emulator) -> None:
    call = emulator.channel.unary_unary("/google.cloud.tasks.v2beta3.CloudTasks/GetQueue")
    with pytest.raises(grpc.RpcError) as e:
        call(b"\xff\xff\xff", timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_upload_queue_yaml_is_refused_with_its_reason(beta2: Any, transport: str) -> None:
    if transport == "rest":
        pytest.skip("the pinned client has no REST binding for UploadQueueYaml")
    with pytest.raises(exceptions.MethodNotImplemented, match="no v2 counterpart"):
        beta2.upload_queue_yaml(request={"app_id": "offload-local"})


def test_an_update_of_only_ttls_creates_a_missing_queue_like_v2(
    emulator: Emulator, beta3: Any
) -> None:
    name = qname("upsert-ttl")
    made = beta3.update_queue(
        queue=tasks_v2beta3.Queue(name=name, tombstone_ttl=duration_pb2.Duration(seconds=7200)),
        update_mask=field_mask_pb2.FieldMask(paths=["tombstone_ttl"]),
    )
    assert made.tombstone_ttl == dt.timedelta(hours=2)
    assert emulator.client.get_queue(name=name).state == tasks_v2.Queue.State.RUNNING
