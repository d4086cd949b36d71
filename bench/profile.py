"""``python -m bench.profile``: where web, worker and emulator spend their time under load.

Starts the stack, submits no-op jobs at concurrency 16 (the queue running), and samples
every web and worker gunicorn process and the emulator with py-spy (``pip install
py-spy``; it needs ptrace rights). Prints, per service, the share of busy samples by
part (store, logging, gRPC client, ...), the share of the store's samples by layer
(SQLAlchemy statement building, compiling, sqlite3 itself), and the top functions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import gunicorn_children
from bench.loadgen import build_request, run_load
from tests.processes import make_stack

# Leaf functions where a process waits rather than computes.
# "_worker" and "run": a pool thread (gthread, gRPC server) blocked in a C call for work.
WAITING = {
    "_blocking",
    "close_graceful",
    "wait",
    "select",
    "accept",
    "poll",
    "epoll",
    "_worker",
    "run",
}
PARTS = (
    ("store (offload/store/jobstore.py, runs.py)", "jobstore.py"),
    ("store (offload/store/jobstore.py, runs.py)", "store/runs.py"),
    ("logging (offload/logs.py, logging)", "logging/__init__.py"),
    ("gRPC client (CreateTask, not waiting)", "create_task ("),
    ("request ids and access lines (requestctx.py)", "requestctx.py"),
    ("payload validation (pydantic)", "pydantic"),
)
LAYERS = (
    ("sqlite3 / psycopg executing", ("do_execute (", "do_executemany (")),
    ("commit", ("do_commit (",)),
    ("SQLAlchemy compile and cache keys", ("_compile_w_cache", "_generate_cache_key")),
    ("connection pool, begin, close", ("_checkout", "_finalize_fairy", "begin (", "close (")),
)


OURS = ("offload/", "web/", "worker/", "emulator/", "jobs/")


def _name(frame: str) -> str:
    return frame.split(" (")[0]


def _read(paths: list[Path]) -> list[tuple[list[str], int]]:
    out = []
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                out.append((stack.split(";"), int(count)))
    return out


def report(service: str, paths: list[Path]) -> str:
    """The breakdown of one service's py-spy samples (raw/collapsed format)."""
    samples = _read(paths)
    waiting = sum(n for frames, n in samples if _name(frames[-1]) in WAITING)
    busy = [(f, n) for f, n in samples if _name(f[-1]) not in WAITING]
    total = sum(n for _, n in busy) or 1
    parts: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, n in busy:
        leaves[frames[-1].rsplit(":", 1)[0] + ")"] += n
        joined = ";".join(frames)
        part = next(
            (p for p, key in PARTS if key in joined), "other (Flask, Werkzeug, gunicorn, emulator)"
        )
        parts[part] += n
        if part.startswith("store"):
            # A frame's name must start with the key: "close (" is not "_close (".
            layer = next(
                (name for name, keys in LAYERS if any(f.startswith(keys) for f in frames)),
                "SQLAlchemy statement building and execution plumbing",
            )
            layers[layer] += n
        for fn in {f.rsplit(":", 1)[0] + ")" for f in frames if f.split(" (")[-1].startswith(OURS)}:
            functions[fn] += n
    lines = [
        f"{service}: {total + waiting} samples, {100 * waiting / (total + waiting):.0f}% waiting "
        "(gRPC answer, client's FIN, accept); shares below are of the busy samples"
    ]
    lines += [f"  {100 * n / total:5.1f}%  {p}" for p, n in parts.most_common()]
    store = sum(layers.values())
    if store:
        lines.append("  store, by layer:")
        lines += [f"    {100 * n / store:5.1f}%  {p}" for p, n in layers.most_common()]
    lines.append("  project functions (inclusive):")
    lines += [f"    {100 * n / total:5.1f}%  {p}" for p, n in functions.most_common(12)]
    lines.append("  leaf functions (self):")
    lines += [f"    {100 * n / total:5.1f}%  {p}" for p, n in leaves.most_common(8)]
    return "\n".join(lines)


def main() -> int:
    """Run the profile and print the breakdown."""
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--seconds", type=float, default=10.0, help="how long to sample")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = p.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="offload-profile-"))
    stack = make_stack(tmp / "stack", env={"OFFLOAD_JOB_MODULES": "jobs"})
    try:
        body = json.dumps({"type": "demo.echo", "payload": {"n": 1}}).encode()
        data = build_request(
            "POST", stack.web_url + "/jobs", body=body,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        run_load(stack.web_url, lambda _i: data, concurrency=16, total=100)  # warm up
        targets = [("web", k) for k in gunicorn_children(stack.procs["web"].pid)]
        targets += [("worker", k) for k in gunicorn_children(stack.procs["worker"].pid)]
        targets.append(("emulator", stack.procs["emulator"].pid))
        spies = [
            subprocess.Popen(
                [spy, "record", "-r", str(args.rate), "-d", str(int(args.seconds) + 1),
                 "-f", "raw", "-o", str(tmp / f"{name}-{pid}.txt"), "-p", str(pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in targets
        ]  # fmt: skip
        time.sleep(0.5)
        result = run_load(stack.web_url, lambda _i: data, concurrency=16, duration=args.seconds)
        for s in spies:
            s.wait()
    finally:
        stack.stop()
    print(f"{result.count} jobs submitted at {result.rate:,.0f}/s while sampling\n")
    for service in ("web", "worker", "emulator"):
        print(report(service, sorted(tmp.glob(f"{service}-*.txt"))) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
