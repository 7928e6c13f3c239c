"""The digits data set of the network experiments: scikit-learn's 8×8 handwritten digits,
standardised and split into a training and a test set by a seed (used by :mod:`bnlib.training`
and chapter 11; re-exported by :mod:`bnlib.nn`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate as v

__all__ = ["Digits", "load_digits_split"]


# ------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Digits:
    """A fixed train/test split of scikit-learn's handwritten digits.

    Attributes
    ----------
    X_train, X_test : numpy.ndarray
        Shapes (n_train, 64) and (n_test, 64): 8×8 images flattened row by row, pixel values
        divided by 16 so they lie in [0, 1].
    y_train, y_test : numpy.ndarray of int
        Shapes (n_train,) and (n_test,): digit labels 0–9.
    seed : int
    test_fraction : float
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    seed: int
    test_fraction: float
    n_classes: int = 10


def load_digits_split(seed=0, test_fraction=0.25):
    """Load scikit-learn's bundled digits (1,797 images, no download) and split them.

    The split is a seeded random permutation: the first ``round(test_fraction * 1797)``
    images form the test set, the rest the training set.

    Parameters
    ----------
    seed : int
        Seed of the permutation (``numpy.random.default_rng``).
    test_fraction : float
        Fraction of the images held out, in (0, 1).

    Returns
    -------
    Digits

    Raises
    ------
    TypeError
        If ``seed`` is not an integer.
    ValueError
        If ``seed < 0`` or ``test_fraction`` is not in (0, 1) or leaves an empty set.
    """
    from sklearn.datasets import load_digits

    seed = v.count(seed, "seed")
    test_fraction = v.positive_scalar(test_fraction, "test_fraction")
    if not test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    data = load_digits()
    X = data.data.astype(np.float64) / 16.0
    y = data.target.astype(np.int64)
    n_test = int(round(test_fraction * len(y)))
    if not 0 < n_test < len(y):
        raise ValueError(f"test_fraction {test_fraction} leaves an empty train or test set")
    perm = np.random.default_rng(seed).permutation(len(y))
    test, train = perm[:n_test], perm[n_test:]
    return Digits(X[train], y[train], X[test], y[test], seed, test_fraction)
