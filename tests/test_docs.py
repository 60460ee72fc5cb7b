"""The documentation stays true: every relative link in README.md and docs/*.md resolves (the
file, and the heading its #anchor names), every ``npgpt ...`` line in their shell code blocks
parses with the current command line (the flags exist, their values are of the right kind),
every ``python examples/...`` or ``python benchmarks/...`` line names a script that exists and
flags it defines, every Python block compiles, and CI runs the README's test command.

The checks read whatever the documents hold, so a command or a page added later is checked
the moment it is written."""
from __future__ import annotations

import contextlib
import functools
import io
import re
import shlex
from pathlib import Path

import pytest

from npgpt.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_COMMAND = re.compile(r"\s*([A-Za-z_]\w*=\S*\s+)*(npgpt|python3?|mpiexec|mpirun)\b")


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """``[(language, body), ...]`` of the fenced blocks."""
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(markdown)]


def prose(markdown: str) -> str:
    """The text outside fenced blocks and inline code spans (where links live)."""
    text = _FENCE.sub("", markdown)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
    ``"The batch split (`npgpt.runtime.parallel`)"`` -> ``"the-batch-split-npgptruntimeparallel"``"""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", _FENCE.sub("", markdown), re.M):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path: Path) -> list[str]:
    """The relative links of one markdown file that do not resolve, each with the reason."""
    problems = []
    for target in _LINK.findall(prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):        # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{path.name}: {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text("utf-8")):
            problems.append(f"{path.name}: {target}: no heading with that anchor")
    return problems


def command_lines(body: str) -> list[str]:
    """The simple commands of a shell block: continuations joined, comments dropped, and
    ``&&``, ``||``, ``;`` and ``|`` chains split into their parts."""
    body = re.sub(r"\\\n", " ", body)
    out = []
    for line in body.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:          # an unbalanced quote: reported if the line is a command
            if _COMMAND.match(line):
                out.append(line)
            continue
        part: list[str] = []
        for word in words + [";"]:
            if word in ("&&", "||", ";", "|"):
                if part:
                    out.append(shlex.join(part))
                part = []
            else:
                part.append(word)
    return out


def strip_prefix(words: list[str]) -> list[str]:
    """The command itself: environment assignments and an ``mpiexec``/``mpirun`` launcher
    (with its own options, up to the program) taken off the front."""
    while words and _ENV.match(words[0]):
        words = words[1:]
    if words and words[0] in ("mpiexec", "mpirun"):
        rest = words[1:]
        while rest and rest[0] not in ("npgpt", "python", "python3"):
            rest = rest[1:]
        words = rest
    return words


@functools.lru_cache(maxsize=1)
def parser():
    return build_parser()     # parse_args leaves it as it was: one serves every line


def check_command(line: str) -> str | None:
    """None when the line is fine (or not a command this test knows), else what is wrong."""
    try:
        words = strip_prefix(shlex.split(line))
    except ValueError as e:
        return f"{line!r}: {e}"
    if words[:3] in (["python", "-m", "npgpt"], ["python3", "-m", "npgpt"]):
        words = ["npgpt", *words[3:]]
    if words and words[0] == "npgpt":
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                parser().parse_args(words[1:])
        except SystemExit as e:
            if e.code not in (0, None):             # 0: --help
                return f"{line!r}: {err.getvalue().strip()}"
        return None
    if len(words) >= 2 and words[0] in ("python", "python3") and words[1].endswith(".py"):
        script = ROOT / words[1]
        if not script.is_file():
            return f"{line!r}: no script {words[1]}"
        # the script and the helpers beside it (examples/_common.py holds --quick and --out)
        source = "".join(f.read_text(encoding="utf-8")
                         for f in [script, *sorted(script.parent.glob("_*.py"))])
        for word in words[2:]:
            flag = word.split("=", 1)[0]
            if flag.startswith("--") and f'"{flag}"' not in source and f"'{flag}'" not in source:
                return f"{line!r}: {words[1]} defines no {flag}"
    return None


def shell_commands(path: Path) -> list[str]:
    return [line for lang, body in code_blocks(path.read_text(encoding="utf-8"))
            if lang in SHELL_LANGS for line in command_lines(body)]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(path):
    assert broken_links(path) == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_command_in_a_code_block_parses(path):
    problems = [p for p in map(check_command, shell_commands(path)) if p]
    assert problems == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_python_block_compiles(path):
    for lang, body in code_blocks(path.read_text(encoding="utf-8")):
        if lang == "python":
            compile(body, f"{path.name} python block", "exec")


def test_the_docs_hold_commands_to_check():
    commands = [c for p in DOCS for c in shell_commands(p)]
    assert sum(c.startswith("npgpt ") for c in commands) >= 20


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line.split("#")[0].strip() for _, body in code_blocks(readme)
             for line in body.splitlines() if line.rstrip().endswith("# the tests")]
    assert len(lines) == 1
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert lines[0] in [line.strip() for line in ci]


def test_the_readme_stays_a_front_door():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


# The checker itself: each kind of mistake it is there to catch.

def test_checker_catches_unknown_flags_bad_values_and_missing_scripts():
    assert check_command("npgpt train --no-such-flag 3")
    assert check_command("npgpt train --max-steps many")
    assert check_command("npgpt sample --temperature hot")
    assert check_command("npgpt nonsense")
    assert check_command("python examples/99_missing.py")
    assert check_command("python benchmarks/bench_tokenizers.py --no-such-flag")
    assert check_command("npgpt train --max-steps 5 --out run") is None
    assert check_command("python benchmarks/bench_tokenizers.py --fresh-train") is None
    assert check_command("python examples/03_attention.py --quick --out /tmp/x") is None
    assert command_lines("  tree/   numba's options\nnpgpt train --out 'x\n") == ["npgpt train --out 'x"]
    assert check_command("npgpt train --out 'x")


def test_checker_reads_launchers_chains_continuations_and_comments():
    body = ("pip install . && npgpt train --max-steps 2  # a comment --bogus\n"
            "mpiexec -n 4 npgpt train \\\n    --zero 1\n"
            "NUMBA_CACHE_DIR=/tmp/x mpiexec -f hosts -n 16 npgpt train --bogus-flag\n")
    lines = command_lines(body)
    assert lines == ["pip install .", "npgpt train --max-steps 2",
                     "mpiexec -n 4 npgpt train --zero 1",
                     "NUMBA_CACHE_DIR=/tmp/x mpiexec -f hosts -n 16 npgpt train --bogus-flag"]
    assert [check_command(line) is None for line in lines] == [True, True, True, False]


def test_checker_catches_missing_files_and_anchors(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## The batch split (`npgpt.runtime.parallel`)\n")
    doc = tmp_path / "b.md"
    doc.write_text("[ok](a.md#the-batch-split-npgptruntimeparallel) [web](https://x.org/y)\n"
                   "[file](a.md) [self](#here) [gone](missing.md) [anchor](a.md#nothing)\n"
                   "## Here\n`[not a link](nowhere.md)`\n```\n[in code](nowhere.md)\n```\n")
    assert broken_links(doc) == ["b.md: missing.md: no such file",
                                 "b.md: a.md#nothing: no heading with that anchor"]
