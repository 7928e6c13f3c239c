"""Measured convergence rates: the asymptotic contraction factor of a run's history.

A linearly convergent run has an error that eventually shrinks by a constant factor ρ per
step, so a history h_k that behaves like (error_k)^p (p = 2 for a loss excess J − J*, which
is quadratic in the error) satisfies h_{k+1}/h_k → ρ^p. :func:`~bnlib.rates.contraction` estimates ρ from
the tail of the history by a least-squares fit of log h_k against k, and says whether the
tail is *steady* (the run is in its asymptotic regime) by comparing the fits on the two
halves of the tail.

Two things would spoil a naive tail ratio, and both are handled:

- **machine-precision floors**: once h_k reaches the rounding level of whatever computed it,
  it stops decreasing and jitters. Only the part of the history above ``floor`` is used;
  by default ``floor = rel_floor * h_0``.
- **diverged runs**: bnlib's runs record ``inf`` from the step at which they blew up. Only the
  finite prefix is used, and the run is flagged in ``diverged`` (its rate is then the measured
  growth factor, > 1).

A limitation no tail-based estimate escapes: if the slowest mode of a run has been damped far
below the others (for BNGD this happens during the transient that sets the effective step),
the tail follows a faster mode until the history reaches the floor, and looks steady. Such a
rate is a lower bound on the true asymptotic contraction, not an estimate of it; chapter 05
of the book tests it by fitting each mode's own coordinate
(:func:`bnlib.linearize.mode_coordinates`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate as v

__all__ = ["Contraction", "contraction"]


@dataclass(frozen=True)
class Contraction:
    """The result of :func:`~bnlib.rates.contraction`; every field has the batch shape B of the history.

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

    Raises
    ------
    TypeError
        If ``history`` is not real numbers or ``min_points`` is not an integer.
    ValueError
        If ``history`` is 0-dimensional, has fewer than 2 entries or a negative first entry, or if
        ``power``, ``floor``, ``rel_floor``, ``tail``, ``min_points``, ``rtol`` or ``min_decay``
        is out of range.

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
    if floor is not None:
        floor = v.positive_scalar(floor, "floor")
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
    first = np.take_along_axis(np.where(usable, h, np.nan), np.minimum(start, h.shape[0] - 1)[None],
                               axis=0)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        decayed = first >= min_decay * last
    steady = (n_fit >= min_points) & ~diverged & agree & decayed
    rate = np.exp(slope / power)

    def out(x):
        return x[()] if isinstance(x, np.ndarray) and x.ndim == 0 else x

    return Contraction(rate=out(rate), steady=out(steady), points=out(n_fit), diverged=out(diverged))
