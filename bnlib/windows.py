"""Learning-rate windows: how many decades of step sizes reach a tolerance within a budget.

One measurement, shared by the chapters on the learning rate, the dimension and the summary,
so that a number the book states lives in one place:

- :func:`~bnlib.windows.crossing_width` measures the set {ε : y(ε) ≤ level} of a quantity y
  sampled on an increasing grid of step sizes, in decades, with the crossings of the level
  interpolated linearly in log10 ε (not counted in grid points), so the width does not move
  in steps of the grid spacing.
- :func:`~bnlib.windows.lr_windows` runs GD and BNGD on a stack of problems over a grid of
  step sizes (one :func:`~bnlib.descent.gd_stack` and one :func:`~bnlib.descent.bngd_stack`
  call) and returns, per problem, the width of the window of step sizes whose relative excess
  (J − J*)/(J0(0) − J*) after ``steps`` steps is at most ``tol``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate as v
from .descent import bngd_stack, gd_stack
from .sweeps import eigen_problem
from .theory import gd_lr_max

__all__ = ["crossing_width", "Windows", "lr_windows", "lr_study", "standard_windows", "STANDARD"]


def crossing_width(y, lr, level, axis=-1):
    """Width in decades of {ε : y(ε) ≤ level}, with crossings interpolated in log10 ε.

    ``y`` is sampled at the step sizes ``lr`` and joined linearly in x = log10 ε. Each grid
    interval contributes the part of it where that line is ≤ ``level``: all of it if both ends
    are inside, none if both are outside, and the fraction up to the interpolated crossing
    otherwise. Holes in the set are allowed. A non-finite ``y`` (``inf``, ``nan``: a diverged
    run) counts as outside, and a crossing next to it is placed at the finite grid point, so
    such an end is a lower bound, short by less than the grid interval.

    Parameters
    ----------
    y : array_like of float
        The sampled quantity (e.g. log10 of a relative excess), the grid along ``axis``.
    lr : array_like, shape (n,)
        n ≥ 2 strictly increasing step sizes > 0 (any spacing).
    level : float or array_like
        The threshold; an array broadcasts against ``y`` without ``axis``.
    axis : int
        The grid's axis of ``y`` (of length n), as in :func:`~bnlib.sweeps.log_width`.

    Returns
    -------
    float or numpy.ndarray
        One width in decades per sampled curve: ``y.shape`` with ``axis`` removed.

    Raises
    ------
    TypeError
        If ``y`` or ``level`` is not numeric.
    ValueError
        If ``lr`` is not a strictly increasing grid of ≥ 2 step sizes > 0, ``y`` has the wrong
        length along ``axis``, or ``level`` is not finite or does not broadcast.
    """
    y = np.asarray(y)
    if y.dtype == bool or not np.issubdtype(y.dtype, np.number):
        raise TypeError(f"y must be a numeric array, got dtype {y.dtype}")
    lr = v.positive_array(lr, "lr")
    if lr.ndim != 1 or lr.size < 2 or not np.all(np.diff(lr) > 0):
        raise ValueError(f"lr must be a strictly increasing 1-D grid of at least 2 step sizes, "
                         f"got {lr!r}")
    if y.ndim == 0 or y.shape[axis] != lr.size:
        raise ValueError(f"y must have {lr.size} entries along axis {axis}, got shape {y.shape}")
    level = v.finite_array(level, "level")
    y = np.moveaxis(y.astype(float), axis, -1)
    try:
        level = np.broadcast_to(level, y.shape[:-1])[..., None]
    except ValueError:
        raise ValueError(f"level of shape {level.shape} does not broadcast against "
                         f"{y.shape[:-1]}") from None
    x = np.log10(lr)
    dx = np.diff(x)
    f = np.where(np.isnan(y), np.inf, y - level)             # <= 0 inside; nan, +inf: outside
    f0, f1 = f[..., :-1], f[..., 1:]
    in0, in1 = f0 <= 0, f1 <= 0
    both = np.isfinite(f0) & np.isfinite(f1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(both, f0 / np.where(both, f0 - f1, 1.0), 0.0)
    # the crossing's position in the interval, from its left end (0) to its right end (1);
    # -inf (an excess of exactly 0) is deep inside, +inf (diverged) is just outside
    frac = np.where(f0 == -np.inf, 1.0, np.where(f1 == -np.inf, 0.0, frac))
    frac = np.where(in1 & (f0 == np.inf), 1.0, frac)
    frac = np.clip(frac, 0.0, 1.0)
    part = np.where(in0 & in1, 1.0, np.where(in0, frac, np.where(in1, 1.0 - frac, 0.0)))
    width = np.sum(part * dx, axis=-1)
    return float(width) if width.ndim == 0 else width


@dataclass(frozen=True)
class Windows:
    """The result of :func:`~bnlib.windows.lr_windows`; S problems, n step sizes, B BNGD settings.

    With several budgets (``steps`` an array of length m) every field below gains a last axis
    of length m, one entry per budget, all measured on the same runs.

    Attributes
    ----------
    lr : numpy.ndarray, shape (n,)
        The grid of step sizes.
    gd : numpy.ndarray, shape (S,), or None
        GD's window width in decades, per problem (``None`` when GD was not run).
    bngd : numpy.ndarray, shape (S, B...)
        BNGD's window width in decades, per problem and setting of ``a0``/``lr_a``.
    rel_gd : numpy.ndarray, shape (S, n), or None
        GD's relative excess after the budget (``inf`` where it diverged).
    rel_bngd : numpy.ndarray, shape (S, B..., n)
        BNGD's relative excess after the budget.
    steps : int or numpy.ndarray
        The budget K (or the budgets).
    tol : float
        The relative tolerance.
    """

    lr: np.ndarray
    gd: np.ndarray | None
    bngd: np.ndarray
    rel_gd: np.ndarray | None
    rel_bngd: np.ndarray
    steps: int | np.ndarray
    tol: float


def lr_windows(problems, lr, steps, tol, w0, a0=1.0, lr_a=1.0, *, gd=True) -> Windows:
    """Per-problem window widths of GD and BNGD at a fixed budget and relative tolerance.

    A step size ε is in the window of a method when the relative excess
    (J − J*)/(J0(0) − J*) after ``steps`` steps is ≤ ``tol`` (GD starts at w = 0, BNGD at
    ``(a0, w0)``). The width is :func:`crossing_width` of log10 of that excess against
    log10 ``tol``, so crossings are interpolated in log10 ε. GD is also run at one extra step
    size per problem, just below its stability edge 2/λ_max (1 − 10⁻⁹ times it), so that the
    right end of its window, next to divergence, is interpolated too. One
    :func:`~bnlib.descent.bngd_stack` and one :func:`~bnlib.descent.gd_stack` call; no
    randomness.

    Parameters
    ----------
    problems : sequence of bnlib.ols.OLS, length S
        Problems of equal dimension d (e.g. one per seed, from :func:`lr_study`).
    lr : array_like, shape (n,)
        Strictly increasing step sizes > 0, shared by both methods.
    steps : int or array_like of int, shape (m,)
        The budget K ≥ 1, or several budgets read off the same runs (run to the largest).
    tol : float
        Relative tolerance in (0, 1).
    w0 : array_like, shape (S, d) or (d,)
        BNGD's starting weights, one row per problem or one for all.
    a0, lr_a : float or array_like, optional
        BNGD's starting scale and scale step; arrays of shape B (e.g. several ``a0``) give
        widths of shape (S, B...). Defaults 1.
    gd : bool, optional
        Also run GD (default). When False, ``gd`` and ``rel_gd`` of the result are ``None``.

    Returns
    -------
    bnlib.windows.Windows

    Raises
    ------
    TypeError
        If an argument has the wrong type (as in :func:`bnlib.descent.bngd_stack`).
    ValueError
        If ``problems`` is empty, ``tol`` is not in (0, 1), a budget is < 1, ``lr`` is not a
        strictly increasing grid, or shapes do not match.
    """
    problems = list(problems)
    if not problems:
        raise ValueError("problems must hold at least one bnlib.OLS")
    lr = v.positive_array(lr, "lr")
    if lr.ndim != 1 or lr.size < 2 or not np.all(np.diff(lr) > 0):
        raise ValueError("lr must be a strictly increasing 1-D grid of at least 2 step sizes")
    budgets = np.array([v.count(k, "steps", minimum=1) for k in np.atleast_1d(steps).tolist()])
    if np.ndim(steps) > 1 or budgets.size == 0:
        raise ValueError(f"steps must be an integer or a 1-D sequence of integers, got {steps!r}")
    tol = v.positive_scalar(tol, "tol")
    if not tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    S = len(problems)
    w0 = np.asarray(w0, dtype=float)
    if w0.ndim == 1:
        w0 = np.broadcast_to(w0, (S, w0.size))
    if w0.ndim != 2 or w0.shape[0] != S:
        raise ValueError(f"w0 must have shape (S, d) with S = {S} or (d,), got {w0.shape}")
    a0, lr_a = np.asarray(a0, dtype=float), np.asarray(lr_a, dtype=float)
    nb = len(np.broadcast_shapes(a0.shape, lr_a.shape))
    ones = (1,) * (nb + 1)
    ref = np.array([p.excess_at_zero for p in problems])        # J0(0) - J* = ½ u*ᵀ H u*
    K = int(budgets.max())
    bn = bngd_stack(problems, lr.reshape(ones + (-1,)), K, a0[..., None][None],
                    w0.reshape((S,) + ones + (-1,)), lr_a=lr_a[..., None][None], record="loss")
    rel_bn = _relative(bn.excess, budgets, ref.reshape((S,) + ones))
    w_bn = crossing_width(_log10(rel_bn), lr, np.log10(tol), axis=-2)
    w_gd = rel_gd = None
    if gd:
        # one extra run per problem just below GD's edge 2/λ_max, where it neither converges
        # nor diverges: the crossing next to divergence is then interpolated, not cut at the grid
        edge = np.array([gd_lr_max(p.H) for p in problems]) * (1 - 1e-9)
        lr_gd = np.concatenate([np.broadcast_to(lr, (S, lr.size)), edge[:, None]], axis=1)
        run = gd_stack(problems, lr_gd, K, record="loss")
        rel_all = _relative(run.excess, budgets, ref[:, None])           # (S, n + 1, m)
        rel_gd = rel_all[:, :-1]
        w_gd = np.empty((S, budgets.size))
        for s in range(S):                                                 # S grids of n + 1 points
            keep = np.ones(lr.size + 1, bool) if edge[s] not in lr else np.arange(lr.size + 1) < lr.size
            order = np.argsort(lr_gd[s, keep])
            w_gd[s] = crossing_width(_log10(rel_all[s, keep][order]), lr_gd[s, keep][order],
                                     np.log10(tol), axis=0)
    one = np.ndim(steps) == 0                       # a single budget: no budget axis
    if one:
        budgets, rel_bn, w_bn = int(budgets[0]), rel_bn[..., 0], w_bn[..., 0]
        if gd:
            rel_gd, w_gd = rel_gd[..., 0], w_gd[..., 0]
    return Windows(lr=lr, gd=w_gd, bngd=w_bn, rel_gd=rel_gd, rel_bngd=rel_bn, steps=budgets, tol=tol)


def _relative(excess, budgets, ref):
    """Relative excess after each budget, shape (batch..., m); a diverged run stays inf."""
    rows = excess[np.minimum(budgets, excess.shape[0] - 1)]   # runs stop early only when all diverged
    return np.moveaxis(rows, 0, -1) / ref[..., None]


def lr_study(kappa, d=100, n_seeds=5, seed=2024):
    """The problems and starts of the book's learning-rate study (chapter 6).

    Problem ``s`` (s = 0, …, n_seeds − 1) is :func:`bnlib.sweeps.eigen_problem` with
    H = diag(logspace(0, log10 κ, d)) and seed ``s``; BNGD's starts are unit vectors, row ``s``
    of ``default_rng(seed).standard_normal((n_seeds, d))`` normalised.

    Parameters
    ----------
    kappa : float
        Condition number ≥ 1.
    d, n_seeds, seed : int
        Dimension ≥ 1, number of problems ≥ 1, seed ≥ 0 of the starts.

    Returns
    -------
    problems : list of bnlib.ols.OLS
    w0 : numpy.ndarray, shape (n_seeds, d)

    Raises
    ------
    TypeError
        If an argument is not numeric or a count is not an integer.
    ValueError
        If ``kappa`` < 1 or a count is out of range.
    """
    kappa = v.positive_scalar(kappa, "kappa")
    if kappa < 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    d = v.count(d, "d", minimum=1)
    n_seeds = v.count(n_seeds, "n_seeds", minimum=1)
    seed = v.count(seed, "seed", minimum=0)
    lam = np.logspace(0, np.log10(kappa), d)
    problems = [eigen_problem(lam, seed=s) for s in range(n_seeds)]
    w0 = np.random.default_rng(seed).standard_normal((n_seeds, d))
    return problems, w0 / np.linalg.norm(w0, axis=1, keepdims=True)


#: The book's standard window measurement (the budget K and the relative tolerance).
STANDARD = {"steps": 10_000, "tol": 1e-6}


def standard_windows(kappa=100.0, *, d=100, n_seeds=5, per_decade=4) -> Windows:
    """GD's and BNGD's windows in the book's standard setting, per seed.

    :func:`lr_windows` on :func:`lr_study` ``(kappa, d, n_seeds)`` with a budget of 10⁴
    steps, relative tolerance 10⁻⁶, BNGD from a0 = 1 with ε_a = 1, and the grid
    10^-4.5 … 10^3.5 with ``per_decade`` points per decade (every window of the study lies
    inside it for κ = 10 … 1000, d = 100). Chapter 6 states these numbers and the summary
    chapter reuses this call; about 1 s of computation per κ at the defaults.

    Parameters
    ----------
    kappa : float
    d, n_seeds, per_decade : int
        ``per_decade`` ≥ 1.

    Returns
    -------
    bnlib.windows.Windows
        ``gd`` and ``bngd`` of shape (n_seeds,).

    Raises
    ------
    TypeError
        As :func:`lr_study`.
    ValueError
        As :func:`lr_study`, or if ``per_decade`` < 1.
    RuntimeError
        If a window reaches an end of the grid (its width would be cut off).
    """
    per_decade = v.count(per_decade, "per_decade", minimum=1)
    problems, w0 = lr_study(kappa, d, n_seeds)
    lr = np.logspace(-4.5, 3.5, 8 * per_decade + 1)
    out = lr_windows(problems, lr, STANDARD["steps"], STANDARD["tol"], w0)
    edges = np.concatenate([out.rel_bngd[:, [0, -1]], out.rel_gd[:, [0, -1]]])
    if np.any(edges <= out.tol):
        raise RuntimeError("a window reaches the end of the grid: widen the grid")
    return out
def _log10(x):
    """log10 of a non-negative array; 0 gives -inf (inside any level), inf stays inf."""
    with np.errstate(divide="ignore"):
        return np.log10(np.maximum(x, 0.0))
