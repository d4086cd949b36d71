"""Who is using the console: the API's own authentication, and CSRF checks on every action.

- ``api_key``: a sign-in form takes a key; the session then holds the key's principal
  (name and role), never the key, and is checked against the configured keys on every
  request, so removing a key signs its sessions out.
- ``iap``: Identity-Aware Proxy's signed header, on every request (the browser is
  signed in already).
- ``none``: open, as the API is (local use only).

Every POST carries the session's CSRF token in a hidden field; the cookie is also
SameSite=Strict, and a POST whose ``Origin`` names another host is refused.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import urlsplit

from flask import (
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from offload.authn import Caller
from offload.problems import ProblemError
from offload.requestctx import HeaderMap
from web.auth import ApiAuth, ApiKeyAuth, Principal
from web.console.blueprint import PREFIX, bp

__all__ = ["csrf_token", "require_role"]

log = logging.getLogger(__name__)

_OPEN_ENDPOINTS = frozenset({"console.static", "console.sign_in"})


def _auth() -> ApiAuth:
    auth: ApiAuth = current_app.extensions["offload.api_auth"]
    return auth


def csrf_token() -> str:
    """The session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def _check_csrf() -> None:
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise ProblemError(403, "Forbidden", "a request from another site was refused")
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf")
    if not (isinstance(expected, str) and hmac.compare_digest(sent, expected)):
        raise ProblemError(
            403,
            "Forbidden",
            "the form's security token is missing or stale: reload the page and try again",
        )


def _authenticate_headers(auth: ApiAuth, headers: HeaderMap) -> Principal:
    # The one place the console calls the API's authenticator (sign-in, IAP, none).
    return auth.authenticate(Caller(headers, request.remote_addr))


def _session_principal(auth: ApiKeyAuth) -> Principal | None:
    data = session.get("principal")
    if not isinstance(data, dict):
        return None
    principal = Principal(str(data.get("name")), str(data.get("role")))
    if not auth.knows(principal):  # the key was removed, or its role changed
        session.clear()
        return None
    return principal


@bp.before_request
def _authenticate() -> BaseResponse | None:
    """Set ``g.principal`` for the console's pages (the API's hook leaves them to us)."""
    if request.method == "POST":
        _check_csrf()
    if request.endpoint in _OPEN_ENDPOINTS:
        return None
    auth = _auth()
    if isinstance(auth, ApiKeyAuth):
        principal = _session_principal(auth)
        if principal is None:
            if request.endpoint in ("console.job_json", "console.job_events"):
                raise ProblemError(401, "Unauthorized", "sign in to the console again")
            return redirect(url_for("console.sign_in", next=request.full_path.rstrip("?")))
    else:
        # IAP: its header on every request (a 401 page without it); none: everyone.
        principal = _authenticate_headers(auth, request.headers)
    g.principal = principal
    return None


def require_role(needed: str) -> Principal:
    """The signed-in principal, if its role includes ``needed``; else a 403."""
    principal: Principal = g.principal
    if not principal.may(needed):
        raise ProblemError(
            403,
            "Forbidden",
            f"{principal.name} has the {principal.role} role; this needs {needed}",
        )
    return principal


def _safe_next(target: str | None) -> str:
    # Only a path of the console: never an open redirect to another site.
    if target and target.startswith(PREFIX) and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("console.list_jobs")


@bp.route("/signin", methods=["GET", "POST"])
def sign_in() -> BaseResponse | str | tuple[str, int]:
    """The sign-in form (API keys): the key is checked, its principal kept in the session."""
    auth = _auth()
    target = _safe_next(request.values.get("next"))
    if not isinstance(auth, ApiKeyAuth):
        return redirect(target)
    if request.method == "GET":
        return render_template("console/signin.html", next=target, error=None)
    key = request.form.get("key", "").strip()
    try:
        principal = _authenticate_headers(auth, {"Authorization": f"Bearer {key}"})
    except ProblemError:
        log.info("console sign-in refused")
        page = render_template("console/signin.html", next=target, error="That key is not valid.")
        return page, 401
    session.clear()  # a fresh session (and CSRF token) for the signed-in principal
    session.permanent = True
    session["principal"] = {"name": principal.name, "role": principal.role}
    log.info("console sign-in of %s", principal.name)
    flash(f"Signed in as {principal.name} ({principal.role}).", "ok")
    return redirect(target)


@bp.post("/signout")
def sign_out() -> Response | BaseResponse:
    """End the session."""
    session.clear()
    flash("Signed out.", "ok")
    return redirect(url_for("console.sign_in"))


@bp.context_processor
def _template_values() -> dict[str, bool]:
    return {"signs_in": isinstance(_auth(), ApiKeyAuth)}
