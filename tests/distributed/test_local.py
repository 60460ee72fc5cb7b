"""The parts of npgpt.distributed that need no MPI: launch detection, row shares, buckets."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npgpt import distributed
from npgpt.distributed import launched_size, row_bounds
from npgpt.distributed.buckets import POLL_FROM_BYTES, FlatParameters, make_buckets, pieces, polls
from npgpt.errors import DistributedError
from npgpt.models import GPT, GPTConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_launch(monkeypatch):
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE",
                 "MPI_LOCALNRANKS", "MPI_LOCALRANKID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_world", None)
    return monkeypatch


def test_a_launch_is_seen_in_the_environment(no_launch):
    assert launched_size() == 1 and distributed.get_world() is None
    no_launch.setenv("PMI_SIZE", "4")
    assert launched_size() == 4
    no_launch.setenv("PMI_SIZE", "1")
    assert launched_size() == 1 and distributed.get_world() is None


def test_a_launch_without_mpi4py_is_a_clear_error(no_launch):
    no_launch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    no_launch.setitem(sys.modules, "mpi4py", None)      # import mpi4py now fails
    with pytest.raises(DistributedError, match="2 MPI ranks but mpi4py is not installed"):
        distributed.get_world()


def test_one_process_training_never_imports_mpi4py(tmp_path):
    code = ("import sys, numpy as np; from npgpt.models import GPT, GPTConfig; "
            "from npgpt.trainer import Trainer, TrainConfig; "
            "m = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=1, n_embd=8)); "
            "t = Trainer(m, np.arange(200) % 16, None, TrainConfig(batch_size=2, block_size=8, "
            "max_steps=1, progress=False, save_checkpoints=False, plot=False, out_dir=sys.argv[1])); "
            "t.train(); assert 'mpi4py' not in sys.modules, 'imported'")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("batch,size", [(12, 2), (5, 3), (4, 3), (1, 2), (7, 7)])
def test_row_shares_cover_the_batch_and_differ_by_at_most_one(batch, size):
    b = row_bounds(batch, size)
    shares = np.diff(b)
    assert b[0] == 0 and b[-1] == batch and len(shares) == size
    assert shares.min() >= 0 and shares.max() - shares.min() <= 1


@pytest.mark.parametrize("bucket_bytes", [1, 4000, 1 << 30])
def test_buckets_hold_every_parameter_once_last_layers_first(bucket_bytes):
    model = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=2, n_head=2, n_embd=8,
                          tie_embeddings=False), seed=0)
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    flat = FlatParameters(model.parameters())
    assert flat.intact()
    for name, p in model.named_parameters():          # values kept, now views
        np.testing.assert_array_equal(p.data, before[name])
        assert p.grad.base is flat.grad[p.data.dtype.str]
    buckets = make_buckets(flat, bucket_bytes)
    members = [i for b in buckets for i in b.members]
    assert members == list(reversed(range(len(flat.params))))
    for b in buckets:        # contiguous runs of whole parameters
        assert b.start == flat.where[b.members[-1]][1] and b.stop == flat.where[b.members[0]][2]
        assert b.size * 4 <= bucket_bytes or len(b.members) == 1
    if bucket_bytes == 1 << 30:
        assert len(buckets) == 1


def test_zero_pieces_split_a_bucket_among_the_ranks():
    assert pieces(10, 3) == [0, 3, 6, 10]
    assert pieces(2, 3) == [0, 0, 1, 2]


def test_the_progress_thread_is_for_large_gradients_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv("NPGPT_MPI_POLL", raising=False)
    assert not polls(POLL_FROM_BYTES - 1) and polls(POLL_FROM_BYTES)
    monkeypatch.setenv("NPGPT_MPI_POLL", "1")
    assert polls(4)
    monkeypatch.setenv("NPGPT_MPI_POLL", "0")
    assert not polls(1 << 40)
    monkeypatch.setenv("NPGPT_MPI_POLL", "yes")
    with pytest.raises(DistributedError, match="NPGPT_MPI_POLL='yes' must be 1"):
        polls(4)
