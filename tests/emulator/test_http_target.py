"""A queue's http_target applied to its tasks' pushes, through the real clients."""

from __future__ import annotations

import itertools
import time
import urllib.parse
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2, tasks_v2beta3
from google.protobuf import field_mask_pb2

from emulator.httptarget import override_url
from tests.emulator.clients import SURFACES, TRANSPORTS, client, module, surface_fixture
from tests.emulator.conftest import LOCATION, PARENT, PROJECT, Emulator, Handler
from tests.emulator.test_oidc import SA, bearer, verify

_ids = itertools.count()


def queue_id(prefix: str) -> str:
    return f"{prefix}{next(_ids)}-{int(time.time() * 1000) % 10**8}"


surface = surface_fixture(SURFACES)


@pytest.fixture(params=TRANSPORTS)
def beta3(request: pytest.FixtureRequest, emulator: Emulator) -> Any:
    return client(emulator, "v2beta3", str(request.param))


def create_http_queue(
    tasks_client: Any, *, project: str, location: str, name: str, uri: str
) -> Any:
    """The flow of Google's v2beta3 ``create_http_queue`` sample, with our client."""
    tasks = tasks_v2beta3
    parsed = urllib.parse.urlparse(uri)
    http_target: dict[str, Any] = {
        "uri_override": {
            "host": parsed.hostname,
            "uri_override_enforce_mode": tasks.types.UriOverride.UriOverrideEnforceMode.ALWAYS,
        }
    }
    if parsed.scheme == "http":  # defaults to https
        http_target["uri_override"]["scheme"] = tasks.types.UriOverride.Scheme.HTTP
    if parsed.port:
        http_target["uri_override"]["port"] = f"{parsed.port}"
    if parsed.path:
        http_target["uri_override"]["path_override"] = {"path": parsed.path}
    if parsed.query:
        http_target["uri_override"]["query_override"] = {"query_params": parsed.query}
    return tasks_client.create_queue(
        tasks.CreateQueueRequest(
            parent=tasks_client.common_location_path(project, location),
            queue={
                "name": f"projects/{project}/locations/{location}/queues/{name}",
                "http_target": http_target,
            },
        )
    )


def test_googles_http_queue_sample_flow_pushes_to_the_queue_uri(
    beta3: Any, handler: Handler
) -> None:
    path = handler.path()
    queue = create_http_queue(
        beta3, project=PROJECT, location=LOCATION, name=queue_id("http-q"),
        uri=f"{handler.url}{path}?source=queue",
    )  # fmt: skip
    assert queue.http_target.uri_override.host == "127.0.0.1"
    assert queue.http_target.uri_override.port == handler.port
    task = beta3.create_task(
        parent=queue.name,
        task=tasks_v2beta3.Task(
            http_request=tasks_v2beta3.HttpRequest(
                url="https://placeholder.invalid/ignored?x=1", body=b"hello"
            )
        ),
    )
    seen = handler.wait(f"{path}?source=queue", 1)[0]
    assert seen.method == "POST"
    assert seen.body == b"hello"
    assert seen.headers["x-cloudtasks-queuename"] == queue.name.rsplit("/", 1)[1]
    # The task keeps its own URL; only the push is overridden.
    assert task.http_request.url == "https://placeholder.invalid/ignored?x=1"


def create_target_queue(c: Any, target: dict[str, Any]) -> str:
    """A queue with ``http_target``, created through ``c``; its name."""
    name = f"{PARENT}/queues/{queue_id('target')}"
    c.create_queue(parent=PARENT, queue={"name": name, "http_target": target})
    return name


def test_uri_method_headers_and_oidc_of_the_queue_override_the_tasks(
    surface: tuple[str, Any], emulator: Emulator, handler: Handler
) -> None:
    version, c = surface
    mod = module(version)
    path = handler.path()
    name = create_target_queue(
        c,
        {
            "uri_override": {"path_override": {"path": path}},
            "http_method": mod.HttpMethod.PUT,
            "header_overrides": [
                {"header": {"key": "X-Env", "value": "queue"}},
                {"header": {"key": "X-CloudTasks-QueueName", "value": "forged"}},
            ],
            "oidc_token": {"service_account_email": SA, "audience": "https://queue-aud.example"},
        },
    )
    target = c.get_queue(name=name).http_target
    assert target.uri_override.path_override.path == path
    assert target.oidc_token.audience == "https://queue-aud.example"
    task = c.create_task(
        parent=name,
        task={
            "http_request": {
                "url": handler.url + "/not-the-queue-path",
                "headers": {"x-env": "task", "X-Keep": "1"},
                "body": b"b",
                "oidc_token": {
                    "service_account_email": "other@x.iam.gserviceaccount.com",
                    "audience": "https://task-aud.example",
                },
            }
        },
    )
    seen = handler.wait(path, 1)[0]
    assert (seen.method, seen.body) == ("PUT", b"b")
    assert seen.headers["x-env"] == "queue"
    assert seen.headers["x-keep"] == "1"
    assert seen.headers["x-cloudtasks-queuename"] == name.rsplit("/", 1)[1]
    claims = verify(emulator, bearer(handler, path), "https://queue-aud.example")
    assert claims["email"] == SA
    # The task keeps its own request; only the push is overridden.
    assert task.http_request.url == handler.url + "/not-the-queue-path"
    assert task.http_request.http_method == mod.HttpMethod.POST
    assert task.http_request.oidc_token.audience == "https://task-aud.example"
    assert handler.requests("/not-the-queue-path") == []


def test_an_oauth_token_of_the_queue_replaces_the_tasks_token(
    surface: tuple[str, Any], handler: Handler
) -> None:
    _, c = surface
    path = handler.path()
    scope = "https://www.googleapis.com/auth/cloud-platform"
    name = create_target_queue(c, {"oauth_token": {"service_account_email": SA, "scope": scope}})
    assert c.get_queue(name=name).http_target.oauth_token.scope == scope
    task = c.create_task(
        parent=name,
        task={
            "http_request": {
                "url": handler.url + path,
                "headers": {"Authorization": "Bearer forged"},
                "oidc_token": {"service_account_email": SA, "audience": "https://aud.example"},
            }
        },
    )
    seen = handler.wait(path, 1)[0]
    # The emulator cannot mint Google access tokens: a fixed one shows the header is set.
    assert [v for k, v in seen.raw_headers if k.lower() == "authorization"] == [
        "Bearer emulator-oauth-access-token"
    ]
    assert task.http_request.oidc_token.audience == "https://aud.example"


def test_a_get_override_drops_the_body(emulator: Emulator, handler: Handler) -> None:
    path = handler.path()
    name = f"{PARENT}/queues/{queue_id('get')}"
    emulator.client.create_queue(
        parent=PARENT,
        queue=tasks_v2.Queue(
            name=name, http_target=tasks_v2.HttpTarget(http_method=tasks_v2.HttpMethod.GET)
        ),
    )
    emulator.client.create_task(
        parent=name,
        task=tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(url=handler.url + path, body=b"dropped")
        ),
    )
    seen = handler.wait(path, 1)[0]
    assert (seen.method, seen.body) == ("GET", b"")


def test_if_not_exists_fills_only_what_the_task_url_lacks(
    emulator: Emulator, beta3: Any, handler: Handler
) -> None:
    own, fallback = handler.path(), handler.path()
    name = f"{PARENT}/queues/{queue_id('ifne')}"
    beta3.create_queue(
        parent=PARENT,
        queue=tasks_v2beta3.Queue(
            name=name,
            http_target={
                "uri_override": {
                    "host": "unreachable.invalid",
                    "path_override": {"path": fallback},
                    "query_override": {"query_params": "from=queue"},
                    "uri_override_enforce_mode": 1,  # IF_NOT_EXISTS
                }
            },
        ),
    )
    for url in (handler.url + own + "?mine=1", handler.url):
        emulator.client.create_task(
            parent=name, task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=url))
        )
    assert handler.wait(own + "?mine=1", 1)
    assert handler.wait(fallback + "?from=queue", 1)


def test_an_updated_http_target_applies_to_waiting_tasks(
    emulator: Emulator, handler: Handler
) -> None:
    before, after = handler.path(), handler.path()
    name = f"{PARENT}/queues/{queue_id('upd')}"
    emulator.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))
    emulator.client.pause_queue(name=name)
    emulator.client.create_task(
        parent=name,
        task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=handler.url + before)),
    )
    emulator.client.update_queue(
        queue=tasks_v2.Queue(
            name=name,
            http_target=tasks_v2.HttpTarget(
                uri_override=tasks_v2.UriOverride(path_override=tasks_v2.PathOverride(path=after))
            ),
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["http_target"]),
    )
    emulator.client.resume_queue(name=name)
    assert handler.wait(after, 1)
    assert handler.requests(before) == []


def test_invalid_http_targets_are_refused(beta3: Any) -> None:
    bad: list[dict[str, Any]] = [
        {"uri_override": {"host": ""}},
        {"oidc_token": {"audience": "https://a.example/"}},
        {"oauth_token": {"scope": "https://www.googleapis.com/auth/cloud-platform"}},
        {"header_overrides": [{"header": {"key": "", "value": "v"}}]},
    ]
    for target in bad:
        with pytest.raises(exceptions.BadRequest):
            beta3.create_queue(
                parent=PARENT,
                queue={"name": f"{PARENT}/queues/{queue_id('bad')}", "http_target": target},
            )


def test_queue_tokens_need_only_their_service_account(beta3: Any) -> None:
    """Audience defaults to the target's URI, scope to cloud-platform (the field docs)."""
    for target in ({"oidc_token": {"service_account_email": SA}},
                   {"oauth_token": {"service_account_email": SA}}):  # fmt: skip
        name = f"{PARENT}/queues/{queue_id('tok')}"
        created = beta3.create_queue(parent=PARENT, queue={"name": name, "http_target": target})
        assert created.http_target.oidc_token.service_account_email or (
            created.http_target.oauth_token.service_account_email
        )


def _uri(**kw: Any) -> Any:
    return tasks_v2.UriOverride.pb(tasks_v2.UriOverride(**kw))


def test_override_url_parts() -> None:
    url = "https://a.example:8443/p?q=1"
    assert override_url(url, _uri(scheme=1)) == "http://a.example:8443/p?q=1"
    assert override_url(url, _uri(host="b.example")) == "https://b.example:8443/p?q=1"
    assert override_url(url, _uri(port=0)) == "https://a.example/p?q=1"
    assert override_url(url, _uri(port=81)) == "https://a.example:81/p?q=1"
    assert override_url(url, _uri(path_override={"path": ""})) == "https://a.example:8443/?q=1"
    assert override_url(url, _uri(query_override={"query_params": ""})) == (
        "https://a.example:8443/p"
    )
    assert override_url("http://[::1]:9/x", _uri(path_override={"path": "y"})) == (
        "http://[::1]:9/y"
    )
    keep = _uri(host="b.example", port=1, path_override={"path": "/z"}, uri_override_enforce_mode=1)
    assert override_url(url, keep) == url
