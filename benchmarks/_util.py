"""Timing helpers shared by the benchmarks: warm up, then the median of repeats; and a note on
how busy the machine was, printed with the figures (the machine may be shared)."""
from __future__ import annotations

import os
import platform
import statistics
import time


def time_samples(fn, *, repeat: int = 7, warmup: int = 2, min_seconds: float = 0.02) -> list[float]:
    """Seconds per call of ``fn()`` in each of ``repeat`` measurements, after ``warmup`` calls.

    Fast calls are batched so that each measurement lasts at least ``min_seconds`` (timer
    resolution and loop overhead then do not matter).
    """
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    inner = max(1, int(min_seconds / max(once, 1e-9)))
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return samples


def time_call(fn, *, repeat: int = 7, warmup: int = 2, min_seconds: float = 0.02) -> float:
    """Median seconds per call of ``fn()`` (see :func:`time_samples`)."""
    return statistics.median(time_samples(fn, repeat=repeat, warmup=warmup, min_seconds=min_seconds))


def load_note(threshold_per_core: float = 0.25) -> dict:
    """The 1/5/15-minute load averages and whether they make timings suspect.

    Anything above ``threshold_per_core`` x cores of background load means other processes
    compete for the cores the benchmark uses.
    """
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()
    except OSError:                              # not available on this platform
        return {"cores": cores, "load": None, "suspect": None,
                "note": "load average unavailable"}
    suspect = load[0] > threshold_per_core * cores
    note = (f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on {cores} cores"
            + (": the machine is busy, figures are suspect" if suspect else ": machine quiet"))
    return {"cores": cores, "load": list(load), "suspect": suspect, "note": note}


def machine() -> dict:
    """What the figures were measured on."""
    import numpy as np

    info = {"python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import numba
        info["numba"] = numba.__version__
    except ImportError:
        pass
    return info


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` with ``columns`` given as (key, header, format)."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        cells.append([("" if row.get(k) is None else format(row[k], f)) for k, _, f in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for j, r in enumerate(cells):
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def emit_json(result: dict, path: str | None) -> dict:
    """Print the figures as JSON, and write them to ``path`` too when one is given."""
    import json
    print(json.dumps(result, indent=1))
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
    return result


def start_torch(threads: int) -> bool:
    """Import PyTorch, when installed, with ``threads`` threads; returns whether it is there.

    Call it before npgpt starts its threads. PyTorch's wheel carries its own libgomp.so.1,
    and a process holds one library of that name: the first to load it sets its OpenMP
    spin for both. npgpt starts OpenMP with a short spin, which suits npgpt and makes
    PyTorch's many small parallel regions several times slower (tiny step: ~70 -> ~350 ms),
    so PyTorch goes first and keeps its default.
    """
    try:
        import torch
    except ImportError:
        return False
    torch.set_num_threads(threads)
    return True


def report_load(load_before: dict, load_after: dict, threads: int, limit: float) -> bool:
    """Print the load before and after a run; return whether the figures are suspect: the
    1-minute average above ``limit`` before, or other processes' share of it after (the
    run's own ``threads`` taken out) above it. One limit for both, so the verdict printed
    and the warning agree."""
    def averages(note):
        return "unavailable" if note["load"] is None else " / ".join(f"{x:.2f}" for x in note["load"])
    before = load_before["load"][0] if load_before["load"] else None
    others_after = (load_after["load"][0] - threads) if load_after["load"] else None
    suspect = any(x is not None and x > limit for x in (before, others_after))
    print(f"load: before {averages(load_before)}; after {averages(load_after)} (including this "
          f"run's own {threads} threads) on {load_before['cores']} cores")
    if suspect:
        print(f"WARNING: load from other processes above {limit}: they competed for the cores, "
              "treat these figures as suspect")
    return suspect
