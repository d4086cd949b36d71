"""Every error answer is ``application/problem+json`` (RFC 9457); status codes are decided here.

Route handlers raise :class:`ProblemError` (or a subclass's factory); the router's own
404/405/413 and any unexpected exception are turned into the same shape. No HTML page
and no stack trace ever reaches a client: unexpected errors go to the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from flask import Flask, Response, g, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from offload.errors import OffloadError

__all__ = ["ProblemError", "init_app", "problem_response", "validation_errors"]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://offload.dev/problems/"


class ProblemError(OffloadError):
    """An error answer: raise it from a route to send a problem+json response."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The problem+json object of this error (an entry of a batch answer, say)."""
        body: dict[str, Any] = {
            "type": _TYPE_BASE + self.slug if self.slug else "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        return body

    @classmethod
    def validation(cls, errors: Sequence[Mapping[str, Any]], detail: str) -> ProblemError:
        """422: the request is well-formed JSON but its content is not acceptable."""
        return cls(422, "Validation failed", detail, slug="validation-error", errors=errors)

    @classmethod
    def not_found(cls, what: str) -> ProblemError:
        """404 for a named resource."""
        return cls(404, "Not Found", f"{what} does not exist", slug="not-found")


def validation_errors(
    exc: ValidationError, prefix: Sequence[str | int] = ()
) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{"loc", "msg", "type"}`` items, locations under ``prefix``."""
    return [
        {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A problem+json response carrying the request id."""
    body: dict[str, Any] = {
        "type": _TYPE_BASE + slug if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": g.get("request_id"),
    }
    if errors is not None:
        body["errors"] = list(errors)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    """Answer every error of ``app`` with problem+json."""

    @app.errorhandler(ProblemError)
    def _problem(e: ProblemError) -> Response:
        return problem_response(
            e.status, e.title, e.detail, slug=e.slug, errors=e.errors, headers=e.headers
        )

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException) -> Response:
        status = e.code or 500
        headers: dict[str, str] = {}
        if isinstance(e, MethodNotAllowed):
            headers["Allow"] = ", ".join(sorted(e.valid_methods or ()))
        detail = {
            404: f"no resource at {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
            413: "the request body is larger than this service accepts",
        }.get(status, e.description or e.name)
        return problem_response(status, e.name, detail, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Response:
        log.error("unexpected error handling %s %s", request.method, request.path, exc_info=e)
        return problem_response(
            500,
            "Internal Server Error",
            "the server failed to handle this request; quote the request id when reporting it",
        )
