"""The step-size searches of :mod:`bnlib.linearize`: GD's closed-form excess and step counts,
its best constant step, the windows of good steps of GD and BNGD, and BNGD's acceleration
over GD. The names are documented and imported as :mod:`bnlib.linearize`'s, which
re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate as v
from . import theory
from ._engine import check_problem
from .descent import bngd

__all__ = ["gd_excess", "gd_steps_to", "gd_best_step", "gd_window", "bngd_window",
           "asymptotic_speedup", "Acceleration", "compare_acceleration"]


def _problem(problem):
    check_problem(problem)
    return problem


def _modes(problem, w0):
    p = _problem(problem)
    w0 = v.vector_batch(w0, "w0", p.d)
    if w0.ndim != 1:
        raise ValueError(f"w0 must have shape ({p.d},), got {w0.shape}")
    lam, Q = np.linalg.eigh(p.H)
    weight = 0.5 * lam * (Q.T @ (w0 - p.u_star)) ** 2      # J0 − J* = ½ Σ λ_i c_i² at k = 0
    return lam, weight


def gd_excess(problem, lr, k, w0):
    """J0(w_k) − J* of GD from w0 after k steps, in closed form (no iteration).

    ``½ Σ_i λ_i c_i² (1 − ε λ_i)^{2k}`` with c = Qᵀ(w0 − u*) in H's eigenbasis.

    Parameters
    ----------
    problem : OLS
    lr : float or array_like, > 0
    k : int or array_like of int, >= 0
        Broadcast with ``lr``.
    w0 : array_like, shape (d,)

    Returns
    -------
    float or numpy.ndarray, shape ``broadcast(lr, k)``; ``inf`` where it overflows
    """
    lam, weight = _modes(problem, w0)
    lr = v.positive_array(lr, "lr")
    k = v.finite_array(k, "k")
    if np.any(k < 0) or np.any(k != np.round(k)):
        raise ValueError("k must hold non-negative integers")
    lr, k = np.broadcast_arrays(lr, k)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        log_f = np.log(np.abs(1.0 - lr[..., None] * lam))
        terms = weight * np.exp(np.where(k[..., None] == 0, 0.0, 2 * k[..., None] * log_f))
    out = np.sum(terms, axis=-1)
    return float(out) if out.ndim == 0 else out


def gd_steps_to(problem, lr, w0, tol, max_steps):
    """Fewest GD steps k <= max_steps with J0(w_k) − J* <= tol, from the closed form.

    For 0 < ε <= 2/λ_max the excess never increases, so the count is found by bisection in
    k, vectorised over ``lr``.

    Parameters
    ----------
    problem : OLS
    lr : float or array_like, > 0
    w0 : array_like, shape (d,)
    tol : float, > 0
    max_steps : int, >= 1

    Returns
    -------
    float or numpy.ndarray of float, shape of ``lr``; ``inf`` where not reached in
    ``max_steps`` steps (always so above the stability edge, unless reached at k = 0)
    """
    p = _problem(problem)
    lr = v.positive_array(lr, "lr")
    tol = v.positive_scalar(tol, "tol")
    max_steps = v.count(max_steps, "max_steps", minimum=1)
    lo = np.zeros(lr.shape)                          # excess(lo) > tol unless lo == 0 reached
    hi = np.full(lr.shape, float(max_steps))
    reached0 = gd_excess(p, np.ones(()), 0, w0) <= tol
    ok = np.asarray(gd_excess(p, lr, hi, w0)) <= tol
    stable = lr <= theory.gd_lr_max(p.H) * (1 + 1e-12)
    for _ in range(int(np.ceil(np.log2(max_steps))) + 1):
        mid = np.floor((lo + hi) / 2)
        good = np.asarray(gd_excess(p, lr, mid, w0)) <= tol
        hi = np.where(good, mid, hi)
        lo = np.where(good, lo, mid)
    out = np.where(reached0, 0.0, np.where(ok & stable, hi, np.inf))
    return float(out) if out.ndim == 0 else out


def gd_best_step(problem, w0, tol, max_steps, n_grid=2001, refine=3):
    """GD's best constant step for reaching J0 − J* <= tol from w0, by a fine search.

    The step count of :func:`gd_steps_to` is evaluated on ``n_grid`` steps spread evenly
    over (0, 2/λ_max]; the grid is then refined ``refine`` times around the largest
    count-minimising step, each time to a span of four old grid cells. The step returned is
    the midpoint of the smallest and largest count-minimising steps seen on all grids when
    that midpoint reaches the same count (else the largest one). The largest sits on the
    boundary where the count changes, so its excess meets ``tol`` at the last step almost
    exactly and its count could move by one on another machine; the midpoint keeps a margin.

    Parameters
    ----------
    problem : OLS
    w0 : array_like, shape (d,)
    tol : float, > 0
    max_steps : int, >= 1
    n_grid : int, >= 3
    refine : int, >= 0

    Returns
    -------
    lr_best : float
    steps_best : float
        ``inf`` if no step reaches ``tol`` within ``max_steps``.
    """
    p = _problem(problem)
    n_grid = v.count(n_grid, "n_grid", minimum=3)
    refine = v.count(refine, "refine", minimum=0)
    edge = theory.gd_lr_max(p.H)
    grid = np.linspace(edge / n_grid, edge, n_grid)
    seen_lr, seen_steps = [], []
    for level in range(refine + 1):
        steps = gd_steps_to(p, grid, w0, tol, max_steps)
        seen_lr.append(grid)
        seen_steps.append(steps)
        i = int(np.flatnonzero(steps == steps.min())[-1])
        if level < refine:
            h = grid[1] - grid[0]
            grid = np.linspace(max(grid[i] - 2 * h, h / n_grid), min(grid[i] + 2 * h, edge), n_grid)
    lrs, counts = np.concatenate(seen_lr), np.concatenate(seen_steps)
    best = counts.min()
    if not np.isfinite(best):
        return float(grid[i]), float(best)
    at_best = lrs[counts == best]
    mid = 0.5 * (at_best.min() + at_best.max())
    if gd_steps_to(p, mid, w0, tol, max_steps) == best:
        return float(mid), float(best)
    return float(at_best.max()), float(best)


def gd_window(problem, w0, steps, tol, n_grid=4001, iters=60):
    """The interval of GD steps ε with J0(w_K) − J* <= tol after K = ``steps`` steps.

    Found from the closed form :func:`gd_excess`: a log grid over (0, 2/λ_max] locates the
    interval, bisection in log ε sharpens both ends to about 2^-iters of a grid cell.

    Parameters
    ----------
    problem : OLS
    w0 : array_like, shape (d,)
    steps : int, >= 1
    tol : float, > 0
    n_grid : int, >= 3
    iters : int, >= 1

    Returns
    -------
    lo, hi : float
        The ends of the window.

    Raises
    ------
    ValueError
        If no step of the grid reaches ``tol``, or the set of such steps on the grid is not
        one interval.
    """
    p = _problem(problem)
    steps = v.count(steps, "steps", minimum=1)
    tol = v.positive_scalar(tol, "tol")
    edge = theory.gd_lr_max(p.H)
    log_grid = np.linspace(np.log(edge) - 12 * np.log(10), np.log(edge), n_grid)
    good = gd_excess(p, np.exp(log_grid), steps, w0) <= tol
    if not np.any(good):
        raise ValueError("no GD step reaches tol within steps")
    idx = np.flatnonzero(good)
    if np.any(np.diff(idx) != 1):
        raise ValueError("the steps that reach tol do not form one interval on the grid")
    if idx[0] == 0 or idx[-1] == n_grid - 1:
        raise ValueError("the window reaches the end of the search grid")
    ends = []
    for inside, outside in ((idx[0], idx[0] - 1), (idx[-1], idx[-1] + 1)):
        x_in, x_out = log_grid[inside], log_grid[outside]
        for _ in range(iters):
            mid = 0.5 * (x_in + x_out)
            if gd_excess(p, np.exp(mid), steps, w0) <= tol:
                x_in = mid
            else:
                x_out = mid
        ends.append(float(np.exp(x_in)))
    return ends[0], ends[1]


def bngd_window(problem, a0, w0, steps, tol, lr_a=1.0, *, inside, below, above,
                rel_tol=1e-3, points=7):
    """The ends of the interval of BNGD steps ε with J − J* <= tol after ``steps`` steps.

    Multi-section in log ε with real BNGD runs: each round runs ``points`` step sizes inside
    each of the two brackets [below, inside] and [inside, above] in one vectorised call and
    keeps the sub-bracket where the outcome changes, until both brackets are narrower than
    ``rel_tol`` (relative). It assumes the set is one interval containing ``inside``; the
    outcome at the three given points is checked.

    Parameters
    ----------
    problem : OLS
    a0 : float
    w0 : array_like, shape (d,)
    steps : int, >= 1
    tol : float, > 0
    lr_a : float, > 0
    inside : float
        A step size that reaches ``tol``.
    below, above : float
        Step sizes below and above ``inside`` that do not.
    rel_tol : float, > 0
    points : int, >= 1

    Returns
    -------
    lo, hi : float
        The smallest and largest step sizes found that reach ``tol`` (within ``rel_tol``
        of the true ends, if the set is an interval).

    Raises
    ------
    ValueError
        If the outcomes at ``below``, ``inside``, ``above`` are not (no, yes, no).
    """
    p = _problem(problem)
    steps = v.count(steps, "steps", minimum=1)
    tol = v.positive_scalar(tol, "tol")
    rel_tol = v.positive_scalar(rel_tol, "rel_tol")
    points = v.count(points, "points", minimum=1)
    inside, below, above = (v.positive_scalar(x, n) for x, n in
                            ((inside, "inside"), (below, "below"), (above, "above")))
    if not below < inside < above:
        raise ValueError("need below < inside < above")

    def reached(lrs):
        run = bngd(p, lrs, steps, a0, w0, lr_a=lr_a, record="loss")
        return (run.excess[-1] <= tol) & ~run.diverged

    check = reached(np.array([below, inside, above]))
    if not (not check[0] and check[1] and not check[2]):
        raise ValueError(f"outcomes at (below, inside, above) must be (no, yes, no), got {check}")
    # brackets as (log of the reaching end, log of the failing end)
    br = np.log(np.array([[inside, below], [inside, above]]))
    while np.max(np.abs(br[:, 0] - br[:, 1])) > np.log1p(rel_tol):
        t = np.arange(1, points + 1) / (points + 1)
        x = br[:, :1] + t * (br[:, 1:] - br[:, :1])              # (2, points)
        ok = reached(np.exp(x.ravel())).reshape(x.shape)
        for j in range(2):
            n_in = int(np.argmin(ok[j])) if not np.all(ok[j]) else points
            new_in = x[j, n_in - 1] if n_in > 0 else br[j, 0]
            new_out = x[j, n_in] if n_in < points else br[j, 1]
            br[j] = new_in, new_out
    return float(np.exp(br[0, 0])), float(np.exp(br[1, 0]))


def asymptotic_speedup(problem):
    """log ρ_BN / log ρ_GD at the best steps: the ratio of step counts for a tiny tolerance.

    ρ_GD = (κ − 1)/(κ + 1) at ε_opt and ρ_BN = (κ* − 1)/(κ* + 1) at BNGD's best effective
    step; far into the asymptotic regime GD needs this many times BNGD's steps. ``inf``
    when κ* = 1 < κ (BNGD's best rate is 0).
    """
    p = _problem(problem)
    k, ks = theory.kappa(p.H), theory.kappa_star(p.H, p.u_star)
    rho_gd, rho_bn = (k - 1) / (k + 1), (ks - 1) / (ks + 1)
    if rho_bn == 0:                      # κ* = 1; κ = 1 too means both finish in one step
        return 1.0 if rho_gd == 0 else np.inf
    return float(np.log(rho_bn) / np.log(rho_gd))


@dataclass(frozen=True, kw_only=True)
class Acceleration:
    """The result of :func:`compare_acceleration`.

    Attributes
    ----------
    gd_lr_opt, gd_steps_opt : float
        GD at ε_opt = 2/(λ_min + λ_max), GD's best asymptotic step, and its step count.
    gd_lr_best, gd_steps_best : float
        GD's best constant step for this tolerance and start (:func:`gd_best_step`).
    lr, bngd_steps, lr_eff : numpy.ndarray, shape (M,)
        BNGD's step sizes, its step counts (``inf`` if not reached) and the effective step
        ε a_K²/‖w_K‖²_H it ended with.
    bngd_steps_best : float
        The fewest BNGD steps over ``lr``.
    speedup_opt, speedup_best : float
        gd_steps_opt / bngd_steps_best and gd_steps_best / bngd_steps_best.
    speedup_asymptotic : float
        :func:`asymptotic_speedup`.
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
    """Steps to J − J* <= tol: BNGD over step sizes ``lr`` against GD at ε_opt and at its
    best step for this tolerance, from the same w0; plus the asymptotic ratio.

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
    p = _problem(problem)
    lr = v.positive_array(lr, "lr")
    if lr.ndim != 1:
        raise ValueError(f"lr must be one-dimensional, got shape {lr.shape}")
    lr_opt = float(theory.gd_lr_opt(p.H))
    steps_opt = gd_steps_to(p, lr_opt, w0, tol, max_steps)
    lr_best, steps_best = gd_best_step(p, w0, tol, max_steps)
    run = bngd(p, lr, max_steps, a0, w0, lr_a=lr_a, tol=tol, record="loss")
    bn_steps = np.asarray(run.steps_to(tol), dtype=float)
    best = float(np.min(bn_steps))
    return Acceleration(gd_lr_opt=lr_opt, gd_steps_opt=steps_opt, gd_lr_best=lr_best,
                        gd_steps_best=steps_best, lr=lr, bngd_steps=bn_steps,
                        lr_eff=run.lr_eff[-1], bngd_steps_best=best,
                        speedup_opt=steps_opt / best, speedup_best=steps_best / best,
                        speedup_asymptotic=asymptotic_speedup(p))
