"""The operator's console in a real headless browser (Debian's chromium, driven by Playwright).

Against a real stack (emulator, gunicorn web and worker, API keys): sign in, watch a job
appear and progress, read its logs, cancel, resubmit (one and several), and check that
hostile values stay text, the CSP holds and cross-site or tokenless POSTs are refused.
The run also writes the README's screenshot, docs/console.png.
"""

from __future__ import annotations

import http.server as httpserver
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from offload.keys import hash_key
from tests.processes import ROOT, Stack, free_port, make_stack

pytestmark = pytest.mark.e2e

ADMIN, ALICE, READER = "console-admin-key", "console-alice-key", "console-reader-key"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
SCREENSHOT = ROOT / "docs" / "console.png"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    keys = ",".join(
        [
            f"ops:{hash_key(ADMIN)}:admin",
            f"alice:{hash_key(ALICE)}:submit",
            f"dash:{hash_key(READER)}:read",
        ]
    )
    s = make_stack(
        tmp_path_factory.mktemp("console"),
        env={
            "OFFLOAD_API_AUTH": "api_key",
            "OFFLOAD_API_KEYS": keys,
            "OFFLOAD_CONSOLE_SECRET_KEY": "console-test-session-key-" + "x" * 32,
        },
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def sign_in(browser: Any, stack: Stack, key: str) -> Any:
    """A new browser context signed in with ``key``; returns its page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto(f"{stack.web_url}/console")
    assert "/console/signin" in page.url
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{stack.web_url}/console")
    return page


@pytest.fixture
def admin(browser: Any, stack: Stack) -> Iterator[Any]:
    page = sign_in(browser, stack, ADMIN)
    yield page
    page.context.close()


def api(stack: Stack, method: str, path: str, key: str = ADMIN, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return requests.request(method, stack.web_url + path, headers=headers, timeout=10, **kw)


def submit(stack: Stack, body: dict[str, Any], key: str = ADMIN) -> str:
    r = api(stack, "POST", "/jobs", key, json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_status(stack: Stack, job_id: str, *statuses: str) -> dict[str, Any]:
    def status() -> dict[str, Any] | None:
        job: dict[str, Any] = api(stack, "GET", f"/jobs/{job_id}").json()
        return job if job["status"] in statuses else None

    result: dict[str, Any] = wait_until(status, f"job {job_id} to be {statuses}")
    return result


def flash(page: Any) -> str:
    return str(page.locator(".flashes").inner_text())


def test_sign_in_keeps_a_strict_session_cookie_and_a_submitted_job_appears(
    browser: Any, stack: Stack
) -> None:
    page = sign_in(browser, stack, ALICE)
    assert "Signed in as key:alice" in flash(page)
    cookies = {c["name"]: c for c in page.context.cookies()}
    cookie = cookies["offload_console"]
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    assert ALICE not in cookie["value"] and hash_key(ALICE) not in cookie["value"]
    job_id = submit(stack, {"type": "demo.echo", "payload": {"n": 1}}, key=ALICE)
    answer = page.goto(f"{stack.web_url}/console")
    assert answer.headers["content-security-policy"] == CSP
    assert page.locator(f'tr[data-job="{job_id}"]').is_visible()
    # Another principal's jobs are not listed for alice.
    other = submit(stack, {"type": "demo.echo", "payload": {}}, key=ADMIN)
    page.reload()
    assert page.locator(f'tr[data-job="{other}"]').count() == 0
    page.context.close()


def test_the_job_page_shows_progress_moving_without_a_reload(admin: Any, stack: Stack) -> None:
    job_id = submit(stack, {"type": "demo.sleep", "payload": {"seconds": 6}})
    admin.goto(f"{stack.web_url}/console/jobs/{job_id}")
    admin.evaluate("() => { window.__same_page = true; }")
    progress = '[data-field="progress"]'
    # Functions, not strings: the page's CSP forbids eval, which string predicates need.
    admin.wait_for_function(
        f"() => document.querySelector('{progress}').value > 0 && window.__same_page === true"
    )
    first = admin.evaluate(f"() => document.querySelector('{progress}').value")
    assert first < 1
    admin.wait_for_function(
        f"() => document.querySelector('{progress}').value > {first} && window.__same_page === true"
    )
    # Once finished the page takes the server's final content: result, attempt log.
    admin.wait_for_function(
        "() => document.querySelector('[data-field=\"status\"]').textContent === 'succeeded'"
        " && document.getElementById('result') !== null",
        timeout=30_000,
    )
    assert '"slept_seconds": 6' in admin.locator("#result").inner_text()
    assert "succeeded" in admin.locator("table").first.inner_text()


def test_a_jobs_logs_open_from_its_page(admin: Any, stack: Stack) -> None:
    job_id = submit(stack, {"type": "demo.flaky", "payload": {"failures": 1}})
    wait_status(stack, job_id, "succeeded")
    admin.goto(f"{stack.web_url}/console/jobs/{job_id}")
    admin.locator("#logs-link").click()
    admin.wait_for_url(f"**/console/jobs/{job_id}/logs")

    def lines() -> str | None:
        text = str(admin.locator("table.logs").inner_text())
        if "succeeded" in text and "worker" in text:
            return text
        admin.reload()
        return None

    text = wait_until(lines, "the job's worker lines in the log page")
    assert "web" in text and f"job {job_id} accepted" in text
    assert "failed transiently" in text  # the first attempt


def test_cancelling_a_delayed_job_asks_first_then_says_so(admin: Any, stack: Stack) -> None:
    job_id = submit(stack, {"type": "demo.echo", "payload": {}, "delay_seconds": 600})
    admin.goto(f"{stack.web_url}/console")
    queue = admin.locator(".queue").inner_text()
    assert "running" in queue and "Pending tasks" in queue
    admin.goto(f"{stack.web_url}/console/jobs/{job_id}")
    admin.get_by_role("link", name="Cancel…").click()
    assert api(stack, "GET", f"/jobs/{job_id}").json()["status"] == "queued"  # not yet
    admin.get_by_role("button", name="Cancel job").click()
    admin.wait_for_url(f"**/console/jobs/{job_id}")
    assert f"Job {job_id} cancelled" in flash(admin)
    assert admin.locator('[data-field="status"]').inner_text() == "cancelled"
    assert api(stack, "GET", f"/jobs/{job_id}").json()["status"] == "cancelled"


def test_failed_jobs_are_resubmitted_one_or_several_at_once(admin: Any, stack: Stack) -> None:
    failed = [submit(stack, {"type": "demo.fail", "payload": {}}) for _ in range(3)]
    for job_id in failed:
        wait_status(stack, job_id, "failed")
    # One, from its page.
    admin.goto(f"{stack.web_url}/console/jobs/{failed[0]}")
    admin.get_by_role("link", name="Resubmit…").click()
    admin.get_by_role("button", name="Resubmit job").click()
    admin.wait_for_selector(".flash-ok")
    assert f"Job {failed[0]} resubmitted as" in flash(admin)
    new_id = admin.url.rsplit("/", 1)[1]
    # The new job fails at once; its page shows that and keeps the message.
    admin.wait_for_selector("#error")
    assert f"Job {failed[0]} resubmitted as" in flash(admin)
    assert api(stack, "GET", f"/jobs/{new_id}").json()["resubmit_of"] == failed[0]
    # Two, from the failed view.
    admin.goto(f"{stack.web_url}/console?status=failed")
    for job_id in failed[1:]:
        admin.locator(f"#pick-{job_id}").check()
    admin.get_by_role("button", name="Resubmit selected…").click()
    admin.get_by_role("button", name="Resubmit 2").click()
    admin.wait_for_selector(".flash-ok")
    assert "Resubmitted 2 job(s)" in flash(admin)
    listed = api(stack, "GET", "/jobs?limit=100").json()["jobs"]
    assert {j["resubmit_of"] for j in listed} >= set(failed)


def test_hostile_values_are_shown_as_text_and_never_run(admin: Any, stack: Stack) -> None:
    echoed = submit(stack, {"type": "demo.echo", "payload": {"html": HOSTILE}})
    failed = submit(stack, {"type": "demo.fail", "payload": {"message": HOSTILE}})
    wait_status(stack, echoed, "succeeded")
    wait_status(stack, failed, "failed")
    for path in (f"/console/jobs/{echoed}", f"/console/jobs/{failed}", "/console"):
        admin.goto(stack.web_url + path)
        assert admin.evaluate("() => window.__pwned") is None
    admin.goto(f"{stack.web_url}/console/jobs/{echoed}")
    assert HOSTILE.replace('"', '\\"') in admin.locator("#payload").inner_text()
    assert HOSTILE.replace('"', '\\"') in admin.locator("#result").inner_text()
    admin.goto(f"{stack.web_url}/console/jobs/{failed}")
    assert HOSTILE.replace('"', '\\"') in admin.locator("#error").inner_text()
    admin.goto(f"{stack.web_url}/console/jobs/{failed}/logs")
    wait_until(
        lambda: HOSTILE in admin.locator("table.logs").inner_text() or admin.reload() and False,
        "the hostile error in the log lines",
    )
    assert admin.evaluate("() => window.__pwned") is None
    # Searching by a hostile string is refused as text, too.
    admin.goto(f"{stack.web_url}/console?q=%3Cscript%3Ewindow.__pwned%3D3%3C/script%3E")
    assert "Search takes a job id or a request id" in flash(admin)
    assert admin.evaluate("() => window.__pwned") is None


def test_posts_without_the_token_or_from_another_site_are_refused(admin: Any, stack: Stack) -> None:
    job_id = submit(stack, {"type": "demo.echo", "payload": {}, "delay_seconds": 600})
    # The browser's own cookies, but no token: refused.
    answer = admin.context.request.post(f"{stack.web_url}/console/jobs/{job_id}/cancel", form={})
    assert answer.status == 403
    # A page of another site posts a form to the console: refused.
    target = f"{stack.web_url}/console/jobs/{job_id}/cancel"
    page = (
        f'<form id="f" method="post" action="{target}"><input name="csrf_token" value="x">'
        '</form><script>document.getElementById("f").submit()</script>'
    ).encode()

    class Attacker(httpserver.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = httpserver.ThreadingHTTPServer(("127.0.0.1", free_port()), Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with admin.expect_response(target) as posted:
            admin.goto(f"http://localhost:{server.server_address[1]}/")
        assert posted.value.status == 403
    finally:
        server.shutdown()
        server.server_close()
    assert api(stack, "GET", f"/jobs/{job_id}").json()["status"] == "queued"


def test_a_reader_sees_but_cannot_act(browser: Any, stack: Stack) -> None:
    job_id = submit(stack, {"type": "demo.echo", "payload": {}, "delay_seconds": 600})
    page = sign_in(browser, stack, READER)
    assert page.locator(".who").inner_text().startswith("key:dash")
    # As in the API, a job is its submitter's (and admins'): others get a 404.
    assert page.goto(f"{stack.web_url}/console/jobs/{job_id}").status == 404
    # Acting needs the submit role: refused before anything else.
    assert page.goto(f"{stack.web_url}/console/jobs/{job_id}/cancel").status == 403
    page.goto(f"{stack.web_url}/console?status=failed")
    assert page.get_by_role("button", name="Resubmit selected…").count() == 0
    page.context.close()
    assert api(stack, "GET", f"/jobs/{job_id}").json()["status"] == "queued"


def test_the_console_works_from_the_keyboard_and_on_a_phone(browser: Any, stack: Stack) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    errors: list[str] = []  # CSP violations show here too
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{stack.web_url}/console/signin")
    assert page.evaluate("() => document.activeElement.id") == "key"  # autofocus
    page.keyboard.type(ADMIN)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{stack.web_url}/console")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # the skip link, then the brand link, then "Jobs"
    assert page.evaluate("() => document.activeElement.textContent") == "Jobs"
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # a visible focus ring
    for path in ("/console", f"/console/jobs/{submit(stack, {'type': 'demo.echo'})}"):
        page.goto(stack.web_url + path)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is wider than a phone's screen by {overflow}px"
    context.close()
    # Every asset comes from web itself: nothing from a CDN, so it works with no network.
    assert requested and all(url.startswith(stack.web_url + "/") for url in requested)
    assert errors == []


def test_screenshot_for_the_readme(admin: Any, stack: Stack) -> None:
    """docs/console.png: the jobs list with jobs of each outcome (written by this run)."""
    ids = [
        submit(stack, {"type": "demo.sleep", "payload": {"seconds": 30}}),
        submit(stack, {"type": "demo.flaky", "payload": {"failures": 1}}),
        submit(stack, {"type": "demo.fail", "payload": {"message": "no such account"}}),
    ]
    wait_status(stack, ids[0], "running")
    wait_status(stack, ids[2], "failed")
    admin.goto(f"{stack.web_url}/console")
    admin.set_viewport_size({"width": 1280, "height": 960})
    Path(SCREENSHOT).parent.mkdir(exist_ok=True)
    admin.screenshot(path=str(SCREENSHOT), full_page=False)
    assert SCREENSHOT.stat().st_size > 10_000
    api(stack, "DELETE", f"/jobs/{ids[0]}")
