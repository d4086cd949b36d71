"""The topology fault suite's short form: 2 web + 2 worker instances on PostgreSQL.

``python -m bench.faults_topology`` runs it at full scale; this runs every fault (a whole
worker instance killed, a whole web instance killed during a burst, the store's
connections terminated, an emulator restart) at a small scale and asserts what the
suite promises: nothing lost, nothing run twice after its handler succeeded, nothing
stranded without a task, every fault recovered from within its bound.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults import Scale
from bench.faults_topology import TOPOLOGY_FAULTS, run_topology, topology_table
from tests.conftest import POSTGRES_URL, postgres_schema_url

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def test_no_topology_fault_loses_strands_or_doubles_a_job(tmp_path: Path) -> None:
    next(postgres_schema_url(), None)  # skips (or fails in CI) without a server
    figures = run_topology(tmp_path, Scale.short(), POSTGRES_URL)
    shown = topology_table(figures)
    print(shown)
    assert len(figures) == len(TOPOLOGY_FAULTS), shown
    for f in figures:
        assert f.lost == 0, shown
        assert f.run_twice == 0, shown
        assert f.stranded == 0, shown
        assert f.unfinished == 0, shown
        assert f.recovery_seconds is not None, shown
