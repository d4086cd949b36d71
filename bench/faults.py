"""``python -m bench.faults``: faults against the real processes, and what each one cost.

On loopback, bounded in time: SIGKILL of web processes during a submit burst, of the
worker's processes while jobs run, of the emulator with pending and delayed tasks;
Cloud Tasks down and hung (SIGSTOP) during submits; the store's own PostgreSQL
connections terminated mid-flight; a load of 10,000 submits at concurrency 64. For each
it prints the jobs submitted, the answers by status, and then:

- lost: accepted (202/200) but never succeeded: missing, or failed by the system
  (``enqueue_failed``, ``interrupted``...), within the bound;
- run twice: jobs whose own side effect (``bench.faultjobs``: one line per completed
  run in a file) happened more than once;
- unfinished: accepted and still queued or running when the bound ran out;
- recovery: from the end of the fault until every accepted job is finished and a new
  job submitted afterwards has succeeded (``>bound`` when that never happened).

Clients behave as careful clients do: each submission carries an ``Idempotency-Key`` and
is retried with the same key on a connection error or a 5xx.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import secrets
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import sqlalchemy

from bench.common import gunicorn_children
from bench.faultjobs import MARKS_VARIABLE
from offload.slices import LEASE_MARGIN_SECONDS
from tests.processes import LASTING_QUEUE_YAML, LOCATION, PROJECT, QUEUE, Proc, Stack, tcp_open

__all__ = ["Figures", "Scale", "run_suite"]

# fault.mark's dispatch deadline is 45 s (30 s budget + margin): the worker's timeout
# must exceed it; a killed run's lease is that timeout plus the lease margin.
SLICE_SECONDS = 30
WORKER_TIMEOUT = 46
LEASE = WORKER_TIMEOUT + LEASE_MARGIN_SECONDS

FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Scale:
    """How big and how long: the full suite, or the short form ``make test`` runs."""

    jobs: int  # per fault
    kills: int
    load_jobs: int
    load_concurrency: int
    bound_seconds: float  # per fault, for everything to finish
    fault_seconds: float  # how long Cloud Tasks stays down or stopped

    @classmethod
    def full(cls) -> Scale:
        return cls(jobs=300, kills=3, load_jobs=10_000, load_concurrency=64,
                   bound_seconds=120, fault_seconds=5)  # fmt: skip

    @classmethod
    def short(cls) -> Scale:
        return cls(jobs=40, kills=2, load_jobs=200, load_concurrency=16,
                   bound_seconds=45, fault_seconds=3)  # fmt: skip


@dataclass
class Figures:
    """What one fault cost."""

    fault: str
    submitted: int = 0
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    lost: int = 0
    run_twice: int = 0
    unfinished: int = 0
    recovery_seconds: float | None = None
    bound_seconds: float = 0.0
    note: str = ""
    lost_reasons: collections.Counter[str] = field(default_factory=collections.Counter)

    def row(self) -> list[str]:
        answered = " ".join(f"{k}:{v}" for k, v in sorted(self.answers.items()))
        recovery = (
            f"{self.recovery_seconds:.1f} s"
            if self.recovery_seconds is not None
            else f">{self.bound_seconds:g} s"
        )
        lost = str(self.lost) + (
            f" ({', '.join(f'{k}:{v}' for k, v in sorted(self.lost_reasons.items()))})"
            if self.lost_reasons
            else ""
        )
        return [self.fault, str(self.submitted), answered, lost, str(self.run_twice),
                str(self.unfinished), recovery, self.note]  # fmt: skip


HEADER = ["fault", "submitted", "answered", "lost", "run twice", "unfinished", "recovery", "note"]


def table(rows: list[Figures]) -> str:
    """The figures as a Markdown table."""
    cells = [HEADER, *(f.row() for f in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(HEADER))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in cells]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def log(message: str) -> None:
    """Progress on stderr; the table goes to stdout."""
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Submission:
    """One logical submission and what became of it."""

    key: str
    job_id: str | None = None
    status: int | None = None


class Harness:
    """Emulator, worker and web on loopback, with the handles a fault needs."""

    def __init__(
        self, tmp: Path, *, database_url: str | None = None, worker_timeout: int = WORKER_TIMEOUT
    ):
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.marks = tmp / "marks"
        self.marks.touch()
        self.database_url = database_url or f"sqlite:///{tmp / 'offload.db'}"
        env = {
            "OFFLOAD_PROJECT_ID": PROJECT,
            "OFFLOAD_LOCATION": LOCATION,
            "OFFLOAD_QUEUE": QUEUE,
            "OFFLOAD_DATABASE_URL": self.database_url,
            "OFFLOAD_LOG_DIR": str(tmp / "log"),
            "OFFLOAD_PLATFORM_TIMEOUT_SECONDS": "3600",
            "OFFLOAD_JOB_MODULES": "jobs,bench.faultjobs",
            # Slices of 30 s (README walkthrough's short form): the worker's timeout and
            # so a killed run's lease follow from it, as they do from the default 540 s.
            "OFFLOAD_SLICE_SECONDS": str(SLICE_SECONDS),
            MARKS_VARIABLE: str(self.marks),
        }
        self.stack = Stack(tmp=tmp, env=env)
        self._restarts = 0
        try:
            # Retries for 10 minutes, as production's queue.yaml: a push retried while a
            # killed run's lease holds the job must outlast the lease.
            self.stack.start_emulator(
                LASTING_QUEUE_YAML, "--data-file", str(tmp / "emulator.sqlite3")
            )
            # gunicorn's timeout follows the slice; a killed run's lease follows from it.
            self.stack.start_service("worker", processes=2, timeout=worker_timeout)
            self.stack.start_service("web", processes=2, timeout=30)
            self._start_reconciler()
        except BaseException:
            self.stack.stop()
            raise
        self.engine = sqlalchemy.create_engine(self.database_url)
        self.session_local = threading.local()

    # -- processes ---------------------------------------------------------------------

    def kill_children(self, service: str, count: int = 1) -> int:
        """SIGKILL ``count`` of a service's gunicorn worker processes (gunicorn respawns)."""
        kids = gunicorn_children(self.stack.procs[service].pid)
        victims = random.sample(kids, min(count, len(kids)))
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(victims)

    def emulator(self) -> Proc:
        return self.stack.procs["emulator"]

    def kill_emulator(self) -> None:
        proc = self.emulator()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.popen.wait()

    def start_emulator_again(self) -> None:
        """The same emulator (ports, data file) started again after a kill."""
        old = self.emulator()
        old.stop()  # dead already: this reaps it and closes its output file
        self._restarts += 1
        proc = Proc("emulator", old.argv, old.env, self.tmp / f"emulator-{self._restarts}.out")
        self.stack.procs["emulator"] = proc
        proc.wait_until(lambda: tcp_open(self.stack.emulator_port), timeout=30)

    def signal_emulator(self, sig: int) -> None:
        os.killpg(self.emulator().pid, sig)

    def _start_reconciler(self) -> None:
        """The reconciler, as make run and cron.yaml run it (every 5 s here)."""
        argv = [sys.executable, "-m", "offload.cli", "jobs", "reconcile", "--every", "5"]
        self.stack.procs["reconciler"] = Proc(
            "reconciler", argv, self.stack.env, self.tmp / "reconciler.out"
        )

    def wait_healthy(self, bound: float = 60) -> None:
        """web answers /healthz and both services have all their processes again.

        The worker's /healthz is not asked: its sync processes serve the pushes queued
        before it, which is not a sign of ill health.
        """
        end = time.monotonic() + bound
        while True:
            try:
                web_ok = requests.get(self.stack.web_url + "/healthz", timeout=2).ok
            except requests.RequestException:
                web_ok = False
            full = all(
                len(gunicorn_children(self.stack.procs[n].pid)) >= 2 for n in ("web", "worker")
            )
            if web_ok and full:
                return
            if time.monotonic() > end:
                raise RuntimeError(f"services not back after {bound}s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.engine.dispose()
        self.stack.stop()

    # -- clients -------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self.session_local, "session", None)
        if session is None:
            session = self.session_local.session = requests.Session()
        return session

    def submit(self, body: dict[str, Any], answers: collections.Counter[str]) -> Submission:
        """One submission, retried with its Idempotency-Key on connection errors and 5xx."""
        sub = Submission(key=uuid.uuid4().hex)
        delay = 0.2
        for _ in range(8):
            try:
                r = self._session().post(
                    self.stack.web_url + "/jobs",
                    json=body,
                    headers={"Idempotency-Key": sub.key},
                    timeout=15,
                )
            except requests.RequestException:
                answers["conn"] += 1
            else:
                answers[str(r.status_code)] += 1
                sub.status = r.status_code
                if r.status_code in (200, 202):
                    sub.job_id = r.json()["id"]
                    return sub
                if r.status_code < 500:
                    return sub
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        return sub

    def burst(
        self, bodies: list[dict[str, Any]], concurrency: int, answers: collections.Counter[str]
    ) -> Iterator[Submission]:
        """Submit every body, ``concurrency`` at a time; yields as they complete."""
        with ThreadPoolExecutor(concurrency) as pool:
            yield from pool.map(lambda b: self.submit(b, answers), bodies)

    # -- what became of the jobs ---------------------------------------------------------

    def statuses(self, ids: set[str]) -> dict[str, tuple[str, str | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("SELECT id, status, reason FROM offload_jobs"))
            return {r[0]: (r[1], r[2]) for r in rows if r[0] in ids}

    def runs(self) -> collections.Counter[str]:
        return collections.Counter(self.marks.read_text().split())

    def wait_finished(self, ids: set[str], until: float) -> dict[str, tuple[str, str | None]]:
        """Poll the store until every job in ``ids`` is finished or ``until`` passes."""
        while True:
            seen = self.statuses(ids)
            if all(seen.get(i, ("?",))[0] in FINISHED for i in ids) or time.monotonic() > until:
                return seen
            time.sleep(0.5)

    def probe(self, until: float) -> bool:
        """A new job, submitted now, succeeds before ``until``."""
        answers: collections.Counter[str] = collections.Counter()
        while time.monotonic() < until:
            sub = self.submit({"type": "fault.mark", "payload": {}}, answers)
            if sub.job_id is None:
                time.sleep(0.2)
                continue
            end = min(until, time.monotonic() + 10)
            while time.monotonic() < end:
                status = self.statuses({sub.job_id}).get(sub.job_id, ("?", None))[0]
                if status == "succeeded":
                    return True
                if status in FINISHED:
                    break
                time.sleep(0.1)
        return False


def _account(
    h: Harness, fig: Figures, subs: list[Submission], fault_end: float, bound: float
) -> Figures:
    """Fill in lost, run twice, unfinished and recovery for ``subs``."""
    fig.submitted = len(subs)
    fig.bound_seconds = bound
    ids = {s.job_id for s in subs if s.job_id}
    until = fault_end + bound
    seen = h.wait_finished(ids, until)
    done_at = time.monotonic()
    runs = h.runs()
    for job_id in ids:
        status, reason = seen.get(job_id, ("missing", None))
        if status == "succeeded":
            continue
        if status in FINISHED or status == "missing":
            fig.lost += 1
            fig.lost_reasons[reason or status] += 1
        else:
            fig.unfinished += 1
    fig.run_twice = sum(1 for job_id in ids if runs[job_id] > 1)
    if fig.unfinished == 0 and h.probe(until):
        fig.recovery_seconds = max(done_at, time.monotonic()) - fault_end
    return fig


def _marks(n: int, seconds: float = 0.0, **extra: Any) -> list[dict[str, Any]]:
    return [{"type": "fault.mark", "payload": {"seconds": seconds}, **extra} for _ in range(n)]


def _in_background(action: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    return thread


def _wait(condition: Callable[[], bool], bound: float = 60) -> None:
    end = time.monotonic() + bound
    while not condition():
        if time.monotonic() > end:
            raise RuntimeError("condition not met in time")
        time.sleep(0.05)


def fault_web_kill(h: Harness, s: Scale) -> Figures:
    """SIGKILL of web processes during a submit burst."""
    fig = Figures("web SIGKILL during submits")
    done: list[Submission] = []
    kills = 0

    def killer() -> None:
        nonlocal kills
        for k in range(1, s.kills + 1):
            _wait(lambda k=k: len(done) >= k * s.jobs // (s.kills + 1))  # type: ignore[misc]
            kills += h.kill_children("web")

    thread = _in_background(killer)
    for sub in h.burst(_marks(s.jobs), 16, fig.answers):
        done.append(sub)
    thread.join()
    h.wait_healthy()
    fig.note = f"{kills} web processes killed"
    return _account(h, fig, done, time.monotonic(), s.bound_seconds)


def _running(h: Harness, ids: set[str]) -> int:
    return sum(1 for st, _ in h.statuses(ids).values() if st == "running")


def fault_worker_kill(h: Harness, s: Scale) -> Figures:
    """SIGKILL of the worker's processes while jobs run."""
    fig = Figures("worker SIGKILL during runs")
    # Few enough that two worker processes run them all well within the bound: what is
    # left unfinished is what the kills cost, not a queue still draining.
    subs = list(h.burst(_marks(max(10, s.jobs // 5), seconds=1.0), 16, fig.answers))
    ids = {x.job_id for x in subs if x.job_id}
    kills = 0
    for _ in range(s.kills):
        try:
            _wait(lambda: _running(h, ids) > 0, bound=30)
        except RuntimeError:
            break
        kills += h.kill_children("worker", count=2)
        time.sleep(0.3)  # let gunicorn start new workers that pick jobs up
    h.wait_healthy()
    fig.note = f"{kills} worker processes killed mid-run; a killed run's lease is {LEASE:g} s"
    # Recovery of a killed run is bounded by its lease (slice + margins), then a retry.
    return _account(h, fig, subs, time.monotonic(), max(s.bound_seconds, LEASE + 30))


def fault_emulator_kill(h: Harness, s: Scale) -> Figures:
    """SIGKILL of the emulator holding pending and delayed tasks, started again."""
    fig = Figures("emulator SIGKILL, pending+delayed")
    bodies = _marks(s.jobs // 2, seconds=0.5) + _marks(s.jobs - s.jobs // 2, delay_seconds=3)
    subs = list(h.burst(bodies, 16, fig.answers))
    h.kill_emulator()
    h.start_emulator_again()
    fig.note = "killed right after the burst, restarted at once"
    return _account(h, fig, subs, time.monotonic(), s.bound_seconds)


def fault_tasks_down(h: Harness, s: Scale) -> Figures:
    """Cloud Tasks not running (killed) for a while during submits."""
    fig = Figures("Cloud Tasks down during submits")
    done: list[Submission] = []
    end_of_fault = [0.0]

    def outage() -> None:
        _wait(lambda: len(done) >= s.jobs // 4)
        h.kill_emulator()
        time.sleep(s.fault_seconds)
        h.start_emulator_again()
        end_of_fault[0] = time.monotonic()

    thread = _in_background(outage)
    for sub in h.burst(_marks(s.jobs), 8, fig.answers):
        done.append(sub)
    thread.join()
    fig.note = f"down {s.fault_seconds:g} s"
    return _account(h, fig, done, end_of_fault[0] or time.monotonic(), s.bound_seconds)


def fault_tasks_hung(h: Harness, s: Scale) -> Figures:
    """Cloud Tasks hung (SIGSTOP) for a while during submits."""
    fig = Figures("Cloud Tasks hung (SIGSTOP)")
    done: list[Submission] = []
    end_of_fault = [0.0]

    def hang() -> None:
        _wait(lambda: len(done) >= s.jobs // 4)
        h.signal_emulator(signal.SIGSTOP)
        try:
            time.sleep(s.fault_seconds)
        finally:
            h.signal_emulator(signal.SIGCONT)
        end_of_fault[0] = time.monotonic()

    thread = _in_background(hang)
    started = time.monotonic()
    for sub in h.burst(_marks(s.jobs), 8, fig.answers):
        done.append(sub)
    thread.join()
    fig.note = f"stopped {s.fault_seconds:g} s; burst took {time.monotonic() - started:.1f} s"
    return _account(h, fig, done, end_of_fault[0] or time.monotonic(), s.bound_seconds)


def fault_load(h: Harness, s: Scale) -> Figures:
    """No fault: many submits at high concurrency."""
    fig = Figures(f"load {s.load_jobs} submits at {s.load_concurrency}")
    started = time.monotonic()
    subs = list(h.burst(_marks(s.load_jobs), s.load_concurrency, fig.answers))
    took = time.monotonic() - started
    fig.note = f"{s.load_jobs / took:.0f} submits/s"
    return _account(h, fig, subs, time.monotonic(), max(s.bound_seconds, s.load_jobs / 50))


def fault_pg_terminate(h: Harness, s: Scale, application_name: str) -> Figures:
    """The store's own PostgreSQL connections terminated mid-flight, repeatedly."""
    fig = Figures("PostgreSQL backends terminated")
    done: list[Submission] = []
    terminated = 0
    admin = sqlalchemy.create_engine(h.database_url.split("?", 1)[0])

    def terminator() -> None:
        nonlocal terminated
        for k in range(1, s.kills + 2):
            _wait(lambda k=k: len(done) >= k * s.jobs // (s.kills + 3))  # type: ignore[misc]
            with admin.connect() as conn:
                # Only this run's store connections: they carry its application_name.
                rows = conn.execute(
                    sqlalchemy.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name LIKE :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": application_name + "%"},
                ).all()
            terminated += len(rows)

    thread = _in_background(terminator)
    for sub in h.burst(_marks(s.jobs, seconds=0.2), 16, fig.answers):
        done.append(sub)
    thread.join()
    admin.dispose()
    fig.note = f"{terminated} connections terminated"
    return _account(h, fig, done, time.monotonic(), s.bound_seconds)


SQLITE_FAULTS: dict[str, Callable[[Harness, Scale], Figures]] = {
    "web_kill": fault_web_kill,
    "worker_kill": fault_worker_kill,
    "emulator_kill": fault_emulator_kill,
    "tasks_down": fault_tasks_down,
    "tasks_hung": fault_tasks_hung,
    "load": fault_load,
}
ALL_FAULTS = [*SQLITE_FAULTS, "pg_terminate"]


def run_suite(
    tmp: Path, scale: Scale, *, only: list[str] | None = None, postgres_url: str | None = None
) -> list[Figures]:
    """Run the faults (all, or ``only``) and return their figures."""
    wanted = only or ALL_FAULTS
    figures: list[Figures] = []
    sqlite_faults = [n for n in wanted if n in SQLITE_FAULTS]
    if sqlite_faults:
        h = Harness(tmp / "sqlite")
        try:
            for name in sqlite_faults:
                log(f"{name} ...")
                try:
                    figures.append(SQLITE_FAULTS[name](h, scale))
                except Exception as e:  # noqa: BLE001 - one fault's crash is its figure
                    figures.append(Figures(name, unfinished=-1, note=f"suite error: {e}"[:200]))
                log(" | ".join(figures[-1].row()))
        finally:
            h.stop()
    if "pg_terminate" in wanted and postgres_url:
        figures.append(_with_postgres(tmp / "postgres", scale, postgres_url))
        log(" | ".join(figures[-1].row()))
    return figures


def _with_postgres(tmp: Path, scale: Scale, base_url: str) -> Figures:
    schema = "offload_faults_" + secrets.token_hex(4)
    name = "faults-" + secrets.token_hex(4)
    admin = sqlalchemy.create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    url = f"{base_url}?options=-csearch_path%3D{schema}&application_name={name}"
    try:
        h = Harness(tmp, database_url=url)
        try:
            log("pg_terminate ...")
            return fault_pg_terminate(h, scale, name)
        finally:
            h.stop()
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    """Run the suite and print the table; exit 1 if any job was lost or ran twice."""
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the short form make test runs")
    parser.add_argument(
        "--only",
        action="append",
        choices=[*ALL_FAULTS, "topology"],
        help="run only these (topology: bench.faults_topology, 2 web + 2 worker instances)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "OFFLOAD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="server for the PostgreSQL fault (empty: skip it)",
    )
    args = parser.parse_args(argv)
    scale = Scale.short() if args.short else Scale.full()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="offload-faults-") as tmp:
        figures = run_suite(Path(tmp), scale, only=args.only, postgres_url=args.postgres_url)
        topology = _topology(Path(tmp) / "topology", scale, args.only, args.postgres_url)
    print(table(figures))
    if topology is not None:
        from bench.faults_topology import topology_table

        print("\nTwo web and two worker instances on one PostgreSQL:\n")
        print(topology_table(topology))
    print(f"\n{time.monotonic() - started:.0f} s, load average {os.getloadavg()[0]:.1f}")
    lost = any(f.lost or f.run_twice or f.unfinished for f in figures)
    return 1 if lost or (topology is not None and _failed(topology)) else 0


def _topology(tmp: Path, scale: Scale, only: list[str] | None, url: str) -> list[Any] | None:
    """The topology faults (bench.faults_topology), when wanted and PostgreSQL is given."""
    if not url or (only and "topology" not in only):
        return None
    from bench.faults_topology import run_topology

    return list(run_topology(tmp, scale, url))


def _failed(figures: list[Any]) -> bool:
    from bench.faults_topology import failed

    return failed(figures)


if __name__ == "__main__":
    sys.exit(main())
