"""Helpers for sweeps over step sizes, seeds and dimensions.

- :func:`~bnlib.sweeps.eigen_problem` builds an OLS problem directly in the eigenbasis of H (H diagonal),
  with the spectrum given and a random u*. GD and BNGD commute with rotations
  (w ↦ Qw, H ↦ QHQᵀ, g ↦ Qg), so a run on it has exactly the losses of the run on any
  rotated copy, e.g. on :meth:`~bnlib.ols.OLS.random` with the same spectrum and u* law, while
  costing O(d) instead of O(d²) per run and step in :mod:`bnlib.descent`.
- :func:`~bnlib.sweeps.log_width` measures a set of step sizes on a logarithmic grid in decades
  (the one width measure of the book: chapters 06, 07, 11 and 12).
- :func:`~bnlib.sweeps.random_rotation` draws a uniformly random orthogonal matrix, reproducibly.
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from .ols import OLS

__all__ = ["eigen_problem", "log_width", "random_rotation"]


def eigen_problem(eigvals, seed, *, noise=1.0, signal=1.0) -> OLS:
    """An OLS problem with H = diag(eigvals) and a random solution u*.

    ``u* = signal · z / sqrt(d)`` with ``z ~ N(0, I_d)`` from
    ``numpy.random.default_rng(seed)``, so ``‖u*‖ ≈ signal``; ``g = H u*`` and
    ``c = u*ᵀ H u* + noise`` (label-noise variance ``noise``, ``min_loss = noise / 2``).
    With ``eigvals = np.logspace(0, log10(κ), d)`` and ``signal = 1`` this is the law of
    :meth:`~bnlib.ols.OLS.random` written in H's eigenbasis (there u* is also isotropic).
    ``signal = sqrt(d)`` gives every coordinate O(1) signal (‖u*‖² ≈ d).

    Parameters
    ----------
    eigvals : array_like, shape (d,)
        The spectrum of H, every entry > 0 (any order).
    seed : int
        Seed (≥ 0) of the draw of u*.
    noise : float, optional
        Label-noise variance σ² ≥ 0.
    signal : float, optional
        Scale of u*, > 0.

    Returns
    -------
    bnlib.ols.OLS

    Raises
    ------
    TypeError
        If an argument is not numeric or ``seed`` is not an integer.
    ValueError
        If ``eigvals`` is not 1-D, empty, or has an entry ≤ 0 or not finite; if ``seed`` or
        ``noise`` is negative; if ``signal`` is not > 0.
    """
    lam = v.positive_array(eigvals, "eigvals")
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"eigvals must be a non-empty 1-D array, got shape {lam.shape}")
    seed = v.count(seed, "seed", minimum=0)
    noise = float(v.finite_array(noise, "noise"))
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    signal = v.positive_scalar(signal, "signal")
    d = lam.size
    u = signal * np.random.default_rng(seed).standard_normal(d) / np.sqrt(d)
    g = lam * u
    return OLS._eigenbasis(lam, g, float(u @ g) + noise)


def log_width(ok, lr, axis=-1):
    """Width in decades of the step sizes on a logarithmic grid where ``ok`` holds.

    Each grid point stands for its cell in log10(lr): from the midpoint with its left
    neighbour to the midpoint with its right one, the end cells reaching half a spacing
    beyond the ends. The width is the total length of the cells of the points in the set, so
    on a grid equally spaced in log10 it is (number of points in the set) × (spacing): for an
    interval of the grid that is log10(max/min) plus one spacing, and it stays meaningful if
    the set has holes.

    Parameters
    ----------
    ok : array_like of bool
        Membership of each grid point, the grid running along ``axis``. For a score, pass
        ``score >= threshold`` (a nan score then counts as outside).
    lr : array_like, shape (n,)
        The grid: n ≥ 2 increasing step sizes > 0, usually ``np.logspace``.
    axis : int
        Axis of ``ok`` along the grid; ``ok.shape[axis]`` must be n.

    Returns
    -------
    float or numpy.ndarray
        Widths in decades, shape ``ok.shape`` without ``axis``.

    Raises
    ------
    TypeError
        If ``ok`` is not boolean.
    ValueError
        If ``lr`` is not an increasing grid of ≥ 2 points > 0, or its length does not match
        ``ok`` along ``axis``.

    Examples
    --------
    >>> lr = np.logspace(0, 4, 9)          # 2 points per decade: each counts 1/2 decade
    >>> log_width(lr <= 100.0, lr)         # 1 ... 100: 2 decades plus one spacing
    2.5
    """
    ok = np.asarray(ok)
    if ok.dtype != bool:
        raise TypeError(f"ok must be a boolean array, got dtype {ok.dtype}")
    lr = v.positive_array(lr, "lr")
    if lr.ndim != 1 or lr.size < 2:
        raise ValueError(f"lr must be a 1-D grid of at least 2 step sizes, got shape {lr.shape}")
    log_lr = np.log10(lr)
    if not np.all(np.diff(log_lr) > 0):
        raise ValueError(f"lr must be increasing, got {v.short(lr)}")
    if ok.ndim == 0 or ok.shape[axis] != lr.size:
        raise ValueError(f"ok must have {lr.size} entries along axis {axis}, got shape {ok.shape}")
    mid = (log_lr[1:] + log_lr[:-1]) / 2
    edges = np.concatenate([[2 * log_lr[0] - mid[0]], mid, [2 * log_lr[-1] - mid[-1]]])
    return v.scalar_or_array(np.moveaxis(ok, axis, -1) @ np.diff(edges))


def random_rotation(d, seed, *, batch=()):
    """A uniformly random d×d rotation: Q of the QR factorisation of a Gaussian matrix with
    the signs of its columns fixed (Q ← Q · sign(diag R)), so the draw is unique and
    Haar-distributed on the orthogonal group.

    Parameters
    ----------
    d : int
        Dimension, ≥ 1.
    seed : int or numpy.random.Generator
        Seed (≥ 0) of ``numpy.random.default_rng``, or a generator to draw from (then its
        state advances by ``prod(batch) · d²`` normals).
    batch : tuple of int, optional
        Leading shape: that many independent rotations.

    Returns
    -------
    numpy.ndarray, shape batch + (d, d)
        Orthogonal: ``Q @ Q.T = I`` to rounding.

    Raises
    ------
    TypeError, ValueError
        If ``d`` is not an integer ≥ 1, ``seed`` is neither a generator nor an integer ≥ 0,
        or ``batch`` is not a tuple of integers ≥ 0.

    Examples
    --------
    >>> Q = random_rotation(3, seed=0)
    >>> bool(np.allclose(Q @ Q.T, np.eye(3)))
    True
    """
    d = v.count(d, "d", minimum=1)
    rng = v.rng(seed, "seed")
    if not isinstance(batch, tuple):
        raise TypeError(f"batch must be a tuple of integers, got {batch!r}")
    batch = tuple(v.count(n, "batch", minimum=0) for n in batch)
    Q, R = np.linalg.qr(rng.standard_normal(batch + (d, d)))
    return Q * np.sign(np.diagonal(R, axis1=-2, axis2=-1))[..., None, :]
