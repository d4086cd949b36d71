"""``offload run``: the whole system on one machine (emulator, web, worker, reconciler).

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
from typing import IO

from offload.logs import parse_line
from offload.settings import Settings
from offload.slices import worker_timeout_for
from offload.termsafe import escape, escape_message

__all__ = ["ProcessSpec", "Supervisor", "local_processes", "render_line"]

_COLOURS = {
    "emulator": "\033[35m",
    "web": "\033[36m",
    "worker": "\033[33m",
    "front": "\033[32m",
    "reconciler": "\033[34m",
}


@dataclass(frozen=True)
class ProcessSpec:
    """A child process: its name, command and extra environment."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]


def _service(
    name: str,
    bind: str,
    processes: int,
    timeout: int,
    app: str,
    env: Mapping[str, str],
    threads: int = 1,
) -> ProcessSpec:
    argv = [
        sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
        # gunicorn's proc_name is the service (web or worker): it labels the logs.
        "--name", name.partition("-")[0],
        "--bind", bind,
        "--workers", str(processes),
        # web waits on job events in threads (gthread); the worker stays on sync workers.
        *(["--threads", str(threads)] if threads > 1 else []),
        "--timeout", str(timeout),
        app,
    ]  # fmt: skip
    return ProcessSpec(name, argv, env)


def local_processes(settings: Settings) -> list[ProcessSpec]:
    """The emulator, web and worker commands for ``settings`` (ports, paths, instances).

    With several instances of a service each is its own gunicorn: workers on consecutive
    ports from WORKER_PORT, the emulator spreading pushes over them as App Engine does;
    web instances from WEB_INSTANCE_PORT behind a round-robin front on WEB_PORT.
    """
    host = settings.host
    emulator_host = f"{host}:{settings.emulator_port}"
    worker_binds = [f"{host}:{settings.worker_port + i}" for i in range(settings.worker_instances)]
    worker_urls = ",".join(f"http://{bind}" for bind in worker_binds)
    shared_env = {
        "OFFLOAD_TASKS_EMULATOR_HOST": emulator_host,
        "OFFLOAD_OIDC_CERTS_URL": f"http://{host}:{settings.emulator_http_port}/oauth2/v1/certs",
    }
    worker_url = settings.worker_url or f"http://{worker_binds[0]}"
    if not settings.worker_url:
        shared_env["OFFLOAD_WORKER_URL"] = worker_url
    several_webs = settings.web_instances > 1
    web_binds = (
        [f"{host}:{settings.web_instance_port + i}" for i in range(settings.web_instances)]
        if several_webs
        else [f"{host}:{settings.web_port}"]
    )
    py = sys.executable
    specs = [
        ProcessSpec(
            "emulator",
            [
                py, "-m", "emulator",
                "--host", host,
                "--port", str(settings.emulator_port),
                "--http-port", str(settings.emulator_http_port),
                "--project", settings.project_id,
                "--location", settings.location,
                "--queue-yaml", settings.queue_yaml,
                "--appengine-service", f"{settings.worker_service}={worker_urls}",
                "--appengine-service", f"default=http://{host}:{settings.web_port}",
                # HTTP targets name one worker URL: its origin stands for every instance.
                *(
                    ["--http-target-alias", f"{worker_url}={worker_urls}"]
                    if settings.worker_instances > 1
                    else []
                ),
                "--data-file", settings.emulator_data_file,
                *(["--log-dir", settings.log_dir] if settings.log_dir else []),
                "--log-file-max-bytes", str(settings.log_file_max_bytes),
                "--log-file-backups", str(settings.log_file_backups),
            ],
            shared_env,
        ),
    ]  # fmt: skip
    for i, bind in enumerate(web_binds, 1):
        name = f"web-{i}" if several_webs else "web"
        specs.append(
            _service(
                name,
                bind,
                settings.web_processes,
                30,
                "web.main:app",
                shared_env,
                threads=settings.web_threads,
            )
        )
    if several_webs:
        front = [py, "-m", "offload.front", "--listen", f"{host}:{settings.web_port}"]
        for bind in web_binds:
            front += ["--backend", bind]
        specs.append(ProcessSpec("front", front, shared_env))
    for i, bind in enumerate(worker_binds, 1):
        name = f"worker-{i}" if settings.worker_instances > 1 else "worker"
        specs.append(
            _service(
                name,
                bind,
                settings.worker_processes,
                # gunicorn's timeout follows the slice, so the lease (and the recovery
                # of a killed run) is about one slice, not a fixed 11 minutes.
                worker_timeout_for(settings),
                "worker.main:app",
                shared_env,
            )
        )
    # The reconciler, as cron.yaml runs it on App Engine, only more often.
    every = str(settings.reconcile_interval_seconds)
    reconcile = [py, "-m", "offload.cli", "jobs", "reconcile", "--every", every]
    specs.append(ProcessSpec("reconciler", reconcile, shared_env))
    return specs


def render_line(line: str) -> str:
    """A structured log line made readable for a terminal; other lines escaped only.

    Control characters are escaped everywhere: values chosen by clients (a request
    path with ESC or a newline) must not colour the terminal or forge a line.
    """
    entry = parse_line(line)
    if entry is None or "severity" not in entry:
        return escape(line)
    labels = entry.get("logging.googleapis.com/labels") or {}
    if not isinstance(labels, dict):
        labels = {}
    tags = " ".join(
        f"{k}={escape(str(labels[k]))}"
        for k in ("request_id", "job_id", "attempt")
        if labels.get(k)
    )
    stamp = escape(str(entry.get("time", ""))[11:23])
    severity = escape(str(entry["severity"]))
    message = escape_message(str(entry.get("message", "")), indent=" " * 21)
    return f"{stamp} {severity:<7} {message}" + (f"  [{tags}]" if tags else "")


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
        self._pumps: list[threading.Thread] = []

    def _print(self, name: str, line: str) -> None:
        """One line under the process's label (the line escaped already, or ours)."""
        label = escape(name).ljust(self._width)
        if self._colour:
            label = f"{_COLOURS.get(name.partition('-')[0], '')}{label}\033[0m"
        with self._lock:
            self.out.write(f"{label} | {line}\n")
            self.out.flush()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for data in iter(stream.readline, b""):
            line = data.decode("utf-8", "replace").rstrip("\n")
            # Raw lines are JSON (controls below 0x20 escaped) or a process's own text.
            self._print(name, escape(line) if self.raw else render_line(line))
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
            pump = threading.Thread(target=self._pump, args=(spec.name, proc.stdout), daemon=True)
            pump.start()
            self._pumps.append(pump)
            command = escape(" ".join(spec.argv[1:]))
            self._print(spec.name, f"started (pid {proc.pid}): {command}")

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
        for proc in self.procs.values():
            # The group may hold children that outlived their parent (gunicorn workers).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pump in self._pumps:
            # Every line the processes wrote is printed before "stopped": with the groups
            # gone the pipes are at their end.
            pump.join(2.0)
        for name, proc in self.procs.items():
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
