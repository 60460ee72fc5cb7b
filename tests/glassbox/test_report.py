import json
import os
import re
import shutil
from pathlib import Path

import pytest

from npgpt.cli import main
from npgpt.glassbox.report import collect, render, write_report
from tests.glassbox.run_fixture import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def bare_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("bare"), stats=False)


def embedded(page: str) -> dict:
    payload = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    return json.loads(payload.group(1))


def test_report_is_one_page_that_fetches_nothing(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    assert "report.html" in capsys.readouterr().out
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "default-src 'none'" in page                  # the browser may fetch nothing
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<link" not in page and "@import" not in page and "fetch(" not in page
    data = embedded(page)
    assert data["stats"]["step"] == [2, 4, 6]
    assert data["stats"]["layers"] == ["h.0", "h.1"]
    assert [p["step"] for p in data["probes"]] == [3, 6]
    assert len(data["probes"][0]["attention"]) == 2            # layers
    assert data["curves"]["step"] == [1, 2, 3, 4, 5, 6]
    assert data["curves"]["eval"]["step"] == [3, 6]
    emb = data["embedding"]
    assert emb["vocab_size"] == len(emb["labels"]) == len(emb["xy"])
    assert emb["neighbours"][0]["token"] == "R"                  # the probe's first token
    assert not data["notes"]
    assert not list(run_dir.glob(".report.html.*"))              # no temporary file left


def test_a_run_without_statistics_says_so_and_shows_the_rest(bare_run):
    data = embedded((write_report(bare_run)).read_text(encoding="utf-8"))
    assert data["stats"] is None and data["probes"] == []
    assert any("no training statistics" in n and "--stats-interval" in n for n in data["notes"])
    assert data["curves"]["loss"] and data["embedding"]["labels"]


def test_half_written_lines_are_left_out_and_said(tmp_path, bare_run):
    run = tmp_path / "run"
    shutil.copytree(bare_run, run)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 7, "loss": 2.')
    data = collect(run)
    assert data["curves"]["step"][-1] == 6
    assert any("metrics.jsonl: 1 line(s) did not parse" in n for n in data["notes"])


def test_a_token_that_closes_the_script_element_cannot_break_the_page(run_dir):
    data = collect(run_dir)
    data["embedding"]["labels"][0] = "</script><script>alert(1)</script>"
    page = render(data)
    assert embedded(page)["embedding"]["labels"][0] == "</script><script>alert(1)</script>"


def test_bad_directories_are_one_line_errors_and_write_nothing(tmp_path, capsys, run_dir):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not a directory" in err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "nothing to report" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["report", str(run_dir), "--out", str(blocker / "report.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "npgpt report: error:" in err
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_an_unwritable_run_directory_is_a_one_line_error(tmp_path, bare_run, capsys):
    run = tmp_path / "run"
    shutil.copytree(bare_run, run)
    run.chmod(0o555)
    try:
        assert main(["report", str(run)]) == 2
        assert "Permission denied" in capsys.readouterr().err
        assert not (run / "report.html").exists() and not list(run.glob(".report*"))
    finally:
        run.chmod(0o755)


def test_the_page_is_written_without_matplotlib(bare_run, tmp_path):
    import subprocess
    import sys
    out = tmp_path / "page.html"
    code = ("import sys; sys.modules['matplotlib'] = None\n"     # import matplotlib now fails
            "from npgpt.glassbox.report import write_report\n"
            f"write_report({str(bare_run)!r}, {str(out)!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]),
                                                         os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert embedded(out.read_text(encoding="utf-8"))["curves"]["loss"]
