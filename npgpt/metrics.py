"""A run's metrics: ``metrics.jsonl`` (one JSON object per log and evaluation) and the loss
curves drawn from it (``loss.png``, when matplotlib is installed)."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import TrainingError
from .io import atomic_write


def append(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def trim(path: Path, step: int) -> list[dict]:
    """Keep the lines of ``path`` up to ``step`` (all of them gone at step 0), rewritten
    atomically, and return them: a resumed run rewrites what came after its checkpoint."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(record)
    if step == 0:
        kept = []
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def plot_losses(history: list[dict], path: Path) -> Path | None:
    """The training loss and each evaluation's losses against the step, to ``path``."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key, style in (("loss", {"alpha": 0.5, "lw": 1}), ("train_loss", {"marker": "o"}),
                       ("val_loss", {"marker": "o"})):
        points = [(r["step"], r[key]) for r in history if key in r]
        if points:
            ax.plot(*zip(*points), label=key.replace("_", " "), **style)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        raise TrainingError(f"cannot write {path}: {e.strerror or e}") from None
    return path
