"""What one attempt sends: URL, method, headers and body, for HTTP and App Engine targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Routes:
    """App Engine service name -> base URL, with a fallback for unmapped services."""

    services: dict[str, str]
    default_url: str | None = None

    def base_url(self, service: str) -> str:
        """The base URL that stands in for an App Engine service."""
        url = self.services.get(service) or self.default_url or self.services.get("default")
        if not url:
            raise RoutingError(f"no URL for App Engine service {service!r}")
        return url.rstrip("/")


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
        return Outgoing(METHOD_NAMES[req.http_method], parse_url(req.url), headers, req.body)

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
