"""What the emulator's other surfaces cost: REST and v2beta3 beside v2 gRPC.

Run: ``python bench/bench_emulator_surfaces.py`` (``--calls N``). One emulator process,
one client thread per row, the same google-cloud-tasks client library throughout; v2
gRPC is the baseline measured in the same run. Gates nothing.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_emulator import free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent
PARENT = "projects/bench/locations/us-central1"


def client(version: str, transport: str, grpc_port: int, http_port: int) -> Any:
    """A real client of ``version`` over ``transport``."""
    import grpc
    from google.auth.credentials import AnonymousCredentials

    mod = importlib.import_module(f"google.cloud.tasks_{version}")
    if transport == "rest":
        return mod.CloudTasksClient(
            transport="rest",
            client_options={"api_endpoint": f"http://127.0.0.1:{http_port}"},
            credentials=AnonymousCredentials(),
        )
    transports = importlib.import_module(
        f"google.cloud.tasks_{version}.services.cloud_tasks.transports"
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    return mod.CloudTasksClient(transport=transports.CloudTasksGrpcTransport(channel=channel))


def rate(calls: int, fn: Any) -> float:
    """Calls per second of ``fn(i)`` (after 20 warm-up calls)."""
    for i in range(20):
        fn(-1 - i)
    start = time.perf_counter()
    for i in range(calls):
        fn(i)
    return calls / (time.perf_counter() - start)


def main() -> int:
    """Print GetQueue and CreateTask rates per surface."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--calls", type=int, default=2000, help="calls per measure")
    args = p.parse_args()
    grpc_port, http_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-surfaces-"))
    with open(tmp / "emulator.out", "wb") as out:
        emu = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", str(grpc_port),
             "--http-port", str(http_port), "--project", "bench", "--log-level", "WARNING"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    rows = []
    try:
        wait_http(f"http://127.0.0.1:{http_port}/healthz", emu)
        for version, transport in (("v2", "grpc"), ("v2", "rest"), ("v2beta3", "grpc"),
                                   ("v2beta3", "rest")):  # fmt: skip
            c = client(version, transport, grpc_port, http_port)
            mod = importlib.import_module(f"google.cloud.tasks_{version}")
            queue = f"{PARENT}/queues/{version}-{transport}"
            c.create_queue(parent=PARENT, queue={"name": queue})
            c.pause_queue(name=queue)  # tasks stay: no dispatch load on the emulator
            task = mod.Task(http_request=mod.HttpRequest(url="http://127.0.0.1:9/x", body=b"{}"))
            get = rate(args.calls, lambda i, c=c, q=queue: c.get_queue(name=q))
            create = rate(
                args.calls, lambda i, c=c, q=queue, t=task: c.create_task(parent=q, task=t)
            )
            rows.append((f"{version} {transport}", get, create))
            c.transport.close()
    finally:
        emu.terminate()
        emu.wait(timeout=15)
    base_get, base_create = rows[0][1], rows[0][2]
    print(f"\nemulator surfaces, 1 client thread, {args.calls} calls per measure")
    print(f"{'surface':14}  {'GetQueue/s':>10}  {'CreateTask/s':>12}  vs v2 gRPC (baseline)")
    for name, get, create in rows:
        print(
            f"{name:14}  {get:10,.0f}  {create:12,.0f}  "
            f"{get / base_get:.2f}x / {create / base_create:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
