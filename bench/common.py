"""What every benchmark shares: result rows, percentiles, processes, memory."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.processes import PROJECT, ROOT, Proc, free_port, http_ok

__all__ = [
    "Row",
    "cpu_seconds",
    "load_average",
    "service_pids",
    "Settings",
    "fmt_ms",
    "gunicorn_argv",
    "gunicorn_children",
    "percentile",
    "peak_rss_mib",
    "progress",
    "start_gunicorn",
    "verdict",
]

QUEUE_PATH = f"projects/{PROJECT}/locations/us-central1/queues/offload-jobs"


@dataclass(frozen=True)
class Settings:
    """Options every benchmark reads."""

    tmp: Path
    quick: bool
    store_rows: int
    e2e_jobs: int
    emulator_tasks: int


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure beside its baseline, and the target if any."""

    section: str
    measure: str
    value: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""
    note: str = ""


def progress(message: str) -> None:
    """A progress line on stderr, so the table on stdout stays clean."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[k]


def fmt_ms(seconds: float) -> str:
    """Seconds as milliseconds with a sensible number of digits."""
    ms = seconds * 1000
    return f"{ms:.2f} ms" if abs(ms) < 10 else f"{ms:.1f} ms" if abs(ms) < 100 else f"{ms:.0f} ms"


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"


def gunicorn_argv(
    app: str, *, name: str, bind: str, workers: int = 2, timeout: int = 60
) -> list[str]:
    """The gunicorn command line tests/processes.py starts each service with."""
    return [
        sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
        "--name", name,
        "--bind", bind,
        "--workers", str(workers),
        "--timeout", str(timeout),
        app,
    ]  # fmt: skip


def start_gunicorn(
    tmp: Path,
    app: str,
    *,
    name: str,
    env: Mapping[str, str],
    workers: int = 2,
    extra: Sequence[str] = (),
    wait: bool = True,
) -> tuple[Proc, str]:
    """Start ``app`` under gunicorn with the services' flags; return it and its base URL."""
    port = free_port()
    argv = [*gunicorn_argv(app, name=name, bind=f"127.0.0.1:{port}", workers=workers), *extra]
    tmp.mkdir(parents=True, exist_ok=True)
    proc = Proc(f"{name}-{app}", argv, env, tmp / f"{name}-{port}.out")
    url = f"http://127.0.0.1:{port}"
    if wait:
        proc.wait_until(lambda: http_ok(url + "/healthz"), timeout=60)
    return proc, url


def gunicorn_children(master: int) -> list[int]:
    """PIDs of the worker processes of a gunicorn master."""
    kids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            kids.append(int(entry))
    return kids


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time the processes have used so far (live ones only)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def service_pids(master: int) -> list[int]:
    """A gunicorn master's worker processes (where the requests are served)."""
    return gunicorn_children(master)


def load_average() -> str:
    """The 1-minute load average: how busy the machine was (other processes too)."""
    return f"{os.getloadavg()[0]:.1f}"


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process, MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def service_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment make_stack gives the services, for services started alone."""
    return {
        "OFFLOAD_PROJECT_ID": PROJECT,
        "OFFLOAD_LOCATION": "us-central1",
        "OFFLOAD_QUEUE": "offload-jobs",
        "OFFLOAD_DATABASE_URL": f"sqlite:///{tmp / 'offload.db'}",
        "OFFLOAD_LOG_DIR": str(tmp / "log"),
        "OFFLOAD_PLATFORM_TIMEOUT_SECONDS": "600",
        "OFFLOAD_JOB_MODULES": "jobs",
        **extra,
    }


def project_root() -> Path:
    """The repository root (where gunicorn.conf.py is)."""
    return ROOT
