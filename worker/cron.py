"""Housekeeping called by App Engine cron (or Cloud Scheduler): expiry, the reconciler."""

from __future__ import annotations

import datetime as dt
import logging

from flask import Blueprint, Response, current_app, jsonify, request

from offload.authn import AuthError, caller_of
from offload.enqueue import TaskQueue
from offload.flaskapp import get_settings, get_store
from offload.housekeeping import expire_finished
from offload.outbox import Reconciler
from offload.problems import problem_response
from offload.store import utcnow
from worker.auth import AppEngineAuthenticator, OidcAuthenticator, PushAuthenticator

__all__ = ["bp"]

log = logging.getLogger(__name__)
bp = Blueprint("cron", __name__)


def _from_scheduler() -> bool:
    """Whether the request comes from App Engine cron or carries a verified scheduler token."""
    auth: PushAuthenticator = current_app.extensions["offload.auth"]
    if isinstance(auth, OidcAuthenticator):
        try:
            auth.authenticate(caller_of(request))
        except AuthError:
            return False
        return True
    if isinstance(auth, AppEngineAuthenticator):
        # App Engine sets X-Appengine-Cron on cron requests and strips it from others:
        # believed only where it does (or from loopback locally).
        return (
            auth.vouches(caller_of(request)) and request.headers.get("X-Appengine-Cron") == "true"
        )
    return False


def _refused() -> Response:
    log.warning("cron call refused: not from App Engine cron or the scheduler")
    return problem_response(403, "Forbidden", "only the scheduler may call this")


@bp.get("/cron/reconcile")
def reconcile() -> Response:
    """Enqueue again every unfinished job whose Cloud Task was never created or is gone."""
    if not _from_scheduler():
        return _refused()
    tasks: TaskQueue = current_app.extensions["offload.tasks"]
    report = Reconciler(get_store(current_app), tasks, get_settings(current_app)).run_once()
    return jsonify(report.as_dict())


@bp.get("/cron/expire")
def expire() -> Response:
    """Expire old finished jobs; only App Engine cron or a verified scheduler token may call."""
    if not _from_scheduler():
        return _refused()
    count = expire_finished(get_store(current_app), get_settings(current_app).job_retention_seconds)
    cutoff = utcnow() - dt.timedelta(seconds=get_settings(current_app).stale_run_seconds)
    reaped = get_store(current_app).reap(lease_expired_before=cutoff)
    if reaped:
        log.warning("%d jobs whose runner died were left running: failed as interrupted", reaped)
    # Parents' wake-ups and webhook tasks that failed to be created: the reconciler's.
    return jsonify({"expired": count, "reaped": reaped})
