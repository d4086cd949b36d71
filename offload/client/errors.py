"""The client's exceptions: every problem+json answer becomes an :class:`OffloadAPIError`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from offload.errors import OffloadError

if TYPE_CHECKING:
    import httpx

    from offload.client.models import Job

__all__ = [
    "AuthenticationError",
    "ClientError",
    "ConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "OffloadAPIError",
    "PermissionDeniedError",
    "RequestError",
    "ServerError",
    "ServiceUnavailableError",
    "ServiceUnreachableError",
    "WaitTimeoutError",
    "error_from_response",
]


class ClientError(OffloadError):
    """Base of every error the Offload client raises."""


class ServiceUnreachableError(ClientError):
    """No answer from the service (connection refused, reset or timed out), retries used."""


class WaitTimeoutError(ClientError):
    """``wait`` gave up before the job finished; ``job`` is its last known state."""

    def __init__(self, message: str, job: Job | None) -> None:
        super().__init__(message)
        self.job = job


class OffloadAPIError(ClientError):
    """The service answered with an error (an RFC 9457 problem)."""

    def __init__(
        self,
        status: int,
        *,
        type: str = "about:blank",
        title: str = "",
        detail: str = "",
        errors: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" if title else f"{status}: {detail}")
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.request_id = request_id
        self.retry_after = retry_after


class RequestError(OffloadAPIError):
    """A 4xx answer: the request cannot succeed as it is."""


class InvalidRequestError(RequestError):
    """400, 413, 415 or 422: malformed or invalid input; ``errors`` lists each problem."""


class AuthenticationError(RequestError):
    """401: no or bad credentials."""


class PermissionDeniedError(RequestError):
    """403: valid credentials without the role."""


class NotFoundError(RequestError):
    """404: no such job (or not visible to these credentials)."""


class ConflictError(RequestError):
    """409: the job's state does not allow it (already finished, not resubmittable)."""


class ServerError(OffloadAPIError):
    """A 5xx answer."""


class ServiceUnavailableError(ServerError):
    """503: the service cannot take the request now; ``retry_after`` says when to try."""


_BY_STATUS: dict[int, type[OffloadAPIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidRequestError,
    415: InvalidRequestError,
    422: InvalidRequestError,
    503: ServiceUnavailableError,
}


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare, and a default backoff serves as well


def error_from_response(response: httpx.Response) -> OffloadAPIError:
    """The typed exception for an error answer (problem+json, or anything a proxy sent)."""
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else RequestError)
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # Not a problem document (a proxy's HTML page, say): keep a short, printable excerpt.
        text = response.content[:200].decode("utf-8", "replace").strip()
        body = {"title": response.reason_phrase, "detail": text}
    errors = body.get("errors")
    return cls(
        status,
        type=str(body.get("type") or "about:blank"),
        title=str(body.get("title") or ""),
        detail=str(body.get("detail") or ""),
        errors=[e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else None,
        request_id=(
            str(body["request_id"])
            if body.get("request_id")
            else response.headers.get("X-Request-ID")
        ),
        retry_after=_retry_after(response.headers.get("Retry-After")),
    )


def error_from_problem(status: int, body: Any, request_id: str | None = None) -> OffloadAPIError:
    """The typed exception for one problem document (an entry of a batch answer)."""
    if not isinstance(body, dict):
        body = {}
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else RequestError)
    errors = body.get("errors")
    return cls(
        status,
        type=str(body.get("type") or "about:blank"),
        title=str(body.get("title") or ""),
        detail=str(body.get("detail") or ""),
        errors=[e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else None,
        request_id=request_id,
        retry_after=None,
    )
