"""``GET /jobs/{id}/children``: a page of a parent's children, in spawn order."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from offload.flaskapp import get_settings, get_store
from offload.ids import is_job_id
from offload.problems import ProblemError, validation_errors
from web.jobs import visible_job

__all__ = ["bp"]

bp = Blueprint("children", __name__)


class ChildrenQuery(BaseModel):
    """The query of a children page."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = Field(default=None, pattern="^[0-9a-hjkmnp-tv-z]{26}$")


@bp.get("/jobs/<job_id>/children")
def list_children(job_id: str) -> Response:
    """The job's children (counts by status are on the job), oldest spawn first."""
    parent = visible_job(job_id)
    try:
        query = ChildrenQuery.model_validate(request.args.to_dict())
    except ValidationError as e:
        raise ProblemError.validation(validation_errors(e, ["query"]), "invalid query") from None
    limit = min(query.limit, get_settings(current_app).page_size_max)
    after = query.cursor if query.cursor and is_job_id(query.cursor) else None
    found = get_store(current_app).children(parent.id, after=after, limit=limit + 1)
    page, more = found[:limit], len(found) > limit
    next_cursor = page[-1].id if more else None
    items = []
    for child in page:
        item = child.to_resource()
        del item["attempt_log"]
        items.append(item)
    return jsonify(
        {
            "jobs": items,
            "next_cursor": next_cursor,
            "next": (
                url_for("children.list_children", job_id=parent.id, limit=limit, cursor=next_cursor)
                if next_cursor
                else None
            ),
        }
    )
