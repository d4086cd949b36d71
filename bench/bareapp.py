"""The baseline: a bare Flask app answering 202, started with the services' gunicorn flags.

It parses the JSON body and answers a small JSON resource, as any submit route must,
and does nothing else: no validation, store, queue or structured request logs.
"""

from __future__ import annotations

import itertools
import os

from flask import Flask, Response, jsonify, request

__all__ = ["app", "create_app"]


def create_app() -> Flask:
    """The bare app: POST /jobs → 202, GET /jobs/<id> and /healthz → 200."""
    bare = Flask(__name__)
    counter = itertools.count()

    @bare.post("/jobs")
    def submit_job() -> tuple[Response, int]:
        """Accept anything JSON with 202."""
        body = request.get_json(silent=True)
        job_id = f"{os.getpid()}-{next(counter)}"
        response = jsonify({"id": job_id, "type": (body or {}).get("type"), "status": "queued"})
        response.headers["Location"] = f"/jobs/{job_id}"
        return response, 202

    @bare.get("/jobs/<job_id>")
    def get_job(job_id: str) -> Response:
        """A fixed resource."""
        return jsonify({"id": job_id, "status": "queued"})

    @bare.get("/healthz")
    def healthz() -> Response:
        """Liveness."""
        return jsonify({"status": "ok"})

    return bare


app = create_app()
