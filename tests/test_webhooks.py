"""Webhook signing, URL checks at send time (DNS rebinding), address pinning, the worker route."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from standardwebhooks.webhooks import Webhook

from offload.errors import ConfigError
from offload.ids import new_job_id
from offload.store import SUCCEEDED, JobStore, NewJob
from offload.webhooks import WebhookUrlError, parse_secret, send, sign, signed_headers
from tests.conftest import app_config
from tests.webhook_receiver import webhook_receiver

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def test_the_signature_is_the_reference_algorithms() -> None:
    body = b'{"type":"job.succeeded","data":{"id":"x"}}'
    stamp = 1_700_000_000
    ours = sign(parse_secret(SECRET), msg_id="msg_1", timestamp=stamp, body=body)
    theirs = Webhook(SECRET).sign("msg_1", dt.datetime.fromtimestamp(stamp, dt.UTC), body.decode())
    assert ours == theirs
    headers = signed_headers(parse_secret(SECRET), msg_id="msg_1", body=body)
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)


@pytest.mark.parametrize("bad", ["", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()])
def test_a_malformed_secret_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_secret(bad)


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "169.254.169.254", "10.1.2.3", "::1", "::ffff:127.0.0.1", "fd00::1"]
)
def test_hosted_send_refuses_a_host_that_now_resolves_inside_and_never_connects(
    address: str,
) -> None:
    with webhook_receiver() as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        # Public when submitted; the DNS answer changed since (rebinding).
        with pytest.raises(WebhookUrlError, match="internal address"):
            send(
                f"https://hooks.example.com:{port}/x",
                b"{}",
                {},
                allow_internal=False,
                timeout=2,
                resolver=lambda host, port: [address],
            )
        assert receiver.connections == 0


def test_hosted_send_refuses_plain_http() -> None:
    with pytest.raises(WebhookUrlError, match="https"):
        send("http://example.com/x", b"{}", {}, allow_internal=False, timeout=2)


def test_the_send_connects_to_the_checked_address_with_the_host_name_kept() -> None:
    with webhook_receiver() as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        result = send(
            f"http://hooks.test:{port}/pinned?a=1",
            b"{}",
            {"webhook-id": "msg_x"},
            allow_internal=True,
            timeout=5,
            resolver=lambda host, port: ["127.0.0.1"],
        )
        assert result.ok and result.status == 204
        got = receiver.for_path("/pinned?a=1")
        assert len(got) == 1
        assert got[0].headers["host"] == f"hooks.test:{port}"
        assert got[0].headers["webhook-id"] == "msg_x"


def test_an_unreachable_receiver_is_a_failed_send_not_an_exception() -> None:
    with webhook_receiver() as receiver:
        url = receiver.url
    result = send(url + "/gone", b"{}", {}, allow_internal=True, timeout=2)
    assert not result.ok and result.status is None and result.error


@pytest.fixture
def hosted_worker(tmp_path: Path) -> Iterator[Flask]:
    from worker import create_app

    app = create_app(app_config(tmp_path, HOSTED=True, WEBHOOK_SECRET=SECRET))
    yield app
    app.extensions["offload.tasks"].close()
    app.extensions["offload.store"].dispose()


def finished_job_with_webhook(store: JobStore, url: str) -> str:
    store.on_delivery.clear()  # no Cloud Task: the test pushes the delivery itself
    job_id = new_job_id()
    store.insert(
        NewJob(
            id=job_id,
            type="demo.echo",
            payload={},
            request_id="r1",
            trace=None,
            max_attempts=1,
            deadline_seconds=10,
            task_name="t",
            notify_url=url,
        )
    )
    claim = store.claim(job_id, attempt=1, lease_seconds=60)
    assert claim.token
    store.finish(job_id, claim.token, status=SUCCEEDED, result={}, outcome="succeeded")
    return job_id


APP_ENGINE_PUSH = {"X-AppEngine-QueueName": "offload-jobs", "X-AppEngine-TaskName": "t1"}


def test_the_hosted_worker_marks_an_internal_target_failed_without_sending(
    hosted_worker: Flask,
) -> None:
    store: JobStore = hosted_worker.extensions["offload.store"]
    with webhook_receiver() as receiver:
        job_id = finished_job_with_webhook(store, receiver.url.replace("http:", "https:") + "/h")
        r = hosted_worker.test_client().post(
            "/tasks/webhook", json={"delivery_id": f"msg_{job_id}"}, headers=APP_ENGINE_PUSH
        )
        assert r.status_code == 204  # never retried: it can only be refused again
        assert receiver.connections == 0
    job = store.get(job_id)
    assert job is not None
    (delivery,) = job.deliveries
    assert delivery.state == "failed" and "internal address" in (delivery.last_error or "")


def test_the_webhook_route_refuses_pushes_not_from_cloud_tasks(hosted_worker: Flask) -> None:
    r = hosted_worker.test_client().post("/tasks/webhook", json={"delivery_id": "msg_x"})
    assert r.status_code == 403
