"""BNGD near a minimiser, and GD's best constant step: what the rate chapters compare.

Write BNGD's state through the OLS weight it represents, u = a w/‖w‖_H. To first order in
the error u − u*, one BNGD step is

    u_{k+1} − u* ≈ [I − ε_a (I − P_k) − ε̂_k P_k H P_k] (u_k − u*),

with the *effective step* ε̂_k = ε a_k²/‖w_k‖²_H and P_k = I − w_k w_kᵀH/‖w_k‖²_H the
H-orthogonal projector off w_k: the scale a corrects the component along w_k (factor
1 − ε_a) and the direction of w does GD with step ε̂_k on the H-orthogonal complement of
w_k (:func:`linear_map`). At a minimiser w ∥ u* and P H P has the nonzero spectrum of the
effective Hessian H* of :mod:`bnlib.theory`.

At a saddle (a = 0, wᵀg = 0) the same kind of linearisation, in the two scalars a and
p = wᵀg, gives the 2×2 matrix [[1 − ε_a, ε_a/‖w‖_H], [ε‖g‖²/‖w‖_H, 1]]; its larger
eigenvalue exceeds 1 for every ε, ε_a > 0, so every saddle repels BNGD
(:func:`saddle_multipliers`).

GD's speed depends on what is asked of it: ε_opt = 2/(λ_min + λ_max) gives the best
*asymptotic* contraction, but the fewest steps to a given tolerance from a given start can
need another step (:func:`gd_best_step`). :func:`compare_acceleration` puts BNGD against
both, and against the ratio of best asymptotic rates (:func:`asymptotic_speedup`). These
step-size searches, GD's closed forms and the windows of good steps (:func:`gd_window`,
:func:`bngd_window`) live in the private module ``bnlib._gdsteps`` and are exported here.
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from . import theory
from ._engine import check_problem
from ._gdsteps import (
    Acceleration,
    asymptotic_speedup,
    bngd_window,
    compare_acceleration,
    gd_best_step,
    gd_excess,
    gd_steps_to,
    gd_window,
)
from .descent import bngd

__all__ = [
    "effective_step",
    "h_projector",
    "linear_map",
    "step_jacobian",
    "mode_coordinates",
    "gd_excess",
    "gd_steps_to",
    "gd_best_step",
    "gd_window",
    "bngd_window",
    "saddle_multipliers",
    "asymptotic_speedup",
    "kappa_star_eigenbasis",
    "Acceleration",
    "compare_acceleration",
]


def _problem(problem):
    check_problem(problem)
    return problem


def _steps_and_weight(problem, lr, lr_a, w):
    """(p, ε, ε_a, w) for a single state: two steps > 0 and one weight of shape (d,)."""
    p = _problem(problem)
    lr = v.positive_scalar(lr, "lr")
    lr_a = v.positive_scalar(lr_a, "lr_a")
    w = v.vector_batch(w, "w", p.d)
    if w.ndim != 1:
        raise ValueError(f"w must have shape ({p.d},), got {w.shape}")
    return p, lr, lr_a, w


def effective_step(problem, lr, a, w):
    """The effective step ε̂ = ε a²/‖w‖²_H of BNGD at the state (a, w).

    Parameters
    ----------
    problem : OLS
    lr : float or array_like, > 0
        The weight step ε.
    a : float or array_like
    w : array_like, shape (..., d), nonzero

    Returns
    -------
    float or numpy.ndarray, shape ``broadcast(lr, a, w.shape[:-1])``

    Raises
    ------
    TypeError, ValueError
        On a problem that is not an OLS, ``lr <= 0``, or a zero or misshaped ``w``.
    """
    p = _problem(problem)
    lr = v.positive_array(lr, "lr")
    a = v.finite_array(a, "a")
    n2 = p.h_norm(w) ** 2
    if np.any(n2 <= 0):
        raise ValueError("w must be nonzero")
    out = lr * a**2 / n2
    return float(out) if np.ndim(out) == 0 else out


def h_projector(problem, w):
    """P = I − w wᵀH/‖w‖²_H, the H-orthogonal projector off w.

    P w = 0, P² = P and H P is symmetric (P is self-adjoint in the H-inner product).

    Parameters
    ----------
    problem : OLS
    w : array_like, shape (..., d), nonzero

    Returns
    -------
    numpy.ndarray, shape (..., d, d)
    """
    p = _problem(problem)
    w = v.vector_batch(w, "w", p.d)
    Hw = w @ p.H
    n2 = np.einsum("...i,...i->...", Hw, w)
    if np.any(n2 <= 0):
        raise ValueError("w must be nonzero")
    return np.eye(p.d) - w[..., :, None] * Hw[..., None, :] / n2[..., None, None]


def linear_map(problem, lr, lr_a, a, w):
    """The matrix M_k with u_{k+1} − u* ≈ M_k (u_k − u*) for one BNGD step from (a, w).

    M = I − ε_a (I − P) − ε̂ P H P with P = :func:`h_projector` (w) and ε̂ =
    :func:`effective_step`. The error left is second order in u − u*.

    Parameters
    ----------
    problem : OLS
    lr, lr_a : float, > 0
        The steps ε of w and ε_a of a.
    a : float
    w : array_like, shape (d,), nonzero

    Returns
    -------
    numpy.ndarray, shape (d, d)
    """
    p, lr, lr_a, w = _steps_and_weight(problem, lr, lr_a, w)
    P = h_projector(p, w)
    eps_hat = effective_step(p, lr, float(v.finite_array(a, "a")), w)
    eye = np.eye(p.d)
    return eye - lr_a * (eye - P) - eps_hat * P @ p.H @ P


def step_jacobian(problem, lr, lr_a, a, w, h=1e-6):
    """Central-difference Jacobian of one real BNGD step in the state z = (a, w).

    The 2(d + 1) perturbed states z ± h e_j go through :func:`bnlib.descent.bngd` with
    ``steps=1`` in one vectorised call; column j is (F(z + h e_j) − F(z − h e_j))/(2h). The
    truncation error is O(h²) and the rounding error O(ε_mach/h), about 1e-9 at h = 1e-6
    for states and steps of order one.

    Parameters
    ----------
    problem : OLS
    lr, lr_a : float, > 0
        The steps ε of w and ε_a of a.
    a : float
    w : array_like, shape (d,), nonzero
    h : float, > 0
        The difference step.

    Returns
    -------
    numpy.ndarray, shape (d + 1, d + 1)
        Rows and columns ordered (a, w_1, …, w_d).

    Raises
    ------
    TypeError, ValueError
        On a problem that is not an OLS, a step or ``h`` <= 0, or a zero or misshaped ``w``.
    """
    p, lr, lr_a, w = _steps_and_weight(problem, lr, lr_a, w)
    h = v.positive_scalar(h, "h")
    z = np.concatenate([[float(v.finite_array(a, "a"))], w])
    E = h * np.eye(z.size)
    Z = np.concatenate([z + E, z - E])
    run = bngd(p, lr, 1, Z[:, 0], Z[:, 1:], lr_a=lr_a)
    out = np.concatenate([run.a[1][:, None], run.w[1]], axis=1)
    return (out[: z.size] - out[z.size :]).T / (2 * h)


def mode_coordinates(problem, u):
    """Coordinates of the error u − u* on the eigenvectors of H*: BNGD's local modes.

    Let H* v*_i = λ*_i v*_i (i = 1, …, d − 1) with unit v*_i and the nonzero eigenvalues
    λ*_i of the effective Hessian ascending. Near a minimiser with effective step ε̂, one
    BNGD step maps the error e = u − u* by I − ε_a (I − P*) − ε̂ P*HP*, whose eigenvectors
    are u* (multiplier 1 − ε_a) and P*v*_i (multiplier 1 − ε̂λ*_i). Since every v*_i is
    Euclidean-orthogonal to u* and v*_jᵀP*v*_i = δ_ij, the coordinate χ_i = v*_iᵀe reads mode
    i alone: to first order χ_i is multiplied by 1 − ε̂λ*_i per step.

    Parameters
    ----------
    problem : OLS
    u : array_like, shape (..., d)
        OLS weights, e.g. ``problem.bn_to_ols(run.a, run.w)`` of a BNGD run.

    Returns
    -------
    lam_star : numpy.ndarray, shape (d − 1,)
        λ*_1 ≤ … ≤ λ*_{d−1}.
    coords : numpy.ndarray, shape (..., d − 1)
        χ_i = v*_iᵀ(u − u*), in the order of ``lam_star``.

    Raises
    ------
    TypeError, ValueError
        On a problem that is not an OLS or a ``u`` whose last axis is not d.
    """
    p = _problem(problem)
    u = v.vector_batch(u, "u", p.d)
    lam, V = np.linalg.eigh(theory.effective_hessian(p.H, p.u_star))
    return lam[1:], (u - p.u_star) @ V[:, 1:]


def saddle_multipliers(problem, lr, lr_a, w):
    """The two nontrivial eigenvalues of one BNGD step linearised at the saddle (0, w).

    At a = 0 and wᵀg = 0 the state is a fixed point of BNGD. To first order in a and
    p = wᵀg, one step maps (a, p) by ``[[1 − ε_a, ε_a/‖w‖_H], [ε‖g‖²/‖w‖_H, 1]]`` (the
    other d − 1 directions of w, along the set of saddles, have eigenvalue 1). With
    η = ε‖g‖²/‖w‖²_H its eigenvalues are

        T± = ((2 − ε_a) ± sqrt(ε_a² + 4 ε_a η)) / 2,

    and T+ > 1 for every ε, ε_a > 0: the saddle is unstable, and a start at distance δ
    from it needs about log(1/δ)/log T+ steps more to leave it.

    Parameters
    ----------
    problem : OLS
    lr, lr_a : float, > 0
        The steps ε of w and ε_a of a.
    w : array_like, shape (d,)
        A saddle's weight: nonzero, with wᵀg = 0 up to rounding
        (``|wᵀg| <= 1e-9 ‖w‖ ‖g‖``).

    Returns
    -------
    t_plus, t_minus : float
        The unstable eigenvalue T+ > 1 and the other one, T−.

    Raises
    ------
    TypeError, ValueError
        On a problem that is not an OLS, a step <= 0, or a ``w`` that is zero, misshaped
        or not orthogonal to g.
    """
    p, lr, lr_a, w = _steps_and_weight(problem, lr, lr_a, w)
    n2 = float(p.h_norm(w)) ** 2
    if n2 <= 0:
        raise ValueError("w must be nonzero")
    gg = float(p.g @ p.g)
    if abs(float(w @ p.g)) > 1e-9 * np.linalg.norm(w) * np.sqrt(gg):
        raise ValueError("w is not at a saddle: w^T g must be 0")
    eta = lr * gg / n2
    root = np.sqrt(lr_a**2 + 4 * lr_a * eta)
    return float((2 - lr_a + root) / 2), float((2 - lr_a - root) / 2)


def kappa_star_eigenbasis(lam, u_star, iters=100):
    """κ* for H = diag(λ) (a problem written in its eigenbasis), without a d×d matrix.

    The nonzero eigenvalues of H* = diag(λ) − z zᵀ, z = λ∘u*/‖u*‖_H, solve the secular
    equation Σ_i z_i²/(λ_i − μ) = 1, with exactly one root in each (λ_i, λ_{i+1}) when the
    λ_i are distinct and every z_i ≠ 0; the extreme roots are found by bisection, vectorised
    over a stack. O(S d) per iteration instead of O(S d³).

    Parameters
    ----------
    lam : array_like, shape (d,), strictly increasing, > 0
    u_star : array_like, shape (S..., d)
        Coordinates of u* in the eigenbasis; every entry nonzero.
    iters : int
        Bisection steps (each halves the bracket).

    Returns
    -------
    float or numpy.ndarray, shape S
    """
    lam = v.positive_array(lam, "lam")
    u = v.finite_array(u_star, "u_star")
    if lam.ndim != 1 or lam.size < 2 or np.any(np.diff(lam) <= 0):
        raise ValueError("lam must be a strictly increasing vector of length >= 2")
    if u.shape[-1:] != lam.shape or np.any(u == 0):
        raise ValueError(f"u_star must have shape (..., {lam.size}) with no zero entry")
    iters = v.count(iters, "iters", minimum=1)
    z2 = (lam * u) ** 2 / np.sum(lam * u**2, axis=-1, keepdims=True)

    def root(lo, hi):
        lo, hi = np.broadcast_to(lo, z2.shape[:-1]).copy(), np.broadcast_to(hi, z2.shape[:-1]).copy()
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            f = np.sum(z2 / (lam - mid[..., None]), axis=-1) - 1  # increasing in mu
            lo, hi = np.where(f < 0, mid, lo), np.where(f < 0, hi, mid)
        return 0.5 * (lo + hi)

    out = root(lam[-2], lam[-1]) / root(lam[0], lam[1])
    return float(out) if out.ndim == 0 else out
