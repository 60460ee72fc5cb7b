"""Loading a gpt2-124M-shaped model: seconds and memory, float32, bfloat16 -> float32, int8.

    python benchmarks/bench_load.py [--shape gpt2|small] [--rounds 3] [--dir DIR]
                                    [--compare-with CHECKOUT] [--json out.json]

Writes three HuggingFace-style directories of the same random weights (``--dir``, default a
temporary one): ``float32`` (``save_pretrained``), ``bf16`` (the same tensors stored as
bfloat16) and ``int8`` (``npgpt quantize`` of the float32 one). Each is then loaded with
``npgpt.from_pretrained`` in a fresh process, ``--rounds`` times taking turns, and the child
reports:

- ``seconds``   the ``from_pretrained`` call (config, model built, weights read and checked)
- ``rss``       the process's resident memory after loading, less its resident memory
                before (Python, NumPy and npgpt imported): what holding the model costs
- ``peak``      the peak resident memory (VmHWM) less the same baseline
- ``file``      the size of the weights file(s)
- ``after a token``  the same two after one forward of one token, which reads every weight
                (mapped float32 pages are read on first use, so that model's RSS grows
                then; int8 weights are packed into their panels while loading)

The files were just written, so they are in the page cache: these are warm loads (a cold
load adds the disk's read time, the same for every loader). Mapped float32 weights are
counted in ``rss`` as file pages shared with the page cache. ``--compare-with`` runs the same
loads with another checkout of npgpt first on the path (e.g. the commit before memory-mapped
loading), side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from _util import emit_json, load_note, machine, print_table  # noqa: E402

SHAPES = {"gpt2": dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
          "small": dict(vocab_size=4096, block_size=256, n_layer=6, n_head=8, n_embd=256)}

_CHILD = r"""
import json, sys, time
def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssFile", "RssAnon"):
                out[k] = int(v.split()[0]) * 1024
    return out
import numpy as np
import npgpt
before = status()
t0 = time.perf_counter()
model = npgpt.from_pretrained(sys.argv[1])
seconds = time.perf_counter() - t0
after = status()
model.eval()
model.forward(np.zeros((1, 1), np.int64))          # one token: every weight read once
used = status()
print(json.dumps({"seconds": seconds, "rss": after["VmRSS"] - before["VmRSS"],
                  "peak": after["VmHWM"] - before["VmRSS"],
                  "rss_file": after.get("RssFile", 0) - before.get("RssFile", 0),
                  "rss_used": used["VmRSS"] - before["VmRSS"],
                  "peak_used": used["VmHWM"] - before["VmRSS"],
                  "baseline": before["VmRSS"]}))
"""


def write_dirs(root: Path, shape: str) -> dict[str, Path]:
    """The three directories of one random model (written once, reused when present)."""
    import numpy as np

    import npgpt
    from npgpt.io import map_safetensors
    from npgpt.quantize import quantize

    dirs = {"float32": root / "float32", "bf16": root / "bf16", "int8": root / "int8"}
    if all((d / "config.json").is_file() for d in dirs.values()):
        return dirs
    model = npgpt.GPT(npgpt.GPTConfig(**SHAPES[shape]), seed=0)
    model.save_pretrained(dirs["float32"])
    del model
    header, arrays = map_safetensors(dirs["float32"] / "model.safetensors")
    dirs["bf16"].mkdir(parents=True, exist_ok=True)
    (dirs["bf16"] / "config.json").write_text((dirs["float32"] / "config.json").read_text())
    meta, body, offset = {}, [], 0
    for name, a in arrays.items():             # the top 16 bits of each float32, rounded
        bits = np.ascontiguousarray(a).view(np.uint32)
        raw = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
        meta[name] = {"dtype": "BF16", "shape": list(a.shape),
                      "data_offsets": [offset, offset + raw.nbytes]}
        body.append(raw.tobytes())
        offset += raw.nbytes
    meta["__metadata__"] = {"format": "pt"}
    head = json.dumps(meta).encode()
    head += b" " * (-len(head) % 8)
    with open(dirs["bf16"] / "model.safetensors", "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head)
        for chunk in body:
            f.write(chunk)
    del arrays, body
    quantize(dirs["float32"], dirs["int8"])
    return dirs


def load_once(directory: Path, pythonpath: str) -> dict:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    done = subprocess.run([sys.executable, "-c", _CHILD, str(directory.resolve())], env=env,
                          cwd=pythonpath, capture_output=True, text=True)   # ("" is on the path)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1][:100]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="gpt2", choices=SHAPES)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", help="where the model directories are written (kept)")
    ap.add_argument("--compare-with", help="another npgpt checkout, loaded side by side")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    tmp = None
    if args.dir is None:
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
    else:
        root = Path(args.dir)
    load_before = load_note()
    print(load_before["note"], file=sys.stderr)
    dirs = write_dirs(root, args.shape)
    checkouts = {"npgpt": ROOT}
    if args.compare_with:
        checkouts["compared"] = os.path.abspath(args.compare_with)
    samples: dict[tuple, list[dict]] = {}
    for r in range(args.rounds):
        for fmt, d in dirs.items():
            for who, path in checkouts.items():
                row = load_once(d, path)
                samples.setdefault((who, fmt), []).append(row)
                print(f"  round {r + 1}: {who} {fmt}: {row}", file=sys.stderr)
    rows = []
    for (who, fmt), runs in samples.items():
        ok = [r for r in runs if "error" not in r]
        file_bytes = sum(f.stat().st_size for f in dirs[fmt].glob("*.safetensors"))
        row = {"loader": who, "format": fmt, "file_mb": file_bytes / 2**20}
        if not ok:
            row["error"] = runs[0]["error"]
        else:
            for key in ("seconds", "rss", "peak", "rss_file", "rss_used", "peak_used"):
                row[key] = statistics.median(r.get(key, 0) for r in ok)
                row[key + "_mb"] = row[key] / 2**20
        rows.append(row)
    load_after = load_note()
    print(f"\nfrom_pretrained of a {args.shape}-shaped model, warm page cache, fresh process "
          f"each, median of {args.rounds} rounds (memory above the process's baseline)")
    print_table(rows, [("loader", "loader", "s"), ("format", "format", "s"),
                       ("file_mb", "file MiB", ",.1f"), ("seconds", "seconds", ".3f"),
                       ("rss_mb", "RSS MiB", ",.1f"), ("rss_file_mb", "of it file", ",.1f"),
                       ("peak_mb", "peak MiB", ",.1f"),
                       ("rss_used_mb", "RSS after a token", ",.1f"),
                       ("peak_used_mb", "peak after", ",.1f"), ("error", "error", "s")])
    print(f"load: before {load_before['note']}; after {load_after['note']}")
    result = {"benchmark": "load", "shape": args.shape, "rounds": args.rounds,
              "load_before": load_before, "load_after": load_after, "machine": machine(),
              "rows": rows}
    emit_json(result, args.json)
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
