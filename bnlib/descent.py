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

Weight normalization (WNGD, :func:`wngd`) runs on the same engine: u = a w/‖w‖ with the
Euclidean norm, J_WN(a, w) = J0(a w/‖w‖), no data in the normalisation.

Every run shares one bookkeeping: a run is *alive* until its state stops being finite or
its loss exceeds ``blowup`` times its start; a diverged run's later records are masked
(``inf`` losses, ``nan`` states); columns of dead runs are dropped and put back; and the
step at which an excess first reaches a tolerance is read off the record (:meth:`GDRun.steps_to`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import PUBLIC
from . import checks as v
from .ols import OLS, check_problem, normalized_excess, normalized_grad

__all__ = list(PUBLIC["descent"])


@dataclass(frozen=True, kw_only=True)
class GDRun:
    """The result of :func:`~bnlib.descent.gd`.

    Attributes
    ----------
    w : numpy.ndarray or None
        Iterates, shape (K+1, B..., d), where K is the number of steps taken; ``None`` when
        called with ``record="loss"``.
    loss : numpy.ndarray, shape (K+1, B...)
        J0(w_k); ``inf`` from the step at which a run diverged.
    excess : numpy.ndarray, shape (K+1, B...)
        J0(w_k) − J*, computed as ½ (w_k − u*)ᵀ(H w_k − g) so that it stays accurate far
        below the rounding error of ``loss`` itself.
    diverged : bool or numpy.ndarray of bool, shape B
    lr : float or numpy.ndarray, shape B
    w_final : numpy.ndarray, shape (B..., d)
        The last iterate (``nan`` for diverged runs).
    steps : int
        Steps requested; ``loss.shape[0] - 1`` may be smaller when ``tol`` stopped early.
    """

    w: np.ndarray | None
    loss: np.ndarray
    excess: np.ndarray
    diverged: np.ndarray
    lr: np.ndarray
    w_final: np.ndarray
    steps: int

    def steps_to(self, tol) -> np.ndarray:
        """First iteration k with ``excess[k] <= tol`` for each run; ``inf`` if never.

        Parameters
        ----------
        tol : float or array_like
            Tolerance(s) > 0; an array is broadcast against the batch shape B (e.g. a
            relative tolerance ``1e-6 * ref[:, None]`` with one scale per problem of a stack).

        Returns
        -------
        numpy.ndarray of float, shape B (a float when B = () and ``tol`` is a scalar)

        Raises
        ------
        ValueError
            If ``tol`` is not > 0 and finite or does not broadcast against B.
        """
        return steps_to(self.excess, tol)


@dataclass(frozen=True, kw_only=True)
class BNGDRun(GDRun):
    """The result of :func:`~bnlib.descent.bngd`: the fields of :class:`~bnlib.descent.GDRun`
    (with ``loss`` = J(a_k, w_k) and ``excess`` = J − J* computed as ½ (u_k − u*)ᵀ(H u_k − g),
    u_k = a_k w_k/‖w_k‖_H), plus

    Attributes
    ----------
    a : numpy.ndarray or None, shape (K+1, B...)
        The BN scale a_k; ``None`` with ``record="loss"``.
    lr_eff : numpy.ndarray, shape (K+1, B...)
        The effective step ε a_k² / ‖w_k‖²_H.
    w_norm : numpy.ndarray, shape (K+1, B...)
        The Euclidean norm ‖w_k‖.
    lr_a : float or numpy.ndarray, shape B
    a_final : numpy.ndarray, shape B
    """

    a: np.ndarray | None
    lr_eff: np.ndarray
    w_norm: np.ndarray
    lr_a: np.ndarray
    a_final: np.ndarray


def steps_to(excess, tol) -> np.ndarray:
    """First k with ``excess[k] <= tol`` along axis 0, per run; ``inf`` if never."""
    tol = v.positive_array(tol, "tol")
    try:
        fits = np.broadcast_shapes(tol.shape, excess.shape[1:]) == excess.shape[1:]
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"tol of shape {tol.shape} does not broadcast against the batch "
                         f"shape {excess.shape[1:]}")
    hit = excess <= tol
    first = np.where(np.any(hit, axis=0), np.argmax(hit, axis=0), np.inf)
    return v.scalar_or_array(first)


def divergence_limit(loss0, c, blowup):
    """The loss above which a run counts as diverged: ``blowup · max(J(start), c/2)``."""
    return blowup * np.maximum(loss0, 0.5 * c)


def masked(alive, x, fill, vec=False):
    """``x`` where the run is alive, ``fill`` where it diverged (``vec``: x has a last axis
    of coordinates). Returns a fresh array."""
    return np.where(alive[..., None] if vec else alive, x, fill)


def scatter(x, cols, N, fill, vec=False):
    """Put the active columns ``x`` of shape (…, n), or (…, n, d) if ``vec``, back into a
    full row of N columns filled with ``fill``."""
    if cols is None:
        return x
    if vec:
        out = np.full(x.shape[:-2] + (N, x.shape[-1]), fill)
        out[..., cols, :] = x
    else:
        out = np.full(x.shape[:-1] + (N,), fill)
        out[..., cols] = x
    return out


def stack_rows(rows, k, length):
    """Stack the recorded rows; pad runs that all diverged early with their last row
    (inf losses, nan iterates) so arrays keep ``length`` rows."""
    out = np.stack(rows[: k + 1])
    if length > out.shape[0]:
        pad = np.broadcast_to(out[-1:], (length - out.shape[0],) + out.shape[1:])
        out = np.concatenate([out, pad])
    return out


class _Data:
    """Problem arrays laid out for the engine.

    One problem: H (d, d), g, gcol, u, ucol (d,), jstar and c floats; the state is W (N, d).
    S stacked problems: H (S, d, d), g and u (S, 1, d), gcol and ucol (S, d, 1), jstar and
    c (S, 1); the state is W (S, N, d). ``hdiag`` is the diagonal of H, shaped like g, when
    every H is diagonal, else None.
    """

    __slots__ = ("H", "hdiag", "g", "gcol", "u", "ucol", "jstar", "c", "d", "S")

    def __init__(self, problems, stacked):
        d = problems[0].d
        self.d = d
        # A diagonal H (a problem written in its eigenbasis) needs no matrix product:
        # H w is an elementwise product, O(d) instead of O(d²) per run and step.
        diagonal = all(v.is_diagonal(p.H) for p in problems)
        if not stacked:
            p = problems[0]
            self.S = None
            self.H, self.g, self.gcol, self.u, self.ucol = p.H, p.g, p.g, p.u_star, p.u_star
            self.jstar, self.c = p.min_loss, p.c
            self.hdiag = np.ascontiguousarray(np.diagonal(p.H)) if diagonal else None
        else:
            self.S = len(problems)
            if diagonal:                           # no dense (S, d, d) stack
                self.H = None
                self.hdiag = np.stack([np.diagonal(p.H) for p in problems])[:, None, :]
            else:
                self.H = np.stack([p.H for p in problems])
                self.hdiag = None
            g = np.stack([p.g for p in problems])
            self.g = g[:, None, :]
            self.gcol = np.ascontiguousarray(g[:, :, None])
            u = np.stack([p.u_star for p in problems])
            self.u = u[:, None, :]
            self.ucol = np.ascontiguousarray(u[:, :, None])
            self.jstar = np.array([p.min_loss for p in problems])[:, None]
            self.c = np.array([p.c for p in problems])[:, None]

    def h_norm2(self, w):
        """wᵀ H w for w of shape (d,), (B..., d) (one problem) or (S, B..., d) (stacked)."""
        if self.S is None:
            Hw = w * self.hdiag if self.hdiag is not None else w @ self.H
            return np.vecdot(Hw, w)
        ws = w.reshape(self.S, -1, self.d)
        Hw = ws * self.hdiag if self.hdiag is not None else np.matmul(ws, self.H)
        return np.vecdot(Hw, ws).reshape(w.shape[:-1])


def _stack(problems):
    if isinstance(problems, OLS):
        raise TypeError("problems must be a sequence of bnlib.OLS; for a single problem use gd/bngd")
    try:
        problems = list(problems)
    except TypeError:
        raise TypeError(f"problems must be a sequence of bnlib.OLS, got "
                        f"{type(problems).__name__}") from None
    if not problems:
        raise ValueError("problems must hold at least one bnlib.OLS, got an empty sequence")
    for i, p in enumerate(problems):
        if not isinstance(p, OLS):
            raise TypeError(f"problems[{i}] must be a bnlib.OLS, got {type(p).__name__}")
        if p.d != problems[0].d:
            raise ValueError(f"problems must share one dimension: problems[0] has d = "
                             f"{problems[0].d}, problems[{i}] has d = {p.d}")
    return _Data(problems, stacked=True)


def _batch_shape(data, **shapes):
    """The batch shape: the broadcast of ``shapes`` for one problem; for S stacked problems
    the broadcast of ``shapes`` with (S, 1, ..., 1), whose axis 0 must stay S."""
    if data.S is None:
        return v.broadcast(**shapes)
    n = max(1, *(len(s) for s in shapes.values()))
    try:
        B = np.broadcast_shapes((data.S,) + (1,) * (n - 1), *shapes.values())
        if B[0] != data.S:
            raise ValueError
        return B
    except ValueError:
        listed = ", ".join(f"{nm} {s}" for nm, s in shapes.items())
        raise ValueError(
            f"shapes do not broadcast with {data.S} problems on axis 0: {listed}. Axis 0 of "
            f"the batch is the problem axis; give arrays shared by all problems a leading "
            f"length-1 axis (e.g. lr[None, :])") from None


_RECORDS = ("all", "loss")


def common(lr, steps, tol, record, blowup):
    """Validate the arguments every run takes."""
    lr = v.positive_array(lr, "lr")
    steps = v.count(steps, "steps", minimum=0)
    if tol is not None:
        tol = v.positive_scalar(tol, "tol")
    if record not in _RECORDS:
        raise ValueError(f"record must be one of {_RECORDS}, got {record!r}")
    return lr, steps, tol, v.blowup(blowup)


def _buffers(method, W, g):
    """Work arrays for a state like W: (HW, G, R or D, Z, gfull). A normalized method keeps
    W and H W in one array Z = [W, HW] so that one call gives both ‖w‖² and ‖w‖²_H; BN's G
    overwrites HW, WN's needs its own G and D. ``gfull`` is g broadcast to W's shape (a
    same-shape subtraction is faster than a broadcast one)."""
    gfull = np.ascontiguousarray(np.broadcast_to(g, W.shape))
    if method == "gd":
        return np.empty_like(W), np.empty_like(W), np.empty_like(W), None, gfull
    Z = np.empty((2,) + W.shape)
    Z[0] = W
    if method == "bn":
        return Z[1], Z[1], Z[1], Z, gfull
    return Z[1], np.empty_like(W), np.empty_like(W), Z, gfull


def engine(method, data, W, A, eps, eps_a, steps, tol, record, blowup, wd=None, mom=None):
    """Run N runs of one method together.

    W : (N, d) or (S, N, d), a fresh float array updated in place; A, eps, eps_a : (N,) or
    (S, N) (A and eps_a are ignored for GD). ``wd`` (weight decay υ) and ``mom`` (momentum
    ς), arrays like ``eps`` or None: with either given, every step is heavy ball on
    J + υ‖w‖²/2 (the decay on w only, the momentum on a and w),

        Δw_k = ς Δw_{k−1} − ε (∇_w J + υ w_k),   w_{k+1} = w_k + Δw_k   (Δw_{−1} = 0),

    and the same for a with ε_a and ∂_a J; with both None the loop is the plain step.
    Returns a dict of recorded arrays of shape (L, N) or (L, S, N) (``w``: (L, …, d)), the
    final state and ``alive``.

    Per step and run: one row of ``W @ H`` (a single batched product for all runs; an
    elementwise product when H is diagonal), one product ``W @ g`` and eight or nine other
    passes over the (N, d) state (three more for WN), into preallocated buffers.
    """
    H, g, gcol, u, ucol, jstar = data.H, data.g, data.gcol, data.u, data.ucol, data.jstar
    hdiag = data.hdiag
    norm = method != "gd"
    euclid = method == "wn"
    stacked = data.S is not None
    N = W.shape[-2]
    cols = None                                    # active columns (None: all N)
    alive = np.ones(W.shape[:-1], dtype=bool)
    HW, G, R, Z, gfull = _buffers(method, W, g)
    W = Z[0] if norm else W
    names = ["loss", "excess"] + (["lr_eff", "w_norm"] if norm else [])
    if record == "all":
        names += ["w"] + (["a"] if norm else [])
    fills = [np.inf if nm in ("loss", "excess") else np.nan for nm in names]
    rows = [[] for _ in names]
    limit = None
    k = 0
    heavy = wd is not None or mom is not None
    if heavy:
        wd = np.zeros_like(eps) if wd is None else wd
        mom = np.zeros_like(eps) if mom is None else mom
        SW = np.zeros_like(W)                      # the step Δw_k of w (and of a below)
        SA = np.zeros_like(eps) if norm else None
    with np.errstate(all="ignore"):
        while True:
            if hdiag is None:
                np.matmul(W, H, out=HW)
            else:
                np.multiply(W, hdiag, out=HW)
            if norm:
                w2, n2 = np.vecdot(Z, W)           # ‖w‖², ‖w‖²_H in one call (Z = [W, HW])
                wg = W @ gcol
                if stacked:
                    wg = wg[..., 0]
                dev, rm, t, G, R = normalized_grad(A, W, HW, wg, w2, n2, gfull,
                                                   euclidean=euclid, out=G, d_out=R)
                uG = G @ ucol                      # rᵀ H r = uᵀG − t wᵀG (see _kernel)
                if stacked:
                    uG = uG[..., 0]
                exc = normalized_excess(dev, t, uG, np.vecdot(W, G),
                                        *((w2, n2) if euclid else ()))
            else:
                np.subtract(HW, gfull, out=G)      # ∇J0 = H w − g
                np.subtract(W, u, out=R)
                exc = 0.5 * np.vecdot(R, G)
            loss = jstar + exc
            if limit is None:
                limit = divergence_limit(loss, data.c, blowup)
            ok = loss <= limit                     # False for nan and inf
            if norm:
                ok &= n2 < np.inf                  # also catches an overflowing ‖w‖_H
            alive &= ok
            all_alive = bool(alive.all())
            if not all_alive:
                loss, exc = masked(alive, loss, np.inf), masked(alive, exc, np.inf)
            if norm:
                q = eps * A * rm                   # w_{k+1} = w_k + q D
                lr_eff = q * A * rm                # ε a² / ‖w‖²_M
                w_norm = np.sqrt(w2)
                if not all_alive:
                    lr_eff, w_norm = masked(alive, lr_eff, np.nan), masked(alive, w_norm, np.nan)
                rec = (loss, exc, lr_eff, w_norm)
            else:
                rec = (loss, exc)
            if record == "all":
                rec += (W.copy() if all_alive else masked(alive, W, np.nan, vec=True),)
                if norm:
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
                    if heavy:
                        wd, mom, SW = wd[..., live], mom[..., live], SW[..., live, :]
                        SA = SA[..., live] if norm else None
                    step_dir = (R if norm else G)[..., live, :]
                    HW, G, R, Z, gfull = _buffers(method, W[..., live, :], g)
                    W = Z[0] if norm else W[..., live, :]
                    if norm:
                        R[...] = step_dir
                        A, eps_a, dev, q = A[..., live], eps_a[..., live], dev[..., live], q[..., live]
                    else:
                        G[...] = step_dir
            if heavy:
                step = q[..., None] * R if norm else -eps[..., None] * G
                SW = mom[..., None] * SW + (step - (eps * wd)[..., None] * W)
                W += SW
                if norm:
                    SA = mom * SA - eps_a * dev
                    A = A + SA
            elif norm:
                np.multiply(R, q[..., None], out=R)
                W += R                             # w − ε ∇_w J, ∇_w J = −(a/‖w‖_M) D
                A = A - eps_a * dev
            else:
                np.multiply(G, eps[..., None], out=G)
                W -= G
            k += 1
    out = {nm: stack_rows(row, k, length) for nm, row in zip(names, rows, strict=True)}
    out["alive"] = scatter(alive, cols, N, False)
    out["w_final"] = scatter(masked(alive, W, np.nan, vec=True), cols, N, np.nan, vec=True)
    if norm:
        out["a_final"] = scatter(masked(alive, A, np.nan), cols, N, np.nan)
    return out


def launch(method, data, B, lr, lr_a, a0, w0, steps, tol, record, blowup, result=None,
           weight_decay=None, momentum=None):
    """Broadcast the per-run arguments to the batch shape B, flatten, run, reshape into
    ``result`` (default :class:`~bnlib.descent.GDRun` or :class:`~bnlib.descent.BNGDRun`).
    ``weight_decay`` and ``momentum`` (arrays broadcast to B, or None) go to :func:`engine`."""
    d = data.d
    norm = method != "gd"
    lead = () if data.S is None else (data.S,)
    flat = lead + (-1,)
    W = np.array(np.broadcast_to(w0, B + (d,)), dtype=float).reshape(flat + (d,))
    eps_b = np.broadcast_to(lr, B)
    eps = np.ascontiguousarray(eps_b).reshape(flat)
    if norm:
        eps_a_b = np.broadcast_to(lr_a, B)
        A = np.array(np.broadcast_to(a0, B), dtype=float).reshape(flat)
        eps_a = np.ascontiguousarray(eps_a_b).reshape(flat)
    else:
        A = eps_a = None
    wd = mom = None
    if weight_decay is not None:
        wd = np.ascontiguousarray(np.broadcast_to(weight_decay, B), dtype=float).reshape(flat)
    if momentum is not None:
        mom = np.ascontiguousarray(np.broadcast_to(momentum, B), dtype=float).reshape(flat)
    res = engine(method, data, W, A, eps, eps_a, steps, tol, record, blowup, wd, mom)

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
    if not norm:
        return (result or GDRun)(**common)
    return (result or BNGDRun)(
        **common,
        a=shaped(res.get("a")),
        lr_eff=shaped(res["lr_eff"]),
        w_norm=shaped(res["w_norm"]),
        lr_a=v.scalar_or_array(eps_a_b.copy(), to=None),
        a_final=v.scalar_or_array(res["a_final"].reshape(B), to=None),
    )


def normalized_run(method, data, lr, steps, a0, w0, lr_a, tol, record, blowup, result=None,
                   weight_decay=0.0, momentum=0.0):
    """Validate and run BNGD (``"bn"``) or WNGD (``"wn"``) on laid-out problems."""
    lr, steps, tol, blowup = common(lr, steps, tol, record, blowup)
    wd, mom = v.heavy_options(weight_decay, momentum)
    lr_a = v.positive_array(lr_a, "lr_a")
    a0 = v.finite_array(a0, "a0")
    w0 = v.vector_batch(w0, "w0", data.d)
    extra = {k: x.shape for k, x in (("weight_decay", wd), ("momentum", mom)) if x is not None}
    B = _batch_shape(data, lr=lr.shape, lr_a=lr_a.shape, a0=a0.shape,
                     **{"w0[..., 0]": w0.shape[:-1]}, **extra)
    if method == "wn":
        if np.any(np.vecdot(w0, w0) <= 0):
            raise ValueError("w0 must be nonzero: weight normalization is undefined at w = 0")
    else:
        if data.S is None:
            n2 = data.h_norm2(w0)
        else:
            # only the problem axis needs broadcasting to check every start once
            lead = np.broadcast_shapes(w0.shape, (data.S,) + (1,) * (len(B) - 1) + (data.d,))
            n2 = data.h_norm2(np.broadcast_to(w0, lead))
        if np.any(n2 <= 0):
            raise ValueError("w0 must be nonzero: BN is undefined at w = 0")
    return launch(method, data, B, lr, lr_a, a0, w0, steps, tol, record, blowup, result,
                  wd, mom)


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
    check_problem(problem)
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
    lr, steps, tol, blowup = common(lr, steps, tol, record, blowup)
    wd, mom = v.heavy_options(weight_decay, momentum)
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
    check_problem(problem)
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


@dataclass(frozen=True, kw_only=True)
class WNGDRun(BNGDRun):
    """The result of :func:`~bnlib.descent.wngd`: the fields of
    :class:`~bnlib.descent.BNGDRun`, with ``loss`` = J_WN(a_k, w_k), ``excess`` = J_WN − J*
    computed as ½ (u_k − u*)ᵀH(u_k − u*), u_k = a_k w_k/‖w_k‖, and ``lr_eff`` the effective
    step ε a_k²/‖w_k‖² with the **Euclidean** norm (BN's uses ‖w_k‖_H)."""


def _aw(problem, a, w):
    check_problem(problem)
    a, w = v.scale_weights(a, w, problem.d)
    n2 = np.einsum("...i,...i->...", w, w)
    if np.any(n2 <= 0):
        raise ValueError("w must be nonzero: w/||w|| is undefined at w = 0")
    return a, w, np.sqrt(n2)


def wn_loss(problem, a, w) -> np.ndarray:
    """J_WN(a, w) = J0(a w/‖w‖).

    Parameters
    ----------
    problem : bnlib.ols.OLS
    a : array_like, shape broadcastable with ``w.shape[:-1]``
    w : array_like, shape (..., d), nonzero

    Returns
    -------
    numpy.ndarray, shape ``broadcast(a.shape, w.shape[:-1])``

    Raises
    ------
    TypeError
        If ``problem`` is not an OLS or an argument is not numeric.
    ValueError
        If ``w`` has the wrong last dimension, is zero, or shapes do not broadcast.
    """
    a, w, n = _aw(problem, a, w)
    return problem.loss((a / n)[..., None] * w)


def wn_grad(problem, a, w):
    """Gradients of :func:`~bnlib.descent.wn_loss`.

    Returns
    -------
    dJ_da : numpy.ndarray, shape ``broadcast(a.shape, w.shape[:-1])``
        ŵᵀ (H u − g).
    dJ_dw : numpy.ndarray, shape ``dJ_da.shape + (d,)``
        (a/‖w‖) (I − ŵŵᵀ)(H u − g).

    Raises
    ------
    TypeError, ValueError
        As :func:`~bnlib.descent.wn_loss`.
    """
    a, w, n = _aw(problem, a, w)
    what = w / n[..., None]
    r = problem.grad(a[..., None] * what)
    da = np.einsum("...i,...i->...", what, r)
    dw = (a / n)[..., None] * (r - da[..., None] * what)
    return da, dw


def _wngd(data, lr, steps, a0, w0, lr_a, tol, record, blowup):
    # The engine of GD and BNGD, with the Euclidean norm in the shared BN/WN kernel.
    return normalized_run("wn", data, lr, steps, a0, w0, lr_a, tol, record, blowup, WNGDRun)


def wngd(problem, lr, steps, a0, w0, lr_a=1.0, *, tol=None, record="all", blowup=1e10):
    """Gradient descent on the weight-normalized loss J_WN(a, w) (WNGD).

    a_{k+1} = a_k − ε_a ∂_a J_WN(a_k, w_k),   w_{k+1} = w_k − ε ∇_w J_WN(a_k, w_k).

    The interface, shapes, vectorisation over step sizes and divergence flagging are those
    of :func:`~bnlib.descent.bngd`; a run is diverged once its state is not finite or its
    loss exceeds ``blowup * max(J_WN(a0, w0), c/2)`` (``loss`` is then ``inf`` and the
    iterates ``nan``), and no floating-point warning escapes.

    Parameters
    ----------
    problem, lr, steps, a0, w0, tol, record, blowup
        As in :func:`~bnlib.descent.bngd` (``w0`` nonzero).
    lr_a : float or array_like
        Step(s) ε_a > 0 of a, broadcast with ``lr``. Unlike BN's, the curvature of J_WN in a
        is ŵᵀHŵ, not 1, so ε_a ≤ 1 is not a safe default for every problem.

    Returns
    -------
    WNGDRun

    Raises
    ------
    TypeError, ValueError
        On the arguments :func:`~bnlib.descent.bngd` rejects, for the same reasons.
    """
    check_problem(problem)
    return _wngd(_Data([problem], stacked=False), lr, steps, a0, w0, lr_a, tol, record, blowup)


def wngd_stack(problems, lr, steps, a0, w0, lr_a=1.0, *, tol=None, record="all", blowup=1e10):
    """:func:`~bnlib.descent.wngd` on S problems of equal dimension at once.

    The broadcasting (batch shape (S, B...), the problem axis first: M step sizes for every
    problem are ``lr[None, :]``), the layout of the :class:`~bnlib.descent.WNGDRun` it
    returns and the errors it raises are those of :func:`~bnlib.descent.bngd_stack`.
    """
    return _wngd(_stack(problems), lr, steps, a0, w0, lr_a, tol, record, blowup)
