"""The console's actions: cancel, resubmit, resubmit several failed jobs at once.

Each asks first (a confirmation page, no script needed), then runs the API's own route
function, so the rules (who may, which statuses, the Cloud Task) are the API's. The
outcome is a flash message on the page the action returns to.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from offload.ids import is_job_id
from offload.problems import ProblemError
from web import jobs
from web.console.access import require_role
from web.console.blueprint import bp
from web.console.views import job_resource

__all__: list[str] = []

BULK_MAX = 100
_ACTIONS = {
    "cancel": ("Cancel", "It will not run; if it is running it stops at its next check."),
    "resubmit": ("Resubmit", "A new job with the same type and payload is submitted."),
}


@bp.get("/jobs/<job_id>/<any(cancel, resubmit):action>")
def confirm_action(job_id: str, action: str) -> str:
    """Ask before cancelling or resubmitting a job."""
    require_role("submit")
    label, consequence = _ACTIONS[action]
    return render_template(
        "console/confirm.html",
        job=job_resource(job_id),
        action=action,
        label=label,
        consequence=consequence,
    )


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> BaseResponse:
    """Cancel the job (the API's DELETE /jobs/{id})."""
    require_role("submit")
    try:
        answer = jobs.cancel_job(job_id)
    except ProblemError as e:
        if e.status == 404:
            raise
        flash(f"Not cancelled: {e.detail}.", "error")
    else:
        if answer.status_code == 202:
            flash(f"Cancel requested: job {job_id} stops at its next check.", "ok")
        else:
            flash(f"Job {job_id} cancelled; it will not run.", "ok")
    return redirect(url_for("console.job_page", job_id=job_id))


@bp.post("/jobs/<job_id>/resubmit")
def resubmit_job(job_id: str) -> BaseResponse:
    """Resubmit the job (the API's POST /jobs/{id}/resubmit)."""
    require_role("submit")
    try:
        new_id = str(jobs.resubmit_job(job_id).get_json()["id"])
    except ProblemError as e:
        if e.status == 404:
            raise
        flash(f"Not resubmitted: {e.detail}.", "error")
        return redirect(url_for("console.job_page", job_id=job_id))
    flash(f"Job {job_id} resubmitted as {new_id}.", "ok")
    return redirect(url_for("console.job_page", job_id=new_id))


@bp.post("/resubmit")
def resubmit_many() -> BaseResponse | str | tuple[str, int]:
    """Resubmit the chosen failed jobs: first a review page, then (confirmed) each one."""
    require_role("submit")
    ids = list(dict.fromkeys(i for i in request.form.getlist("job") if is_job_id(i)))
    back = url_for("console.list_jobs", status="failed")
    if not ids:
        flash("Choose at least one job to resubmit.", "error")
        return redirect(back)
    if len(ids) > BULK_MAX:
        flash(f"At most {BULK_MAX} jobs at once.", "error")
        return redirect(back)
    if request.form.get("confirmed") != "yes":
        return render_template("console/confirm_many.html", ids=ids)
    done, refused = [], []
    for job_id in ids:
        try:
            done.append((job_id, str(jobs.resubmit_job(job_id).get_json()["id"])))
        except ProblemError as e:
            refused.append(f"{job_id}: {e.detail}")
    if done:
        flash(f"Resubmitted {len(done)} job(s): " + _some([f"{a} → {b}" for a, b in done]), "ok")
    if refused:
        flash(f"Not resubmitted ({len(refused)}): " + _some(refused, sep="; "), "error")
    return redirect(back)


def _some(items: list[str], *, sep: str = ", ", shown: int = 8) -> str:
    """The first few items: flash messages live in the session cookie (4 kB at most)."""
    text = sep.join(item[:200] for item in items[:shown])
    return text + (f"{sep}and {len(items) - shown} more" if len(items) > shown else "")
