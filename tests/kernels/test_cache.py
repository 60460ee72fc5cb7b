"""A kernel's numba cache is keyed on all of the kernel package's sources, so a change to a
helper it inlines (exp, the softmax row) recompiles it rather than loading stale code."""
import shutil
from pathlib import Path

import numpy as np

from npgpt.kernels import _jit, gelu


def test_the_stamp_changes_with_any_source_file(tmp_path):
    for path in Path(_jit._KERNELS_DIR).glob("*.py"):
        shutil.copy(path, tmp_path / path.name)
    before = _jit.sources_stamp(str(tmp_path))
    assert _jit.sources_stamp(str(tmp_path)) == before
    helper = tmp_path / "_exp.py"
    helper.write_text(helper.read_text() + "\n# a changed helper\n")
    assert _jit.sources_stamp(str(tmp_path)) != before
    (tmp_path / "notes.txt").write_text("not a source")
    helper.write_text(helper.read_text().replace("\n# a changed helper\n", ""))
    assert _jit.sources_stamp(str(tmp_path)) == before


def test_kernels_are_cached_under_the_package_stamp():
    gelu.gelu_tanh_forward_numba(np.ones(3, np.float32))
    locator = gelu._forward.serial._cache._impl.locator
    assert locator.get_source_stamp() == _jit.sources_stamp()
