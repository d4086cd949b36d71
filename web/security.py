"""Who may call what, and the headers every answer carries."""

from __future__ import annotations

from flask import Flask, Response, g, request

from offload.authn import caller_of
from offload.flaskapp import get_settings, no_content
from offload.problems import ProblemError
from web.auth import ApiAuth, Principal, make_api_auth

__all__ = ["current_principal", "init_app"]

# Reachable without credentials: health checks, App Engine's warm-up, the API's description.
PUBLIC_ENDPOINTS = frozenset(
    {"health.healthz", "health.readyz", "warmup", "start", "openapi.get_openapi", "static"}
)
_NEEDED_ROLE = {"GET": "read", "HEAD": "read"}

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
_CORS_ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-API-Key, X-Request-ID"
_CORS_EXPOSE_HEADERS = "Location, Retry-After, X-Request-ID"


def current_principal() -> Principal:
    """The authenticated caller of the request being handled."""
    principal: Principal = g.principal
    return principal


def init_app(app: Flask) -> None:
    """Authenticate every non-public request; add security and CORS headers to answers."""
    auth: ApiAuth = make_api_auth(get_settings(app))
    app.extensions["offload.api_auth"] = auth
    origins = {o.strip() for o in get_settings(app).cors_origins.split(",") if o.strip()}

    @app.before_request
    def _authenticate() -> Response | None:
        if request.method == "OPTIONS" and origins:
            return _preflight(origins)
        if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
            return None  # unknown routes fall through to the router's 404/405
        if request.blueprint == "console":
            return None  # the console signs its users in itself (web/console/access.py)
        principal = auth.authenticate(caller_of(request))
        needed = _NEEDED_ROLE.get(request.method, "submit")
        if not principal.may(needed):
            raise ProblemError(
                403,
                "Forbidden",
                f"{principal.name} has the {principal.role} role; this needs {needed}",
                slug="forbidden",
            )
        g.principal = principal
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Cache-Control", "no-store")
        origin = request.headers.get("Origin")
        if origin and origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = _CORS_EXPOSE_HEADERS
            response.headers.add("Vary", "Origin")
        return response


def _preflight(origins: set[str]) -> Response:
    response = no_content()
    origin = request.headers.get("Origin", "")
    if origin in origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE"
        response.headers["Access-Control-Allow-Headers"] = _CORS_ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        response.headers["Vary"] = "Origin"
    return response
