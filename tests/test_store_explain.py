"""The store's list and get queries use their indexes, on PostgreSQL and SQLite.

200,000 jobs (1 % failed, 0.4 % of a rare type) are written in one INSERT ... SELECT,
the tables analyzed, and then the exact SQL the store sends (captured from SQLAlchemy's
``before_cursor_execute`` while calling :meth:`JobStore.list` / :meth:`JobStore.get`)
is explained. If the store's query changes shape so the index no longer serves it (a
sequential scan, or a sort of every matching row), these tests fail. The timing at
1,000,000 jobs is the benchmark's business (bench/); this proves the plan.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from offload.ids import new_job_id
from offload.store import FAILED, SUCCEEDED, JobStore, NewJob, utcnow
from offload.store.schema import jobs
from tests.conftest import postgres_schema_url

ROWS = 200_000
RARE_TYPE = "demo.rare"
OTHER_OWNER = "key:other"
PAGE = 21  # what GET /jobs?limit=20 asks the store for (one more, to know there is a next)


def _series(dialect: str) -> str:
    """A FROM item ``g(n)`` counting 1..:n on this engine."""
    if dialect == "postgresql":
        return "generate_series(1, :n) AS g(n)"
    return (
        "(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :n) "
        "SELECT n FROM s) AS g"
    )


def _fill(store: JobStore) -> None:
    """One real job through the store, then ROWS copies of it with varied columns."""
    template = new_job_id()
    store.insert(
        NewJob(
            id=template,
            type="demo.echo",
            payload={"hello": "world"},
            request_id="req-explain",
            trace=None,
            max_attempts=3,
            deadline_seconds=10.0,
            task_name=f"q/tasks/{template}",
        )
    )
    pg = store.dialect == "postgresql"
    pad = "lpad(g.n::text, 26, '0')" if pg else "printf('%026d', g.n)"
    varied = {
        "id": pad,
        "status": f"CASE WHEN g.n % 100 = 7 THEN '{FAILED}' ELSE '{SUCCEEDED}' END",
        "type": f"CASE WHEN g.n % 250 = 3 THEN '{RARE_TYPE}' ELSE t.type END",
        "finished_at": "t.created_at",
    }
    if "owner" in jobs.c:
        varied["owner"] = f"CASE WHEN g.n % 10 = 1 THEN '{OTHER_OWNER}' ELSE t.owner END"
    columns = [c.name for c in jobs.c]
    select = ", ".join(varied.get(c, f"t.{c}") for c in columns)
    with store.engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO offload_jobs ({', '.join(columns)}) "
                f"SELECT {select} FROM offload_jobs t, {_series(store.dialect)} "
                "WHERE t.id = :template"
            ),
            {"n": ROWS, "template": template},
        )
        # An attempt for every tenth job, so get()'s second query meets a big table too.
        conn.execute(
            text(
                "INSERT INTO offload_attempts (job_id, number, started_at, finished_at, outcome) "
                "SELECT id, 1, created_at, created_at, status FROM offload_jobs WHERE id LIKE '%0'"
            )
        )
    with store.engine.begin() as conn:
        conn.execute(text("ANALYZE offload_jobs"))
        conn.execute(text("ANALYZE offload_attempts"))


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def filled_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JobStore]:
    """A store of ROWS jobs on each engine, shared by this module's tests."""
    urls: Iterator[str]
    if request.param == "sqlite":
        urls = iter([f"sqlite:///{tmp_path_factory.mktemp('explain') / 'store.db'}"])
    else:
        urls = postgres_schema_url()
    for url in urls:
        store = JobStore(url, pool_size=2)
        try:
            store.create_schema()
            _fill(store)
            yield store
        finally:
            store.dispose()


@contextmanager
def captured(store: JobStore) -> Iterator[list[tuple[str, Any]]]:
    """The (statement, parameters) the store sends to the database while inside."""
    seen: list[tuple[str, Any]] = []

    def before(
        conn: Connection, cursor: Any, statement: str, params: Any, ctx: Any, many: bool
    ) -> None:
        seen.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", before)


def plans(store: JobStore, call: Callable[[], object], table: str) -> list[str]:
    """Run ``call``; explain each statement it sent that reads ``table``, one text each."""
    with captured(store) as seen:
        call()
    statements = [(s, p) for s, p in seen if re.search(rf"\bFROM {table}\b", s)]
    assert statements, f"the store sent no query on {table}: {seen}"
    out = []
    with store.engine.connect() as conn:
        for statement, params in statements:
            if store.dialect == "postgresql":
                rows = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params)
                out.append(json.dumps(rows.scalar()))
            else:
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                out.append("\n".join(str(r[-1]) for r in rows))
    return out


def assert_uses_index(store: JobStore, plan: str, index: str, *, ordered: bool) -> None:
    """The plan reads ``index`` (no full scan) and, if ``ordered``, sorts nothing."""
    if store.dialect == "postgresql":
        nodes = _pg_nodes(json.loads(plan)[0]["Plan"])
        assert any(n.get("Index Name") == index for n in nodes), plan
        assert not any(n["Node Type"] == "Seq Scan" for n in nodes), plan
        if ordered:
            assert not any(n["Node Type"] in ("Sort", "Incremental Sort") for n in nodes), plan
    else:
        assert re.search(rf"^SEARCH \w+ USING (COVERING )?INDEX {index} ", plan, re.M), plan
        assert not re.search(r"^SCAN ", plan, re.M), plan
        if ordered:
            assert "TEMP B-TREE" not in plan, plan


def _pg_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _pg_nodes(child))]


def _primary_key_index(store: JobStore) -> str:
    if store.dialect == "postgresql":
        return "offload_jobs_pkey"
    with store.engine.connect() as conn:
        name = conn.exec_driver_sql(
            "SELECT name FROM pragma_index_list('offload_jobs') WHERE origin = 'pk'"
        ).scalar()
    assert isinstance(name, str)
    return name


def test_the_fill_wrote_every_row_with_the_planned_mix(filled_store: JobStore) -> None:
    with filled_store.engine.connect() as conn:
        total, failed, rare = conn.execute(
            text(
                "SELECT count(*), sum(CASE WHEN status = :f THEN 1 ELSE 0 END), "
                "sum(CASE WHEN type = :r THEN 1 ELSE 0 END) FROM offload_jobs"
            ),
            {"f": FAILED, "r": RARE_TYPE},
        ).one()
    assert (total, failed, rare) == (ROWS + 1, ROWS // 100, ROWS // 250)


def test_listing_failed_jobs_reads_the_status_index_in_order(filled_store: JobStore) -> None:
    page: list[Any] = []
    (plan,) = plans(
        filled_store,
        lambda: page.extend(filled_store.list(status=FAILED, limit=PAGE)),
        "offload_jobs",
    )
    assert len(page) == PAGE and all(j.status == FAILED for j in page)
    assert [j.id for j in page] == sorted((j.id for j in page), reverse=True)
    assert_uses_index(filled_store, plan, "ix_offload_jobs_status_id", ordered=True)


def test_listing_jobs_of_one_type_reads_the_type_index_in_order(filled_store: JobStore) -> None:
    (plan,) = plans(
        filled_store, lambda: filled_store.list(type=RARE_TYPE, limit=PAGE), "offload_jobs"
    )
    assert_uses_index(filled_store, plan, "ix_offload_jobs_type_id", ordered=True)


def test_listing_one_clients_failed_jobs_reads_the_owner_index_in_order(
    filled_store: JobStore,
) -> None:
    if "owner" not in jobs.c:
        pytest.skip("this store has no job owners")
    list_jobs: Callable[..., Any] = filled_store.list
    (plan,) = plans(
        filled_store,
        lambda: list_jobs(owner=OTHER_OWNER, status=FAILED, limit=PAGE),
        "offload_jobs",
    )
    assert_uses_index(filled_store, plan, "ix_offload_jobs_owner_status_id", ordered=True)


def test_getting_a_job_reads_the_primary_key_and_the_attempts_index(
    filled_store: JobStore,
) -> None:
    job_id = f"{ROWS // 2:026d}"
    got: list[Any] = []
    # The job by its key, then its children's counts (fan-out) by their parent's index.
    job_plan, children_plan = plans(
        filled_store, lambda: got.append(filled_store.get(job_id)), "offload_jobs"
    )
    (attempts_plan,) = plans(filled_store, lambda: filled_store.get(job_id), "offload_attempts")
    assert got[0] is not None and len(got[0].attempt_log) == 1
    assert_uses_index(filled_store, job_plan, _primary_key_index(filled_store), ordered=False)
    assert_uses_index(filled_store, children_plan, "ix_offload_jobs_parent_id_id", ordered=False)
    assert_uses_index(filled_store, attempts_plan, "ix_offload_attempts_job_id", ordered=False)


def test_the_explain_check_fails_for_a_query_no_index_serves(
    filled_store: JobStore, tmp_path: Path
) -> None:
    """A filter on an unindexed column: the same assertion must reject its plan."""
    with filled_store.engine.connect() as conn:
        sql = "SELECT * FROM offload_jobs WHERE request_id = :r ORDER BY id DESC LIMIT 21"
        if filled_store.dialect == "postgresql":
            plan = json.dumps(
                conn.execute(text("EXPLAIN (FORMAT JSON) " + sql), {"r": "x"}).scalar()
            )
        else:
            rows = conn.execute(text("EXPLAIN QUERY PLAN " + sql), {"r": "x"})
            plan = "\n".join(str(r[-1]) for r in rows)
    with pytest.raises(AssertionError):
        assert_uses_index(filled_store, plan, "ix_offload_jobs_status_id", ordered=True)


def test_the_reconcilers_sweep_for_waiting_parents_reads_their_partial_index(
    filled_store: JobStore,
) -> None:
    """Every pass (5 s under make run) looks for parents: never a scan of every job."""
    (plan,) = plans(
        filled_store,
        lambda: filled_store.overdue_parents(older_than=utcnow()),
        "offload_jobs",
    )
    assert_uses_index(filled_store, plan, "ix_offload_jobs_waiting_updated_at", ordered=False)
