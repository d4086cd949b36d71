"""Settings: typed, from the environment, refused with the variable's full name."""

from __future__ import annotations

import pytest

from offload.errors import ConfigError
from offload.registry import JobRegistry
from offload.settings import Settings, load_settings


def test_the_environment_then_overrides_win_over_defaults() -> None:
    env = {"OFFLOAD_WEB_PORT": "9000", "OFFLOAD_HARD_GRACE_SECONDS": "1.5"}
    settings = load_settings({"WEB_PORT": 9100}, environ=env)
    assert (settings.web_port, settings.hard_grace_seconds) == (9100, 1.5)
    assert load_settings(environ=env).web_port == 9000
    assert load_settings(environ={}).web_port == Settings.model_fields["web_port"].default


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ValueError, match="frozen"):
        settings.web_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("OFFLOAD_WORKER_TIMEOUT_SECONDS", "ten", "valid integer"),
        ("OFFLOAD_ENQUEUE_TIMEOUT_SECONDS", "-1", "greater than 0"),
        ("OFFLOAD_TASK_TARGET", "cloudrun", "'appengine' or 'http'"),
        ("OFFLOAD_WEB_PORT", "70000", "less than or equal to 65535"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_variable_and_what_was_expected(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=f"{variable}={value!r}: .*{expected}"):
        load_settings(environ={variable: value})


def test_a_bad_database_url_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"DATABASE_URL": 5}, environ={})
    assert "OFFLOAD_DATABASE_URL:" in str(refused.value)
    assert "5" not in str(refused.value).split(":", 1)[1].split("should")[0]


def test_a_job_module_that_cannot_be_imported_is_one_clear_error() -> None:
    with pytest.raises(ConfigError) as refused:
        JobRegistry.from_modules(["jobs", "no_such_jobs_module"])
    message = str(refused.value)
    assert message.startswith("OFFLOAD_JOB_MODULES names 'no_such_jobs_module'")
    assert "\n" not in message


def test_each_registry_holds_its_own_job_types() -> None:
    demos = JobRegistry.from_modules(["jobs"])
    both = JobRegistry.from_modules(["jobs", "tests.testjobs"])
    assert "demo.sleep" in demos.names() and "test.stubborn" not in demos.names()
    assert {"demo.sleep", "test.stubborn"} <= set(both.names())
    assert JobRegistry().names() == []


def test_a_killed_runs_lease_is_about_one_slice_not_eleven_minutes() -> None:
    """The recovery bound the README states: gunicorn's timeout (slice + margin + 5) + 10 s."""
    from offload.slices import (
        LEASE_MARGIN_SECONDS,
        lease_seconds,
        slice_seconds,
        worker_timeout_for,
    )

    for overrides in ({}, {"SLICE_SECONDS": 30}, {"SLICE_SECONDS": 10}):
        settings = load_settings(overrides, environ={})
        # As make run and worker.yaml start the worker: --timeout follows the slice.
        timeout = worker_timeout_for(settings)
        assert timeout == slice_seconds(settings) + settings.dispatch_margin_seconds + 5
        started = load_settings({**overrides, "WORKER_TIMEOUT_SECONDS": timeout}, environ={})
        lease = lease_seconds(started)
        assert lease == timeout + LEASE_MARGIN_SECONDS == timeout + 10
        assert lease <= slice_seconds(settings) + 30  # one slice plus a margin
    assert lease_seconds(load_settings({}, environ={})) < 660  # the old 11 minutes
