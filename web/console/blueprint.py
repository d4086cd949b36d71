"""The console's blueprint, its security headers and its error pages."""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request

from offload.problems import ProblemError, problem_response

__all__ = ["CSP", "PREFIX", "bp"]

PREFIX = "/console"
# No inline script or style, nothing from another origin; inline SVG needs neither.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

bp = Blueprint(
    "console",
    __name__,
    url_prefix=PREFIX,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


@bp.after_request
def _headers(response: Response) -> Response:
    # Set before the app's own headers, which only fill in what is missing.
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(ProblemError)
def _problem(e: ProblemError) -> Response | tuple[str, int, dict[str, str]]:
    """An HTML page for the API's errors raised while serving the console."""
    if request.endpoint in ("console.job_json", "console.job_events"):  # read by script
        return problem_response(e.status, e.title, e.detail, slug=e.slug, headers=e.headers)
    page = render_template("console/error.html", status=e.status, title=e.title, detail=e.detail)
    headers = {k: v for k, v in e.headers.items() if k == "Retry-After"}
    return page, e.status, headers
