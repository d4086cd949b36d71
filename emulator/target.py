"""What one attempt sends: URL, method, headers and body, for HTTP and App Engine targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from emulator import httptarget
from emulator.httpclient import Target, parse_url
from emulator.oidc import Signer
from emulator.pbutil import METHOD_NAMES

HTTP_USER_AGENT = "Google-Cloud-Tasks"
APPENGINE_USER_AGENT = "AppEngine-Google; (+http://code.google.com/appengine)"
# Headers Cloud Tasks sets or replaces itself; a task's own copies are dropped.
_REPLACED = frozenset({"host", "content-length", "user-agent", "connection", "transfer-encoding"})
_REPLACED_PREFIXES = ("x-google-", "x-appengine-", "x-cloudtasks-")
_KEPT_APPENGINE = frozenset({"x-appengine-failfast"})


class RoutingError(Exception):
    """No URL is known for the App Engine service a task is routed to."""


class Routes:
    """Where pushes go: App Engine service -> instance URLs, HTTP target aliases.

    A service (or an aliased HTTP origin) given several URLs stands for several instances:
    each attempt takes the next one, round-robin, as App Engine spreads requests.
    """

    def __init__(
        self,
        services: dict[str, list[str]],
        default_url: str | None = None,
        http_aliases: dict[str, list[str]] | None = None,
    ) -> None:
        self.services = {k: [u.rstrip("/") for u in v] for k, v in services.items()}
        self.default_url = default_url.rstrip("/") if default_url else None
        self.http_aliases = {
            origin_of(k): [u.rstrip("/") for u in v] for k, v in (http_aliases or {}).items()
        }
        self._turn: dict[str, int] = {}

    def _pick(self, key: str, urls: list[str]) -> str:
        if len(urls) == 1:
            return urls[0]
        turn = self._turn.get(key, 0)
        self._turn[key] = turn + 1
        return urls[turn % len(urls)]

    def base_url(self, service: str) -> str:
        """The base URL standing in for an App Engine service (its next instance)."""
        if service in self.services:
            return self._pick(service, self.services[service])
        if self.default_url:
            return self.default_url
        if "default" in self.services:
            return self._pick("default", self.services["default"])
        raise RoutingError(f"no URL for App Engine service {service!r}")

    def http_url(self, url: str) -> str:
        """An HTTP target's URL, its origin replaced by the next URL of its alias, if any."""
        if not self.http_aliases:
            return url
        origin = origin_of(url)
        urls = self.http_aliases.get(origin)
        if urls is None:
            return url
        return self._pick(origin, urls) + url[len(origin) :]


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased (what an alias matches on)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(slots=True)
class Outgoing:
    """One attempt's request."""

    method: str
    target: Target
    headers: list[tuple[str, str]]
    body: bytes


def _own_headers(headers: Any, keep: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    out = []
    for name, value in headers.items():
        low = name.lower()
        if low in keep or (low not in _REPLACED and not low.startswith(_REPLACED_PREFIXES)):
            out.append((name, value))
    return out


def build(
    task: Any,
    *,
    queue: Any,
    queue_id: str,
    task_id: str,
    retry_count: int,
    exec_count: int,
    eta: float,
    prev_status: int | None,
    prev_reason: str,
    routes: Routes,
    signer: Signer,
) -> Outgoing:
    """The request for this attempt of ``task`` (raises RoutingError for an unmapped service)."""
    if task.HasField("http_request"):
        req = task.http_request
        if queue.HasField("http_target"):
            req = httptarget.effective_request(req, queue.http_target)
        headers = _own_headers(req.headers)
        if req.HasField("oidc_token"):
            headers = [h for h in headers if h[0].lower() != "authorization"]
            audience = req.oidc_token.audience or req.url
            token = signer.token(audience=audience, email=req.oidc_token.service_account_email)
            headers.append(("Authorization", f"Bearer {token}"))
        elif req.HasField("oauth_token"):
            # An emulator cannot mint Google access tokens; the header's presence is shown.
            headers = [h for h in headers if h[0].lower() != "authorization"]
            headers.append(("Authorization", "Bearer emulator-oauth-access-token"))
        headers += [
            ("User-Agent", HTTP_USER_AGENT),
            ("X-CloudTasks-QueueName", queue_id),
            ("X-CloudTasks-TaskName", task_id),
            ("X-CloudTasks-TaskRetryCount", str(retry_count)),
            ("X-CloudTasks-TaskExecutionCount", str(exec_count)),
            ("X-CloudTasks-TaskETA", f"{eta:.6f}"),
        ]
        if prev_status is not None:
            headers.append(("X-CloudTasks-TaskPreviousResponse", str(prev_status)))
            headers.append(("X-CloudTasks-TaskRetryReason", ""))
        url = routes.http_url(req.url)
        return Outgoing(METHOD_NAMES[req.http_method], parse_url(url), headers, req.body)

    req = task.app_engine_http_request
    service = (
        queue.app_engine_routing_override.service or req.app_engine_routing.service or "default"
    )
    url = routes.base_url(service) + req.relative_uri
    headers = _own_headers(req.headers, _KEPT_APPENGINE)
    headers += [
        ("User-Agent", APPENGINE_USER_AGENT),
        ("X-AppEngine-QueueName", queue_id),
        ("X-AppEngine-TaskName", task_id),
        ("X-AppEngine-TaskRetryCount", str(retry_count)),
        ("X-AppEngine-TaskExecutionCount", str(exec_count)),
        ("X-AppEngine-TaskETA", f"{eta:.6f}"),
    ]
    if prev_status is not None:
        headers.append(("X-AppEngine-TaskPreviousResponse", str(prev_status)))
        headers.append(("X-AppEngine-TaskRetryReason", prev_reason))
    return Outgoing(METHOD_NAMES[req.http_method], parse_url(url), headers, req.body)
