"""Weight decay on BN's scale-invariant weight: the equilibrium it sets and what it costs.

Coupled weight decay υ takes the w-step on J + υ‖w‖²/2 (the option ``weight_decay`` of
:func:`~bnlib.descent.bngd` and :func:`~bnlib.minibatch.bn_sgd`). Since wᵀ∇_wJ = 0,

    ‖w_{k+1}‖² = (1 − ευ)²‖w_k‖² + ε²‖∇_wJ‖²,

so the decay shrinks ‖w‖ and the gradient grows it: the two balance at an equilibrium. In
full batch the gradient vanishes near a minimiser, the effective step ε̂ = ε a²/‖w‖²_H grows
until the stability edge ε̂ λ*_max = 2 holds it, and the excess stops at a floor
(:func:`bnlib.theory.floor_leading`). With mini-batches the noise keeps the gradient alive,
and the angle between consecutive weights settles (:func:`bnlib.theory.angular_equilibrium`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import PUBLIC, theory
from . import checks as v
from .descent import bngd, gd
from .ols import check_problem
from .windows import log_width

__all__ = list(PUBLIC["decay"])


def angular_update(w, axis=0):
    """Angles (radians) between consecutive weights along ``axis``.

    Computed as 2 arcsin(‖ŵ_{k+1} − ŵ_k‖/2) with ŵ = w/‖w‖, accurate for small angles.

    Parameters
    ----------
    w : array_like, shape (..., K+1, ..., d)
        Iterates with the step axis ``axis`` and coordinates on the last axis.
    axis : int
        The step axis (not the last one).

    Returns
    -------
    numpy.ndarray
        Shape of ``w`` without the last axis and with K instead of K+1 along ``axis``.
    """
    w = v.as_real_array(w, "w")
    if w.ndim < 2:
        raise ValueError(f"w must have a step axis and a coordinate axis, got shape {w.shape}")
    ax = axis % w.ndim
    if ax == w.ndim - 1:
        raise ValueError("axis must not be the last axis (the coordinates)")
    u = w / np.linalg.norm(w, axis=-1, keepdims=True)
    diff = np.diff(u, axis=ax)
    return 2 * np.arcsin(np.minimum(np.linalg.norm(diff, axis=-1) / 2, 1.0))


@dataclass(frozen=True, kw_only=True)
class FloorSweep:
    """The result of :func:`floor_sweep`; arrays of shape (M, P) over (ε, ευ).

    Attributes
    ----------
    lr, lr_decay : numpy.ndarray
        The grids of ε, shape (M,), and of ευ, shape (P,).
    floor : numpy.ndarray
        Mean excess J − J* over the last ``tail`` steps.
    spread : numpy.ndarray
        (max − min)/mean of the excess over those steps.
    edge : numpy.ndarray
        Mean of ε̂ λ*_max over those steps.
    predicted : numpy.ndarray, shape (P,)
        :func:`~bnlib.theory.floor_leading` of ``lr_decay``.
    ratio : numpy.ndarray
        floor / predicted.
    diverged : numpy.ndarray of bool
    steps, tail : int
    """

    lr: np.ndarray
    lr_decay: np.ndarray
    floor: np.ndarray
    spread: np.ndarray
    edge: np.ndarray
    predicted: np.ndarray
    ratio: np.ndarray
    diverged: np.ndarray
    steps: int
    tail: int


def _grids(problem, lr, other, name):
    """Check the problem and the two one-dimensional grids of a sweep (``lr`` and ``name``)."""
    check_problem(problem)
    lr = v.positive_array(lr, "lr")
    if lr.ndim != 1 or other.ndim != 1:
        raise ValueError(f"lr and {name} must be one-dimensional")
    return lr, other


def floor_sweep(problem, lr, lr_decay, steps, a0, w0, *, tail=1000, lr_a=1.0):
    """BNGD with weight decay over a grid of ε and ευ, in one vectorised run.

    Run (ε_i, υ = p_j/ε_i) for every step ε_i in ``lr`` and product p_j in ``lr_decay``,
    from the same start, and average the last ``tail`` steps.

    Parameters
    ----------
    problem : bnlib.ols.OLS
    lr : array_like, shape (M,), > 0
    lr_decay : array_like, shape (P,), > 0
    steps : int, > tail
    a0 : float
    w0 : array_like, shape (d,)
    tail : int, >= 1
    lr_a : float, > 0

    Returns
    -------
    FloorSweep
    """
    lr, p = _grids(problem, lr, v.positive_array(lr_decay, "lr_decay"), "lr_decay")
    tail = v.count(tail, "tail", minimum=1)
    steps = v.count(steps, "steps", minimum=tail + 1)
    lam = float(theory.effective_eigvals(problem.H, problem.u_star).max())
    run = bngd(problem, lr[:, None], steps, a0, w0, lr_a=lr_a, record="loss",
               weight_decay=p[None, :] / lr[:, None])
    ex, pred = run.excess[-tail:], theory.floor_leading(problem, p)
    floor = ex.mean(axis=0)
    return FloorSweep(lr=lr, lr_decay=p, floor=floor, spread=(ex.max(axis=0) - ex.min(axis=0)) / floor,
                      edge=run.lr_eff[-tail:].mean(axis=0) * lam, predicted=pred, ratio=floor / pred,
                      diverged=np.asarray(run.diverged), steps=steps, tail=tail)


@dataclass(frozen=True, kw_only=True)
class DecayWindows:
    """The result of :func:`decay_windows`.

    Attributes
    ----------
    lr : numpy.ndarray, shape (M,)
    weight_decay : numpy.ndarray, shape (P,)
    bngd, gd : numpy.ndarray, shape (P, M)
        Final excess after ``steps`` steps (``inf`` if diverged), BNGD and GD, each with
        weight decay υ_j.
    width_bngd, width_gd : numpy.ndarray, shape (P,)
        Decades of ε reaching ``tol`` (:func:`~bnlib.windows.log_width`).
    top_predicted : numpy.ndarray, shape (P,)
        The step at which BNGD's floor reaches ``tol``: ε = tol / (υ λ*_max ‖u*‖²/4)
        (``inf`` for υ = 0).
    largest_stable : numpy.ndarray, shape (P,)
        BNGD's largest ε on the grid that did not diverge.
    tol : float
    steps : int
    """

    lr: np.ndarray
    weight_decay: np.ndarray
    bngd: np.ndarray
    gd: np.ndarray
    width_bngd: np.ndarray
    width_gd: np.ndarray
    top_predicted: np.ndarray
    largest_stable: np.ndarray
    tol: float
    steps: int


def decay_windows(problem, lr, weight_decay, steps, a0, w0, tol, *, lr_a=1.0):
    """Windows of step sizes of BNGD and GD, each with weight decay υ, after ``steps`` steps.

    Parameters
    ----------
    problem : bnlib.ols.OLS
    lr : array_like, shape (M,), > 0
        Increasing log grid.
    weight_decay : array_like, shape (P,), >= 0
    steps : int, >= 1
    a0 : float
    w0 : array_like, shape (d,)
        BNGD's start (GD starts at 0).
    tol : float, > 0
        Absolute tolerance on the final excess.
    lr_a : float, > 0

    Returns
    -------
    DecayWindows
    """
    lr, wd = _grids(problem, lr, v.finite_array(weight_decay, "weight_decay"),
                    "weight_decay")
    tol = v.positive_scalar(tol, "tol")
    rb = bngd(problem, lr[None, :], steps, a0, w0, lr_a=lr_a, record="loss",
              weight_decay=wd[:, None])
    rg = gd(problem, lr[None, :], steps, record="loss", weight_decay=wd[:, None])
    eb, eg = rb.excess[-1], rg.excess[-1]
    lead = theory.floor_leading(problem, 1.0)
    with np.errstate(divide="ignore"):
        top = np.where(wd > 0, tol / (wd * lead), np.inf)
    stable = np.where(~rb.diverged, lr[None, :], 0.0).max(axis=1)
    return DecayWindows(lr=lr, weight_decay=wd, bngd=eb, gd=eg,
                        width_bngd=log_width(eb <= tol, lr), width_gd=log_width(eg <= tol, lr),
                        top_predicted=top, largest_stable=stable, tol=tol, steps=rb.steps)
