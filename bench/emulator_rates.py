"""3. The emulator: its own benchmark (bench/bench_emulator.py), run as a process, in the table.

bench_emulator.py parses its own command line and prints a table, so it is run as a
subprocess and its rows are read back; its full output goes to the progress stream.
"""

from __future__ import annotations

import re
import subprocess
import sys

from bench.common import Row, Settings, progress, project_root, verdict

__all__ = ["run"]


def _number(value: str) -> float:
    return float(re.sub(r"[^\d.]", "", value.split()[0]))


def _parse(output: str) -> dict[str, tuple[str, str]]:
    """measure -> (value, note) from bench_emulator.py's table."""
    rows: dict[str, tuple[str, str]] = {}
    table = False
    for line in output.splitlines():
        if line.startswith("measure"):
            table = True
            continue
        if table and line.strip():
            parts = re.split(r"\s{2,}", line.strip(), maxsplit=2)
            if len(parts) >= 2:
                rows[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return rows


def run(settings: Settings) -> list[Row]:
    """Run bench_emulator.py and turn its figures into rows beside their baselines."""
    tasks = settings.emulator_tasks
    backlog = min(20_000, max(4_000, tasks // 5))
    argv = [
        sys.executable, "bench/bench_emulator.py",
        "--tasks", str(tasks), "--backlog", str(backlog), "--log-level", "WARNING",
    ]  # fmt: skip
    progress(f"emulator: {' '.join(argv[1:])}")
    done = subprocess.run(
        argv, cwd=project_root(), capture_output=True, text=True, timeout=900, check=False
    )
    progress("emulator: bench_emulator.py output:\n" + done.stdout + done.stderr[-2000:])
    if done.returncode != 0:
        raise RuntimeError(f"bench_emulator.py exited {done.returncode}")
    got = _parse(done.stdout)

    def pair(measure: str, baseline: str, **kw: str) -> Row:
        value, note = got[measure]
        base = got[baseline][0]
        ratio = _number(value) / _number(base)
        return Row("3 emulator", measure, value, base, f"{ratio:.2f}", note=note, **kw)

    rows = [
        pair("tasks created/s, 1 thread", "GetQueue RPCs/s, 1 thread (baseline)"),
        pair("tasks created/s, 8 threads", "GetQueue RPCs/s, 8 threads (baseline)"),
    ]
    dispatched = _number(got["tasks dispatched/s to the no-op handler"][0])
    rows.append(
        pair(
            "tasks dispatched/s to the no-op handler",
            "no-op handler, raw keep-alive client (ceiling)",
            target=">= 2,000/s",
            verdict=verdict(dispatched >= 2000),
        )
    )
    for measure, (value, note) in got.items():
        if "CPU" in measure:  # newer bench_emulator.py versions add CPU per operation
            rows.append(Row("3 emulator", measure, value, note=note))
    rows.append(pair("tasks created+dispatched/s, streaming", "tasks created/s, 8 threads"))
    rows.append(pair("RSS with the backlog pending", "RSS idle (baseline)"))
    rows.append(pair("RSS at the end", "RSS idle (baseline)"))
    rows[-1] = Row(**{**rows[-1].__dict__, "measure": f"RSS after {tasks:,} streamed tasks"})
    return rows
