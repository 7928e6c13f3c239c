"""Windows of step sizes: how many decades of ε a method tolerates, every measure in one place.

Every width is :func:`log_width` (decades of a set of points on a logarithmic grid) or
:func:`crossing_width` (crossings of a level interpolated in log10 ε); the other functions
apply them to GD and BNGD runs, noisy mini-batch runs and networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import PUBLIC, theory
from . import checks as v
from .descent import bngd, bngd_stack, gd_stack
from .ols import check_problem

__all__ = list(PUBLIC["windows"])


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

    Examples
    --------
    >>> lr = np.logspace(0, 4, 9)      # 2 points per decade, each 1/2 decade
    >>> log_width(lr <= 100.0, lr)     # 1 ... 100: 2 decades plus one spacing
    2.5
    """
    ok = np.asarray(ok)
    if ok.dtype != bool:
        raise TypeError(f"ok must be a boolean array, got dtype {ok.dtype}")
    lr = _grid(lr, ok, "ok", axis)
    log_lr = np.log10(lr)
    mid = (log_lr[1:] + log_lr[:-1]) / 2
    edges = np.concatenate([[2 * log_lr[0] - mid[0]], mid, [2 * log_lr[-1] - mid[-1]]])
    return v.scalar_or_array(np.moveaxis(ok, axis, -1) @ np.diff(edges))


def _grid(lr, x=None, name="", axis=-1):
    """Check ``lr``, n >= 2 strictly increasing steps > 0, and that ``x`` has n entries along ``axis``."""
    lr = v.positive_array(lr, "lr")
    if lr.ndim != 1 or lr.size < 2 or not np.all(np.diff(lr) > 0):
        raise ValueError(f"lr must be a strictly increasing 1-D grid of at least 2 step sizes, "
                         f"got {v.short(lr)}")
    if x is not None and (x.ndim == 0 or x.shape[axis] != lr.size):
        raise ValueError(f"{name} must have {lr.size} entries along axis {axis}, got shape {x.shape}")
    return lr


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
        The grid's axis of ``y`` (of length n), as in :func:`~bnlib.windows.log_width`.

    Returns
    -------
    float or numpy.ndarray
        One width in decades per sampled curve: ``y.shape`` with ``axis`` removed.
    """
    y = np.asarray(y)
    if y.dtype == bool or not np.issubdtype(y.dtype, np.number):
        raise TypeError(f"y must be a numeric array, got dtype {y.dtype}")
    lr = _grid(lr, y, "y", axis)
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
    return v.scalar_or_array(width)


@dataclass(frozen=True, kw_only=True)
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
        Problems of equal dimension d (e.g. one per seed, from :func:`~bnlib.studies.lr_study`).
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
    """
    problems = list(problems)
    if not problems:
        raise ValueError("problems must hold at least one bnlib.OLS")
    lr = _grid(lr)
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
        edge = np.array([theory.gd_lr_max(p.H) for p in problems]) * (1 - 1e-9)
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
    if np.ndim(steps) == 0:                         # a single budget: no budget axis
        budgets, rel_bn, w_bn = int(budgets[0]), rel_bn[..., 0], w_bn[..., 0]
        if gd:
            rel_gd, w_gd = rel_gd[..., 0], w_gd[..., 0]
    return Windows(lr=lr, gd=w_gd, bngd=w_bn, rel_gd=rel_gd, rel_bngd=rel_bn, steps=budgets, tol=tol)


def _relative(excess, budgets, ref):
    """Relative excess after each budget, shape (batch..., m); a diverged run stays inf."""
    rows = excess[np.minimum(budgets, excess.shape[0] - 1)]   # runs stop early only when all diverged
    return np.moveaxis(rows, 0, -1) / ref[..., None]


def _log10(x):
    """log10 of a non-negative array; 0 gives -inf (inside any level), inf stays inf."""
    with np.errstate(divide="ignore"):
        return np.log10(np.maximum(x, 0.0))


def gd_window(problem, w0, steps, tol, n_grid=4001, iters=60):
    """Find the interval of GD steps ε with J0(w_K) − J* <= tol after K = ``steps`` steps.

    Found from the closed form :func:`~bnlib.theory.gd_excess`: a log grid over (0, 2/λ_max] locates the
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
    p = check_problem(problem)
    steps = v.count(steps, "steps", minimum=1)
    tol = v.positive_scalar(tol, "tol")
    edge = theory.gd_lr_max(p.H)
    log_grid = np.linspace(np.log(edge) - 12 * np.log(10), np.log(edge), n_grid)
    good = theory.gd_excess(p, np.exp(log_grid), steps, w0) <= tol
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
            if theory.gd_excess(p, np.exp(mid), steps, w0) <= tol:
                x_in = mid
            else:
                x_out = mid
        ends.append(float(np.exp(x_in)))
    return ends[0], ends[1]


def bngd_window(problem, a0, w0, steps, tol, lr_a=1.0, *, inside, below, above,
                rel_tol=1e-3, points=7):
    """Find the ends of the interval of BNGD steps ε with J − J* <= tol after ``steps`` steps.

    Multi-section in log ε with real BNGD runs: each round runs ``points`` step sizes inside
    each of the two brackets [below, inside] and [inside, above] in one vectorised call and
    keeps the sub-bracket where the outcome changes, until both brackets are narrower than
    ``rel_tol`` (relative). It assumes the set is one interval containing ``inside``; the
    outcome at the three given points is checked. If the set has gaps (it can: chapter 04's
    has two), a round whose grid points fall in a gap can stop the search at the gap's
    edge; check the ends against a fine grid of real runs.

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
    p = check_problem(problem)
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


def good_window(final, lr, *, below=0.5, factor=2.0):
    """Decades of step sizes that end near the method's own best level (the mini-batch window).

    A noisy run has no convergence to a tolerance, only a floor; a step size counts as good
    when its final relative excess is at most ``below`` (it learned) and at most ``factor``
    times the best over the grid (it is near the method's own best level). The width is
    :func:`~bnlib.windows.log_width` of that set.

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

    Unlike :func:`~bnlib.windows.good_window`, the level is the same for every method, so
    windows of different methods compare directly. The mean is over R repeats, and its
    Monte Carlo standard error ``se`` (sample standard deviation over the repeats / √R)
    brackets the width: a step size is *surely* in the window when ``mean + z·se <= level``
    and *possibly* in it when ``mean − z·se <= level``. Widths are
    :func:`~bnlib.windows.log_width` of each set.

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


def window_decades(runs, threshold):
    """Decades of ε whose mean test accuracy over the seeds reaches ``threshold``.

    A diverged model counts as not reaching it (its accuracy is ``nan``).

    Parameters
    ----------
    runs : dict of bnlib.nn.SGDRun
        As from :func:`~bnlib.studies.softmax_quadratic` or :func:`bnlib.nn.train_variants`:
        ``test_acc`` of shape (S, n) or (S, A, n) along the grid ``lr``.
    threshold : float

    Returns
    -------
    dict
        Per variant a float (shape (S, n)) or an array of shape (A,) (shape (S, A, n)).
    """
    return {name: log_width(acc >= threshold, runs[name].lr.reshape(-1, acc.shape[-1])[0])
            for name, acc in _seed_mean_accuracy(runs).items()}   # nan (all diverged): outside


def _seed_mean_accuracy(runs):
    """Per variant of ``runs`` (a dict), test accuracy averaged over seeds (``nan`` if diverged)."""
    if not isinstance(runs, dict):
        raise TypeError(f"runs must be a dict of SGDRun, got {type(runs).__name__}")
    return {name: np.where(run.diverged, np.nan, run.test_acc).mean(axis=0)
            for name, run in runs.items()}


def window_margin(runs, threshold):
    """Distance of the seed-mean test accuracy from ``threshold``, minimised over the grid.

    The width of :func:`window_decades` counts grid points at or above ``threshold``; it is
    robust (the same on another CPU or BLAS) when no point sits near the threshold. This
    is the smallest ``|mean accuracy - threshold|`` over the grid points of each variant;
    diverged points (which count as not reaching the threshold) are left out.

    Parameters
    ----------
    runs : dict of bnlib.nn.SGDRun
        As for :func:`window_decades`.
    threshold : float

    Returns
    -------
    dict
        As for :func:`window_decades`; ``inf`` if every point diverged.
    """
    accs = _seed_mean_accuracy(runs)
    threshold = float(v.finite_array(threshold, "threshold"))
    return {name: v.scalar_or_array(np.where(np.isnan(acc), np.inf, np.abs(acc - threshold)).min(axis=-1))
            for name, acc in accs.items()}
