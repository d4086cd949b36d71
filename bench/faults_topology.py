"""The fault suite on the production topology: 2 web + 2 worker instances on one PostgreSQL.

Each instance is its own gunicorn (2 processes); web instances sit behind
``offload.front`` (round-robin), the emulator spreads pushes over the worker instances
(``--appengine-service worker=URL1,URL2``), and all share one PostgreSQL schema, fresh
per run. Faults: SIGKILL of a whole worker instance while jobs run, of a whole web
instance during a submit burst, ``pg_terminate_backend`` of the store's own connections
(found by this run's ``application_name``), and an emulator restart during submits.
Each prints what ``bench.faults`` prints, plus:

- stranded: unfinished jobs with no Cloud Task left to run them (the task is gone from
  the emulator, or was never created);

and "run twice" counts only completed runs (the ``fault.mark`` job's own side effect is
written after its work), so it is the runs after a handler had succeeded.

    python -m bench.faults_topology [--short]     # also part of python -m bench.faults
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
import sqlalchemy
from google.api_core import exceptions as gexc

from bench.common import gunicorn_children
from bench.faultjobs import MARKS_VARIABLE
from bench.faults import (
    FINISHED,
    HEADER,
    LEASE,
    SLICE_SECONDS,
    WORKER_TIMEOUT,
    Figures,
    Harness,
    Scale,
    Submission,
    _account,
    _in_background,
    _marks,
    _running,
    _wait,
    log,
)
from tests.processes import LASTING_QUEUE_YAML, LOCATION, PROJECT, QUEUE, Stack

__all__ = ["TopologyFigures", "run_topology", "topology_table"]

INSTANCES = 2


@dataclass
class TopologyFigures(Figures):
    """Figures with the stranded count."""

    stranded: int = 0

    def row(self) -> list[str]:
        cells = super().row()
        return [*cells[:6], str(self.stranded), *cells[6:]]


TOPOLOGY_HEADER = [*HEADER[:6], "stranded", *HEADER[6:]]


def topology_table(rows: list[TopologyFigures]) -> str:
    """The figures as a Markdown table."""
    cells = [TOPOLOGY_HEADER, *(f.row() for f in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(TOPOLOGY_HEADER))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in cells]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


class TopologyHarness(Harness):
    """Emulator, 2 web instances behind the front, 2 worker instances, one PostgreSQL."""

    def __init__(self, tmp: Path, *, database_url: str, application_name: str) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.marks = tmp / "marks"
        self.marks.touch()
        self.database_url = database_url
        self.application_name = application_name
        env = {
            "OFFLOAD_PROJECT_ID": PROJECT,
            "OFFLOAD_LOCATION": LOCATION,
            "OFFLOAD_QUEUE": QUEUE,
            "OFFLOAD_DATABASE_URL": database_url,
            "OFFLOAD_LOG_DIR": str(tmp / "log"),
            "OFFLOAD_PLATFORM_TIMEOUT_SECONDS": "3600",
            "OFFLOAD_JOB_MODULES": "jobs,bench.faultjobs",
            "OFFLOAD_WORKER_TIMEOUT_SECONDS": str(WORKER_TIMEOUT),
            # Long jobs (demo.long) run in slices of 30 s, so every dispatch fits the timeout.
            "OFFLOAD_SLICE_SECONDS": str(SLICE_SECONDS),
            MARKS_VARIABLE: str(self.marks),
        }
        self.stack = Stack(tmp=tmp, env=env)
        self._restarts = 0
        try:
            self.stack.start_emulator(
                LASTING_QUEUE_YAML,
                "--data-file",
                str(tmp / "emulator-data.sqlite3"),
                worker_instances=INSTANCES,
            )
            self.stack.start_service(
                "worker", processes=2, timeout=WORKER_TIMEOUT, instances=INSTANCES
            )
            self.stack.start_service("web", processes=2, timeout=30, instances=INSTANCES)
            self._start_reconciler()
        except BaseException:
            self.stack.stop()
            raise
        # The harness's own reads carry another name, so the terminations spare them.
        observer = database_url.replace(
            f"application_name={application_name}", f"application_name=watch-{application_name}"
        )
        self.engine = sqlalchemy.create_engine(observer, pool_pre_ping=True)
        self.session_local = threading.local()
        self.tasks = self.stack.tasks_client()

    def wait_healthy(self, bound: float = 60) -> None:
        """Every instance answers and has all its processes."""
        end = time.monotonic() + bound
        labels = self.stack.instances("web") + self.stack.instances("worker")
        while True:
            try:
                web_ok = all(
                    requests.get(u + "/healthz", timeout=2).ok for u in self.stack.web_urls
                )
            except requests.RequestException:
                web_ok = False
            full = all(len(gunicorn_children(self.stack.procs[n].pid)) >= 2 for n in labels)
            if web_ok and full:
                return
            if time.monotonic() > end:
                raise RuntimeError(f"instances not back after {bound}s")
            time.sleep(0.1)

    def stranded(self, ids: set[str]) -> int:
        """Unfinished jobs among ``ids`` whose Cloud Task does not exist."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text("SELECT id, status, task_name FROM offload_jobs")
            ).all()
        count = 0
        for job_id, status, task_name in rows:
            if job_id not in ids or status in FINISHED:
                continue
            if not task_name:
                count += 1
                continue
            try:
                self.tasks.get_task(name=task_name)
            except gexc.NotFound:
                count += 1
        return count

    def stop(self) -> None:
        self.tasks.transport.close()
        super().stop()


def _account_topology(
    h: TopologyHarness, fig: TopologyFigures, subs: list[Submission], fault_end: float, s: Scale
) -> TopologyFigures:
    # A run killed with its instance holds its lease to the end: the bound allows for it.
    _account(h, fig, subs, fault_end, max(s.bound_seconds, LEASE + 30))
    if fig.unfinished:
        fig.stranded = h.stranded({x.job_id for x in subs if x.job_id})
    return fig


def fault_worker_instance(h: TopologyHarness, s: Scale) -> TopologyFigures:
    """SIGKILL of a whole worker instance while jobs run; replaced after a moment."""
    fig = TopologyFigures("worker instance SIGKILL")
    subs = list(h.burst(_marks(max(10, s.jobs // 4), seconds=1.0), 16, fig.answers))
    ids = {x.job_id for x in subs if x.job_id}
    _wait(lambda: _running(h, ids) > 0, bound=30)
    h.stack.kill_instance("worker-1")
    killed = time.monotonic()
    time.sleep(s.fault_seconds)  # pushes meanwhile meet a refused connection
    h.stack.restart_instance("worker-1")
    h.wait_healthy()
    fig.note = f"down {time.monotonic() - killed:.1f} s, then replaced"
    return _account_topology(h, fig, subs, killed, s)


def fault_web_instance(h: TopologyHarness, s: Scale) -> TopologyFigures:
    """SIGKILL of a whole web instance during a submit burst; replaced after a moment."""
    fig = TopologyFigures("web instance SIGKILL during submits")
    done: list[Submission] = []
    killed = [0.0]

    def killer() -> None:
        _wait(lambda: len(done) >= s.jobs // 3)
        h.stack.kill_instance("web-1")
        killed[0] = time.monotonic()
        time.sleep(s.fault_seconds)
        h.stack.restart_instance("web-1")

    thread = _in_background(killer)
    for sub in h.burst(_marks(s.jobs), 16, fig.answers):
        done.append(sub)
    thread.join()
    h.wait_healthy()
    fig.note = f"web-1 down {s.fault_seconds:g} s, then replaced"
    return _account_topology(h, fig, done, killed[0] or time.monotonic(), s)


def fault_pg_terminate(h: TopologyHarness, s: Scale) -> TopologyFigures:
    """The store's own connections terminated (every instance's), repeatedly, mid-flight."""
    fig = TopologyFigures("PostgreSQL backends terminated")
    done: list[Submission] = []
    terminated = 0
    admin = sqlalchemy.create_engine(h.database_url.split("?", 1)[0])
    last = [0.0]

    def terminator() -> None:
        nonlocal terminated
        for k in range(1, s.kills + 2):
            _wait(lambda k=k: len(done) >= k * s.jobs // (s.kills + 3))  # type: ignore[misc]
            with admin.connect() as conn:
                # Only this run's connections: they carry its application_name.
                rows = conn.execute(
                    sqlalchemy.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name LIKE :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": h.application_name + "%"},
                ).all()
            terminated += len(rows)
            last[0] = time.monotonic()

    thread = _in_background(terminator)
    for sub in h.burst(_marks(s.jobs, seconds=0.2), 16, fig.answers):
        done.append(sub)
    thread.join()
    admin.dispose()
    fig.note = f"{terminated} connections terminated in {s.kills + 1} rounds"
    return _account_topology(h, fig, done, last[0] or time.monotonic(), s)


def fault_emulator_restart(h: TopologyHarness, s: Scale) -> TopologyFigures:
    """The emulator killed during submits and started again at once (same data file)."""
    fig = TopologyFigures("emulator restart during submits")
    done: list[Submission] = []
    back = [0.0]

    def restart() -> None:
        _wait(lambda: len(done) >= s.jobs // 3)
        h.kill_emulator()
        h.start_emulator_again()
        back[0] = time.monotonic()

    thread = _in_background(restart)
    for sub in h.burst(_marks(s.jobs, seconds=0.2), 16, fig.answers):
        done.append(sub)
    thread.join()
    h.tasks.transport.close()
    h.tasks = h.stack.tasks_client()
    fig.note = "SIGKILL, started again at once"
    return _account_topology(h, fig, done, back[0] or time.monotonic(), s)


TOPOLOGY_FAULTS: dict[str, Callable[[TopologyHarness, Scale], TopologyFigures]] = {
    "worker_instance": fault_worker_instance,
    "web_instance": fault_web_instance,
    "pg_terminate": fault_pg_terminate,
    "emulator_restart": fault_emulator_restart,
}


def run_topology(
    tmp: Path, scale: Scale, postgres_url: str, *, only: list[str] | None = None
) -> list[TopologyFigures]:
    """Every topology fault (or ``only``) on a fresh PostgreSQL schema; their figures."""
    schema = "offload_topology_" + secrets.token_hex(4)
    name = "topo-" + secrets.token_hex(4)
    admin = sqlalchemy.create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    url = f"{postgres_url}?options=-csearch_path%3D{schema}&application_name={name}"
    figures: list[TopologyFigures] = []
    try:
        h = TopologyHarness(tmp, database_url=url, application_name=name)
        try:
            for fault in only or list(TOPOLOGY_FAULTS):
                log(f"topology {fault} ...")
                try:
                    figures.append(TOPOLOGY_FAULTS[fault](h, scale))
                except Exception as e:  # noqa: BLE001 - one fault's crash is its figure
                    figures.append(
                        TopologyFigures(fault, unfinished=-1, note=f"suite error: {e}"[:200])
                    )
                log(" | ".join(figures[-1].row()))
        finally:
            h.stop()
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    return figures


def failed(figures: list[TopologyFigures]) -> bool:
    """Whether any job was lost, run twice, left unfinished or stranded."""
    return any(f.lost or f.run_twice or f.unfinished or f.stranded for f in figures)


def main(argv: list[str] | None = None) -> int:
    """Run the topology faults and print their table; exit 1 on any loss."""
    parser = argparse.ArgumentParser(prog="python -m bench.faults_topology", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the short form make test runs")
    parser.add_argument("--only", action="append", choices=list(TOPOLOGY_FAULTS))
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "OFFLOAD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args(argv)
    scale = Scale.short() if args.short else Scale.full()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="offload-topology-") as tmp:
        figures = run_topology(Path(tmp), scale, args.postgres_url, only=args.only)
    print(topology_table(figures))
    print(f"\n{time.monotonic() - started:.0f} s, load average {os.getloadavg()[0]:.1f}")
    return 1 if failed(figures) else 0


if __name__ == "__main__":
    sys.exit(main())
