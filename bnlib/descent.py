"""Gradient descent (GD) on J0 and batch-normalized gradient descent (BNGD) on J.

Both run many step sizes at once: ``lr`` may be an array, and the runs advance together
as one batched computation (one ``W @ H`` product per step for all of them, no Python loop
over runs). A run whose loss blows up is flagged in ``diverged``; from then on its recorded
loss is ``inf`` and its recorded iterates are ``nan``, and no floating-point warning escapes.
Diverged runs are dropped from the batch, so a sweep that is mostly diverged gets cheaper
as it goes; a diagonal H (a problem written in its eigenbasis, which GD and BNGD treat
exactly like the rotated one) costs O(d) instead of O(d²) per run and step; ``tol=``
stops the whole batch once every live run has converged; and ``record="loss"`` keeps
only per-step scalars (memory O(K·M) instead of O(K·M·d)).

Shapes: the *batch shape* B of a call is the broadcast of the shapes of ``lr`` (and, for
BNGD, ``lr_a``, ``a0`` and ``w0.shape[:-1]``). A scalar ``lr`` with ``w0`` of shape (d,)
gives B = (); a 1-D ``lr`` of M step sizes gives B = (M,).

:func:`~bnlib.descent.gd_stack` and :func:`~bnlib.descent.bngd_stack` do the same for S
problems of equal dimension at once (e.g. S random problems, one per seed): their batch
shape is (S, B...), with the problem axis first, and one batched product ``W_s @ H_s`` per
step for all problems. Axis 0 of their batch is the problem axis: every array argument
(``lr``, ``w0[..., :]`` and, for BNGD, ``lr_a`` and ``a0``) is broadcast against (S, B...)
by numpy's rules, trailing axes aligned, and axis 0 of the result must be S. An array
shared by all problems therefore needs a leading length-1 axis once it has any axes: M
step sizes for every problem are ``lr[None, :]`` (batch shape (S, M)), and one start per
problem is ``w0`` of shape (S, 1, d). A 1-D ``lr`` of length S pairs step size s with
problem s.
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from ._engine import check_problem as _check_problem
from ._engine import common as _common
from ._engine import heavy_options, launch, normalized_run
from ._layout import _batch_shape, _Data, _stack
from .runs import BNGDRun, GDRun

__all__ = ["GDRun", "BNGDRun", "gd", "bngd", "gd_stack", "bngd_stack"]

# ---------------------------------------------------------------------------- public
def gd(problem, lr, steps, w0=None, *, tol=None, record="all", blowup=1e10, weight_decay=0.0,
       momentum=0.0):
    """Gradient descent on J0: w_{k+1} = w_k + ε (g − H w_k).

    Parameters
    ----------
    problem : bnlib.ols.OLS
    lr : float or array_like
        Step size(s) ε > 0; an array of shape B runs one GD per entry, all at once.
    steps : int
        Number of steps K ≥ 0.
    w0 : array_like, shape (d,) or (B..., d), optional
        Start; zeros by default.
    tol : float, optional
        If given, stop as soon as every run has ``excess <= tol`` or has diverged.
    record : {"all", "loss"}
        ``"loss"`` keeps only the per-step losses and the final iterate (bounded memory).
    blowup : float
        A run is diverged once its state is not finite or its loss exceeds
        ``blowup * max(J0(w0), c/2)``.
    weight_decay : float or array_like
        Coupled weight decay υ ≥ 0: the steps are taken on J0 + υ‖w‖²/2 (broadcast with
        the batch shape). ``loss`` and ``excess`` stay those of J0.
    momentum : float or array_like
        Heavy-ball momentum ς ∈ [0, 1): Δw_k = ς Δw_{k−1} − ε (∇J0(w_k) + υ w_k),
        w_{k+1} = w_k + Δw_k with Δw_{−1} = 0 (SGD with momentum as deep-learning frameworks
        write it, for a constant ε). With υ = ς = 0 (the default) the runs are the plain ones
        bit for bit.

    Returns
    -------
    GDRun

    Raises
    ------
    TypeError
        If ``problem`` is not an :class:`~bnlib.ols.OLS` or an argument is not numeric.
    ValueError
        If ``lr <= 0`` or not finite, ``steps < 0``, ``w0`` has the wrong shape or is not
        finite, ``tol <= 0``, or ``record`` is unknown.
    """
    _check_problem(problem)
    return _gd(_Data([problem], stacked=False), lr, steps, w0, tol, record, blowup,
               weight_decay, momentum)


def gd_stack(problems, lr, steps, w0=None, *, tol=None, record="all", blowup=1e10,
             weight_decay=0.0, momentum=0.0):
    """:func:`~bnlib.descent.gd` on S problems of equal dimension at once.

    Parameters
    ----------
    problems : sequence of bnlib.ols.OLS
        S ≥ 1 problems, all of dimension d.
    lr : float or array_like
        Step size(s) ε > 0, broadcast against the batch shape (S, B...).
    steps : int
    w0 : array_like, shape (d,) or broadcastable to (S, B..., d), optional
        Starts; zeros by default.
    tol, record, blowup, weight_decay, momentum
        As in :func:`~bnlib.descent.gd`; ``tol`` waits for every run of every problem.

    Returns
    -------
    GDRun
        With batch shape (S, B...): ``loss[k, s, ...]`` is run ``(s, ...)`` on ``problems[s]``.
        The same numbers as S separate :func:`~bnlib.descent.gd` calls, up to rounding.

    Notes
    -----
    Problem axis first: see :mod:`bnlib.descent` for how ``lr`` and ``w0`` broadcast.

    Raises
    ------
    TypeError
        If ``problems`` is not a sequence of :class:`~bnlib.ols.OLS` or an argument is not numeric.
    ValueError
        If ``problems`` is empty or mixes dimensions, shapes do not broadcast with S on axis
        0, or an argument is invalid as in :func:`~bnlib.descent.gd`.
    """
    return _gd(_stack(problems), lr, steps, w0, tol, record, blowup, weight_decay, momentum)


def _gd(data, lr, steps, w0, tol, record, blowup, weight_decay, momentum):
    lr, steps, tol, blowup = _common(lr, steps, tol, record, blowup)
    wd, mom = heavy_options(weight_decay, momentum)
    d = data.d
    w0 = np.zeros(d) if w0 is None else v.vector_batch(w0, "w0", d)
    extra = {k: x.shape for k, x in (("weight_decay", wd), ("momentum", mom)) if x is not None}
    B = _batch_shape(data, lr=lr.shape, **{"w0[..., 0]": w0.shape[:-1]}, **extra)
    return launch("gd", data, B, lr, None, None, w0, steps, tol, record, blowup, None, wd, mom)


def bngd(problem, lr, steps, a0, w0, lr_a=1.0, *, tol=None, record="all", blowup=1e10,
         weight_decay=0.0, momentum=0.0):
    """Batch-normalized gradient descent on J(a, w).

    a_{k+1} = a_k − ε_a ∂_a J(a_k, w_k),   w_{k+1} = w_k − ε ∇_w J(a_k, w_k).

    Parameters
    ----------
    problem : bnlib.ols.OLS
    lr : float or array_like
        Weight step(s) ε > 0; an array runs one BNGD per entry, all at once.
    steps : int
        Number of steps K ≥ 0.
    a0 : float or array_like
        Start of the scale a (broadcast with the batch shape).
    w0 : array_like, shape (d,) or (B..., d)
        Start of the weights; must be nonzero (‖w0‖_H > 0).
    lr_a : float or array_like
        Step(s) ε_a > 0 for a, broadcast with ``lr``.
    tol, record, blowup
        As in :func:`~bnlib.descent.gd` (``blowup`` relative to ``max(J(a0, w0), c/2)``).
    weight_decay : float or array_like
        Coupled weight decay υ ≥ 0 on w only: the w-step is taken on J + υ‖w‖²/2; a is not
        decayed. ``loss`` and ``excess`` stay those of J.
    momentum : float or array_like
        Heavy-ball momentum ς ∈ [0, 1) on both a and w, as in :func:`~bnlib.descent.gd`:
        Δw_k = ς Δw_{k−1} − ε (∇_w J + υ w_k), w_{k+1} = w_k + Δw_k, and the same for a with
        ε_a and ∂_a J. With υ = ς = 0 (the default) the runs are the plain ones bit for bit.

    Returns
    -------
    BNGDRun

    Raises
    ------
    TypeError
        If ``problem`` is not an :class:`~bnlib.ols.OLS` or an argument is not numeric.
    ValueError
        If ``lr`` or ``lr_a`` is ≤ 0 or not finite, ``steps < 0``, ``a0`` is not finite,
        ``w0`` has the wrong shape, is not finite or is zero, ``weight_decay < 0``,
        ``momentum`` is outside [0, 1), or shapes do not broadcast.

    Notes
    -----
    The excess is computed as J − J* = ½ (a − p)² + ½ rᵀH r with p = wᵀg/‖w‖_H and
    r = u* − t w, t = wᵀg/‖w‖²_H (r is the part of u* H-orthogonal to w). The second term
    is evaluated as u*ᵀG − t wᵀG with G = g − t H w = H r, the vector the update uses
    anyway; its rounding error is of the order of ε_mach ‖u*‖ ‖G‖, the same as that of
    forming r itself, so it vanishes with G at the minimum and the excess keeps its
    relative accuracy far below the rounding error of ``loss`` = J* + excess.
    """
    _check_problem(problem)
    return _bngd(_Data([problem], stacked=False), lr, steps, a0, w0, lr_a, tol, record, blowup,
                 weight_decay, momentum)


def bngd_stack(problems, lr, steps, a0, w0, lr_a=1.0, *, tol=None, record="all", blowup=1e10,
               weight_decay=0.0, momentum=0.0):
    """:func:`~bnlib.descent.bngd` on S problems of equal dimension at once.

    Parameters
    ----------
    problems : sequence of bnlib.ols.OLS
        S ≥ 1 problems, all of dimension d.
    lr, steps, a0, w0, lr_a, tol, record, blowup, weight_decay, momentum
        As in :func:`~bnlib.descent.bngd`, the arrays broadcast against the batch shape
        (S, B...) with the problem axis first (see :mod:`bnlib.descent`); every start must be
        nonzero, and ``tol`` waits for every run of every problem.

    Returns
    -------
    BNGDRun
        Of batch shape (S, B...), laid out as the result of :func:`~bnlib.descent.gd_stack`.

    Raises
    ------
    TypeError, ValueError
        As :func:`~bnlib.descent.gd_stack`, or on an argument :func:`~bnlib.descent.bngd`
        rejects (e.g. a zero start).
    """
    return _bngd(_stack(problems), lr, steps, a0, w0, lr_a, tol, record, blowup,
                 weight_decay, momentum)


def _bngd(data, lr, steps, a0, w0, lr_a, tol, record, blowup, weight_decay, momentum):
    return normalized_run("bn", data, lr, steps, a0, w0, lr_a, tol, record, blowup, None,
                          weight_decay, momentum)
