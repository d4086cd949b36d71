"""The OpenAPI description of ``POST /jobs/batch`` and ``GET /jobs/{job_id}/children``."""

from __future__ import annotations

from typing import Any

__all__ = ["batch_item_schema", "batch_paths"]

_REF = "#/components/schemas/{model}"
_IDEMPOTENCY = {
    "type": "string",
    "pattern": "^[!-~]{1,255}$",
    "description": "This item's Idempotency-Key (one header cannot serve 100 items): the "
    "same key and body again answer the same job (200), another body a 422 for this item.",
}


def batch_item_schema(branches: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch item: any POST /jobs body, plus its own ``idempotency_key``."""
    items = []
    for branch in branches:
        item = {**branch, "properties": {**branch["properties"], "idempotency_key": _IDEMPOTENCY}}
        items.append(item)
    return {"title": "SubmitBatchItem", "oneOf": items}


def batch_paths(
    job_id: dict[str, Any], problems: Any, headers: dict[str, Any], max_batch: int
) -> dict[str, Any]:
    """The two paths, with the shared pieces of web/openapi.py."""
    return {
        "/jobs/batch": {
            "post": {
                "operationId": "submit_batch",
                "summary": f"Submit up to {max_batch} jobs; one answer entry per submission.",
                "description": "Each item is shaped as a `POST /jobs` body, with its own "
                "`idempotency_key` instead of the Idempotency-Key header. Entries come in "
                "the items' order: `{status: 202, job}` (queued), `{status: 200, job}` (an "
                "idempotent repeat), or `{status, problem}` for an item that was refused "
                "(422 invalid, 413 payload too large); an item whose task was not created is "
                "202 with `wakeup: pending`, as for `POST /jobs`. One "
                "bad item does not sink the others. Tasks are created with "
                "BatchCreateTasks, 100 per call.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "jobs": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": max_batch,
                                        "items": {"$ref": _REF.format(model="SubmitBatchItem")},
                                    }
                                },
                                "required": ["jobs"],
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "One entry per submission, in order.",
                        "headers": headers,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": _REF.format(model="BatchAnswer")}
                            }
                        },
                    },
                    **problems(400, 401, 403, 413, 415, 422),
                },
            }
        },
        "/jobs/{job_id}/children": {
            "parameters": [job_id],
            "get": {
                "operationId": "list_children",
                "summary": "A page of the job's children (ctx.spawn_many), in spawn order.",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
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
                        "headers": headers,
                        "content": {
                            "application/json": {"schema": {"$ref": _REF.format(model="JobPage")}}
                        },
                    },
                    **problems(401, 403, 404, 422),
                },
            },
        },
    }
