import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Numba compiles on first call: no per-example deadline. Examples are kept few enough for the
# whole suite to run in minutes on two cores; set HYPOTHESIS_PROFILE=thorough for more.
settings.register_profile("default", deadline=None, max_examples=20,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=200,
                          suppress_health_check=[HealthCheck.too_slow])
# CI draws the same examples on every run (derandomize), so a result can be reproduced.
settings.register_profile("ci", deadline=None, max_examples=20, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def tt():
    """(torch, transformers) for the parity tests; they skip without them."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return torch, transformers
