"""The REST transport on the emulator's HTTP port: the real client's REST transport, raw HTTP."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2

from emulator.rest import HTTP_STATUS
from emulator.rpcs import VERSIONS, http_rules
from tests.emulator.clients import client
from tests.emulator.conftest import PARENT, Emulator, Handler


@pytest.fixture
def rest(emulator: Emulator) -> Any:
    return client(emulator, "v2", "rest")


def raw(emulator: Emulator, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    """One HTTP request to the emulator's HTTP port: status and decoded JSON."""
    req = urllib.request.Request(emulator.http + path, data=body, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_every_v2_call_over_rest(rest: Any, emulator: Emulator, handler: Handler) -> None:
    parent = "projects/rest-all/locations/us-central1"
    name = f"{parent}/queues/rq"
    created = rest.create_queue(
        parent=parent,
        queue=tasks_v2.Queue(name=name, rate_limits={"max_concurrent_dispatches": 5}),
    )
    assert created.state == tasks_v2.Queue.State.RUNNING
    assert rest.get_queue(name=name) == created
    rest.create_queue(parent=parent, queue=tasks_v2.Queue(name=f"{parent}/queues/rq2"))
    pages = list(rest.list_queues(request={"parent": parent, "page_size": 1}).pages)
    assert [q.name for p in pages for q in p.queues] == [name, f"{parent}/queues/rq2"]
    updated = rest.update_queue(
        queue=tasks_v2.Queue(name=name, rate_limits={"max_dispatches_per_second": 2}),
        update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"]),
    )
    assert updated.rate_limits.max_dispatches_per_second == 2
    assert updated.rate_limits.max_concurrent_dispatches == 5
    assert rest.pause_queue(name=name).state == tasks_v2.Queue.State.PAUSED
    path = handler.path()
    body = bytes(range(256))  # every byte value survives base64 in JSON
    task = rest.create_task(
        request={
            "parent": name,
            "task": {"http_request": {"url": handler.url + path, "body": body}},
            "response_view": tasks_v2.Task.View.FULL,
        }
    )
    assert task.http_request.body == body
    assert rest.get_task(name=task.name).http_request.body == b""  # BASIC
    full = rest.get_task(request={"name": task.name, "response_view": tasks_v2.Task.View.FULL})
    assert full.http_request.body == body
    assert [t.name for t in rest.list_tasks(parent=name)] == [task.name]
    rest.run_task(name=task.name)
    assert handler.wait(path, 1)[0].body == body
    other = rest.create_task(parent=name, task={"http_request": {"url": handler.url + path}})
    rest.delete_task(name=other.name)
    with pytest.raises(exceptions.NotFound):
        rest.get_task(name=other.name)
    assert rest.resume_queue(name=name).state == tasks_v2.Queue.State.RUNNING
    assert rest.purge_queue(name=name).purge_time is not None
    rest.delete_queue(name=name)
    with pytest.raises(exceptions.NotFound):
        rest.get_queue(name=name)
    # The same state as gRPC.
    assert emulator.client.get_queue(name=f"{parent}/queues/rq2").name.endswith("rq2")


def _failures(queue: str, handler: Handler) -> list[Callable[[Any], Any]]:
    task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=handler.url + "/x"))
    return [
        lambda c: c.get_queue(name=f"{PARENT}/queues/rest-missing"),
        lambda c: c.delete_queue(name=f"{PARENT}/queues/rest-missing"),
        lambda c: c.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=queue)),
        lambda c: c.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=f"{PARENT}/queues/b_d")),
        lambda c: c.create_task(parent=f"{PARENT}/queues/rest-missing", task=task),
        lambda c: c.create_task(parent=queue, task=tasks_v2.Task(http_request={"url": "ftp://x"})),
        lambda c: c.get_task(name=f"{queue}/tasks/none"),
        lambda c: c.update_queue(
            queue=tasks_v2.Queue(name=queue), update_mask={"paths": ["no_such_field"]}
        ),
        lambda c: c.get_iam_policy(resource=f"{PARENT}/queues/rest-missing"),
        lambda c: c.batch_delete_tasks(request={"parent": queue, "names": []}),
        lambda c: c.batch_create_tasks(
            request={"parent": queue, "requests": [{"parent": queue, "task": task}] * 101}
        ),
    ]


def test_rest_errors_are_the_grpc_errors_in_googles_json_shape(
    rest: Any, emulator: Emulator, handler: Handler, make_queue: Callable[..., str]
) -> None:
    queue = make_queue()
    for call in _failures(queue, handler):
        with pytest.raises(exceptions.GoogleAPICallError) as via_grpc:
            call(emulator.client)
        with pytest.raises(exceptions.GoogleAPICallError) as via_rest:
            call(rest)
        code = via_grpc.value.grpc_status_code
        assert code is not None
        assert via_rest.value.code == HTTP_STATUS[code]
        assert via_rest.value.response.json() == {
            "error": {
                "code": HTTP_STATUS[code],
                "message": via_grpc.value.message,
                "status": code.name,
            }
        }


def _fill(uri: str) -> str:
    """A concrete URL for a binding: every variable gets a well-formed sample name."""

    def one(m: re.Match[str]) -> str:
        pattern = m.group(2) or "*"
        return "/".join("x1" if s == "*" else s for s in pattern.split("/"))

    return re.sub(r"\{([a-z_.]+)(?:=([^}]*))?\}", one, uri)


def test_every_rest_binding_of_every_client_version_reaches_grpc(emulator: Emulator) -> None:
    rules = [r for v in VERSIONS for r in http_rules(v)]
    assert len(rules) >= 60
    for rule in rules:
        body = b"{}" if rule.body else None
        status, answer = raw(emulator, rule.method, _fill(rule.uri), body)
        if status != 200:
            error = answer["error"]
            assert set(error) == {"code", "message", "status"}, rule
            assert error["code"] == status
            assert not error["message"].startswith("No REST method"), (rule, error)


def test_raw_http_json_both_field_spellings_and_bad_input(
    emulator: Emulator, handler: Handler
) -> None:
    parent = "projects/rest-raw/locations/us-central1"
    status, queue = raw(
        emulator,
        "POST",
        f"/v2/{parent}/queues",
        json.dumps({"name": f"{parent}/queues/curl", "rate_limits": {"maxConcurrentDispatches": 3}})
        .encode(),
    )  # fmt: skip
    assert status == 200
    assert queue["rateLimits"]["maxConcurrentDispatches"] == 3
    assert queue["state"] == "RUNNING"
    status, listed = raw(emulator, "GET", f"/v2/{parent}/queues?pageSize=10")
    assert status == 200 and [q["name"] for q in listed["queues"]] == [queue["name"]]
    status, task = raw(
        emulator,
        "POST",
        f"/v2/{queue['name']}/tasks",
        json.dumps(
            {
                "task": {
                    "httpRequest": {
                        "url": handler.url + "/raw",
                        "body": base64.b64encode(b"raw body").decode(),
                    }
                },
                "responseView": "FULL",
            }
        ).encode(),
    )
    assert status == 200 and base64.b64decode(task["httpRequest"]["body"]) == b"raw body"
    assert handler.wait("/raw", 1)[0].body == b"raw body"
    status, error = raw(emulator, "POST", f"/v2/{parent}/queues", b"{not json")
    assert status == 400 and error["error"]["status"] == "INVALID_ARGUMENT"
    assert error["error"]["message"].startswith("Invalid JSON payload received.")
    status, error = raw(emulator, "GET", f"/v2/{parent}/queues?noSuchParam=1")
    assert status == 400 and "noSuchParam" in error["error"]["message"]
    status, error = raw(emulator, "GET", f"/v2/{parent}/queues?pageSize=many")
    assert status == 400 and error["error"]["status"] == "INVALID_ARGUMENT"
    status, error = raw(emulator, "GET", "/v2/nothing/here")
    assert status == 404 and error["error"]["status"] == "NOT_FOUND"
    for bad in (b"[]", b"\xff\xfe", b'{"name": 5}', b'{"rateLimits": "fast"}'):
        status, error = raw(emulator, "POST", f"/v2/{parent}/queues", bad)
        assert status == 400 and error["error"]["status"] == "INVALID_ARGUMENT", bad
    status, error = raw(emulator, "GET", f"/v2/{parent}/queues?pageSize=99999999999999")
    assert status == 400 and error["error"]["status"] == "INVALID_ARGUMENT"
    status, error = raw(emulator, "PUT", f"/v2/{queue['name']}", b"{}")
    assert status == 404 and error["error"]["status"] == "NOT_FOUND"
    status, empty = raw(emulator, "DELETE", f"/v2/{queue['name']}")
    assert (status, empty) == (200, {})
    with urllib.request.urlopen(emulator.http + "/healthz", timeout=5) as r:
        assert r.status == 200  # the admin routes are still there


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_locations_list_the_emulators_location(emulator: Emulator, transport: str) -> None:
    for version in VERSIONS:
        c = client(emulator, version, transport)
        listed = c.list_locations(request={"name": "projects/any-project"})
        assert [loc.name for loc in listed.locations] == [
            "projects/any-project/locations/us-central1"
        ]
        got = c.get_location(request={"name": PARENT})
        assert got.location_id == "us-central1"
        with pytest.raises(exceptions.NotFound):
            c.get_location(request={"name": "projects/p/locations/mars-north1"})
