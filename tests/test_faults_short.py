"""The fault suite's short form: a few hundred jobs, a few kills, and nothing lost or doubled.

``python -m bench.faults`` runs the full suite; this runs every fault at a small scale
(``Scale.short``) so that CI keeps the figures at zero lost, zero run twice and zero
left unfinished within the bound.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy

from bench.faults import Scale, run_suite, table
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.e2e


def _postgres() -> str | None:
    try:
        engine = sqlalchemy.create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        engine.dispose()
    except Exception:  # noqa: BLE001 - any failure means "no server here"
        if os.environ.get("CI"):
            raise
        return None
    return POSTGRES_URL


def test_no_fault_loses_a_job_or_runs_one_twice(tmp_path: Path) -> None:
    scale = Scale.short()
    figures = run_suite(tmp_path, scale, postgres_url=_postgres())
    shown = table(figures)
    print(shown)
    assert len(figures) >= 6, shown
    for f in figures:
        assert f.lost == 0, shown
        assert f.run_twice == 0, shown
        assert f.unfinished == 0, shown
        assert f.recovery_seconds is not None and f.recovery_seconds <= scale.bound_seconds, shown
