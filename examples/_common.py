"""What every example shares: the command line (--quick, --out, --seed), headless matplotlib
that may be missing, and a one-line note for each picture saved or skipped."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:          # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

# These models are small: one BLAS thread is fastest, and on a busy machine several threads
# fighting over the cores can make a step 30 times slower. NPGPT_NUM_THREADS overrides.
os.environ.setdefault("NPGPT_NUM_THREADS", "1")
try:
    from threadpoolctl import threadpool_limits
    _BLAS_LIMIT = threadpool_limits(int(os.environ["NPGPT_NUM_THREADS"]))
except (ImportError, ValueError):
    _BLAS_LIMIT = None


def parse_args(doc: str, **extra) -> argparse.Namespace:
    """--quick (seconds, for tests), --out (where PNGs go), --seed, plus ``extra`` flags given
    as name=(type, default, help)."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: less data, fewer steps")
    parser.add_argument("--out", default=str(ROOT / "examples" / "out"),
                        help="directory for the PNG pictures (default examples/out/)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    for name, (typ, default, help_text) in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=typ, default=default,
                            help=help_text)
    args = parser.parse_args()
    args.out = Path(args.out)
    args.started = time.perf_counter()
    return args


def pyplot():
    """matplotlib.pyplot on the headless Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save(fig, args, name: str) -> Path:
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / name
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.canvas.figure.clf()
    import matplotlib.pyplot as plt
    plt.close(fig)
    print(f"picture saved: {path}")
    return path


def skipped(name: str):
    print(f"picture {name} skipped: matplotlib is not installed (pip install 'npgpt[plot]')")


def done(args):
    print(f"done in {time.perf_counter() - args.started:.1f} s")


def section(title: str):
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)))
