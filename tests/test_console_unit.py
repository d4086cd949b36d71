"""The console in process: sessions, CSRF, configuration, the store's overview queries,
the queue's state through the real client (emulator), and the chart."""

from __future__ import annotations

import datetime as dt
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from offload.enqueue import TaskQueue
from offload.envelope import TaskEnvelope
from offload.errors import ConfigError
from offload.flaskapp import get_settings
from offload.ids import new_job_id
from offload.keys import hash_key
from offload.queuestate import queue_state
from offload.registry import get_registry
from offload.settings import Settings
from offload.store import FAILED, SUCCEEDED, JobStore, NewJob, utcnow
from offload.store.overview import by_request_id, finished_per_minute, status_counts
from tests.conftest import LOCATION, PROJECT, QUEUE, Stack, app_config
from tests.test_web_security import IAP_AUD, iap_keys, iap_token  # noqa: F401 - a fixture
from web import create_app
from web.console.chart import minute_chart
from web.console.sessions import load_or_make_key

SECRET = "unit-test-console-session-key-" + "s" * 32
ALICE = "unit-alice-key"


def keyed(tmp: Path, emulator: Stack, keys: str | None = None, **extra: Any) -> Flask:
    return create_app(
        app_config(
            tmp,
            TASKS_EMULATOR_HOST=f"127.0.0.1:{emulator.emulator_port}",
            API_AUTH="api_key",
            API_KEYS=keys or f"alice:{hash_key(ALICE)}:submit",
            CONSOLE_SECRET_KEY=SECRET,
            **extra,
        )
    )


@pytest.fixture
def app(tmp_path: Path, emulator: Stack) -> Iterator[Flask]:
    a = keyed(tmp_path, emulator)
    yield a
    a.extensions["offload.tasks"].close()
    a.extensions["offload.store"].dispose()


def token(client: FlaskClient, path: str = "/console/signin") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match, "no CSRF field on " + path
    return match.group(1)


def signed_in(app: Flask, key: str = ALICE) -> FlaskClient:
    client = app.test_client()
    r = client.post(
        "/console/signin", data={"key": key, "csrf_token": token(client), "next": "/console"}
    )
    assert r.status_code == 302 and r.headers["Location"] == "/console"
    return client


def test_the_api_keeps_no_session_and_console_pages_carry_their_own_csp(app: Flask) -> None:
    client = app.test_client()
    api = client.get("/jobs", headers={"Authorization": f"Bearer {ALICE}"})
    assert api.status_code == 200 and "Set-Cookie" not in api.headers
    assert api.headers["Content-Security-Policy"].startswith("default-src 'none'")
    page = client.get("/console/signin")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    cookie = page.headers["Set-Cookie"]
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/console"):
        assert attribute in cookie
    assert "<script>" not in page.text  # scripts only by src
    assert "style=" not in page.text


def test_pages_need_a_session_and_bad_keys_are_refused(app: Flask) -> None:
    client = app.test_client()
    r = client.get("/console/jobs/" + new_job_id())
    assert r.status_code == 302 and r.headers["Location"].startswith("/console/signin?next=")
    r = client.post("/console/signin", data={"key": "wrong", "csrf_token": token(client)})
    assert r.status_code == 401 and "not valid" in r.text
    assert client.get("/console/jobs/x.json").status_code == 401  # JSON for the script


def test_sign_in_never_redirects_to_another_site(app: Flask) -> None:
    for target in ("//evil.example/console", "https://evil.example/console", "/jobs"):
        client = app.test_client()
        r = client.post(
            "/console/signin",
            data={"key": ALICE, "csrf_token": token(client), "next": target},
        )
        assert r.headers["Location"] == "/console", target


def test_every_post_needs_the_sessions_token(app: Flask) -> None:
    client = signed_in(app)
    job_id = new_job_id()
    for data in ({}, {"csrf_token": "forged"}):
        r = client.post(f"/console/jobs/{job_id}/cancel", data=data)
        assert r.status_code == 403 and "security token" in r.text
    r = client.post(
        f"/console/jobs/{job_id}/cancel",
        data={"csrf_token": token(client, "/console")},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403 and "another site" in r.text
    # With the token, the action runs (and the API's own 404 comes back as a page).
    r = client.post(
        f"/console/jobs/{job_id}/cancel", data={"csrf_token": token(client, "/console")}
    )
    assert r.status_code == 404 and "text/html" in r.headers["Content-Type"]


def test_removing_a_key_signs_its_sessions_out(tmp_path: Path, emulator: Stack) -> None:
    first = keyed(tmp_path, emulator)
    client = signed_in(first)
    cookie = client.get_cookie("offload_console", path="/console")
    assert cookie is not None
    assert client.get("/console").status_code == 200
    # The same secret, but alice's key is gone (and bob's role differs): the cookie is void.
    later = keyed(tmp_path, emulator, keys=f"bob:{hash_key('b')}:admin")
    other = later.test_client()
    other.set_cookie("offload_console", cookie.value, path="/console")
    assert other.get("/console").status_code == 302
    for a in (first, later):
        a.extensions["offload.tasks"].close()
        a.extensions["offload.store"].dispose()


def test_hosted_console_needs_a_long_session_secret(tmp_path: Path) -> None:
    keys = f"alice:{hash_key(ALICE)}"
    with pytest.raises(ConfigError, match="OFFLOAD_CONSOLE_SECRET_KEY"):
        create_app(app_config(tmp_path, API_AUTH="api_key", API_KEYS=keys, HOSTED=True))
    with pytest.raises(ConfigError, match="32"):
        create_app(
            app_config(tmp_path, API_AUTH="api_key", API_KEYS=keys, CONSOLE_SECRET_KEY="short")
        )


def test_the_local_session_key_is_made_once_for_every_process(tmp_path: Path) -> None:
    path = tmp_path / "var" / "console-secret-key"
    keys: list[str] = []
    threads = [
        threading.Thread(target=lambda: keys.append(load_or_make_key(path))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys[0]) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_make_key(path) == keys[0]  # a restart reads the same key
    assert [p.name for p in path.parent.iterdir()] == ["console-secret-key"]


def test_without_auth_the_console_is_open_and_the_key_file_made_on_first_use(
    tmp_path: Path, emulator: Stack
) -> None:
    key_file = tmp_path / "key"
    app = create_app(
        app_config(
            tmp_path,
            TASKS_EMULATOR_HOST=f"127.0.0.1:{emulator.emulator_port}",
            CONSOLE_SECRET_KEY_FILE=str(key_file),
        )
    )
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert not key_file.exists()  # the API never needs it
    r = client.get("/console")
    assert r.status_code == 200 and "anonymous" in r.text
    assert key_file.exists()
    app.extensions["offload.tasks"].close()
    app.extensions["offload.store"].dispose()


# -- the queue, through the real client -------------------------------------------------


def queue_config(emulator_host: str) -> Settings:
    from offload.settings import load_settings

    return load_settings(
        {
            "PROJECT_ID": PROJECT,
            "LOCATION": LOCATION,
            "QUEUE": QUEUE,
            "TASKS_EMULATOR_HOST": emulator_host,
        }
    )


def test_queue_state_counts_pending_tasks_and_sees_a_pause(emulator: Stack) -> None:
    tasks = TaskQueue(queue_config(f"127.0.0.1:{emulator.emulator_port}"))
    admin = emulator.tasks_client()
    try:
        before = queue_state(tasks)
        assert before.error is None and before.state == "running"
        assert before.max_dispatches_per_second == 500
        later = utcnow() + dt.timedelta(hours=1)
        for _ in range(3):
            job_id = new_job_id()
            tasks.enqueue(
                task_id=f"console-{job_id}",
                envelope=TaskEnvelope.make(job_id=job_id, job_type="demo.echo", request_id="r"),
                headers={},
                budget_seconds=10,
                schedule_time=later,
            )
        assert queue_state(tasks).pending == (before.pending or 0) + 3
        admin.pause_queue(name=tasks.queue_path)
        assert queue_state(tasks).state == "paused"
    finally:
        admin.resume_queue(name=tasks.queue_path)
        tasks.close()


def test_the_list_shows_the_state_of_every_queue_the_job_types_use(app: Flask) -> None:
    page = signed_in(app).get("/console").text
    names = re.findall(r'data-queue-name="([^"]+)"', page)
    assert names == sorted(get_registry(app).queues(get_settings(app).queue))
    assert {"offload-jobs", "offload-reports"} <= set(names)


def test_queue_state_says_unavailable_when_cloud_tasks_cannot_be_reached() -> None:
    from tests.processes import free_port

    tasks = TaskQueue(queue_config(f"127.0.0.1:{free_port()}"))
    try:
        start = time.monotonic()
        state = queue_state(tasks, timeout=1.0)
        assert state.error is not None and "cannot reach Cloud Tasks" in state.error
        assert state.state is None and time.monotonic() - start < 10
    finally:
        tasks.close()


# -- the store's overview ----------------------------------------------------------------


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    from offload.store import migrate

    migrate.upgrade(store_url)
    s = JobStore(store_url)
    yield s
    s.dispose()


def add_job(store: JobStore, *, request_id: str = "req-1", owner: str = "key:a") -> str:
    job_id = new_job_id()
    store.insert(
        NewJob(
            id=job_id,
            type="demo.echo",
            payload={},
            request_id=request_id,
            trace=None,
            max_attempts=3,
            deadline_seconds=10.0,
            task_name=f"q/tasks/{job_id}",
            owner=owner,
        )
    )
    return job_id


def finish(store: JobStore, job_id: str, status: str) -> None:
    claim = store.claim(job_id, attempt=1, lease_seconds=60)
    assert claim.won and claim.token
    store.finish(job_id, claim.token, status=status, outcome=status)


def test_overview_counts_jobs_by_status_and_finishes_per_minute(store: JobStore) -> None:
    done = [add_job(store) for _ in range(3)]
    finish(store, done[0], SUCCEEDED)
    finish(store, done[1], SUCCEEDED)
    finish(store, done[2], FAILED)
    add_job(store, owner="key:b")
    since = utcnow() - dt.timedelta(hours=1)
    assert status_counts(store, since=since) == {"succeeded": 2, "failed": 1, "queued": 1}
    assert status_counts(store, since=since, owner="key:b") == {"queued": 1}
    assert status_counts(store, since=utcnow() + dt.timedelta(seconds=1)) == {}
    minute = utcnow().strftime("%Y-%m-%dT%H:%M")
    per_minute = finished_per_minute(store, since=since)
    assert sum(per_minute.values()) == 3
    assert {k[1] for k in per_minute} == {"succeeded", "failed"}
    assert all(k[0] <= minute for k in per_minute)


def test_jobs_are_found_by_their_request_id(store: JobStore) -> None:
    mine = [add_job(store, request_id="req-many") for _ in range(2)]
    theirs = add_job(store, request_id="req-many", owner="key:b")
    add_job(store, request_id="req-other")
    found = [j.id for j in by_request_id(store, "req-many")]
    assert found == sorted([*mine, theirs], reverse=True)
    assert [j.id for j in by_request_id(store, "req-many", owner="key:a")] == mine[::-1]
    assert by_request_id(store, "nothing") == []


def test_the_chart_stacks_outcomes_per_minute_in_the_last_hour() -> None:
    now = dt.datetime(2026, 12, 1, 12, 30, 20, tzinfo=dt.UTC)
    counts = {
        ("2026-12-01T12:30", "succeeded"): 4,
        ("2026-12-01T12:30", "failed"): 2,
        ("2026-12-01T11:31", "cancelled"): 1,
        ("2026-12-01T11:30", "succeeded"): 9,  # an hour and a bit ago: outside
    }
    chart = minute_chart(counts, now)
    assert chart.peak == 6
    assert chart.totals == {"succeeded": 4, "failed": 2, "cancelled": 1}
    assert (chart.first_minute, chart.last_minute) == ("11:31", "12:30")
    last = [b for b in chart.bars if b.x > chart.width - 10]
    assert [b.outcome for b in last] == ["succeeded", "failed"]
    assert sum(b.height for b in last) == pytest.approx(chart.height - 12)


# -- IAP, and what the job page shows ------------------------------------------------------


def test_with_iap_the_browser_is_signed_in_by_its_header(
    tmp_path: Path,
    emulator: Stack,
    iap_keys: tuple[Any, str],  # noqa: F811 - the fixture imported above
) -> None:
    key, url = iap_keys
    app = create_app(
        app_config(
            tmp_path,
            TASKS_EMULATOR_HOST=f"127.0.0.1:{emulator.emulator_port}",
            API_AUTH="iap",
            IAP_AUDIENCE=IAP_AUD,
            IAP_CERTS_URL=url,
            CONSOLE_SECRET_KEY=SECRET,
        )
    )
    client = app.test_client()
    header = {"X-Goog-IAP-JWT-Assertion": iap_token(key, "op@example.com")}
    assert client.get("/console").status_code == 401  # no header: IAP was bypassed
    page = client.get("/console", headers=header)
    assert page.status_code == 200 and "iap:op@example.com" in page.text
    assert "Sign out" not in page.text  # IAP signs people in and out, not the console
    assert client.get("/console/signin").headers["Location"] == "/console"
    app.extensions["offload.tasks"].close()
    app.extensions["offload.store"].dispose()


def test_steps_and_runs_are_shown_when_the_job_has_them(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from web.console import views

    job_id = client.post("/jobs", json={"type": "demo.echo", "delay_seconds": 600}).get_json()["id"]
    plain = client.get(f"/console/jobs/{job_id}")
    assert plain.status_code == 200 and "<h2>Steps</h2>" not in plain.text
    real = views.job_resource

    def with_steps(job_id: str) -> dict[str, Any]:
        return {
            **real(job_id),
            "steps": [{"name": "<b>fetch</b>", "result": {"rows": 3}, "finished": True}],
            "runs": [{"number": 1, "outcome": "continued"}, {"number": 2, "outcome": None}],
        }

    monkeypatch.setattr(views, "job_resource", with_steps)
    page = client.get(f"/console/jobs/{job_id}").text
    assert "<h2>Steps</h2>" in page and "<h2>Runs</h2>" in page
    assert "&lt;b&gt;fetch&lt;/b&gt;" in page and "<b>fetch</b>" not in page
    assert "continued" in page and "&#34;rows&#34;: 3" in page

    def with_a_run_count(job_id: str) -> dict[str, Any]:
        return {**real(job_id), "runs": 4, "steps": []}

    monkeypatch.setattr(views, "job_resource", with_a_run_count)
    page = client.get(f"/console/jobs/{job_id}").text
    assert '<dd data-field="runs">4</dd>' in page and "<h2>Runs</h2>" not in page


def test_steps_given_as_a_mapping_become_rows() -> None:
    from web.console.views import _rows

    assert _rows(None) is None and _rows([]) is None
    assert _rows({"fetch": {"done": True}, "count": 3}) == [
        {"name": "fetch", "done": True},
        {"name": "count", "value": 3},
    ]
    assert _rows([{"n": 1}]) == [{"n": 1}]
    assert _rows(3) is None  # durable jobs count their runs: a fact, not a table


def test_every_template_and_asset_is_package_data() -> None:
    """An installed copy (a wheel, App Engine's build) must carry what the pages load."""
    import fnmatch
    import tomllib

    from tests.processes import ROOT

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["web.console"]
    base = ROOT / "web" / "console"
    files = [
        p.relative_to(base).as_posix()
        for folder in ("templates", "static")
        for p in (base / folder).rglob("*")
        if p.is_file()
    ]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert missing == []


def test_the_live_view_follows_the_apis_event_stream_when_there_is_one(
    tmp_path: Path, emulator: Stack, client: FlaskClient
) -> None:
    job_id = client.post("/jobs", json={"type": "demo.echo", "delay_seconds": 600}).get_json()["id"]
    page = client.get(f"/console/jobs/{job_id}").text
    assert f'data-events-url="/console/jobs/{job_id}/events"' in page
    assert client.delete(f"/jobs/{job_id}").status_code == 204  # finished: the stream ends
    relayed = client.get(f"/console/jobs/{job_id}/events")
    assert relayed.mimetype == "text/event-stream" and "event: finished" in relayed.text
    assert "script-src 'self'" in relayed.headers["Content-Security-Policy"]
    # A build without the stream: the page polls, and the relay is a 404.
    other = create_app(
        app_config(tmp_path, TASKS_EMULATOR_HOST=f"127.0.0.1:{emulator.emulator_port}")
    )
    del other.view_functions["stream.stream_job_events"]
    without = other.test_client()
    assert "data-events-url" not in without.get(f"/console/jobs/{job_id}").text
    assert without.get(f"/console/jobs/{job_id}/events").status_code == 404
    other.extensions["offload.tasks"].close()
    other.extensions["offload.store"].dispose()


def test_resubmitting_many_keeps_the_session_cookie_small(client: FlaskClient) -> None:
    from web.console.actions import BULK_MAX

    ids = [new_job_id() for _ in range(BULK_MAX)]  # unknown: each refused with a reason
    form = {"csrf_token": token(client, "/console?status=failed"), "confirmed": "yes", "job": ids}
    r = client.post("/console/resubmit", data=form)
    assert r.status_code == 302
    cookie = client.get_cookie("offload_console", path="/console")
    assert cookie is not None and len(cookie.value) < 3000
    page = client.get("/console?status=failed").text
    assert f"Not resubmitted ({BULK_MAX})" in page and "and 92 more" in page


def test_counting_pending_tasks_stops_after_five_pages_or_a_failure() -> None:
    from google.api_core import exceptions as gexc
    from google.cloud import tasks_v2

    from offload.testing import InMemoryCloudTasks

    class Endless(InMemoryCloudTasks):
        fail_after: int | None = None

        def list_tasks(self, *, request: dict[str, Any], **_: Any) -> Any:
            self.calls.append("list_tasks")
            if self.fail_after is not None and len(self.calls) > self.fail_after:
                raise gexc.ServiceUnavailable("gone")
            return tasks_v2.ListTasksResponse(
                tasks=[tasks_v2.Task() for _ in range(1000)], next_page_token="more"
            )

    client = Endless()
    tasks = TaskQueue(queue_config(""), client=client)
    state = queue_state(tasks)
    assert (state.state, state.pending, state.pending_more) == ("running", 5000, True)
    assert client.calls.count("list_tasks") == 5
    client.calls.clear()
    client.fail_after = 2  # get_queue, one page, then the second page fails
    state = queue_state(tasks)
    assert (state.error, state.pending, state.pending_more) == (None, 1000, True)
    client.calls.clear()
    client.fail_after = 1  # not even the first page
    state = queue_state(tasks)
    assert state.error is None and state.pending is None


def test_the_list_pages_by_cursor_and_filters_by_status_type_and_request(
    client: FlaskClient,
) -> None:
    def submit(job_type: str, **extra: Any) -> Any:
        body = {"type": job_type, "delay_seconds": 600, **extra}
        return client.post("/jobs", json=body)

    ids = [submit("demo.echo").get_json()["id"] for _ in range(27)]
    sleeper = submit("demo.sleep", payload={"seconds": 1})
    first = client.get("/console?type=demo.echo").text
    shown = re.findall(r'<tr data-job="([0-9a-z]{26})"', first)
    assert shown == ids[::-1][:25]
    cursor = re.search(r'href="(/console\?[^"]*cursor=[0-9a-z]{26}[^"]*)"', first)
    assert cursor, "no link to the next page"
    second = client.get(cursor.group(1).replace("&amp;", "&")).text
    assert re.findall(r'<tr data-job="([0-9a-z]{26})"', second) == ids[::-1][25:]
    assert "Older jobs" not in second
    sleeper_id = sleeper.get_json()["id"]
    only_sleep = client.get("/console?type=demo.sleep&status=queued").text
    assert re.findall(r'<tr data-job="([0-9a-z]{26})"', only_sleep) == [sleeper_id]
    by_request = client.get("/console?q=" + sleeper.headers["X-Request-ID"]).text
    assert re.findall(r'<tr data-job="([0-9a-z]{26})"', by_request) == [sleeper_id]
    by_id = client.get(f"/console?q={ids[0]}")
    assert by_id.status_code == 302 and by_id.headers["Location"] == f"/console/jobs/{ids[0]}"
    bad = client.get("/console?status=bogus&type=%00").text
    assert "Ignored an invalid filter" in bad
