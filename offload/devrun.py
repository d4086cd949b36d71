"""``offload run``: the whole system on one machine (emulator, web, worker).

Each process's lines are printed with its name in front; Ctrl-C (or SIGTERM) stops all
three and waits for them, and if one of them dies the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from offload.logs import parse_line
from offload.slices import worker_timeout_for

__all__ = ["ProcessSpec", "Supervisor", "local_processes", "render_line"]

_COLOURS = {"emulator": "\033[35m", "web": "\033[36m", "worker": "\033[33m"}


@dataclass(frozen=True)
class ProcessSpec:
    """A child process: its name, command and extra environment."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]


def local_processes(config: Mapping[str, Any]) -> list[ProcessSpec]:
    """The emulator, web and worker commands for ``config`` (ports, paths, processes)."""
    host = str(config["HOST"])
    emulator_host = f"{host}:{config['EMULATOR_PORT']}"
    worker_url = f"http://{host}:{config['WORKER_PORT']}"
    shared_env = {
        "OFFLOAD_TASKS_EMULATOR_HOST": emulator_host,
        "OFFLOAD_OIDC_CERTS_URL": f"http://{host}:{config['EMULATOR_HTTP_PORT']}/oauth2/v1/certs",
    }
    if not config.get("WORKER_URL"):
        shared_env["OFFLOAD_WORKER_URL"] = worker_url
    py = sys.executable
    gunicorn = [py, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    return [
        ProcessSpec(
            "emulator",
            [
                py, "-m", "emulator",
                "--host", host,
                "--port", str(config["EMULATOR_PORT"]),
                "--http-port", str(config["EMULATOR_HTTP_PORT"]),
                "--project", str(config["PROJECT_ID"]),
                "--location", str(config["LOCATION"]),
                "--queue-yaml", str(config["QUEUE_YAML"]),
                "--appengine-service", f"{config['WORKER_SERVICE']}={worker_url}",
                "--appengine-service", f"default=http://{host}:{config['WEB_PORT']}",
                "--data-file", str(config["EMULATOR_DATA_FILE"]),
                *(["--log-dir", str(config["LOG_DIR"])] if config["LOG_DIR"] else []),
            ],
            shared_env,
        ),
        ProcessSpec(
            "web",
            [
                *gunicorn, "--name", "web",
                "--bind", f"{host}:{config['WEB_PORT']}",
                "--workers", str(config["WEB_PROCESSES"]),
                "--timeout", "30",
                "web.main:app",
            ],
            shared_env,
        ),
        ProcessSpec(
            "worker",
            [
                *gunicorn, "--name", "worker",
                "--bind", f"{host}:{config['WORKER_PORT']}",
                "--workers", str(config["WORKER_PROCESSES"]),
                # gunicorn's timeout follows the slice, so the lease (and the recovery
                # of a killed run) is about one slice, not a fixed 11 minutes.
                "--timeout", str(worker_timeout_for(config)),
                "worker.main:app",
            ],
            shared_env,
        ),
    ]  # fmt: skip


def render_line(line: str) -> str:
    """A structured log line made readable for a terminal; other lines unchanged."""
    entry = parse_line(line)
    if entry is None or "severity" not in entry:
        return line
    labels = entry.get("logging.googleapis.com/labels") or {}
    tags = " ".join(
        f"{k}={labels[k]}" for k in ("request_id", "job_id", "attempt") if labels.get(k)
    )
    stamp = str(entry.get("time", ""))[11:23]
    return f"{stamp} {entry['severity']:<7} {entry.get('message', '')}" + (
        f"  [{tags}]" if tags else ""
    )


class Supervisor:
    """Starts processes, prefixes their output, and stops them all together."""

    def __init__(
        self, specs: Sequence[ProcessSpec], out: IO[str] = sys.stdout, *, raw: bool = False
    ) -> None:
        self.specs = specs
        self.raw = raw
        self.out = out
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._colour = out.isatty()
        self._width = max(len(s.name) for s in specs)

    def _print(self, name: str, line: str) -> None:
        label = name.ljust(self._width)
        if self._colour:
            label = f"{_COLOURS.get(name, '')}{label}\033[0m"
        with self._lock:
            self.out.write(f"{label} | {line}\n")
            self.out.flush()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for data in iter(stream.readline, b""):
            line = data.decode("utf-8", "replace").rstrip("\n")
            self._print(name, line if self.raw else render_line(line))
        stream.close()

    def start(self) -> None:
        """Start every process (each in its own process group)."""
        for spec in self.specs:
            proc = subprocess.Popen(
                list(spec.argv),
                env={**os.environ, **spec.env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.procs[spec.name] = proc
            assert proc.stdout is not None
            threading.Thread(target=self._pump, args=(spec.name, proc.stdout), daemon=True).start()
            self._print(spec.name, f"started (pid {proc.pid}): {' '.join(spec.argv[1:])}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every process group, wait, then SIGKILL what is left."""
        self._stopping.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._print(name, "did not stop in time: killed")
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        for name, proc in self.procs.items():
            # The group may hold children that outlived their parent (gunicorn workers).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._print(name, f"stopped (exit {proc.returncode})")

    def wait(self) -> int:
        """Block until a signal or a child's exit; then stop everything. Returns exit code."""
        exit_code = 0

        def on_signal(signum: int, _frame: object) -> None:
            self._stopping.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self._stopping.is_set():
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        self._print(name, f"exited unexpectedly with {proc.returncode}")
                        exit_code = 1
                        self._stopping.set()
                        break
                self._stopping.wait(0.2)
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return exit_code
