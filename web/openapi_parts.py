"""The self-contained pieces of the OpenAPI document (web/openapi.py): security, events, webhook."""

from __future__ import annotations

from typing import Any

__all__ = ["EVENTS_DESCRIPTION", "SCHEMES", "SSE_EVENT", "WEBHOOK"]

_REF = "#/components/schemas/{model}"

SSE_EVENT = {
    "type": "object",
    "description": "One event of the stream; `data` is JSON (see the operation's text).",
    "required": ["event", "data", "id"],
    "properties": {
        "event": {"enum": ["status", "progress", "attempt", "step", "finished"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}

EVENTS_DESCRIPTION = """Server-Sent Events (text/event-stream) of the job's changes, oldest first:

- `status`: `{"status", "reason", "attempts", "cancel_requested"}` (queued, running, ...)
- `progress`: `{"fraction", "message"}`
- `attempt`: `{"number", "delivery"}` when an attempt starts, `{"number", "outcome"}` when it ends
- `step`: `{"name", "status", "run"}` when a durable job's `ctx.step` starts, succeeds or fails
- `finished`: the job resource (as `GET /jobs/{job_id}` answers it); the stream then ends

Every event has an `id:`; reconnect with `Last-Event-ID` to get what came after it, and
nothing twice. An idle stream carries a `: keep-alive` comment every 15 s, and ends
after `OFFLOAD_STREAM_MAX_SECONDS` (280 s) so that it ends before the platform cuts it:
reconnect with `Last-Event-ID`. Behind App Engine standard, which buffers streamed
answers, the events arrive together when the stream ends: prefer `?wait=` there."""


# What each OFFLOAD_API_AUTH mode enforces, as OpenAPI security schemes: the document
# describes the running service, so clients and checkers (schemathesis sends requests
# without and with wrong credentials) see what it really asks for.
SCHEMES: dict[str, dict[str, Any]] = {
    "api_key": {
        "bearerKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key as a bearer token.",
        },
        "apiKeyHeader": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key in its own header.",
        },
    },
    "iap": {
        "iapAssertion": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Goog-IAP-JWT-Assertion",
            "description": "Identity-Aware Proxy's signed assertion (set by IAP, not clients).",
        },
    },
    "none": {},
}


def _signature_header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": True, "description": description}


# What a `notify.url` receives once its job has finished (OpenAPI 3.1 `webhooks`).
WEBHOOK: dict[str, Any] = {
    "post": {
        "operationId": "job_finished",
        "summary": "Sent to `notify.url` when the job has finished, signed at send time.",
        "description": "Signed as the Standard Webhooks specification says, with the "
        "secret OFFLOAD_WEBHOOK_SECRET (`whsec_` form). Any 2xx answer ends the delivery; "
        "anything else is retried with the webhook queue's backoff, each try signed anew.",
        "parameters": [
            dict(
                _signature_header("webhook-id", "The delivery's id, the same on every try."),
                schema={"type": "string"},
            ),
            dict(
                _signature_header("webhook-timestamp", "Unix seconds when this try was sent."),
                schema={"type": "string", "pattern": "^[0-9]+$"},
            ),
            dict(
                _signature_header(
                    "webhook-signature",
                    "`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, space-separated.",
                ),
                schema={"type": "string"},
            ),
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["type", "timestamp", "data"],
                        "properties": {
                            "type": {"enum": ["job.succeeded", "job.failed", "job.cancelled"]},
                            "timestamp": {"type": "string", "format": "date-time"},
                            "data": {"$ref": _REF.format(model="JobResource")},
                        },
                    }
                }
            },
        },
        "responses": {"2XX": {"description": "Received; not sent again."}},
    }
}
