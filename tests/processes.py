"""Real processes on loopback: the emulator and both gunicorn services.

Used by the end-to-end tests (through tests/conftest.py) and by the benchmarks in
bench/. Each process runs in its own process group with its output in a file, and is
stopped by PID (the whole group) when done.

Several instances of a service (``make_stack(..., web_instances=2, worker_instances=2)``)
are each their own gunicorn on a free port, named ``web-1``, ``web-2``, ``worker-1``...:
the emulator spreads pushes over the workers (``--appengine-service worker=URL1,URL2``)
and the web instances sit behind ``python -m offload.front``, so ``Stack.web_url`` is one
URL whatever the count. One instance keeps the plain names ``web`` and ``worker``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "offload-test"
LOCATION = "us-central1"
QUEUE = "offload-jobs"

# Fast retries, so tests of retry behaviour take seconds, not minutes.
TEST_QUEUE_YAML = """\
queue:
- name: offload-jobs
  target: worker
  rate: 500/s
  bucket_size: 500
  max_concurrent_requests: 50
  retry_parameters:
    task_retry_limit: 10
    min_backoff_seconds: 0.2
    max_backoff_seconds: 1
    max_doublings: 2
- name: offload-reports
  target: worker
  rate: 50/s
  bucket_size: 10
  max_concurrent_requests: 4
  retry_parameters:
    task_retry_limit: 10
    min_backoff_seconds: 0.2
    max_backoff_seconds: 1
    max_doublings: 2
"""

# As production's queue.yaml: retrying goes on until the age limit too, so a job whose
# pushes meet a dead instance or a lease still held keeps its task (fast backoff here).
LASTING_QUEUE_YAML = TEST_QUEUE_YAML.replace(
    "    task_retry_limit: 10\n", "    task_retry_limit: 10\n    task_age_limit: 10m\n"
)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proc:
    """A child process in its own process group, with its output in a file."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self.argv = list(argv)  # kept so a fault run can start the same process again
        self.env = dict(env)
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, ready: Any, timeout: float = 30.0) -> None:
        """Poll ``ready()`` until it is true; fail with the process's output otherwise."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.popen.returncode}:\n{self.output()}")
            try:
                if ready():
                    return
            except (OSError, requests.RequestException):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the process group, wait, then SIGKILL whatever is left."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        code = self.popen.wait()
        self._out.close()
        return code


def tcp_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200."""
    return requests.get(url, timeout=2).status_code == 200


@dataclass
class Stack:
    """The three real processes and what a test needs to reach them."""

    tmp: Path
    env: dict[str, str]
    web_url: str = ""
    worker_url: str = ""
    emulator_port: int = 0
    emulator_http_port: int = 0
    procs: dict[str, Proc] = field(default_factory=dict)
    migrated: bool = False
    # Every instance's own URL (one each unless started with several instances).
    worker_urls: list[str] = field(default_factory=list)
    web_urls: list[str] = field(default_factory=list)
    restarts: int = 0

    @property
    def log_dir(self) -> Path:
        return self.tmp / "log"

    def tasks_client(self) -> Any:
        """A real google-cloud-tasks client connected to this stack's emulator."""
        import grpc
        from google.cloud import tasks_v2
        from google.cloud.tasks_v2.services.cloud_tasks.transports import (
            CloudTasksGrpcTransport,
        )

        channel = grpc.insecure_channel(f"127.0.0.1:{self.emulator_port}")
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))

    def start_emulator(
        self, queue_yaml: str = TEST_QUEUE_YAML, *extra: str, worker_instances: int = 1
    ) -> None:
        """Start the emulator; it pushes to ``worker_instances`` workers (ports chosen here)."""
        self.emulator_port, self.emulator_http_port = free_port(), free_port()
        self.worker_urls = [f"http://127.0.0.1:{free_port()}" for _ in range(worker_instances)]
        self.worker_url = self.worker_urls[0]
        (self.tmp / "queue.yaml").write_text(queue_yaml)
        argv = [
            sys.executable, "-m", "emulator",
            "--port", str(self.emulator_port),
            "--http-port", str(self.emulator_http_port),
            "--project", PROJECT,
            "--location", LOCATION,
            "--queue-yaml", str(self.tmp / "queue.yaml"),
            "--appengine-service", f"worker={','.join(self.worker_urls)}",
            "--log-dir", str(self.log_dir),
            "--min-dispatch-deadline-seconds", "1",
            *extra,
        ]  # fmt: skip
        proc = Proc("emulator", argv, self.env, self.tmp / "emulator.out")
        self.procs["emulator"] = proc
        proc.wait_until(lambda: tcp_open(self.emulator_port))
        self.env["OFFLOAD_TASKS_EMULATOR_HOST"] = f"127.0.0.1:{self.emulator_port}"
        self.env.setdefault("OFFLOAD_WORKER_URL", self.worker_url)
        self.env["OFFLOAD_OIDC_CERTS_URL"] = (
            f"http://127.0.0.1:{self.emulator_http_port}/oauth2/v1/certs"
        )

    def migrate(self) -> None:
        """Bring the stack's database to the newest schema, as a deploy step would."""
        subprocess.run(
            [sys.executable, "-m", "offload.cli", "db", "upgrade"],
            cwd=ROOT,
            env={**os.environ, **self.env},
            check=True,
            capture_output=True,
        )
        self.migrated = True

    def start_service(
        self,
        name: str,
        *,
        processes: int = 2,
        timeout: int = 60,
        threads: int = 128,
        instances: int = 1,
    ) -> None:
        """Start ``instances`` gunicorns of ``name`` (web: behind a front when several)."""
        if not self.migrated:
            self.migrate()
        if name == "worker":
            urls = self.worker_urls or [self.worker_url]
            if len(urls) != instances:
                raise ValueError(f"the emulator was started for {len(urls)} worker instances")
        else:
            urls = [f"http://127.0.0.1:{free_port()}" for _ in range(instances)]
            self.web_urls = urls
        for i, url in enumerate(urls, 1):
            label = f"{name}-{i}" if instances > 1 else name
            argv = [
                sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                "--name", label,
                "--bind", url.removeprefix("http://"),
                "--workers", str(processes),
                # web waits on events in threads (gthread); the worker stays on sync workers.
                *(["--threads", str(threads)] if name == "web" else []),
                "--timeout", str(timeout),
                f"{name}.main:app",
            ]  # fmt: skip
            self._start(label, argv, url)
        if name == "web":
            self.web_url = urls[0] if instances == 1 else self._start_front(urls)

    def _start(self, label: str, argv: Sequence[str], url: str) -> None:
        proc = Proc(label, argv, self.env, self.tmp / f"{label}.out")
        self.procs[label] = proc
        proc.wait_until(lambda: http_ok(url + "/healthz"))

    def _start_front(self, urls: Sequence[str]) -> str:
        port = free_port()
        argv = [sys.executable, "-m", "offload.front", "--listen", f"127.0.0.1:{port}"]
        for url in urls:
            argv += ["--backend", url.removeprefix("http://")]
        proc = Proc("front", argv, self.env, self.tmp / "front.out")
        self.procs["front"] = proc
        proc.wait_until(lambda: tcp_open(port))
        return f"http://127.0.0.1:{port}"

    def instances(self, name: str) -> list[str]:
        """The process names of a service's instances (``worker`` or ``worker-1``, ...)."""
        return [n for n in self.procs if n == name or n.startswith(name + "-")]

    def kill_instance(self, label: str) -> None:
        """SIGKILL of a whole instance: its gunicorn master and every worker process."""
        proc = self.procs[label]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.popen.wait()

    def restart_instance(self, label: str, *, ready: bool = True) -> None:
        """Start a killed (or stopped) instance again with its own command and port."""
        old = self.procs[label]
        old.stop()  # reaps it and closes its output file
        self.restarts += 1
        proc = Proc(label, old.argv, old.env, self.tmp / f"{label}.{self.restarts}.out")
        self.procs[label] = proc
        if ready:
            bind = old.argv[old.argv.index("--bind") + 1]
            proc.wait_until(lambda: http_ok(f"http://{bind}/healthz"))

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    def outputs(self) -> str:
        return "\n".join(f"===== {n} =====\n{p.output()[-20000:]}" for n, p in self.procs.items())


def make_stack(
    tmp: Path,
    *,
    env: Mapping[str, str] | None = None,
    queue_yaml: str = TEST_QUEUE_YAML,
    worker_processes: int = 2,
    worker_timeout: int = 60,
    web_instances: int = 1,
    worker_instances: int = 1,
) -> Stack:
    """Start emulator, worker(s) and web(s) on free loopback ports."""
    tmp.mkdir(parents=True, exist_ok=True)
    margin = float((env or {}).get("OFFLOAD_DISPATCH_MARGIN_SECONDS", 15))
    base_env = {
        "OFFLOAD_PROJECT_ID": PROJECT,
        "OFFLOAD_LOCATION": LOCATION,
        "OFFLOAD_QUEUE": QUEUE,
        "OFFLOAD_DATABASE_URL": f"sqlite:///{tmp / 'offload.db'}",
        "OFFLOAD_LOG_DIR": str(tmp / "log"),
        "OFFLOAD_CONSOLE_SECRET_KEY_FILE": str(tmp / "console-secret-key"),
        "OFFLOAD_PROGRESS_INTERVAL_SECONDS": "0.2",
        "OFFLOAD_PLATFORM_TIMEOUT_SECONDS": "600",
        "OFFLOAD_JOB_MODULES": "jobs,tests.testjobs",
        # The slice follows gunicorn's timeout, as `make run` does the other way round.
        "OFFLOAD_SLICE_SECONDS": str(max(1.0, worker_timeout - margin - 5)),
        "OFFLOAD_DEMO_DIR": str(tmp / "demo"),
        **(env or {}),
    }
    stack = Stack(tmp=tmp, env=base_env)
    try:
        stack.start_emulator(queue_yaml, worker_instances=worker_instances)
        stack.start_service(
            "worker",
            processes=worker_processes,
            timeout=worker_timeout,
            instances=worker_instances,
        )
        stack.start_service("web", processes=2, instances=web_instances)
    except BaseException:
        stack.stop()
        raise
    return stack
