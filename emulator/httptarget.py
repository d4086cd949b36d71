"""A queue's ``http_target``: what it overrides in its HTTP tasks' pushes, and its checks.

Applied at each attempt, as Cloud Tasks does, so an UpdateQueue changes the pushes of
tasks already waiting. The task keeps its own request; only the push differs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from emulator.errors import invalid

SCHEME_HTTP, SCHEME_HTTPS = 1, 2
IF_NOT_EXISTS = 1
METHOD_GET, METHOD_HEAD = 2, 3


def check(target: Any) -> None:
    """Refuse a queue ``http_target`` that Cloud Tasks refuses."""
    uri = target.uri_override
    if uri.HasField("host") and not uri.host:
        raise invalid("UriOverride.host cannot be an empty string.")
    if uri.HasField("port") and uri.port < 0:
        raise invalid("UriOverride.port must be a positive integer.")
    # The client's own field docs: an OIDC audience defaults to the target's URI and an
    # OAuth scope to cloud-platform; only the service account is required (as for tasks).
    if target.HasField("oidc_token") and not target.oidc_token.service_account_email:
        raise invalid("HttpTarget.oidc_token needs a service_account_email.")
    if target.HasField("oauth_token") and not target.oauth_token.service_account_email:
        raise invalid("HttpTarget.oauth_token needs a service_account_email.")
    for override in target.header_overrides:
        if not override.header.key:
            raise invalid("HttpTarget.header_overrides keys cannot be empty.")


def override_url(url: str, uri: Any) -> str:
    """The task URL after the queue's ``uri_override``."""
    parts = urlsplit(url)
    only_missing = uri.uri_override_enforce_mode == IF_NOT_EXISTS
    scheme, netloc, path, query = parts.scheme, parts.netloc, parts.path, parts.query
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if not only_missing:  # a task URL always has a scheme and a host
        if uri.HasField("scheme") and uri.scheme in (SCHEME_HTTP, SCHEME_HTTPS):
            scheme = "http" if uri.scheme == SCHEME_HTTP else "https"
        if uri.HasField("host"):
            host = uri.host
    if uri.HasField("port") and not (only_missing and port is not None):
        port = uri.port or None  # 0 clears the port
    netloc = host if port is None else f"{host}:{port}"
    if uri.HasField("path_override") and not (only_missing and path not in ("", "/")):
        path = uri.path_override.path
        if path and not path.startswith("/"):
            path = "/" + path
    if uri.HasField("query_override") and not (only_missing and query):
        query = uri.query_override.query_params
    return urlunsplit((scheme, netloc, path or "/", query, ""))


def effective_request(req: Any, target: Any) -> Any:
    """The task's HttpRequest as its queue's ``http_target`` makes it (a copy)."""
    out = type(req)()
    out.CopyFrom(req)
    if target.HasField("uri_override"):
        out.url = override_url(req.url, target.uri_override)
    if target.http_method:
        out.http_method = target.http_method
        if target.http_method in (METHOD_GET, METHOD_HEAD):
            out.ClearField("body")  # "the body of the task will be ignored"
    for override in target.header_overrides:
        key = override.header.key
        for name in [k for k in out.headers if k.lower() == key.lower()]:
            del out.headers[name]
        out.headers[key] = override.header.value
    if target.HasField("oidc_token"):
        out.oidc_token.CopyFrom(target.oidc_token)
    elif target.HasField("oauth_token"):
        out.oauth_token.CopyFrom(target.oauth_token)
    return out
