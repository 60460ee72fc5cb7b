"""A kernel's numba cache is keyed on all of the kernel package's sources, so a change to a
helper it inlines (exp, the softmax row) recompiles it rather than loading stale code."""
import shutil
from pathlib import Path

import numpy as np

from npgpt.kernels import gelu
from npgpt.runtime import jit as _jit


def test_the_stamp_changes_with_any_source_file(tmp_path):
    dirs = []
    for source in (_jit._KERNELS_DIR, _jit._RUNTIME_DIR):
        copy = tmp_path / Path(source).name
        copy.mkdir()
        for path in Path(source).glob("*.py"):
            shutil.copy(path, copy / path.name)
        dirs.append(str(copy))
    before = _jit.sources_stamp(*dirs)
    assert _jit.sources_stamp(*dirs) == before
    helper = tmp_path / "runtime" / "exp.py"
    helper.write_text(helper.read_text() + "\n# a changed helper\n")
    assert _jit.sources_stamp(*dirs) != before
    (tmp_path / "runtime" / "notes.txt").write_text("not a source")
    helper.write_text(helper.read_text().replace("\n# a changed helper\n", ""))
    assert _jit.sources_stamp(*dirs) == before


def test_kernels_are_cached_under_the_package_stamp():
    gelu.gelu_tanh_forward_numba(np.ones(3, np.float32))
    locator = gelu._forward.serial._cache._impl.locator
    assert locator.get_source_stamp() == _jit.sources_stamp()
