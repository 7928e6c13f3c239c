"""The one engine behind GD, BNGD (:mod:`bnlib.descent`) and WNGD (:mod:`bnlib.weightnorm`).

A *method* is ``"gd"``, ``"bn"`` or ``"wn"``; the step mathematics of the normalized two
comes from :func:`bnlib._kernel.normalized_grad` with the norm as the only difference, and
all three share one set of run bookkeeping (:mod:`bnlib.runs`): recording, masking
diverged runs, dropping dead columns, the ``tol`` stop and the shaping of the result.
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from ._kernel import normalized_excess, normalized_grad
from ._layout import _batch_shape
from .ols import OLS
from .runs import BNGDRun, GDRun, divergence_limit, masked, scatter, stack_rows

_RECORDS = ("all", "loss")
METHODS = ("gd", "bn", "wn")


def common(lr, steps, tol, record, blowup):
    """Validate the arguments every run takes."""
    lr = v.positive_array(lr, "lr")
    steps = v.count(steps, "steps", minimum=0)
    if tol is not None:
        tol = v.positive_scalar(tol, "tol")
    if record not in _RECORDS:
        raise ValueError(f"record must be one of {_RECORDS}, got {record!r}")
    return lr, steps, tol, v.blowup(blowup)


def check_problem(problem):
    if not isinstance(problem, OLS):
        raise TypeError(f"problem must be a bnlib.OLS, got {type(problem).__name__}")


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
    ``result`` (default :class:`~bnlib.runs.GDRun` or :class:`~bnlib.runs.BNGDRun`).
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


def heavy_options(weight_decay, momentum):
    """Validate weight decay υ ≥ 0 and momentum ς ∈ [0, 1) (scalars or arrays); each comes
    back as an array, or None when it is zero everywhere (the plain step, bit for bit)."""
    out = []
    for x, name in ((weight_decay, "weight_decay"), (momentum, "momentum")):
        x = v.finite_array(x, name)
        if np.any(x < 0) or (name == "momentum" and np.any(x >= 1)):
            rng = "[0, 1)" if name == "momentum" else ">= 0"
            raise ValueError(f"{name} must be {rng}, got {v.short(x)}")
        out.append(x if np.any(x != 0) else None)
    return out


def normalized_run(method, data, lr, steps, a0, w0, lr_a, tol, record, blowup, result=None,
                   weight_decay=0.0, momentum=0.0):
    """Validate and run BNGD (``"bn"``) or WNGD (``"wn"``) on laid-out problems."""
    lr, steps, tol, blowup = common(lr, steps, tol, record, blowup)
    wd, mom = heavy_options(weight_decay, momentum)
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
