"""Validation and defaults of queues and tasks, as the real API applies them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emulator import errors, httptarget
from emulator.errors import invalid
from emulator.pbutil import QUEUE_RUNNING, dur_get, dur_set, ts_get, ts_set
from emulator.retry import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_DOUBLINGS,
    DEFAULT_MIN_BACKOFF,
)

MAX_RATE = 500.0
MAX_BURST = 500
MAX_CONCURRENT = 5000
DEFAULT_RATE = 500.0
DEFAULT_CONCURRENT = 1000
MAX_SCHEDULE_AHEAD = 30 * 24 * 3600.0
HTTP_DEADLINE_MAX = 30 * 60.0
APPENGINE_DEADLINE_MAX = 24 * 3600.0 + 15
DEFAULT_DEADLINE = 600.0  # HTTP default; also App Engine automatic scaling's request timeout
_HTTP_BODY_METHODS = {1, 4, 6, 0}  # POST, PUT, PATCH (unspecified = POST)
_APPENGINE_BODY_METHODS = {1, 4, 0}  # POST, PUT


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits the operator may relax for tests (see ``--min-dispatch-deadline-seconds``)."""

    min_dispatch_deadline: float = 15.0
    max_task_bytes: int = 100 * 1024


def derived_burst(rate: float) -> int:
    """The burst Cloud Tasks picks for an API-made queue: 10 at 1/s, else rate / 5."""
    if rate == 1.0:
        return 10
    return max(1, min(MAX_BURST, int(rate / 5)))


def fill_queue(q: Any, *, from_yaml: bool = False) -> None:
    """Validate a queue's limits and fill the defaults the API reports."""
    rl = q.rate_limits
    if rl.max_dispatches_per_second < 0 or rl.max_dispatches_per_second > MAX_RATE:
        raise invalid("RateLimits.max_dispatches_per_second must be in the range [0, 500].")
    if rl.max_concurrent_dispatches < 0 or rl.max_concurrent_dispatches > MAX_CONCURRENT:
        raise invalid("RateLimits.max_concurrent_dispatches must be in the range [0, 5000].")
    if rl.max_dispatches_per_second == 0:
        rl.max_dispatches_per_second = DEFAULT_RATE
    if rl.max_concurrent_dispatches == 0:
        rl.max_concurrent_dispatches = DEFAULT_CONCURRENT
    if not from_yaml or not 0 < rl.max_burst_size <= MAX_BURST:
        # Output only for API-made queues: whatever the request said is replaced.
        rl.max_burst_size = derived_burst(rl.max_dispatches_per_second)
    rc = q.retry_config
    if rc.max_attempts < -1:
        raise invalid("RetryConfig.max_attempts must be -1 (unlimited) or positive.")
    if rc.max_attempts == 0:
        rc.max_attempts = DEFAULT_MAX_ATTEMPTS
    if rc.max_doublings < 0:
        raise invalid("RetryConfig.max_doublings must not be negative.")
    if rc.max_doublings == 0 and not from_yaml:
        rc.max_doublings = DEFAULT_MAX_DOUBLINGS
    if not rc.HasField("min_backoff"):
        dur_set(rc.min_backoff, DEFAULT_MIN_BACKOFF)
    if not rc.HasField("max_backoff"):
        dur_set(rc.max_backoff, DEFAULT_MAX_BACKOFF)
    if dur_get(rc.min_backoff) < 0 or dur_get(rc.max_backoff) < dur_get(rc.min_backoff):
        raise invalid("RetryConfig.max_backoff must not be less than RetryConfig.min_backoff.")
    if rc.HasField("max_retry_duration") and dur_get(rc.max_retry_duration) < 0:
        raise invalid("RetryConfig.max_retry_duration must not be negative.")
    if q.HasField("http_target"):
        httptarget.check(q.http_target)
    if q.state == 0:
        q.state = QUEUE_RUNNING


def check_task(task: Any, *, now: float, limits: Limits) -> None:
    """Validate a task of CreateTask and fill what the API fills (times, deadline)."""
    size = task.ByteSize()
    if size > limits.max_task_bytes:
        raise invalid(
            f"Task size ({size} bytes) exceeds the limit of {limits.max_task_bytes} bytes."
        )
    if task.HasField("http_request"):
        req = task.http_request
        if not req.url:
            raise invalid(errors.URL_REQUIRED)
        if not (req.url.startswith("http://") or req.url.startswith("https://")):
            raise invalid(errors.URL_SCHEME)
        if req.body and req.http_method not in _HTTP_BODY_METHODS:
            raise invalid("HttpRequest.body is allowed only for HTTP methods POST, PUT and PATCH.")
        if req.HasField("oidc_token") and not req.oidc_token.service_account_email:
            raise invalid("OidcToken.service_account_email is required.")
        if req.HasField("oauth_token") and not req.oauth_token.service_account_email:
            raise invalid("OAuthToken.service_account_email is required.")
        if req.http_method == 0:
            req.http_method = 1  # Cloud Tasks returns an unset method as POST
        max_deadline = HTTP_DEADLINE_MAX
    elif task.HasField("app_engine_http_request"):
        req = task.app_engine_http_request
        if req.body and req.http_method not in _APPENGINE_BODY_METHODS:
            raise invalid(
                "AppEngineHttpRequest.body is allowed only for HTTP methods POST and PUT."
            )
        if req.relative_uri and not req.relative_uri.startswith("/"):
            raise invalid("AppEngineHttpRequest.relative_uri must begin with '/'.")
        if not req.relative_uri:
            req.relative_uri = "/"
        if req.body and not any(k.lower() == "content-type" for k in req.headers):
            req.headers["Content-Type"] = "application/octet-stream"
        if req.http_method == 0:
            req.http_method = 1
        max_deadline = APPENGINE_DEADLINE_MAX
    else:
        raise invalid("Task must have either http_request or app_engine_http_request set.")
    if task.HasField("dispatch_deadline"):
        deadline = dur_get(task.dispatch_deadline)
        if deadline < limits.min_dispatch_deadline or deadline > max_deadline:
            raise invalid(
                f"Task.dispatch_deadline must be between {limits.min_dispatch_deadline:g}s "
                f"and {max_deadline:g}s."
            )
    else:
        dur_set(task.dispatch_deadline, DEFAULT_DEADLINE)
    eta = ts_get(task.schedule_time) if task.HasField("schedule_time") else 0.0
    if eta > now + MAX_SCHEDULE_AHEAD:
        raise invalid("Task.schedule_time must be at most 30 days in the future.")
    if eta < now:
        ts_set(task.schedule_time, now)
    ts_set(task.create_time, now)
    for field in ("dispatch_count", "response_count", "first_attempt", "last_attempt", "view"):
        task.ClearField(field)
