"""``GET /openapi.json``: the API described in OpenAPI 3.1, built from the code's own models.

The submission schema is a ``oneOf`` with one branch per registered job type, each with
that type's payload model and budget, so the description never drifts from the code.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from offload.flaskapp import get_settings
from offload.jsondepth import MAX_JSON_DEPTH
from offload.registry import JobRegistry, JobType, get_registry
from offload.store import STATUSES
from web.batch import MAX_BATCH
from web.longpoll import MAX_WAIT_SECONDS
from web.openapi_batch import batch_item_schema, batch_paths
from web.openapi_parts import EVENTS_DESCRIPTION, SCHEMES, SSE_EVENT, WEBHOOK
from web.schemas import (
    MAX_DELAY_SECONDS,
    BatchAnswer,
    JobPage,
    JobResource,
    Notify,
    Problem,
)

__all__ = ["bp", "build_spec"]

bp = Blueprint("openapi", __name__)

_REF = "#/components/schemas/{model}"
_PROBLEM = {"application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}}
_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-hjkmnp-tv-z]{26}$"},
}
_HEADERS = {
    "X-Request-ID": {
        "description": "The request id (the client's, when valid); quote it when reporting.",
        "schema": {"type": "string"},
    }
}


def _problems(*codes: int) -> dict[str, Any]:
    titles = {
        400: f"Malformed request, or JSON nested more than {MAX_JSON_DEPTH} levels deep",
        401: "No or invalid credentials",
        403: "Credentials without the needed role",
        404: "No such job (or not yours)",
        409: "The job's state does not allow this",
        413: "Body or payload too large",
        415: "Not JSON",
        422: "Validation failed (see errors)",
        503: "The job store could not record the job (nothing was recorded), or the "
        "instance has its share of open streams; retry after Retry-After. An unreachable "
        "Cloud Tasks is no error: the job is accepted with its wake-up pending",
    }
    return {
        str(c): {"description": titles[c], "content": _PROBLEM, "headers": _HEADERS} for c in codes
    }


def _readiness(description: str) -> dict[str, Any]:
    check = {
        "type": "object",
        "properties": {
            "status": {"enum": ["ok", "down", "timeout"]},
            "detail": {"type": "string"},
            "latency_ms": {"type": "number"},
            "age_seconds": {"type": "number"},
        },
        "required": ["status", "detail"],
    }
    schema = {
        "type": "object",
        "properties": {
            "status": {"enum": ["ready", "degraded", "unavailable"]},
            "checks": {"type": "object", "additionalProperties": check},
        },
        "required": ["status", "checks"],
    }
    return {
        "description": description,
        "headers": _HEADERS,
        "content": {"application/json": {"schema": schema}},
    }


# What a client can do next with the job an answer names (OpenAPI links, which stateful
# testing follows).
_JOB_LINKS = {
    "GetJob": {"operationId": "get_job", "parameters": {"job_id": "$response.body#/id"}},
    "CancelJob": {"operationId": "cancel_job", "parameters": {"job_id": "$response.body#/id"}},
    "ResubmitJob": {
        "operationId": "resubmit_job",
        "parameters": {"job_id": "$response.body#/id"},
    },
}


def _job(description: str, *, location: bool = False, links: bool = False) -> dict[str, Any]:
    headers: dict[str, Any] = dict(_HEADERS)
    headers["Retry-After"] = {
        "description": "Seconds to wait before polling again (unfinished jobs).",
        "schema": {"type": "string"},
    }
    if location:
        headers["Location"] = {
            "description": "The job's status monitor.",
            "schema": {"type": "string"},
        }
    answer: dict[str, Any] = {
        "description": description,
        "headers": headers,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="JobResource")}}},
    }
    if links:
        answer["links"] = _JOB_LINKS
    return answer


def _submit_branch(jt: JobType, payload_ref: str) -> dict[str, Any]:
    return {
        "type": "object",
        "title": f"Submit {jt.name}",
        "description": jt.description,
        "properties": {
            "type": {"const": jt.name},
            "payload": {"$ref": payload_ref},
            "delay_seconds": {"type": "number", "minimum": 0, "maximum": MAX_DELAY_SECONDS},
            "deadline_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": jt.deadline_seconds,
            },
            "notify": {"$ref": _REF.format(model="Notify")},
        },
        # A payload with required fields must be sent; otherwise it defaults to {}.
        "required": ["type", "payload"]
        if any(f.is_required() for f in jt.payload_model.model_fields.values())
        else ["type"],
        "additionalProperties": False,
    }


def _without_auth_problems(paths: dict[str, Any]) -> None:
    """No credentials are asked for: no operation can answer 401 or 403."""
    for item in paths.values():
        for operation in item.values():
            if isinstance(operation, dict):
                for code in ("401", "403"):
                    operation.get("responses", {}).pop(code, None)


def build_spec(registry: JobRegistry, auth_mode: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``registry``'s job types and ``auth_mode``'s security."""
    spec = _build_spec(registry)
    schemes = SCHEMES[auth_mode]
    spec["components"]["securitySchemes"] = schemes
    if schemes:
        spec["security"] = [{name: []} for name in schemes]
    else:
        spec.pop("security")
        spec["components"].pop("securitySchemes")
        _without_auth_problems(spec["paths"])
    return spec


def _build_spec(registry: JobRegistry) -> dict[str, Any]:
    types = list(registry)
    models: list[tuple[type[BaseModel], Any]] = [
        (m, "serialization") for m in (JobResource, JobPage, Problem, BatchAnswer)
    ]
    models.append((Notify, "validation"))
    payload_names = {}
    for jt in types:
        models.append((jt.payload_model, "validation"))
        payload_names[jt.name] = jt.payload_model.__name__
    refs, defs = models_json_schema(models, ref_template=_REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    branches = [_submit_branch(jt, refs[(jt.payload_model, "validation")]["$ref"]) for jt in types]
    submit = {
        "title": "SubmitJob",
        "description": f"Objects and arrays may nest at most {MAX_JSON_DEPTH} levels deep in "
        "the whole body (the body is the first level, the payload the second); deeper is a "
        "400 (too-deep). Fields are strict: numbers are JSON numbers, never strings.",
        "oneOf": branches,
    }
    schemas["SubmitJob"] = submit
    schemas["SubmitBatchItem"] = batch_item_schema(branches)
    submit_body = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="SubmitJob")}}},
    }
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Offload",
            "version": "1",
            "description": "Submit long jobs, run them on Cloud Tasks, watch them finish: "
            "poll, long-poll (`GET /jobs/{job_id}?wait=N`), stream "
            "(`GET /jobs/{job_id}/events`) or be called (`notify.url`, a webhook signed "
            "as Standard Webhooks says with OFFLOAD_WEBHOOK_SECRET: `webhook-id`, "
            "`webhook-timestamp`, `webhook-signature`; body `{type: job.succeeded | "
            "job.failed | job.cancelled, timestamp, data: the job}`). List items leave out "
            "`attempt_log`. Every error is application/problem+json with the request id.",
        },
        "security": [],
        "paths": {
            "/jobs": {
                "post": {
                    "operationId": "submit_job",
                    "summary": "Submit a job; answered at once with its status monitor.",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
                        }
                    ],
                    "requestBody": submit_body,
                    "responses": {
                        "202": _job("Accepted: the job is queued.", location=True, links=True),
                        "200": _job(
                            "An idempotent repeat: the job first submitted with this key.",
                            location=True,
                            links=True,
                        ),
                        **_problems(400, 401, 403, 413, 415, 422, 503),
                    },
                },
                "get": {
                    "operationId": "list_jobs",
                    "summary": "A page of jobs, newest first.",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(STATUSES)},
                        },
                        {
                            "name": "type",
                            "in": "query",
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,100}$"},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "default": 20},
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "schema": {"type": "string", "pattern": "^[0-9a-hjkmnp-tv-z]{26}$"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The page; `next` links the following one.",
                            "headers": _HEADERS,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": _REF.format(model="JobPage")}
                                }
                            },
                        },
                        **_problems(401, 403, 422),
                    },
                },
            },
            "/jobs/{job_id}": {
                "parameters": [_JOB_ID],
                "get": {
                    "operationId": "get_job",
                    "summary": "The job's status monitor; with `wait`, a long-poll.",
                    "parameters": [
                        {
                            "name": "wait",
                            "in": "query",
                            "required": False,
                            "description": "Answer once the job has finished (within 0.5 s "
                            "of it), or after this many seconds with its current state.",
                            "schema": {
                                "type": "number",
                                "minimum": 0,
                                "maximum": MAX_WAIT_SECONDS,
                            },
                        }
                    ],
                    "responses": {"200": _job("The job."), **_problems(401, 403, 404, 422)},
                },
                "delete": {
                    "operationId": "cancel_job",
                    "summary": "Cancel the job.",
                    "description": "Cancels, never removes: the job stays readable (GET "
                    "answers 200 with status cancelled) and a later DELETE answers 409. "
                    "`x-delete-removes: false` says so to tools that assume a DELETE removes.",
                    "x-delete-removes": False,
                    "responses": {
                        "204": {
                            "description": "Cancelled before it ran; its task is deleted.",
                            "headers": _HEADERS,
                        },
                        "202": _job("Running: asked to stop at its next checkpoint."),
                        **_problems(401, 403, 404, 409),
                    },
                },
            },
            "/jobs/{job_id}/events": {
                "parameters": [_JOB_ID],
                "get": {
                    "operationId": "stream_job_events",
                    "summary": "The job's events as they happen (Server-Sent Events).",
                    "description": EVENTS_DESCRIPTION,
                    "parameters": [
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "required": False,
                            "description": "The id of the last event received; empty "
                            "(as a client with none yet may send it) streams from the start.",
                            # HTTP drops the blanks around a field value, and so does web.
                            "schema": {"type": "string", "pattern": "^[ \t]*[0-9]{0,18}[ \t]*$"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The event stream.",
                            "headers": _HEADERS,
                            # OpenAPI 3.1 (before 3.2's itemSchema): the schema is one event's.
                            "content": {"text/event-stream": {"schema": SSE_EVENT}},
                        },
                        **_problems(401, 403, 404, 422, 503),
                    },
                },
            },
            "/jobs/{job_id}/resubmit": {
                "parameters": [_JOB_ID],
                "post": {
                    "operationId": "resubmit_job",
                    "summary": "Submit a failed or cancelled job again as a new job.",
                    "responses": {
                        "202": _job("The new job.", location=True, links=True),
                        **_problems(401, 403, 404, 409, 413, 503),
                    },
                },
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness: the process answers; touches no dependency.",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Up.",
                            "headers": _HEADERS,
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"status": {"const": "ok"}},
                                        "required": ["status"],
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: the store and Cloud Tasks, each checked within 1 s "
                    "and cached 2 s. 503 only when the store is unreachable; without Cloud "
                    "Tasks the status is degraded.",
                    "security": [],
                    "responses": {
                        "200": _readiness("Ready (or degraded: Cloud Tasks not answering)."),
                        "503": _readiness("The store is unreachable."),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "get_openapi",
                    "summary": "This document.",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1.",
                            "headers": _HEADERS,
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {},
        },
    }
    spec["paths"].update(batch_paths(_JOB_ID, _problems, _HEADERS, MAX_BATCH))
    spec["webhooks"] = {"jobFinished": WEBHOOK}
    return spec


@bp.get("/openapi.json")
def get_openapi() -> Response:
    """The OpenAPI document (public)."""
    spec = current_app.extensions.get("offload.openapi")
    if spec is None:
        spec = current_app.extensions["offload.openapi"] = build_spec(
            get_registry(current_app), get_settings(current_app).api_auth
        )
    return jsonify(spec)
