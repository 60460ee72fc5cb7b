"""Every script in examples/ runs in quick mode, exits 0 and prints what it promises."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))

# a line each script must print (checked on stdout); scripts not listed need only exit 0
EXPECTED = {
    "02_embedding_positions.py": "PE(pos + k) = M_k PE(pos)",
    "03_attention.py": "max |by hand - MultiHeadAttention| = ",
    "04_layernorm_batchnorm.py": "LayerNorm of student0 alone == inside the batch: True",
    "05_rope.py": "depends only on m - n",
    "06_param_count.py": "equal: True",
    "07_training_step.py": "gradient of wte.weight is wrong",
    "08_sampling.py": "top_p=0.9: keeps",
    "09_padding.py": "total attention weight on padded keys (every layer-0 head and query): 0.0",
    "10_attention_pooling.py": "Nadaraya-Watson",
    "11_llama_block.py": "q_proj",
    "13_seq2seq_translation.py": "EXACT_MATCH",
    "14_text_classifier.py": "VAL_ACCURACY with_LayerNorm",
    "12_train_shakespeare.py": "ROMEO:",
    "15_inside_training.py": "report written:",
    "16_word2vec.py": "analogies hold (rank 1)",
    "17_speedrun.py": "validation loss after 3 s: old",
}


def command(script: Path, out: Path) -> list[str]:
    """--quick and --out when the script offers them (scripts by others may not)."""
    source = script.read_text(encoding="utf-8")
    args = [sys.executable, str(script)]
    if "--quick" in source:
        args.append("--quick")
    if "--out" in source:
        args += ["--out", str(out)]
    return args


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_example_runs_in_quick_mode(script, tmp_path):
    # the checkout first on the path, so the scripts test this npgpt even when not installed
    path = os.pathsep.join([str(EXAMPLES.parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "MPLBACKEND": "Agg", "NPGPT_NUM_THREADS": "1", "PYTHONPATH": path}
    result = subprocess.run(command(script, tmp_path), check=False, capture_output=True, text=True,
                            timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert result.stdout.strip(), f"{script.name} printed nothing"
    expected = EXPECTED.get(script.name)
    if expected is not None:
        assert expected in result.stdout, f"{script.name} did not print {expected!r}"
    for line in result.stdout.splitlines():   # printed differences from a reference: round-off
        if line.startswith("max |by hand -"):
            assert float(line.rsplit("=", 1)[1]) < 1e-12, line
    if "--out" in script.read_text(encoding="utf-8") and "picture saved" in result.stdout:
        assert list(tmp_path.glob("*.png")) or list(tmp_path.glob("*/*.png"))
