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
step for all problems.
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from ._layout import _batch_shape, _Data, _stack
from .ols import OLS
from .runs import BNGDRun, GDRun, divergence_limit, masked, scatter, stack_rows

__all__ = ["GDRun", "BNGDRun", "gd", "bngd", "gd_stack", "bngd_stack"]

_RECORDS = ("all", "loss")


def _common(lr, steps, tol, record, blowup):
    lr = v.positive_array(lr, "lr")
    steps = v.count(steps, "steps", minimum=0)
    if tol is not None:
        tol = v.positive_scalar(tol, "tol")
    if record not in _RECORDS:
        raise ValueError(f"record must be one of {_RECORDS}, got {record!r}")
    return lr, steps, tol, v.blowup(blowup)


def _check_problem(problem):
    if not isinstance(problem, OLS):
        raise TypeError(f"problem must be a bnlib.OLS, got {type(problem).__name__}")


# ---------------------------------------------------------------------------- the engine
def _buffers(bn, W, g):
    """Work arrays for a state like W. BNGD keeps W and H W (later G, which overwrites it)
    in one array Z = [W, HW] so that one call gives both ‖w‖² and ‖w‖²_H; ``gfull`` is g
    broadcast to W's shape (a same-shape subtraction is faster than a broadcast one)."""
    gfull = np.ascontiguousarray(np.broadcast_to(g, W.shape))
    if bn:
        Z = np.empty((2,) + W.shape)
        Z[0] = W
        return Z[1], Z[1], None, Z, gfull
    return np.empty_like(W), np.empty_like(W), np.empty_like(W), None, gfull


def _engine(bn, data, W, A, eps, eps_a, steps, tol, record, blowup):
    """Run N GD (``bn=False``) or BNGD runs together.

    W : (N, d) or (S, N, d), a fresh float array updated in place; A, eps, eps_a : (N,) or
    (S, N) (A and eps_a are ignored for GD). Returns a dict of recorded arrays of shape
    (L, N) or (L, S, N) (``w``: (L, …, d)), the final state and ``alive``.

    Per step and run: one row of ``W @ H`` (a single batched product for all runs; an
    elementwise product when H is diagonal), one product ``W @ g`` and eight or nine other
    passes over the (N, d) state, into preallocated buffers. The excess J − J* is formed
    from terms that stay accurate near the minimum (see :func:`~bnlib.descent.bngd`).
    """
    H, g, gcol, u, ucol, jstar = data.H, data.g, data.gcol, data.u, data.ucol, data.jstar
    hdiag = data.hdiag
    stacked = data.S is not None
    N = W.shape[-2]
    cols = None                                    # active columns (None: all N)
    alive = np.ones(W.shape[:-1], dtype=bool)
    HW, G, R, Z, gfull = _buffers(bn, W, g)
    W = Z[0] if bn else W
    names = ["loss", "excess"] + (["lr_eff", "w_norm"] if bn else [])
    if record == "all":
        names += ["w"] + (["a"] if bn else [])
    fills = [np.inf if nm in ("loss", "excess") else np.nan for nm in names]
    rows = [[] for _ in names]
    limit = None
    k = 0
    with np.errstate(all="ignore"):
        while True:
            if hdiag is None:
                np.matmul(W, H, out=HW)
            else:
                np.multiply(W, hdiag, out=HW)
            if bn:
                w2, n2 = np.vecdot(Z, W)           # ‖w‖², ‖w‖²_H in one call (Z = [W, HW])
                wg = W @ gcol
                if stacked:
                    wg = wg[..., 0]
                t = wg / n2                        # G = g − t HW = H r, r = u − t W
                rn = 1.0 / np.sqrt(n2)
                dev = A - wg * rn                  # ∂_a J
                np.multiply(HW, t[..., None], out=G)
                np.subtract(gfull, G, out=G)
                uG = G @ ucol                      # rᵀ H r = uᵀG − t wᵀG, as accurate as
                if stacked:                        # forming r itself (see bngd's Notes)
                    uG = uG[..., 0]
                exc = 0.5 * (dev * dev + (uG - t * np.vecdot(W, G)))
            else:
                np.subtract(HW, gfull, out=G)      # ∇J0 = H w − g
                np.subtract(W, u, out=R)
                exc = 0.5 * np.vecdot(R, G)
            loss = jstar + exc
            if limit is None:
                limit = divergence_limit(loss, data.c, blowup)
            ok = loss <= limit                     # False for nan and inf
            if bn:
                ok &= n2 < np.inf                  # also catches an overflowing ‖w‖_H
            alive &= ok
            all_alive = bool(alive.all())
            if not all_alive:
                loss, exc = masked(alive, loss, np.inf), masked(alive, exc, np.inf)
            if bn:
                q = eps * A * rn                   # w_{k+1} = w_k + q G
                lr_eff = q * A * rn                # ε a² / ‖w‖²_H
                w_norm = np.sqrt(w2)
                if not all_alive:
                    lr_eff, w_norm = masked(alive, lr_eff, np.nan), masked(alive, w_norm, np.nan)
                rec = (loss, exc, lr_eff, w_norm)
            else:
                rec = (loss, exc)
            if record == "all":
                rec += (W.copy() if all_alive else masked(alive, W, np.nan, vec=True),)
                if bn:
                    rec += (A.copy() if all_alive else masked(alive, A, np.nan),)
            if cols is None:
                for row, x in zip(rows, rec, strict=True):
                    row.append(x)
            else:
                for row, x, fill, nm in zip(rows, rec, fills, names, strict=True):
                    row.append(scatter(x, cols, N, fill, vec=nm == "w"))
            if k == steps or not (all_alive or alive.any()):
                length = steps + 1
                break
            if tol is not None and (exc.max() <= tol if all_alive else np.all(exc[alive] <= tol)):
                length = k + 1
                break
            if not all_alive:                      # drop columns with no live run left
                live = alive.any(axis=0) if stacked else alive
                n_live = int(np.count_nonzero(live))
                if 8 * (live.size - n_live) >= live.size:
                    here = np.arange(N) if cols is None else cols
                    cols = here[live]
                    alive, limit, eps = alive[..., live], limit[..., live], eps[..., live]
                    G_live = G[..., live, :]
                    HW, G, R, Z, gfull = _buffers(bn, W[..., live, :], g)
                    G[...] = G_live
                    W = Z[0] if bn else W[..., live, :]
                    if bn:
                        A, eps_a, dev, q = A[..., live], eps_a[..., live], dev[..., live], q[..., live]
            if bn:
                np.multiply(G, q[..., None], out=G)
                W += G                             # w − ε ∇_w J, ∇_w J = −(a/‖w‖_H) G
                A = A - eps_a * dev
            else:
                np.multiply(G, eps[..., None], out=G)
                W -= G
            k += 1
    out = {nm: stack_rows(row, k, length) for nm, row in zip(names, rows, strict=True)}
    out["alive"] = scatter(alive, cols, N, False)
    out["w_final"] = scatter(masked(alive, W, np.nan, vec=True), cols, N, np.nan, vec=True)
    if bn:
        out["a_final"] = scatter(masked(alive, A, np.nan), cols, N, np.nan)
    return out


def _launch(bn, data, B, lr, lr_a, a0, w0, steps, tol, record, blowup):
    """Broadcast the per-run arguments to the batch shape B, flatten, run, reshape."""
    d = data.d
    lead = () if data.S is None else (data.S,)
    flat = lead + (-1,)
    W = np.array(np.broadcast_to(w0, B + (d,)), dtype=float).reshape(flat + (d,))
    eps_b = np.broadcast_to(lr, B)
    eps = np.ascontiguousarray(eps_b).reshape(flat)
    if bn:
        eps_a_b = np.broadcast_to(lr_a, B)
        A = np.array(np.broadcast_to(a0, B), dtype=float).reshape(flat)
        eps_a = np.ascontiguousarray(eps_a_b).reshape(flat)
    else:
        A = eps_a = None
    res = _engine(bn, data, W, A, eps, eps_a, steps, tol, record, blowup)

    def shaped(x, tail=()):
        return None if x is None else x.reshape(x.shape[:1] + B + tail)

    common = dict(
        w=shaped(res.get("w"), (d,)),
        loss=shaped(res["loss"]),
        excess=shaped(res["excess"]),
        diverged=v.scalar_or_array(~res["alive"].reshape(B), to=None),
        lr=v.scalar_or_array(eps_b.copy(), to=None),
        w_final=res["w_final"].reshape(B + (d,)),
        steps=steps,
    )
    if not bn:
        return GDRun(**common)
    return BNGDRun(
        **common,
        a=shaped(res.get("a")),
        lr_eff=shaped(res["lr_eff"]),
        w_norm=shaped(res["w_norm"]),
        lr_a=v.scalar_or_array(eps_a_b.copy(), to=None),
        a_final=v.scalar_or_array(res["a_final"].reshape(B), to=None),
    )


# ---------------------------------------------------------------------------- public
def gd(problem, lr, steps, w0=None, *, tol=None, record="all", blowup=1e10):
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
    return _gd(_Data([problem], stacked=False), lr, steps, w0, tol, record, blowup)


def gd_stack(problems, lr, steps, w0=None, *, tol=None, record="all", blowup=1e10):
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
    tol, record, blowup
        As in :func:`~bnlib.descent.gd`; ``tol`` waits for every run of every problem.

    Returns
    -------
    GDRun
        With batch shape (S, B...): ``loss[k, s, ...]`` is run ``(s, ...)`` on ``problems[s]``.
        The same numbers as S separate :func:`~bnlib.descent.gd` calls, up to rounding.

    Notes
    -----
    Axis 0 of the batch is the problem axis: ``lr`` and ``w0[..., :]`` are broadcast against
    (S, B...) by numpy's rules, trailing axes aligned, and axis 0 of the result must be S. An
    array shared by all problems therefore needs a leading length-1 axis once it has any
    axes: M step sizes for every problem are ``lr[None, :]`` (batch shape (S, M)), and one
    start per problem is ``w0`` of shape (S, 1, d). A 1-D ``lr`` of length S pairs step size
    s with problem s.

    Raises
    ------
    TypeError
        If ``problems`` is not a sequence of :class:`~bnlib.ols.OLS` or an argument is not numeric.
    ValueError
        If ``problems`` is empty or mixes dimensions, shapes do not broadcast with S on axis
        0, or an argument is invalid as in :func:`~bnlib.descent.gd`.
    """
    return _gd(_stack(problems), lr, steps, w0, tol, record, blowup)


def _gd(data, lr, steps, w0, tol, record, blowup):
    lr, steps, tol, blowup = _common(lr, steps, tol, record, blowup)
    d = data.d
    w0 = np.zeros(d) if w0 is None else v.vector_batch(w0, "w0", d)
    B = _batch_shape(data, lr=lr.shape, **{"w0[..., 0]": w0.shape[:-1]})
    return _launch(False, data, B, lr, None, None, w0, steps, tol, record, blowup)


def bngd(problem, lr, steps, a0, w0, lr_a=1.0, *, tol=None, record="all", blowup=1e10):
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

    Returns
    -------
    BNGDRun

    Raises
    ------
    TypeError
        If ``problem`` is not an :class:`~bnlib.ols.OLS` or an argument is not numeric.
    ValueError
        If ``lr`` or ``lr_a`` is ≤ 0 or not finite, ``steps < 0``, ``a0`` is not finite,
        ``w0`` has the wrong shape, is not finite or is zero, or shapes do not broadcast.

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
    return _bngd(_Data([problem], stacked=False), lr, steps, a0, w0, lr_a, tol, record, blowup)


def bngd_stack(problems, lr, steps, a0, w0, lr_a=1.0, *, tol=None, record="all", blowup=1e10):
    """:func:`~bnlib.descent.bngd` on S problems of equal dimension at once.

    Parameters
    ----------
    problems : sequence of bnlib.ols.OLS
        S ≥ 1 problems, all of dimension d.
    lr, lr_a, a0 : float or array_like
        Broadcast against the batch shape (S, B...) (see Notes).
    steps : int
    w0 : array_like, shape (d,) or broadcastable to (S, B..., d)
        Starts; each must be nonzero.
    tol, record, blowup
        As in :func:`~bnlib.descent.bngd`; ``tol`` waits for every run of every problem.

    Returns
    -------
    BNGDRun
        With batch shape (S, B...): ``loss[k, s, ...]`` is run ``(s, ...)`` on ``problems[s]``.

    Notes
    -----
    Axis 0 of the batch is the problem axis: ``lr``, ``lr_a``, ``a0`` and ``w0[..., :]``
    are broadcast against (S, B...) by numpy's rules, trailing axes aligned, and axis 0 of the
    result must be S. An array shared by all problems therefore needs a leading length-1
    axis once it has any axes: M step sizes for every problem are ``lr[None, :]`` (batch
    shape (S, M)), and one start per problem is ``w0`` of shape (S, 1, d). A 1-D ``lr`` of
    length S pairs step size s with problem s.

    Raises
    ------
    TypeError
        If ``problems`` is not a sequence of :class:`~bnlib.ols.OLS` or an argument is not numeric.
    ValueError
        If ``problems`` is empty or mixes dimensions, shapes do not broadcast with S on axis
        0, ``w0`` is zero for some problem, or an argument is invalid as in :func:`~bnlib.descent.bngd`.
    """
    return _bngd(_stack(problems), lr, steps, a0, w0, lr_a, tol, record, blowup)


def _bngd(data, lr, steps, a0, w0, lr_a, tol, record, blowup):
    lr, steps, tol, blowup = _common(lr, steps, tol, record, blowup)
    lr_a = v.positive_array(lr_a, "lr_a")
    a0 = v.finite_array(a0, "a0")
    w0 = v.vector_batch(w0, "w0", data.d)
    B = _batch_shape(data, lr=lr.shape, lr_a=lr_a.shape, a0=a0.shape, **{"w0[..., 0]": w0.shape[:-1]})
    if data.S is None:
        n2 = data.h_norm2(w0)
    else:
        # only the problem axis needs broadcasting to check every start once
        lead = np.broadcast_shapes(w0.shape, (data.S,) + (1,) * (len(B) - 1) + (data.d,))
        n2 = data.h_norm2(np.broadcast_to(w0, lead))
    if np.any(n2 <= 0):
        raise ValueError("w0 must be nonzero: BN is undefined at w = 0")
    return _launch(True, data, B, lr, lr_a, a0, w0, steps, tol, record, blowup)
