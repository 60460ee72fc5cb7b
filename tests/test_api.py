"""npgpt.train / sample / eval from Python: the same runs as the commands, bit for bit; and
the package's attributes loaded on first use."""
import json
import subprocess
import sys

import numpy as np
import pytest

import npgpt
from npgpt.cli import main
from npgpt.errors import ConfigError
from npgpt.io import load_checkpoint

TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\n"
        "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n") * 40

# the same tiny run as flags and as keywords
TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, eval_steps=2,
            eval_interval=3, warmup_steps=2, progress=False, plot=False, dropout=0.1)


def flags(options: dict) -> list[str]:
    out = []
    for k, v in options.items():
        name = "--" + k.replace("_", "-")
        out += [name if v else "--no-" + name[2:]] if isinstance(v, bool) else [name, str(v)]
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def weights(out_dir) -> dict:
    ckpt = load_checkpoint(out_dir / "checkpoint")
    return {**{f"model.{k}": v for k, v in ckpt.model_state.items()},
            **{f"optimizer.{k}": v for k, v in ckpt.optimizer_state.items()}}


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_train_from_python_is_the_command_bit_for_bit(corpus, tmp_path, capsys):
    assert main(["train", "--data", str(corpus), "--out", str(tmp_path / "cli"),
                 "--max-steps", "6", *flags(TINY)]) == 0
    run = npgpt.train(data=str(corpus), out_dir=str(tmp_path / "api"), max_steps=6, **TINY)
    assert_same(weights(tmp_path / "cli"), weights(tmp_path / "api"))
    # the Run holds what the run did
    assert run.step == 6 and run.config.max_steps == 6 and run.out_dir == tmp_path / "api"
    assert run.model.config.n_embd == 16 and run.tokenizer.name.startswith("char")
    assert run.val_loss == run.metrics[-1]["val_loss"] and np.isfinite(run.train_loss)
    assert [r["step"] for r in run.metrics if "val_loss" in r] == [3, 6]
    saved = [json.loads(line) for line in (tmp_path / "api" / "metrics.jsonl").read_text()
             .splitlines()]
    assert saved == run.metrics
    assert_same({k: p.data for k, p in run.model.named_parameters()},
                {k[6:]: v for k, v in weights(tmp_path / "api").items() if k[:6] == "model."})


def test_resume_from_python_continues_bit_for_bit(corpus, tmp_path, capsys):
    # a flat learning rate after warmup: the schedule does not depend on max_steps, which
    # the resumed run raises
    flat = dict(TINY, lr=1e-3, min_lr=1e-3)
    npgpt.train(data=str(corpus), out_dir=str(tmp_path / "whole"), max_steps=6, **flat)
    npgpt.train(data=str(corpus), out_dir=str(tmp_path / "split"), max_steps=4, **flat)
    capsys.readouterr()
    run = npgpt.train(data=str(corpus), out_dir=str(tmp_path / "split"), resume=True,
                      max_steps=6, progress=False, plot=False)
    assert "resumed from" in capsys.readouterr().out and run.step == 6
    assert_same(weights(tmp_path / "whole"), weights(tmp_path / "split"))
    assert [r["step"] for r in run.metrics if "val_loss" in r] == [3, 4, 6]
    with pytest.raises(ConfigError, match="finished"):      # nothing left to train
        npgpt.train(data=str(corpus), out_dir=str(tmp_path / "split"), resume=True)


def test_lora_fine_tune_from_python(corpus, tmp_path, capsys):
    from npgpt.adapters import lora_config
    # a GPT-2-shaped base (PEFT's adapter layout needs a HuggingFace family; the default
    # speedrun-1m block has none)
    base = npgpt.train(data=str(corpus), out_dir=str(tmp_path / "base"), max_steps=3,
                       preset="baby", **TINY)
    run = npgpt.train(data=str(corpus), out_dir=str(tmp_path / "lora"), max_steps=3,
                      init_from=str(tmp_path / "base"), lora_rank=2, lora_targets="c_attn",
                      **{k: v for k, v in TINY.items() if k not in ("n_layer", "n_head",
                                                                    "n_embd", "dropout")})
    assert lora_config(run.model).r == 2 and (tmp_path / "lora" / "adapter").is_dir()
    frozen = dict(base.model.named_parameters())
    for name, p in run.model.named_parameters():
        if "lora_" not in name and name in frozen:          # the base is left as it was
            assert np.array_equal(p.data, frozen[name].data), name
    with pytest.raises(ConfigError, match="lora"):
        npgpt.train(data=str(corpus), out_dir=str(tmp_path / "x"), lora_dropout=0.1)


def test_sample_and_eval_from_python_are_the_commands(corpus, tmp_path, capsys):
    run = npgpt.train(data=str(corpus), out_dir=str(tmp_path / "run"), max_steps=3, **TINY)
    capsys.readouterr()
    assert main(["sample", "--ckpt", str(tmp_path / "run"), "--prompt", "ROMEO:",
                 "--max-new-tokens", "20", "--seed", "3", "--num-samples", "2"]) == 0
    printed = capsys.readouterr().out
    texts = npgpt.sample(ckpt=str(tmp_path / "run"), prompt="ROMEO:", max_new_tokens=20,
                         seed=3, num_samples=2)
    assert printed == texts[0] + "\n---------------\n" + texts[1] + "\n"
    assert npgpt.sample(ckpt=run, prompt="ROMEO:", max_new_tokens=20, seed=3,
                        num_samples=2) == texts          # a Run's model is the checkpoint's
    assert main(["eval", "--ckpt", str(tmp_path / "run"), "--data", str(corpus), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    result = npgpt.eval(ckpt=run, data=str(corpus))
    assert {k: measured[k] for k in result.to_dict()} == result.to_dict()


def test_subpackages_and_functions_load_on_first_use():
    code = """if True:
        import sys, npgpt
        lazy = ["npgpt.tokenizers", "npgpt.optim", "npgpt.data", "npgpt.run", "npgpt.trainer"]
        assert not [m for m in lazy if m in sys.modules], [m for m in lazy if m in sys.modules]
        assert npgpt.tokenizers.get("char", text="ab").vocab_size == 2
        assert callable(npgpt.optim.AdamW) and callable(npgpt.data.get_batch)
        import npgpt.run, npgpt.infer, npgpt.trainer   # submodules do not replace the functions
        assert npgpt.train is npgpt.run.train and npgpt.sample is npgpt.infer.sample
        assert npgpt.eval is npgpt.infer.eval and npgpt.Run is npgpt.run.Run
        assert "tokenizers" in dir(npgpt) and "train" in dir(npgpt)
        try:
            npgpt.no_such_thing
        except AttributeError:
            pass
        else:
            raise AssertionError("npgpt.no_such_thing resolved")
        print("ok")
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
