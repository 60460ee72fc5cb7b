"""Kill -9 a training run inside its checkpoint saves, again and again, and check after each
kill that the run can still be sampled and resumed.  Run by test_faults_kill.py as

    python kill_driver.py <work dir> <tries> <seed>      -> one JSON line of results

Each try starts a fresh process that resumes the run (npgpt train --resume) with a checkpoint
at every step; the driver waits until the child's save has begun (its temporary directory
``.checkpoint.tmp-<pid>`` appears), sleeps a random fraction of a save and sends SIGKILL. It
then records which phase of the save the kill landed in, and checks in process that
``npgpt sample`` works and the checkpoint holds at least the step the last try left. The next
child's ``--resume`` is the resume check; a final uninterrupted run checks that no temporary
directory is left once a save completes.

The children are started, not forked: a forked child inherits the parent's OpenMP and BLAS
thread pools without their threads, and such a child can hang in its first parallel region.
Every wait has a deadline, so a child that never reaches a save is recorded, never waited on.
"""
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from npgpt.cli import main
from npgpt.errors import NpgptError
from npgpt.io import TRAINER, load_json, resolve_checkpoint
from tests.faults.conftest import TEXT, TINY

CHILD = "import sys; from npgpt.cli import main; sys.exit(main(sys.argv[1:]))"
CHILD_DEADLINE = 60      # seconds for a child to start, resume and begin the save aimed at


def quiet(argv):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(argv)
    return code, err.getvalue().strip()


def phase(out: Path, pid: int) -> str:
    """Where in save_checkpoint the kill landed, from what it left on disk."""
    names = {p.name for p in out.iterdir()}
    if f".checkpoint.tmp-{pid}" in names:
        return "writing"                   # the new checkpoint half-written, the old in place
    if ".checkpoint.previous" in names:
        return "between renames" if "checkpoint" not in names else "removing the old"
    return "outside a save"


def saved_step(out: Path) -> int:
    return load_json(resolve_checkpoint(out / "checkpoint") / TRAINER)["step"]


def main_driver(work: Path, tries: int, seed: int) -> dict:
    rng = random.Random(seed)
    corpus = work / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = work / "run"
    base = ["train", "--data", str(corpus), "--out", str(out), *TINY, "--threads", "1"]
    code, err = quiet(base + ["--max-steps", "1"])        # also loads every kernel once
    assert code == 0, err

    # how long one save takes here: the span the kills are spread over
    t = time.perf_counter()
    code, err = quiet(base + ["--resume", "--max-steps", "6"])
    assert code == 0, err
    save_time = (time.perf_counter() - t) / 5

    results = {"tries": 0, "phases": {}, "sample_failures": [], "resume_failures": [],
               "lost_steps": [], "stuck": [], "save_time_ms": round(1000 * save_time, 1)}
    last = saved_step(out)
    child_env = {**os.environ, "NPGPT_NUM_THREADS": "1"}
    for _ in range(tries):
        log = work / f"child-{results['tries']}.log"
        with open(log, "w") as sink:           # a file, not a pipe a silent parent would fill
            child = subprocess.Popen([sys.executable, "-c", CHILD, *base, "--resume",
                                      "--max-steps", str(last + 1000)],
                                     env=child_env, stdout=sink, stderr=subprocess.STDOUT)
        tmp = out / f".checkpoint.tmp-{child.pid}"
        saves_to_skip = rng.randrange(2)
        deadline = time.monotonic() + CHILD_DEADLINE
        while time.monotonic() < deadline and child.poll() is None:
            if tmp.exists():
                if saves_to_skip == 0:
                    break
                while tmp.exists() and time.monotonic() < deadline:
                    pass
                saves_to_skip -= 1
        if child.poll() is not None:            # the child's --resume ended by itself
            results["resume_failures"].append(f"exit {child.returncode}: "
                                              + log.read_text()[-500:])
            break
        if time.monotonic() >= deadline:        # never reached a save: stop it, record it
            child.kill()
            child.wait()
            results["stuck"].append(log.read_text()[-500:])
            break
        time.sleep(rng.uniform(0, 1.3 * save_time))
        child.kill()
        child.wait()
        pid = child.pid
        results["tries"] += 1
        where = phase(out, pid)
        results["phases"][where] = results["phases"].get(where, 0) + 1
        try:
            step = saved_step(out)
        except NpgptError as e:
            results["lost_steps"].append(str(e))
            break
        if step < last:
            results["lost_steps"].append(f"checkpoint went back from step {last} to {step}")
        last = step
        code, err = quiet(["sample", "--ckpt", str(out), "--max-new-tokens", "3", "--seed", "0"])
        if code != 0:
            results["sample_failures"].append(err)

    code, err = quiet(base + ["--resume", "--max-steps", str(last + 2)])   # a clean finish
    if code != 0:
        results["resume_failures"].append(err)
    results["left_over"] = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    results["final_step"] = saved_step(out)
    results["expected_final_step"] = last + 2
    return results


if __name__ == "__main__":
    work, tries, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(main_driver(work, tries, seed)))
