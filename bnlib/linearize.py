"""BNGD near a minimiser, and GD's best constant step: what the rate chapters compare.

Write BNGD's state through the OLS weight it represents, u = a w/‖w‖_H. To first order in
the error u − u*, one BNGD step is

    u_{k+1} − u* ≈ [I − ε_a (I − P_k) − ε̂_k P_k H P_k] (u_k − u*),

with the *effective step* ε̂_k = ε a_k²/‖w_k‖²_H and P_k = I − w_k w_kᵀH/‖w_k‖²_H the
H-orthogonal projector off w_k: the scale a corrects the component along w_k (factor
1 − ε_a) and the direction of w does GD with step ε̂_k on the H-orthogonal complement of
w_k (:func:`linear_map`). At a minimiser w ∥ u* and P H P has the nonzero spectrum of the
effective Hessian H* of :mod:`bnlib.theory`; at a saddle the linearisation shows that every
saddle repels BNGD. Measured rates come from :func:`contraction`; a tail that follows a fast
mode after the slow one was damped looks steady too, so such a rate is a lower bound (chapter
05 tests it per mode with :func:`mode_coordinates`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import PUBLIC, theory
from . import checks as v
from .descent import bngd
from .ols import check_problem

__all__ = list(PUBLIC["linearize"])


def _steps_and_weight(problem, lr, lr_a, w):
    """(p, ε, ε_a, w) for a single state: two steps > 0 and one weight of shape (d,)."""
    p = check_problem(problem)
    lr = v.positive_scalar(lr, "lr")
    lr_a = v.positive_scalar(lr_a, "lr_a")
    w = v.vector_batch(w, "w", p.d)
    if w.ndim != 1:
        raise ValueError(f"w must have shape ({p.d},), got {w.shape}")
    return p, lr, lr_a, w


def effective_step(problem, lr, a, w):
    """Return the effective step ε̂ = ε a²/‖w‖²_H of BNGD at the state (a, w).

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
    """
    p = check_problem(problem)
    lr = v.positive_array(lr, "lr")
    a = v.finite_array(a, "a")
    n2 = p.h_norm(w) ** 2
    if np.any(n2 <= 0):
        raise ValueError("w must be nonzero")
    out = lr * a**2 / n2
    return v.scalar_or_array(out)


def h_projector(problem, w):
    """P = I − w wᵀH/‖w‖²_H, the H-orthogonal projector off w.

    P w = 0, P² = P and H P is symmetric (P is self-adjoint in the H-inner product).
    ``w`` (..., d) is nonzero, as in :func:`effective_step`; shape (..., d, d).
    """
    p = check_problem(problem)
    w = v.vector_batch(w, "w", p.d)
    Hw = w @ p.H
    n2 = np.einsum("...i,...i->...", Hw, w)
    if np.any(n2 <= 0):
        raise ValueError("w must be nonzero")
    return np.eye(p.d) - w[..., :, None] * Hw[..., None, :] / n2[..., None, None]


def linear_map(problem, lr, lr_a, a, w):
    """Return the matrix M_k with u_{k+1} − u* ≈ M_k (u_k − u*) for one BNGD step from (a, w).

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
    problem, lr, lr_a, a, w
        As in :func:`linear_map`.
    h : float, > 0
        The difference step.

    Returns
    -------
    numpy.ndarray, shape (d + 1, d + 1)
        Rows and columns ordered (a, w_1, …, w_d).
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
    """
    p = check_problem(problem)
    u = v.vector_batch(u, "u", p.d)
    lam, V = np.linalg.eigh(theory.effective_hessian(p.H, p.u_star))
    return lam[1:], (u - p.u_star) @ V[:, 1:]


def saddle_multipliers(problem, lr, lr_a, w):
    """Return the two nontrivial eigenvalues of one BNGD step linearised at the saddle (0, w).

    At a = 0 and wᵀg = 0 the state is a fixed point of BNGD. To first order in a and
    p = wᵀg, one step maps (a, p) by ``[[1 − ε_a, ε_a/‖w‖_H], [ε‖g‖²/‖w‖_H, 1]]`` (the
    other d − 1 directions of w, along the set of saddles, have eigenvalue 1). With
    η = ε‖g‖²/‖w‖²_H its eigenvalues are

        T± = ((2 − ε_a) ± sqrt(ε_a² + 4 ε_a η)) / 2,

    and T+ > 1 for every ε, ε_a > 0: the saddle is unstable, and a start at distance δ
    from it needs about log(1/δ)/log T+ steps more to leave it.

    Parameters
    ----------
    problem, lr, lr_a
        As in :func:`linear_map`.
    w : array_like, shape (d,)
        A saddle's weight: nonzero, with wᵀg = 0 up to rounding
        (``|wᵀg| <= 1e-9 ‖w‖ ‖g‖``, else ``ValueError``).

    Returns
    -------
    t_plus, t_minus : float
        The unstable eigenvalue T+ > 1 and the other one, T−.
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
            below = np.sum(z2 / (lam - mid[..., None]), axis=-1) < 1   # the sum increases with mu
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    return v.scalar_or_array(root(lam[-2], lam[-1]) / root(lam[0], lam[1]))


def wn_jacobian(H, u_star, lr, lr_a, s=1.0) -> np.ndarray:
    """Jacobian of one WNGD step at the minimiser (a*, w*) = (‖u*‖, s û).

    In the variables (a, w_1, …, w_d) it is

        I − diag(ε_a, ε I) M,  M = [[ûᵀHû, (a*/s) ûᵀHP], [(a*/s) PHû, (a*/s)² PHP]].

    ``H`` and ``u_star`` as in :func:`~bnlib.theory.wn_effective_hessian`; the steps ε, ε_a
    and ``s`` = ‖w*‖ are > 0. Shape (d + 1, d + 1).
    """
    H, uh, nu = theory.split_u(H, u_star)
    lr, lr_a, s = (v.positive_scalar(x, nm) for x, nm in ((lr, "lr"), (lr_a, "lr_a"), (s, "s")))
    d = H.shape[0]
    P = np.eye(d) - np.outer(uh, uh)
    C = np.concatenate([uh[:, None], (nu / s) * P], axis=1)          # du/d(a, w)
    M = C.T @ H @ C
    return np.eye(d + 1) - np.concatenate([[lr_a], np.full(d, lr)])[:, None] * M


@dataclass(frozen=True, kw_only=True)
class Acceleration:
    """The result of :func:`compare_acceleration`.

    Attributes
    ----------
    gd_lr_opt, gd_steps_opt : float
        GD at ε_opt = 2/(λ_min + λ_max), GD's best asymptotic step, and its step count.
    gd_lr_best, gd_steps_best : float
        GD's best constant step for this tolerance and start (:func:`~bnlib.theory.gd_best_step`).
    lr, bngd_steps, lr_eff : numpy.ndarray, shape (M,)
        BNGD's step sizes, its step counts (``inf`` if not reached) and the effective step
        ε a_K²/‖w_K‖²_H it ended with.
    bngd_steps_best : float
        The fewest BNGD steps over ``lr``.
    speedup_opt, speedup_best : float
        gd_steps_opt / bngd_steps_best and gd_steps_best / bngd_steps_best.
    speedup_asymptotic : float
        :func:`~bnlib.theory.asymptotic_speedup`.
    """

    gd_lr_opt: float
    gd_steps_opt: float
    gd_lr_best: float
    gd_steps_best: float
    lr: np.ndarray
    bngd_steps: np.ndarray
    lr_eff: np.ndarray
    bngd_steps_best: float
    speedup_opt: float
    speedup_best: float
    speedup_asymptotic: float


def compare_acceleration(problem, lr, a0, w0, tol, max_steps, lr_a=1.0):
    """Count the steps to J − J* <= tol of BNGD and GD from the same w0.

    BNGD runs over the step sizes ``lr``; GD runs at ε_opt and at its best step for this
    tolerance. The asymptotic ratio of step counts comes too.

    Parameters
    ----------
    problem : OLS
    lr : array_like, shape (M,), > 0
        BNGD's weight steps, run in one vectorised call.
    a0 : float
    w0 : array_like, shape (d,)
    tol : float, > 0
    max_steps : int, >= 1
    lr_a : float, > 0

    Returns
    -------
    Acceleration
    """
    p = check_problem(problem)
    lr = v.positive_array(lr, "lr")
    if lr.ndim != 1:
        raise ValueError(f"lr must be one-dimensional, got shape {lr.shape}")
    lr_opt = float(theory.gd_lr_opt(p.H))
    steps_opt = theory.gd_steps_to(p, lr_opt, w0, tol, max_steps)
    lr_best, steps_best = theory.gd_best_step(p, w0, tol, max_steps)
    run = bngd(p, lr, max_steps, a0, w0, lr_a=lr_a, tol=tol, record="loss")
    bn_steps = np.asarray(run.steps_to(tol), dtype=float)
    best = float(np.min(bn_steps))
    return Acceleration(gd_lr_opt=lr_opt, gd_steps_opt=steps_opt, gd_lr_best=lr_best,
                        gd_steps_best=steps_best, lr=lr, bngd_steps=bn_steps,
                        lr_eff=run.lr_eff[-1], bngd_steps_best=best,
                        speedup_opt=steps_opt / best, speedup_best=steps_best / best,
                        speedup_asymptotic=theory.asymptotic_speedup(p))


@dataclass(frozen=True, kw_only=True)
class Contraction:
    """The result of :func:`~bnlib.linearize.contraction`; every field has the batch shape B of the history.

    Attributes
    ----------
    rate : float or numpy.ndarray, shape B
        Estimated per-step factor ρ of the error (the history's factor to the power
        ``1/power``); ``nan`` when fewer than two usable points remain.
    steady : bool or numpy.ndarray of bool, shape B
        True when at least ``min_points`` points were used, the run did not diverge, the
        history fell by at least ``min_decay`` across the fitted tail, and the log-slopes
        fitted on the two halves of the tail agree to ``rtol``: the run is in its asymptotic
        regime and ``rate`` can be compared with a theory.
    points : int or numpy.ndarray of int, shape B
        Number of history entries the fit used.
    diverged : bool or numpy.ndarray of bool, shape B
        True when the history holds a non-finite entry (a diverged bnlib run).
    """

    rate: np.ndarray
    steady: np.ndarray
    points: np.ndarray
    diverged: np.ndarray


def _slope(logh, mask):
    """Least-squares slope of logh[k] against k over the entries where mask is True (axis 0)."""
    k = np.arange(logh.shape[0], dtype=float).reshape((-1,) + (1,) * (logh.ndim - 1))
    n = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        km = np.where(mask, k, 0.0).sum(axis=0) / n
        ym = np.where(mask, logh, 0.0).sum(axis=0) / n
        dk = np.where(mask, k - km, 0.0)
        num = (dk * np.where(mask, logh - ym, 0.0)).sum(axis=0)
        den = (dk * dk).sum(axis=0)
        return np.where(n >= 2, num / den, np.nan)


def contraction(history, *, power=1.0, floor=None, rel_floor=1e-12, tail=0.5, min_points=8,
                rtol=0.05, min_decay=1e3):
    """Asymptotic per-step contraction factor of nonnegative histories, vectorised over runs.

    Parameters
    ----------
    history : array_like, shape (K+1, B...)
        Nonnegative values h_0, …, h_K per run along axis 0, e.g. ``run.excess`` of
        :func:`~bnlib.descent.gd` or :func:`~bnlib.descent.bngd` (``inf`` or ``nan`` marks
        divergence). Entries
        at or below the floor, including the tiny negative values that rounding can give an
        excess near 0, end the usable part of the history.
    power : float, optional
        The history behaves like error^power; the returned rate is the error's factor
        (use 2 for a loss excess to compare with :func:`bnlib.theory.gd_rate`).
    floor : float, optional
        Absolute floor: a run's usable history ends before the first entry ≤ ``floor``.
        Default ``rel_floor * h_0`` per run.
    rel_floor : float, optional
        Relative floor used when ``floor`` is not given; must lie in (0, 1).
    tail : float, optional
        Fraction in (0, 1] of the usable history, counted from its end, that the fit uses
        (at least ``min_points`` entries when available).
    min_points : int, optional
        Minimum number of fitted points for ``steady``; at least 4.
    rtol : float, optional
        Relative agreement required between the log-slopes of the two halves of the tail.
    min_decay : float, optional
        Factor ≥ 1 by which the history must fall across the fitted tail for ``steady``. A
        mixture of slowly decaying modes has a tail slope that drifts too slowly for the
        two-halves test to notice; requiring real progress over the tail rules it out.

    Returns
    -------
    Contraction
        Fields of shape B (Python scalars when B = ()).

    Examples
    --------
    >>> import numpy as np
    >>> h = 3.0 * 0.81 ** np.arange(60)
    >>> float(round(contraction(h, power=2).rate, 12))
    0.9
    """
    h = v.as_real_array(history, "history")
    if h.ndim == 0 or h.shape[0] < 2:
        raise ValueError(f"history must have shape (K+1, ...) with K >= 1, got shape {h.shape}")
    if np.any(h[0] < 0):  # later negative entries are rounding noise of an excess: see floor
        raise ValueError(f"history must start nonnegative, got history[0] minimum {np.nanmin(h[0]):.3g}")
    power = v.positive_scalar(power, "power")
    rel_floor = v.positive_scalar(rel_floor, "rel_floor")
    if rel_floor >= 1:
        raise ValueError(f"rel_floor must be in (0, 1), got {rel_floor}")
    floor = None if floor is None else v.positive_scalar(floor, "floor")
    tail = v.positive_scalar(tail, "tail")
    if tail > 1:
        raise ValueError(f"tail must be in (0, 1], got {tail}")
    min_points = v.count(min_points, "min_points", minimum=4)
    rtol = v.positive_scalar(rtol, "rtol")
    min_decay = v.positive_scalar(min_decay, "min_decay")
    if min_decay < 1:
        raise ValueError(f"min_decay must be >= 1, got {min_decay}")

    finite = np.isfinite(h)
    diverged = ~np.all(finite, axis=0)
    lim = floor if floor is not None else rel_floor * np.where(finite[0], h[0], np.inf)
    ok = finite & (h > lim)
    # usable prefix: entries before the first one that is non-finite or at/below the floor
    usable = np.cumprod(ok, axis=0).astype(bool)
    n_use = usable.sum(axis=0)
    n_fit = np.minimum(n_use, np.maximum(np.ceil(tail * n_use).astype(int), min_points))
    k = np.arange(h.shape[0]).reshape((-1,) + (1,) * (h.ndim - 1))
    start = n_use - n_fit
    fit = usable & (k >= start)
    mid = start + n_fit // 2
    with np.errstate(divide="ignore", invalid="ignore"):
        logh = np.log(np.where(usable, h, 1.0))
    slope = _slope(logh, fit)
    s1 = _slope(logh, fit & (k < mid))
    s2 = _slope(logh, fit & (k >= mid))
    with np.errstate(invalid="ignore"):
        agree = np.abs(s1 - s2) <= rtol * np.maximum(np.abs(s1), np.abs(s2)) + 1e-12
    last = np.take_along_axis(np.where(usable, h, np.nan), np.maximum(n_use - 1, 0)[None], axis=0)[0]
    first = np.take_along_axis(np.where(usable, h, np.nan), start[None], axis=0)[0]   # start <= K
    with np.errstate(invalid="ignore", divide="ignore"):
        decayed = first >= min_decay * last
    steady = (n_fit >= min_points) & ~diverged & agree & decayed
    rate, steady, n_fit, diverged = (v.scalar_or_array(x, None)
                                     for x in (np.exp(slope / power), steady, n_fit, diverged))
    return Contraction(rate=rate, steady=steady, points=n_fit, diverged=diverged)
