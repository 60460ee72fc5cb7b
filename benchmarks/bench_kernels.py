"""Each kernel against its NumPy twin, at the shapes of three model configs.

    python benchmarks/bench_kernels.py [--configs tiny,small,gpt2-124M] [--threads 2] [--json out.json]

Every op in the kernel registry is timed on both backends (float32, median of repeats after
warm-up, and the ratio of the fastest repeats beside it); embedding backward's NumPy twin is ``np.add.at``. First-call compile time is measured
in fresh processes, with an empty numba cache (cold) and then with it filled (warm).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import statistics

from _util import load_note, machine, print_table, time_samples

from npgpt.kernels import KERNELS, VARIANTS, kernel
from npgpt.runtime.threads import get_num_threads, set_num_threads

CONFIGS = {
    "tiny": {"B": 16, "T": 64, "C": 128, "V": 512, "H": 4},
    "small": {"B": 8, "T": 256, "C": 256, "V": 4096, "H": 8},
    "gpt2-124M": {"B": 4, "T": 64, "C": 768, "V": 50257, "H": 12},
}


def _cases():
    yield from ((name, name, spec.make_inputs) for name, spec in KERNELS.items())
    yield from ((label, name, maker) for label, (name, maker) in VARIANTS.items())


def bench(configs, repeat):
    rows = []
    for config in configs:
        shape = CONFIGS[config]
        for label, name, maker in _cases():
            args = maker(shape, np.float32, np.random.default_rng(0))
            row = {"config": config, "op": label}
            for backend in ("numpy", "numba"):
                fn = kernel(name, backend)
                samples = time_samples(lambda fn=fn, args=args: fn(*args), repeat=repeat)
                row[f"{backend}_ms"] = 1e3 * statistics.median(samples)
                row[f"{backend}_best_ms"] = 1e3 * min(samples)
            row["speedup"] = row["numpy_ms"] / row["numba_ms"]
            row["speedup_best"] = row["numpy_best_ms"] / row["numba_best_ms"]
            rows.append(row)
            print(f"  {config:10s} {label:32s} {rows[-1]['speedup']:6.2f}x", file=sys.stderr)
    return rows


_COMPILE_PROBE = """
import json, time, numpy as np
t = time.perf_counter(); import npgpt, npgpt.kernels as k; t_import = time.perf_counter() - t
shape = dict(B=2, T=4, C=8, V=16, H=2)
out = {"import npgpt": t_import}
for name, spec in k.KERNELS.items():
    args = spec.make_inputs(shape, np.float32, np.random.default_rng(0))
    t = time.perf_counter(); k.kernel(name, "numba")(*args); out[name] = time.perf_counter() - t
print(json.dumps(out))
"""


def compile_times():
    """First-call seconds per op in a fresh process: empty numba cache, then warm cache."""
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for state in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-c", _COMPILE_PROBE], env=env, check=True,
                                 capture_output=True, text=True).stdout
            result[state] = json.loads(out)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    parser.add_argument("--threads", type=int, default=None, help="numba and BLAS threads")
    parser.add_argument("--repeat", type=int, default=7, help="timed repeats per op (median)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile-time probe")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {unknown}; known: {list(CONFIGS)}")
    if args.threads:
        set_num_threads(args.threads)

    load_before = load_note()
    print(f"# {load_before['note']}")
    t0 = time.perf_counter()
    rows = bench(configs, args.repeat)
    compile_ = None if args.no_compile else compile_times()
    load_after = load_note()

    info = machine()
    print(f"# {info['cpu']}, {info['cores']} cores, numpy {info['numpy']}, numba {info.get('numba')}, "
          f"threads {get_num_threads()}")
    print_table(rows, [("config", "config", "s"), ("op", "op", "s"), ("numpy_ms", "numpy ms", ".3f"),
                       ("numba_ms", "numba ms", ".3f"), ("speedup", "speedup", ".2f"),
                       ("speedup_best", "best-of", ".2f")])
    print("# times are medians of the repeats; best-of is the ratio of the fastest repeats, "
          "less sensitive to other processes")
    if compile_:
        ops = [k for k in compile_["cold"] if k != "import npgpt"]
        print(f"\nimport npgpt: {compile_['warm']['import npgpt']:.3f} s; first call of every kernel "
              f"(float32): cold cache {sum(compile_['cold'][k] for k in ops):.1f} s, "
              f"warm cache {sum(compile_['warm'][k] for k in ops):.2f} s")
    print(f"# after the run: {load_after['note']}  ({time.perf_counter() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "threads": get_num_threads(), "configs": CONFIGS,
                       "load_before": load_before, "load_after": load_after, "results": rows,
                       "compile_seconds": compile_}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
