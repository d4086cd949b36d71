"""The data file across a restart, queue.yaml loading, and a clean shutdown."""

from __future__ import annotations

import base64
import datetime as dt
import json
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from emulator.queueyaml import QueueYamlError, parse_age, parse_rate, queue_from_entry
from tests.emulator.conftest import PARENT, Emulator, Handler

QUEUE_YAML = """\
queue:
- name: jobs
  target: worker
  rate: 0.5/s
  bucket_size: 7
  max_concurrent_requests: 3
  retry_parameters:
    task_retry_limit: 4
    task_age_limit: 2d
    min_backoff_seconds: 0.5
    max_backoff_seconds: 30
    max_doublings: 0
- name: minimal
"""


def test_restart_with_the_data_file_keeps_queues_tasks_tombstones_and_key(
    start_emulator: Callable[..., Emulator], handler: Handler, tmp_path: Path
) -> None:
    data = tmp_path / "data" / "emulator.sqlite3"
    emu = start_emulator("--data-file", str(data))
    queue = f"{PARENT}/queues/kept"
    emu.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=queue))
    emu.client.pause_queue(name=queue)
    path = handler.path()
    for i in range(3):
        emu.client.create_task(
            parent=queue,
            task=tasks_v2.Task(
                name=f"{queue}/tasks/t{i}",
                http_request=tasks_v2.HttpRequest(url=handler.url + path, body=b"b%d" % i),
            ),
        )
    emu.client.delete_task(name=f"{queue}/tasks/t0")
    certs_before = _certs(emu)
    assert emu.stop() == 0
    assert data.read_bytes().startswith(b"SQLite format 3\x00")

    again = start_emulator("--data-file", str(data))
    assert again.client.get_queue(name=queue).state == tasks_v2.Queue.State.PAUSED
    tasks = list(
        again.client.list_tasks(
            request=tasks_v2.ListTasksRequest(parent=queue, response_view=tasks_v2.Task.View.FULL)
        )
    )
    assert [t.name.rsplit("/", 1)[1] for t in tasks] == ["t1", "t2"]
    assert [t.http_request.body for t in tasks] == [b"b1", b"b2"]
    with pytest.raises(exceptions.NotFound) as e:
        again.client.get_task(name=f"{queue}/tasks/t0")
    assert "existed recently" in e.value.message
    assert _certs(again).keys() == certs_before.keys()  # same key: old tokens still verify
    again.client.resume_queue(name=queue)
    assert sorted(s.body for s in handler.wait(path, 2)) == [b"b1", b"b2"]


def _certs(emu: Emulator) -> dict[str, str]:
    with urllib.request.urlopen(f"{emu.http}/oauth2/v1/certs", timeout=5) as r:
        certs: dict[str, str] = json.loads(r.read())
        return certs


def test_an_old_json_data_file_is_migrated_once(
    start_emulator: Callable[..., Emulator], handler: Handler, tmp_path: Path
) -> None:
    queue = f"{PARENT}/queues/old"
    qpb = tasks_v2.Queue.pb(tasks_v2.Queue(name=queue, state=tasks_v2.Queue.State.PAUSED))
    task = tasks_v2.Task(
        name=f"{queue}/tasks/kept",
        http_request=tasks_v2.HttpRequest(url=handler.url + "/old", body=b"old"),
    )
    tpb = tasks_v2.Task.pb(task)
    b64 = lambda m: base64.b64encode(m.SerializeToString()).decode()  # noqa: E731
    old = {
        "version": 1,
        "seq": 1,
        "oidc_key_pem": "",
        "queues": [
            {
                "pb": b64(qpb),
                "origin": "api",
                "tombstones": [["done", time.time() + 3600]],
                "tasks": [[b64(tpb), 1, 0, None, "", 0.0]],
            }
        ],
        "queue_tombstones": {},
    }
    (tmp_path / "emulator-data.json").write_text(json.dumps(old))
    emu = start_emulator("--data-file", str(tmp_path / "emulator-data.json"))
    assert emu.client.get_queue(name=queue).state == tasks_v2.Queue.State.PAUSED
    got = emu.client.get_task(
        request=tasks_v2.GetTaskRequest(
            name=f"{queue}/tasks/kept", response_view=tasks_v2.Task.View.FULL
        )
    )
    assert got.http_request.body == b"old"
    with pytest.raises(exceptions.NotFound) as e:
        emu.client.get_task(name=f"{queue}/tasks/done")
    assert "existed recently" in e.value.message
    assert emu.stop() == 0
    assert (tmp_path / "emulator-data.json.migrated").exists()
    assert not (tmp_path / "emulator-data.json").exists()
    again = start_emulator("--data-file", str(tmp_path / "emulator-data.sqlite3"))
    assert [t.name for t in again.client.list_tasks(parent=queue)] == [got.name]


def test_a_damaged_database_is_refused_with_a_message(tmp_path: Path, handler: Handler) -> None:
    (tmp_path / "data.sqlite3").write_bytes(b"this is not a database" * 100)
    refused(tmp_path, handler, ["--data-file", str(tmp_path / "data.sqlite3")], "bad data file")


@pytest.mark.parametrize("by", ["flag", "variable"])
def test_the_log_file_rotates_at_the_configured_size(
    start_emulator: Callable[..., Emulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    by: str,
) -> None:
    logs = tmp_path / "log"
    if by == "variable":  # what make run and the services share: OFFLOAD_LOG_FILE_MAX_BYTES
        monkeypatch.setenv("OFFLOAD_LOG_FILE_MAX_BYTES", "2000")
        emu = start_emulator("--log-dir", str(logs))
    else:
        emu = start_emulator("--log-dir", str(logs), "--log-file-max-bytes", "2000")
    queue = f"{PARENT}/queues/logs"
    emu.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=queue))
    emu.client.pause_queue(name=queue)
    for _ in range(20):
        emu.client.create_task(
            parent=queue, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url="http://x/"))
        )
    assert emu.stop() == 0
    assert (logs / "emulator.log.1").exists()
    assert (logs / "emulator.log").stat().st_size <= 2000 + 1000


def test_sigint_stops_cleanly(start_emulator: Callable[..., Emulator]) -> None:
    emu = start_emulator()
    assert emu.stop(signal.SIGINT) == 0
    messages = [line.get("message") for line in emu.log_lines()]
    assert any(str(m).startswith("emulator listening on 127.0.0.1:") for m in messages)
    assert "emulator stopped" in messages


def test_queue_yaml_maps_every_field(
    start_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    (tmp_path / "queue.yaml").write_text(QUEUE_YAML)
    emu = start_emulator("--queue-yaml", str(tmp_path / "queue.yaml"))
    q = emu.client.get_queue(name=f"{PARENT}/queues/jobs")
    assert q.app_engine_routing_override.service == "worker"
    assert q.rate_limits.max_dispatches_per_second == 0.5
    assert q.rate_limits.max_burst_size == 7
    assert q.rate_limits.max_concurrent_dispatches == 3
    assert q.retry_config.max_attempts == 4
    assert q.retry_config.max_retry_duration == dt.timedelta(days=2)
    assert q.retry_config.min_backoff == dt.timedelta(seconds=0.5)
    assert q.retry_config.max_backoff == dt.timedelta(seconds=30)
    assert q.retry_config.max_doublings == 0
    minimal = emu.client.get_queue(name=f"{PARENT}/queues/minimal")
    assert minimal.rate_limits.max_dispatches_per_second == 5
    assert minimal.rate_limits.max_burst_size == 5
    assert minimal.retry_config.max_attempts == -1  # App Engine retries forever by default


def test_a_queue_dropped_from_queue_yaml_is_disabled_after_restart(
    start_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    yaml_path = tmp_path / "queue.yaml"
    yaml_path.write_text(QUEUE_YAML)
    data = tmp_path / "data.json"
    emu = start_emulator("--queue-yaml", str(yaml_path), "--data-file", str(data))
    assert emu.stop() == 0
    yaml_path.write_text("queue:\n- name: jobs\n")
    again = start_emulator("--queue-yaml", str(yaml_path), "--data-file", str(data))
    minimal = again.client.get_queue(name=f"{PARENT}/queues/minimal")
    assert minimal.state == tasks_v2.Queue.State.DISABLED
    jobs = again.client.get_queue(name=f"{PARENT}/queues/jobs")
    assert jobs.rate_limits.max_dispatches_per_second == 5  # the new file's defaults


def test_queue_yaml_units() -> None:
    assert parse_rate("5/s") == 5
    assert parse_rate("1/m") == pytest.approx(1 / 60)
    assert parse_rate("0.5/s") == 0.5
    assert parse_rate("36/h") == 0.01
    assert parse_age("30m") == 1800
    assert parse_age("2d") == 172800
    with pytest.raises(QueueYamlError):
        parse_rate("fast")
    q = queue_from_entry(
        {"name": "x", "retry_parameters": {"task_retry_limit": 0}}, location=PARENT
    )
    assert q.retry_config.max_attempts == 1  # 0 retries = one attempt


def test_bad_queue_yaml_exits_with_an_error(tmp_path: Path, handler: Handler) -> None:
    (tmp_path / "queue.yaml").write_text("queue:\n- name: x\n  rate: fast\n")
    refused(tmp_path, handler, ["--queue-yaml", str(tmp_path / "queue.yaml")], "bad queue.yaml")


def test_a_damaged_data_file_is_refused_with_a_message(tmp_path: Path, handler: Handler) -> None:
    (tmp_path / "data.json").write_text('{"version": 1, "queues": [{"pb": "%%%"}]}')
    refused(tmp_path, handler, ["--data-file", str(tmp_path / "data.json")], "bad data file")


def refused(tmp_path: Path, handler: Handler, args: list[str], message: str) -> None:
    """Start the emulator expecting it to exit with ``message``; stop it if it does not."""
    try:
        emu = Emulator(tmp_path, args, handler_url=handler.url)
    except RuntimeError as e:
        assert message in str(e)
        return
    emu.stop()
    pytest.fail("the emulator started")


def test_a_bad_log_size_variable_is_refused_by_name(
    tmp_path: Path, handler: Handler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFLOAD_LOG_FILE_MAX_BYTES", "ten megabytes")
    refused(tmp_path, handler, [], "OFFLOAD_LOG_FILE_MAX_BYTES")
