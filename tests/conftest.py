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


@pytest.fixture
def one_cell_notebook():
    """Build a one-cell notebook (nbformat 4 dict) whose cell runs ``source`` and has
    ``stored`` as its stored stdout, for real ``pytest --nbval`` runs under pytester."""

    def build(source: str, stored: str) -> dict:
        return {
            "cells": [{
                "cell_type": "code", "execution_count": 1, "id": "c1", "metadata": {},
                "source": source,
                "outputs": [{"name": "stdout", "output_type": "stream", "text": stored}],
            }],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5,
        }

    return build
