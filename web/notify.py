"""The ``notify`` of a submission: a webhook URL checked before the job is recorded."""

from __future__ import annotations

from flask import current_app

from offload.flaskapp import get_settings
from offload.problems import ProblemError
from offload.webhooks import WebhookUrlError, check_url, public_address
from web.schemas import Notify

__all__ = ["notify_url"]


def _refuse(msg: str) -> ProblemError:
    return ProblemError.validation(
        [{"loc": ["body", "notify", "url"], "msg": msg, "type": "notify_url"}],
        f"notify.url cannot be used: {msg}",
    )


def notify_url(notify: Notify | None) -> str | None:
    """The URL to store with the job, or a 422; hosted, it must resolve to public addresses."""
    if notify is None:
        return None
    settings = get_settings(current_app)
    if not settings.webhook_secret.get_secret_value():
        raise _refuse("webhooks are off here (no OFFLOAD_WEBHOOK_SECRET is set)")
    allow_internal = not settings.hosted
    try:
        parts = check_url(notify.url, allow_internal=allow_internal)
        if not allow_internal:
            # Checked again at send time, against the address actually connected to.
            public_address(parts, allow_internal=False)
    except WebhookUrlError as e:
        raise _refuse(str(e)) from None
    return notify.url
