import numpy as np
import pytest

# bnlib is imported inside the fixtures, not here: pytest loads this file before the root
# conftest.py reads its options, and the rounding probe (--probe-seed) must be installed
# before bnlib is imported.


@pytest.fixture
def problem():
    """A 6-d problem with κ = 50 and noise."""
    import bnlib

    return bnlib.OLS.random(6, 50.0, seed=3, noise=0.5)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
