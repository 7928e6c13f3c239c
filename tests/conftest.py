import numpy as np
import pytest

import bnlib


@pytest.fixture
def problem():
    """A 6-d problem with κ = 50 and noise."""
    return bnlib.OLS.random(6, 50.0, seed=3, noise=0.5)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
