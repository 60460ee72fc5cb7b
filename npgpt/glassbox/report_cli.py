"""``npgpt report DIR [--open]``: the run's page (see :mod:`npgpt.glassbox.report`)."""
from __future__ import annotations

from pathlib import Path


def cmd_report(args) -> int:
    from .report import write_report
    path = write_report(args.dir, args.out)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.2f} MB): open it in a browser, no server needed")
    if args.open:
        import webbrowser
        webbrowser.open(Path(path).resolve().as_uri())
    return 0


def add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="write DIR/report.html: one self-contained page of a "
                                      "training run (curves, statistics, attention, logit lens, "
                                      "embedding)")
    p.add_argument("dir", help="the training output directory (metrics.jsonl, stats.jsonl, "
                               "checkpoint/)")
    p.add_argument("--out", default=None, help="write the page here instead of DIR/report.html")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(func=cmd_report)
