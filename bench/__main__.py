"""``python -m bench``: run the benchmarks and print one table.

Every figure stands beside a baseline measured in the same run, with their ratio and,
where the issue sets one, the target and PASS/MISS. Everything runs on loopback, is
bounded in count and time, and stops the processes it started.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import (
    batch,
    celery_peer,
    coldstart,
    deadline,
    durable,
    e2e,
    emulator_rates,
    store,
    submit,
    waiters,
)
from bench.common import Row, Settings, progress

BENCHMARKS: dict[str, Callable[[Settings], list[Row]]] = {
    "submit": submit.run,
    "e2e": e2e.run,
    "emulator": emulator_rates.run,
    "deadline": deadline.run,
    "coldstart": coldstart.run,
    "store": store.run,
    "waiters": waiters.run,
    "celery": celery_peer.run,
    "batch": batch.run,
    "durable": durable.run,
}

COLUMNS = ("section", "measure", "value", "baseline", "ratio", "target", "verdict", "note")


def _table(rows: list[Row]) -> str:
    cells = [COLUMNS] + [tuple(getattr(r, c) for c in COLUMNS) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS) - 1)]
    lines = []
    for k, row in enumerate(cells):
        line = "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False))
        lines.append((line + "  " + row[-1]).rstrip())
        if k == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def _markdown(rows: list[Row]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [getattr(r, c).replace("|", "\\|") for c in COLUMNS]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _machine() -> str:
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the chosen benchmarks, print the table."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help="comma-separated subset of: " + ", ".join(BENCHMARKS),
    )
    p.add_argument("--quick", action="store_true", help="smaller counts, shorter runs")
    p.add_argument("--store-rows", type=int, help="jobs in the store benchmark (default 1,000,000)")
    p.add_argument("--e2e-jobs", type=int, help="no-op jobs in the end-to-end run (default 2,000)")
    p.add_argument(
        "--emulator-tasks", type=int, help="tasks streamed by bench_emulator.py (default 100,000)"
    )
    p.add_argument("--results", type=Path, help="also write the table as Markdown to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = p.parse_args(argv)

    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}")
    tmp = Path(tempfile.mkdtemp(prefix="offload-bench-"))
    settings = Settings(
        tmp=tmp,
        quick=args.quick,
        store_rows=args.store_rows or (20_000 if args.quick else 1_000_000),
        e2e_jobs=args.e2e_jobs or (300 if args.quick else 2_000),
        emulator_tasks=args.emulator_tasks or (10_000 if args.quick else 100_000),
    )
    rows: list[Row] = []
    failed: list[str] = []
    start = time.perf_counter()
    try:
        for name in chosen:
            t0 = time.perf_counter()
            try:
                rows += BENCHMARKS[name](settings)
            except Exception:
                failed.append(name)
                progress(f"{name} failed:\n{traceback.format_exc()}")
                rows.append(Row(name, "benchmark failed", "error", note="see the progress output"))
            progress(f"{name} done in {time.perf_counter() - t0:.0f}s")
    finally:
        if args.keep:
            progress(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - start
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    header = f"Offload benchmarks ({_machine()}), {elapsed:.0f}s: {command.strip()}"
    print()
    print(header)
    print(_table(rows))
    if args.results:
        args.results.write_text(
            f"# Benchmark results\n\n{time.strftime('%Y-%m-%d')}, {_machine()}, "
            f"{elapsed:.0f} s.\n\n```sh\n{command.strip()}\n```\n\n{_markdown(rows)}\n"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
