"""Input checks shared by bnlib's modules.

Every public function validates its arguments here, so that bad input raises a
``TypeError`` or ``ValueError`` that names the argument and shows its value.
"""

from __future__ import annotations

import numbers

import numpy as np


def short(x) -> str:
    """A short printable form of ``x`` for error messages."""
    text = np.array2string(np.asarray(x), threshold=6, precision=4) if _is_array(x) else repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or isinstance(x, list | tuple)


def as_real_array(x, name: str) -> np.ndarray:
    """Convert ``x`` to a float64 array; ``TypeError`` if it is not real numbers."""
    if isinstance(x, str | bytes) or x is None:
        raise TypeError(f"{name} must be a real number or array of real numbers, got {short(x)}")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a real number or array, got {short(x)}") from exc
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}: {short(x)}")
    return arr.astype(np.float64)


def finite_array(x, name: str) -> np.ndarray:
    """Real float64 array with every entry finite, else ``ValueError``."""
    arr = as_real_array(x, name)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no inf or nan), got {short(arr)}")
    return arr


def positive_array(x, name: str) -> np.ndarray:
    """Finite array with every entry > 0, else ``ValueError``."""
    arr = finite_array(x, name)
    if not np.all(arr > 0):
        raise ValueError(f"{name} must be > 0, got {short(arr)}")
    return arr


def positive_scalar(x, name: str) -> float:
    """A finite real number > 0."""
    arr = positive_array(x, name)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    return float(arr)


def count(x, name: str, minimum: int = 0) -> int:
    """A Python/numpy integer >= ``minimum`` (bools rejected)."""
    if isinstance(x, bool | np.bool_) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {short(x)}")
    if x < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {x}")
    return int(x)


def vector_batch(x, name: str, d: int) -> np.ndarray:
    """Finite array of shape ``(..., d)``."""
    arr = finite_array(x, name)
    if arr.ndim == 0 or arr.shape[-1] != d:
        raise ValueError(f"{name} must have shape (..., {d}) for this problem, got shape {arr.shape}")
    return arr


def rng(seed, name: str = "seed") -> np.random.Generator:
    """A ``numpy.random.Generator``: ``seed`` itself if it is one, else ``default_rng(seed)``
    for an integer seed ≥ 0."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(count(seed, name, minimum=0))


def scalar_or_array(x):
    """A 0-d result as a Python float, any other array unchanged."""
    return float(x) if np.ndim(x) == 0 else x
