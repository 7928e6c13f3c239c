"""The gradient flow of the BN loss, integrated with the classical fourth-order Runge–Kutta.

BNGD is the forward-Euler discretisation, with step ε, of the gradient flow

    da/dt = −ρ_a ∂_a J(a, w),    dw/dt = −∇_w J(a, w),

(ρ_a = ε_a/ε matches BNGD's two step sizes; ρ_a = 1 is the plain flow). Because
wᵀ∇_w J = 0, the flow keeps ‖w‖ exactly constant, while every discrete step increases it.
:func:`~bnlib.flow.bn_flow` integrates the flow from many starts at once so that the two can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import PUBLIC
from . import checks as v
from .descent import divergence_limit, masked
from .ols import check_problem, normalized_excess, normalized_grad

__all__ = list(PUBLIC["flow"])


@dataclass(frozen=True, kw_only=True)
class FlowRun:
    """The result of :func:`~bnlib.flow.bn_flow`.

    Attributes
    ----------
    t : numpy.ndarray, shape (n+1,)
        Times 0, h, 2h, …, T of the recorded states (h = T/n).
    a : numpy.ndarray, shape (n+1, B...)
        The scale a(t); ``nan`` from the step at which a run diverged.
    w : numpy.ndarray, shape (n+1, B..., d)
        The weights w(t); ``nan`` after divergence.
    loss : numpy.ndarray, shape (n+1, B...)
        J(a(t), w(t)); ``inf`` after divergence.
    excess : numpy.ndarray, shape (n+1, B...)
        J − J*, computed as in :func:`~bnlib.descent.bngd` (accurate near 0).
    w_norm : numpy.ndarray, shape (n+1, B...)
        Euclidean norm ‖w(t)‖, constant along the exact flow.
    diverged : bool or numpy.ndarray of bool, shape B
        True for runs stopped by ``blowup`` (see :func:`~bnlib.flow.bn_flow`); the exact flow
        never increases J, so this only happens with a far too large step.
    """

    t: np.ndarray
    a: np.ndarray
    w: np.ndarray
    loss: np.ndarray
    excess: np.ndarray
    w_norm: np.ndarray
    diverged: np.ndarray


def _terms(problem, A, W):
    HW = W @ problem.H
    n2 = np.einsum("...i,...i->...", HW, W)
    dA, rn, t, G, _ = normalized_grad(A, W, HW, W @ problem.g, None, n2, problem.g)
    return dA, rn, t, G


def _field(problem, A, W, lr_a):
    """Right-hand side (−ρ_a ∂_a J, −∇_w J) for a batch of states (the kernel of BNGD)."""
    dA, rn, _, G = _terms(problem, A, W)
    return -lr_a * dA, (A * rn)[..., None] * G


def _excess(problem, A, W):
    """J − J*, accurate near the minimum: the excess of BNGD's engine (bnlib.ols.normalized_excess)."""
    dA, _, t, G = _terms(problem, A, W)
    return normalized_excess(dA, t, np.einsum("...i,...i->...", G, problem.u_star),
                             np.einsum("...i,...i->...", W, G))


def bn_flow(problem, t_end, steps, a0, w0, *, lr_a=1.0, blowup=1e10):
    """Integrate the gradient flow of J(a, w) with fixed-step RK4 from a batch of starts.

    Parameters
    ----------
    problem : bnlib.ols.OLS
    t_end : float
        Final time T > 0 (the flow's counterpart of BNGD's ``lr`` times ``steps``).
    steps : int
        Number n ≥ 1 of RK4 steps of size T/n; every step is recorded.
    a0 : float or array_like
        Initial scale(s), broadcast with ``w0.shape[:-1]`` and ``lr_a``.
    w0 : array_like, shape (d,) or (B..., d)
        Initial weights; nonzero.
    lr_a : float or array_like
        Relative speed ρ_a > 0 of a: da/dt = −ρ_a ∂_a J (BNGD with steps ε, ε_a
        follows the flow with ρ_a = ε_a/ε).
    blowup : float, optional
        A run is flagged as diverged (and its later states set to ``nan``) once its state is
        not finite or its loss exceeds ``blowup * max(J(a0, w0), c/2)``.

    Returns
    -------
    FlowRun
    """
    check_problem(problem)
    t_end = v.positive_scalar(t_end, "t_end")
    steps = v.count(steps, "steps", minimum=1)
    a0 = v.finite_array(a0, "a0")
    w0 = v.vector_batch(w0, "w0", problem.d)
    lr_a = v.positive_array(lr_a, "lr_a")
    blowup = v.blowup(blowup)
    B = v.broadcast(a0=a0.shape, **{"w0[..., 0]": w0.shape[:-1]}, lr_a=lr_a.shape)
    if np.any(np.einsum("...i,...i->...", w0 @ problem.H, w0) <= 0):
        raise ValueError("w0 must be nonzero: BN is undefined at w = 0")
    A = np.array(np.broadcast_to(a0, B), dtype=float)
    W = np.array(np.broadcast_to(w0, B + (problem.d,)), dtype=float)
    ra = np.broadcast_to(lr_a, B)
    h = t_end / steps
    alive = np.ones(B, dtype=bool)
    As, Ws, excesses = [], [], []
    with np.errstate(all="ignore"):
        exc = _excess(problem, A, W)
        limit = divergence_limit(problem.min_loss + exc, problem.c, blowup) - problem.min_loss
        for k in range(steps + 1):
            alive &= (np.isfinite(A) & np.all(np.isfinite(W), axis=-1) & np.isfinite(exc)
                      & (exc <= limit))
            A, W = masked(alive, A, np.nan), masked(alive, W, np.nan, vec=True)
            As.append(A)
            Ws.append(W)
            excesses.append(masked(alive, exc, np.inf))
            if k == steps:
                break
            k1a, k1w = _field(problem, A, W, ra)
            k2a, k2w = _field(problem, A + 0.5 * h * k1a, W + 0.5 * h * k1w, ra)
            k3a, k3w = _field(problem, A + 0.5 * h * k2a, W + 0.5 * h * k2w, ra)
            k4a, k4w = _field(problem, A + h * k3a, W + h * k3w, ra)
            A = A + (h / 6.0) * (k1a + 2.0 * k2a + 2.0 * k3a + k4a)
            W = W + (h / 6.0) * (k1w + 2.0 * k2w + 2.0 * k3w + k4w)
            exc = _excess(problem, A, W)
        W_all, excess = np.stack(Ws), np.stack(excesses)
        loss, w_norm = problem.min_loss + excess, np.linalg.norm(W_all, axis=-1)
    return FlowRun(t=np.linspace(0.0, t_end, steps + 1), a=np.stack(As), w=W_all, loss=loss,
                   excess=excess, w_norm=w_norm, diverged=v.scalar_or_array(~alive, to=None))
