"""The batch-normalization layer in training mode, forward and backward.

Over a mini-batch (axis ``axis``, 0 by default) each feature is normalised with the batch
mean and the *biased* batch variance, as in common deep-learning frameworks:

    x̂ = (x − μ_B) / sqrt(σ²_B + var_offset),   y = γ x̂ + β.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import PUBLIC
from . import checks as v

__all__ = list(PUBLIC["bn"])


class BNCache(NamedTuple):
    """What :func:`~bnlib.bn.batchnorm_forward` keeps for the backward pass (a 6-tuple).

    Its fields, in order: ``xhat`` (the normalised input x̂, shape of ``x``), ``inv_std``
    (1/sqrt(σ²_B + var_offset) with the biased batch variance σ²_B, the batch axis kept),
    ``gamma`` (the scale γ), ``beta_shape`` (the shape of β), ``axis`` (the batch axis) and
    ``shape`` (the shape of ``x``).
    """

    xhat: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray
    beta_shape: tuple
    axis: int
    shape: tuple


def batchnorm_forward(x, gamma, beta, var_offset=1e-5, axis=0):
    """Training-mode batch normalization.

    Parameters
    ----------
    x : array_like, shape (N, D) (or any shape with the batch on ``axis``)
        A mini-batch of N ≥ 2 examples.
    gamma, beta : array_like
        Scale and shift, broadcast against the normalised features (shape (D,) for 2-D x).
    var_offset : float, default 1e-5
        Added to the variance, ≥ 0 (0 gives the exact normalisation N of the slides).
    axis : int
        The batch axis.

    Returns
    -------
    y : numpy.ndarray, shape of ``x``
    cache : BNCache
        What :func:`~bnlib.bn.batchnorm_backward` needs (a named 6-tuple).
    """
    x = v.finite_array(x, "x")
    if x.ndim == 0:
        raise ValueError("x must have a batch axis, got a scalar")
    axis = v.count(axis, "axis", minimum=-x.ndim)
    if axis >= x.ndim:
        raise ValueError(f"axis {axis} is out of range for x of shape {x.shape}")
    if x.shape[axis] < 2:
        raise ValueError(f"x needs at least 2 examples along axis {axis}, got shape {x.shape}")
    gamma = v.finite_array(gamma, "gamma")
    beta = v.finite_array(beta, "beta")
    offset = v.var_offset(var_offset)
    for name, p in (("gamma", gamma), ("beta", beta)):
        try:
            np.broadcast_shapes(p.shape, x.shape)
        except ValueError:
            raise ValueError(f"{name} of shape {p.shape} does not broadcast with x of shape "
                             f"{x.shape}") from None
    with np.errstate(divide="ignore", invalid="ignore"):
        y, cache, _ = normalize(x, gamma, beta, offset, axis)
    if offset == 0 and np.any(np.isinf(cache.inv_std)):    # a batch variance of 0
        raise ValueError("a feature of x is constant over the batch; use var_offset > 0")
    return y, cache


def normalize(x, gamma, beta, offset, axis):
    """:func:`~bnlib.bn.batchnorm_forward` unchecked (for loops that check once); also the batch mean."""
    mu = x.mean(axis=axis, keepdims=True)
    xc = x - mu
    inv_std = 1.0 / np.sqrt(np.mean(xc * xc, axis=axis, keepdims=True) + offset)
    xhat = np.multiply(xc, inv_std, out=xc)
    return gamma * xhat + beta, BNCache(xhat, inv_std, gamma, beta.shape, axis, x.shape), mu


def _reduce_to(a, shape):
    """Sum ``a`` down to ``shape`` (the inverse of broadcasting)."""
    lead = a.ndim - len(shape)
    a = a.sum(axis=tuple(range(lead))) if lead > 0 else a
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and a.shape[i] != 1)
    return a.sum(axis=axes, keepdims=True) if axes else a


def batchnorm_backward(dy, cache):
    """Backward pass of :func:`~bnlib.bn.batchnorm_forward`.

    Parameters
    ----------
    dy : array_like, shape of ``x``
        Upstream gradient ∂L/∂y.
    cache : BNCache
        From :func:`~bnlib.bn.batchnorm_forward`.

    Returns
    -------
    dx : numpy.ndarray, shape of ``x``
        (γ/σ) (dy − mean(dy) − x̂ mean(dy x̂)), means over the batch.
    dgamma, dbeta : numpy.ndarray, shapes of ``gamma`` and ``beta``
    """
    if not (isinstance(cache, tuple) and len(cache) == 6):
        raise TypeError("cache must be the tuple returned by batchnorm_forward")
    dy = v.finite_array(dy, "dy")
    if dy.shape != cache[5]:
        raise ValueError(f"dy must have the shape of x, {cache[5]}, got {dy.shape}")
    return normalize_backward(dy, cache)


def normalize_backward(dy, cache):
    """:func:`~bnlib.bn.batchnorm_backward` unchecked (see :func:`normalize`)."""
    xhat, inv_std, gamma, beta_shape, axis, _ = cache
    dbeta = _reduce_to(dy, beta_shape)
    dgamma = _reduce_to(dy * xhat, gamma.shape)
    dxhat = dy * gamma    # dx = inv_std (dxhat - mean dxhat - xhat mean(dxhat xhat))
    dx = dxhat - dxhat.mean(axis=axis, keepdims=True)
    prod = np.multiply(dxhat, xhat, out=dxhat)
    dx -= np.multiply(xhat, np.mean(prod, axis=axis, keepdims=True), out=prod)
    dx *= inv_std
    return dx, dgamma, dbeta


def batch_std_mean(batch):
    """E[s_B]: the mean of the biased sample standard deviation of B standard normal draws.

    With s_B² = (1/B) Σ (x_i − x̄)² and x_i ~ N(0, 1), B·s_B² follows χ²_{B−1}, so

        E[s_B] = sqrt(2/B) · Γ(B/2) / Γ((B−1)/2)  ≈  1 − 3/(4B).

    It sets the bias of BN's mini-batch output: for Gaussian inputs, E[a·N_B(x)·x] is
    a·E[s_B] times its population value.

    Parameters
    ----------
    batch : int or array_like of int, every entry >= 2
        Batch size(s) B.

    Returns
    -------
    float or numpy.ndarray of float, the shape of ``batch``

    Examples
    --------
    >>> float(round(batch_std_mean(2), 12))  # sqrt(1/pi)
    0.564189583548
    """
    from math import lgamma

    b = v.batch_sizes(batch)
    lg = np.vectorize(lgamma, otypes=[float])
    out = np.sqrt(2.0 / b) * np.exp(lg(b / 2.0) - lg((b - 1) / 2.0))
    return v.scalar_or_array(out)
