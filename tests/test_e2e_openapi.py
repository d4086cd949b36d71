"""The live web service against its own OpenAPI description, with schemathesis.

Hundreds of generated requests (valid and invalid) over real HTTP to gunicorn: no 5xx,
no answer outside the documented statuses, content types and schemas.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis import checks

from offload.keys import hash_key
from tests.conftest import postgres_schema_url
from tests.processes import Stack

pytestmark = pytest.mark.e2e

ADMIN_KEY = "schemathesis-admin-key"
EXAMPLES = 60  # per operation; 8 operations
STATEFUL_EXAMPLES = 25  # sequences of up to 6 linked calls

# Above the longest long-poll the API allows (?wait= up to 60 s), which the document's
# generated calls do ask for.
CALL_TIMEOUT = 75


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        "sqlite-noauth",
    ],
)
def web_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Emulator and web only (generated jobs are queued, never run), on each store.

    ``sqlite-noauth`` runs web with ``OFFLOAD_API_AUTH=none``: the document must then
    ask for no credentials, or schemathesis finds requests "accepted without them".
    """
    tmp = Path(tmp_path_factory.mktemp("openapi"))
    databases = (
        iter([f"sqlite:///{tmp / 'offload.db'}"])
        if request.param.startswith("sqlite")
        else postgres_schema_url()
    )
    auth = (
        {"OFFLOAD_API_AUTH": "none"}
        if request.param.endswith("noauth")
        else {
            "OFFLOAD_API_AUTH": "api_key",
            "OFFLOAD_API_KEYS": f"schemathesis:{hash_key(ADMIN_KEY)}:admin",
        }
    )
    database = next(databases)
    stack = Stack(
        tmp=tmp,
        env={
            "OFFLOAD_PROJECT_ID": "offload-test",
            "OFFLOAD_DATABASE_URL": database,
            "OFFLOAD_LOG_DIR": str(tmp / "log"),
            **auth,
            # Submissions with notify are accepted (never sent: the jobs never run).
            "OFFLOAD_WEBHOOK_SECRET": "whsec_" + "A" * 44,
            # The jobs never finish: an event stream lasts its whole lifetime (280 s by
            # default). A short one still answers every event, then ends as documented.
            "OFFLOAD_STREAM_MAX_SECONDS": "1",
        },
    )
    try:
        stack.start_emulator()
        stack.start_service("web", processes=2)
        yield stack
    finally:
        stack.stop()
        next(databases, None)  # drops the PostgreSQL schema


def short_waits(case: schemathesis.Case) -> None:
    """A valid ``?wait=`` over a second waits one: the jobs never finish, so each would
    wait its whole N (up to 60 s). The value stays as generated when invalid (a 422)."""
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and 1 < wait <= 60:
        case.query["wait"] = 1


def credentials(stack: Stack) -> dict[str, str]:
    """What the stack's web asks of a client (nothing when authentication is off)."""
    if stack.env["OFFLOAD_API_AUTH"] == "none":
        return {}
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def excluded_stateful_checks(spec: dict[str, Any]) -> list[Any]:
    """Checks whose assumption the document itself contradicts.

    ``use_after_free`` assumes a DELETE removes its resource; ours cancels the job, which
    stays readable, and the operation says so (``x-delete-removes: false``).
    """
    cancels = [
        op
        for item in spec["paths"].values()
        for method, op in item.items()
        if method == "delete" and op.get("x-delete-removes") is False
    ]
    return [checks.use_after_free] if cancels else []


def test_stateful_sequences_follow_the_links_and_keep_the_description(web_stack: Stack) -> None:
    """Submit, then read, cancel and resubmit the job it names (the document's links)."""
    url = web_stack.web_url
    spec = requests.get(f"{url}/openapi.json", timeout=5).json()
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    schema.config.base_url = url
    excluded = excluded_stateful_checks(spec)
    headers = credentials(web_stack)
    steps: collections.Counter[str] = collections.Counter()
    failures: list[str] = []

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            short_waits(case)
            return {"headers": headers, "timeout": CALL_TIMEOUT}

        def validate_response(
            self, response: Any, case: schemathesis.Case, additional_checks: Any = None, **kw: Any
        ) -> None:
            steps[f"{case.method} {case.path}"] += 1
            # As below: a generated Idempotency-Key may repeat with another body (a 422).
            reused_key = bool(case.headers and "Idempotency-Key" in case.headers)
            try:
                case.validate_response(
                    response,
                    excluded_checks=[*excluded, checks.positive_data_acceptance]
                    if reused_key
                    else excluded,
                    headers=headers,
                    transport_kwargs=kw or None,
                )
            except Exception as e:  # noqa: BLE001 - collected: a replay would meet other state
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {e}"
                )

    # A run that hypothesis ends early (FlakyStrategyDefinition below) may not reach the
    # linked calls: run again, at most three times, until it has.
    for _ in range(3):
        if steps["GET /jobs/{job_id}"] and steps["DELETE /jobs/{job_id}"]:
            break
        try:
            Machine.run(
                settings=settings(
                    max_examples=STATEFUL_EXAMPLES,
                    stateful_step_count=6,
                    # No shrinking: a replay meets a server whose state has moved on (jobs
                    # created, cancelled).
                    phases=[Phase.explicit, Phase.generate],
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    database=None,
                )
            )
        except FlakyStrategyDefinition:
            # Which links can be followed depends on earlier answers (the server's state), so
            # hypothesis may meet a different draw when it revisits a prefix; the answers
            # checked so far are in ``failures`` either way.
            pass
    assert not failures, "\n\n".join(failures[:5])
    # The links were followed: jobs submitted were then read and cancelled.
    assert steps["GET /jobs/{job_id}"] and steps["DELETE /jobs/{job_id}"], steps


def test_the_api_keeps_its_description(web_stack: Stack) -> None:
    """Every operation, valid and invalid inputs: no 5xx, nothing outside the description.

    (schemathesis' pytest plugin does not run under pytest 9, so hypothesis drives each
    operation's strategy directly.)
    """
    schema = schemathesis.openapi.from_url(f"{web_stack.web_url}/openapi.json")
    schema.config.base_url = web_stack.web_url
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            # A generated Idempotency-Key may repeat with another body: that 422 is the
            # documented answer (tested on its own elsewhere), not a rejected valid request.
            reused_key = bool(case.headers and "Idempotency-Key" in case.headers)
            short_waits(case)
            case.call_and_validate(
                base_url=web_stack.web_url,
                headers=credentials(web_stack),
                excluded_checks=[checks.positive_data_acceptance] if reused_key else [],
                timeout=CALL_TIMEOUT,
            )

        check()
    assert calls >= 300, calls


def test_every_route_is_described(web_stack: Stack) -> None:
    spec = requests.get(f"{web_stack.web_url}/openapi.json", timeout=5).json()
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) == {
        "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/events", "/jobs/{job_id}/resubmit",
        "/healthz", "/readyz", "/openapi.json", "/jobs/batch", "/jobs/{job_id}/children",
    }  # fmt: skip
    variants = spec["components"]["schemas"]["SubmitJob"]["oneOf"]
    assert {v["properties"]["type"]["const"] for v in variants} >= {
        "demo.sleep", "demo.busy", "demo.echo", "demo.flaky", "demo.fail",
    }  # fmt: skip
