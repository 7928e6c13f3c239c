"""Mini-batch SGD on a finite OLS training set, with and without batch normalization.

A training set (X, y) of n samples is given. At every step each run draws a batch of B
samples (a fresh random permutation of the set per epoch, split into n // B batches; a last
incomplete batch is dropped), and

- :func:`~bnlib.minibatch.sgd` takes a step on the plain batch loss
  J0_B(w) = (1/2B) Σ_i (y_i − x_iᵀw)²;
- :func:`~bnlib.minibatch.bn_sgd` takes a step on the BN batch loss
  J_B(a, w) = (1/2B) Σ_i (y_i − a ẑ_i)², ẑ_i = (ξ_i − ξ̄)/s_B, ξ_i = x_iᵀw, with the batch mean ξ̄
  and the biased batch standard deviation s_B (a BN layer in training mode with offset 0,
  scale γ = a and shift β = 0); the gradient goes *through* the batch statistics, as
  backpropagation through a BN layer does (:func:`~bnlib.minibatch.bn_batch_grad`).

With B = n every step sees the whole set and the runs are deterministic: BN-SGD is then
BNGD (:func:`~bnlib.descent.bngd`) on :func:`~bnlib.minibatch.train_problem` and SGD is GD on
``train_problem(data, centered=False)``.

Both run a whole grid at once: ``lr`` (and ``lr_a``, ``a0``, ``w0``) broadcast to a *batch
shape* of runs, and ``repeats=S`` adds a leading axis of S independent repeats; every run
draws its own batches, and all runs advance together (a Python loop over steps only). The
result has the conventions of :mod:`bnlib.descent`: a run whose loss blows up is flagged in
``diverged``, its later losses are ``inf`` and iterates ``nan``, and no floating-point
warning escapes.

The module also holds the closed forms the mini-batch chapter derives for Gaussian data
(:func:`~bnlib.minibatch.grad_noise`, :func:`~bnlib.minibatch.norm_growth`,
:func:`~bnlib.minibatch.scale_floor`, :func:`~bnlib.minibatch.sgd_floor`).
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from ._engine import heavy_options
from ._minibatch_closed import grad_noise, norm_growth, scale_floor, sgd_floor
from ._minibatch_runs import (
    MiniBatchRun,
    _check_common,
    _check_problem,
    _data,
    _run,
    _shape,
    bn_batch_grad,
    train_problem,
)
from .sweeps import log_width

__all__ = ["MiniBatchRun", "bn_sgd", "sgd", "bn_batch_grad", "train_problem", "grad_noise",
           "norm_growth", "scale_floor", "sgd_floor", "good_window",
           "level_window"]


def bn_sgd(data, lr, steps, a0, w0, batch, lr_a=1.0, *, seed=0, repeats=None, problem=None,
           record="loss", blowup=1e10, weight_decay=0.0, momentum=0.0):
    """Mini-batch SGD with a BN layer: a_{k+1} = a_k − ε_a ∂_a J_B, w_{k+1} = w_k − ε ∇_w J_B.

    J_B is the BN loss of the step's batch, normalised by the batch statistics, and its
    gradient is taken through them (:func:`~bnlib.minibatch.bn_batch_grad`).

    Parameters
    ----------
    data : tuple (X, y)
        The training set, X of shape (n, d), y of shape (n,).
    lr : float or array_like
        Weight step(s) ε > 0.
    steps : int
        Number of steps K ≥ 0.
    a0 : float or array_like
        Start of the scale a.
    w0 : array_like, shape (d,) or (S..., d)
        Start of the weights, nonzero.
    batch : int
        Batch size B, 2 ≤ B ≤ n. B = n is full-batch BNGD on the training set.
    lr_a : float or array_like
        Step(s) ε_a > 0 of a.
    seed : int
        Seed of the batch draws (one generator for all runs; each run draws its own batches).
    repeats : int, optional
        If given, S independent repeats of every run, on a new leading axis of the result.
    problem : bnlib.ols.OLS, optional
        The population the data came from; adds ``test_excess``.
    record : {"loss", "all"}
        ``"all"`` also keeps every iterate and the batch indices.
    blowup : float
        A run is diverged once its training loss exceeds ``blowup * max(J_n(a0, w0), c_n/2)``
        or its state is not finite.
    weight_decay : float or array_like
        Coupled weight decay υ ≥ 0 on w (not on a): the w-step is taken on
        J_B + υ‖w‖²/2. Broadcast with the batch shape like ``lr``.
    momentum : float or array_like
        Heavy-ball momentum ς ∈ [0, 1) on a and w: Δw_k = ς Δw_{k−1} − ε (∇_w J_B + υ w_k),
        w_{k+1} = w_k + Δw_k (Δw_{−1} = 0), the same for a with ε_a (SGD with momentum as
        frameworks write it, for a constant step). ``grad_norm2`` stays ‖∇_w J_B‖². With
        υ = ς = 0 (the default) the runs are the plain ones bit for bit.

    Returns
    -------
    MiniBatchRun

    Raises
    ------
    TypeError
        If ``data`` is not a tuple (X, y), ``problem`` not an OLS, or an argument not numeric.
    ValueError
        If a step size is not > 0 and finite, ``steps < 0``, ``batch`` is not in [2, n],
        ``w0`` has the wrong shape or is zero, shapes do not broadcast, ``problem`` has
        another dimension, ``weight_decay < 0`` or ``momentum`` is outside [0, 1).
    """
    X, y = _data(data)
    n, d = X.shape
    lr, steps, batch, seed, blowup, repeats = _check_common(lr, steps, batch, n, seed, record,
                                                            blowup, repeats)
    problem = _check_problem(problem, d)
    lr_a = v.positive_array(lr_a, "lr_a")
    a0 = v.finite_array(a0, "a0")
    w0 = v.vector_batch(w0, "w0", d)
    if np.any(np.all(w0 == 0, axis=-1)):
        raise ValueError("w0 must be nonzero: BN is undefined at w = 0")
    wd, mom = heavy_options(weight_decay, momentum)
    names, shapes = _option_shapes(wd, mom)
    shape = _shape([lr.shape, lr_a.shape, a0.shape, w0.shape[:-1]] + shapes,
                   ["lr", "lr_a", "a0", "w0[..., 0]"] + names, repeats)
    R = int(np.prod(shape))
    W = np.array(np.broadcast_to(w0, shape + (d,)), dtype=float).reshape(R, d)
    A = np.array(np.broadcast_to(a0, shape), dtype=float).reshape(R)
    eps = np.ascontiguousarray(np.broadcast_to(lr, shape)).reshape(R)
    eps_a = np.ascontiguousarray(np.broadcast_to(lr_a, shape)).reshape(R)
    return _run(True, X, y, problem, eps, eps_a, A, W, steps, batch, seed, record, blowup, shape,
                *_flat_options(wd, mom, shape, R))


def _option_shapes(wd, mom):
    pairs = [(nm, x.shape) for nm, x in (("weight_decay", wd), ("momentum", mom)) if x is not None]
    return [nm for nm, _ in pairs], [s for _, s in pairs]


def _flat_options(wd, mom, shape, R):
    """Weight decay and momentum broadcast to the run shape (a leading ``repeats`` axis
    included) and flattened to (R,); None stays None."""
    def flat(x):
        if x is None:
            return None
        return np.ascontiguousarray(np.broadcast_to(x, shape), dtype=float).reshape(R)
    return flat(wd), flat(mom)


def sgd(data, lr, steps, batch, w0=None, *, seed=0, repeats=None, problem=None, record="loss",
        blowup=1e10, weight_decay=0.0, momentum=0.0):
    """Plain mini-batch SGD on least squares: w_{k+1} = w_k − ε ∇J0_B(w_k).

    Parameters
    ----------
    data : tuple (X, y)
    lr : float or array_like
        Step size(s) ε > 0.
    steps : int
    batch : int
        Batch size B, 2 ≤ B ≤ n (B = n is GD on ``train_problem(data, centered=False)``).
    w0 : array_like, shape (d,) or (S..., d), optional
        Start; zeros by default.
    seed, repeats, problem, record, blowup, weight_decay, momentum
        As in :func:`~bnlib.minibatch.bn_sgd` (the decay on w, the momentum on w).

    Returns
    -------
    MiniBatchRun
        The BN-only fields are ``None``.

    Raises
    ------
    TypeError, ValueError
        As in :func:`~bnlib.minibatch.bn_sgd`.
    """
    X, y = _data(data)
    n, d = X.shape
    lr, steps, batch, seed, blowup, repeats = _check_common(lr, steps, batch, n, seed, record,
                                                            blowup, repeats)
    problem = _check_problem(problem, d)
    w0 = np.zeros(d) if w0 is None else v.vector_batch(w0, "w0", d)
    wd, mom = heavy_options(weight_decay, momentum)
    names, shapes = _option_shapes(wd, mom)
    shape = _shape([lr.shape, w0.shape[:-1]] + shapes, ["lr", "w0[..., 0]"] + names, repeats)
    R = int(np.prod(shape))
    W = np.array(np.broadcast_to(w0, shape + (d,)), dtype=float).reshape(R, d)
    eps = np.ascontiguousarray(np.broadcast_to(lr, shape)).reshape(R)
    return _run(False, X, y, problem, eps, None, None, W, steps, batch, seed, record, blowup,
                shape, *_flat_options(wd, mom, shape, R))


def good_window(final, lr, *, below=0.5, factor=2.0):
    """Decades of step sizes that end near the method's own best level (the mini-batch window).

    A noisy run has no convergence to a tolerance, only a floor; a step size counts as good
    when its final relative excess is at most ``below`` (it learned) and at most ``factor``
    times the best over the grid (it is near the method's own best level). The width is
    :func:`~bnlib.sweeps.log_width` of that set.

    Parameters
    ----------
    final : array_like, shape (..., M)
        Final relative excesses over M step sizes (``inf``/``nan`` for diverged runs).
    lr : array_like, shape (M,)
        The step sizes, increasing on a logarithmic grid.
    below, factor : float, > 0 and >= 1
        The level a good run must reach, and how far above the best it may end.

    Returns
    -------
    float or numpy.ndarray, shape ``final.shape[:-1]``

    Raises
    ------
    ValueError
        If ``below`` is not positive, ``factor < 1`` or the shapes do not match.
    """
    f = v.as_real_array(final, "final")
    below = v.positive_scalar(below, "below")
    factor = v.positive_scalar(factor, "factor")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if f.ndim == 0:
        raise ValueError("final must have a last axis over the step sizes")
    f = np.where(np.isnan(f), np.inf, f)
    best = np.min(f, axis=-1, keepdims=True)
    return log_width((f <= below) & (f <= factor * best), lr)


def level_window(final, lr, level, *, z=2.0):
    """Decades of step sizes whose mean final excess is at most a shared absolute ``level``.

    Unlike :func:`~bnlib.minibatch.good_window`, the level is the same for every method, so
    windows of different methods compare directly. The mean is over R repeats, and its
    Monte Carlo standard error ``se`` (sample standard deviation over the repeats / √R)
    brackets the width: a step size is *surely* in the window when ``mean + z·se <= level``
    and *possibly* in it when ``mean − z·se <= level``. Widths are
    :func:`~bnlib.sweeps.log_width` of each set.

    Parameters
    ----------
    final : array_like, shape (R, ..., M)
        Final relative excesses of R repeats over M step sizes (``inf``/``nan`` for
        diverged runs, which count as outside).
    lr : array_like, shape (M,)
        The step sizes, increasing on a logarithmic grid.
    level : float or array_like, > 0
        The shared level(s); an array broadcasts against ``final.shape[1:-1]``.
    z : float, > 0
        Standard errors on either side.

    Returns
    -------
    (low, width, high) : tuple of float or numpy.ndarray
        Widths in decades of the sure set, of the set ``mean <= level`` and of the possible
        set; shape ``final.shape[1:-1]`` broadcast with ``level``.

    Raises
    ------
    ValueError
        If ``final`` has fewer than two repeats or no step-size axis, ``level`` or ``z``
        is not positive, or the shapes do not match.
    """
    f = v.as_real_array(final, "final")
    z = v.positive_scalar(z, "z")
    level = v.positive_array(level, "level")
    if f.ndim < 2 or f.shape[0] < 2:
        raise ValueError(f"final must have shape (R >= 2, ..., M), got {f.shape}")
    f = np.where(np.isnan(f), np.inf, f)
    with np.errstate(invalid="ignore"):
        mean = f.mean(axis=0)
        se = f.std(axis=0, ddof=1) / np.sqrt(f.shape[0])
    se = np.where(np.isfinite(mean), se, np.inf)
    lev = level[..., None]
    with np.errstate(invalid="ignore"):
        sets = (mean + z * se <= lev, mean <= lev, mean - z * se <= lev)
    return tuple(log_width(s, lr) for s in sets)


# ---------------------------------------------------------------------------- closed forms
