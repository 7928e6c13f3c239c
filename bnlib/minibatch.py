"""Mini-batch SGD on a finite OLS training set, with and without batch normalization.

A training set (X, y) of n samples is given. At every step each run draws a batch of B
samples (a fresh random permutation of the set per epoch, split into n // B batches; a last
incomplete batch is dropped), and

- :func:`~bnlib.minibatch.sgd` takes a step on the plain batch loss
  J0_B(w) = (1/2B) Σ_i (y_i − x_iᵀw)²;
- :func:`~bnlib.minibatch.bn_sgd` takes a step on the BN batch loss
  J_B(a, w) = (1/2B) Σ_i (y_i − a ẑ_i)², ẑ_i = (ξ_i − ξ̄)/s_B, ξ_i = x_iᵀw, with the batch mean ξ̄
  and the biased batch standard deviation s_B (a BN layer in training mode with offset 0,
  scale γ = a and shift β = 0); the gradient goes *through* the batch statistics, as
  backpropagation through a BN layer does (:func:`~bnlib.minibatch.bn_batch_grad`).

With B = n every step sees the whole set and the runs are deterministic: BN-SGD is then
BNGD (:func:`~bnlib.descent.bngd`) on :func:`~bnlib.minibatch.train_problem` and SGD is GD on
``train_problem(data, centered=False)``.

Both run a whole grid at once: ``lr`` (and ``lr_a``, ``a0``, ``w0``) broadcast to a *batch
shape* of runs, and ``repeats=S`` adds a leading axis of S independent repeats; every run
draws its own batches, and all runs advance together (a Python loop over steps only). The
result has the conventions of :mod:`bnlib.descent`: a run whose loss blows up is flagged in
``diverged``, its later losses are ``inf`` and iterates ``nan``, and no floating-point
warning escapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from . import PUBLIC
from . import checks as v
from .ols import OLS

__all__ = list(PUBLIC["minibatch"])


_RECORDS = ("all", "loss")


@dataclass(frozen=True)
class MiniBatchRun:
    """The result of :func:`~bnlib.minibatch.bn_sgd` or :func:`~bnlib.minibatch.sgd`.

    K is the number of steps, S the batch shape of runs (see the module docstring).

    Attributes
    ----------
    loss : numpy.ndarray, shape (K+1, S...)
        The training loss on the whole set: for BN-SGD J_n(a_k, w_k), BN with the statistics
        of the whole set (:func:`~bnlib.minibatch.train_problem`); for SGD J0_n(w_k).
        ``inf`` from the step at which a run diverged.
    excess : numpy.ndarray, shape (K+1, S...)
        ``loss`` minus its minimum over the parameters, ½ (u − û)ᵀ H_n (u − û) with u the
        represented OLS weight (u = a w/‖w‖_{H_n} with BN) and û the training-set solution.
    test_excess : numpy.ndarray or None, shape (K+1, S...)
        With ``problem`` given: the population excess ½ (u − u*)ᵀ H (u − u*), for BN with
        the population statistics (u = a w/‖w‖_H, BN at inference with exact running
        statistics).
    batch_loss : numpy.ndarray, shape (K, S...)
        The batch loss of step k (before its update).
    grad_norm2 : numpy.ndarray, shape (K, S...)
        ‖∇_w J_B‖² of step k (for SGD ‖∇ J0_B‖²).
    diverged : bool or numpy.ndarray of bool, shape S
    lr : float or numpy.ndarray, shape S
    w_final : numpy.ndarray, shape (S..., d)
    steps, batch : int
    w : numpy.ndarray or None, shape (K+1, S..., d); ``None`` unless ``record="all"``
    batches : numpy.ndarray of int or None, shape (K, S..., B)
        Indices of the samples of each step's batch; ``None`` unless ``record="all"``.
    a, lr_eff, w_norm, lr_a, a_final : numpy.ndarray or None
        BN-SGD only (``None`` for SGD): the scale a_k (``record="all"``), the effective step
        ε a_k²/‖w_k‖²_{H_n} and ‖w_k‖ (shape (K+1, S...)), ε_a and the last a.
    """

    loss: np.ndarray
    excess: np.ndarray
    test_excess: np.ndarray | None
    batch_loss: np.ndarray
    grad_norm2: np.ndarray
    diverged: np.ndarray
    lr: np.ndarray
    w_final: np.ndarray
    steps: int
    batch: int
    w: np.ndarray | None = None
    batches: np.ndarray | None = None
    a: np.ndarray | None = None
    lr_eff: np.ndarray | None = None
    w_norm: np.ndarray | None = None
    lr_a: np.ndarray | None = None
    a_final: np.ndarray | None = None


def _data(data):
    if not (isinstance(data, tuple) and len(data) == 2):
        raise TypeError("data must be a tuple (X, y) of a training set")
    X = v.finite_array(data[0], "X")
    y = v.finite_array(data[1], "y")
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"X must have shape (n, d) with n >= 2, got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got shape {y.shape}")
    return X, y


def train_problem(data, centered=True) -> OLS:
    """The training set's own OLS problem: what full-batch training minimises.

    With ``centered=True`` (BN, whose batch statistics remove the means) H_n = X_cᵀX_c/n and
    g_n = X_cᵀy_c/n with the centred X_c, y_c, and c_n = yᵀy/n; then
    ``train_problem(data).bn_loss(a, w)`` is the BN loss with the statistics of the whole set.
    With ``centered=False`` (plain least squares) H_n = XᵀX/n, g_n = Xᵀy/n, c_n = yᵀy/n.

    Parameters
    ----------
    data : tuple (X, y)
        X of shape (n, d), y of shape (n,).
    centered : bool

    Returns
    -------
    bnlib.ols.OLS
        The problem (H_n, g_n, c_n) of the whole training set.

    Raises
    ------
    TypeError
        If ``data`` is not a tuple (X, y) of real arrays.
    ValueError
        If shapes disagree, values are not finite, or H_n is singular (e.g. n ≤ d).
    """
    X, y = _data(data)
    if not centered:
        return OLS.from_samples(X, y)
    n = X.shape[0]
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    return OLS(Xc.T @ Xc / n, Xc.T @ yc / n, float(y @ y) / n)


def bn_batch_grad(Xb, yb, a, w):
    """The BN batch loss and its gradients, through the batch statistics, for many runs.

    J_B(a, w) = (1/2B) Σ_i (y_i − a ẑ_i)², ẑ_i = (x_iᵀw − mean)/s_B (biased variance, offset 0).
    With p_B = (1/B) Σ y_i ẑ_i:

        ∂_a J_B = a − p_B,
        ∇_w J_B = (a/(B s_B)) Σ_i x_i (p_B ẑ_i − (y_i − ȳ)),

    which is −(a/s_B)(g_B − (wᵀg_B/s_B²) H_B w) in the centred batch moments
    H_B = X_cᵀX_c/B, g_B = X_cᵀy_c/B: the population gradient with (H, g) replaced by them.
    Costs O(R B d) for R runs.

    Parameters
    ----------
    Xb : numpy.ndarray, shape (R, B, d) or (B, d)
        One batch per run (B ≥ 2), or one batch for all runs.
    yb : numpy.ndarray, shape (R, B) or (B,)
    a : numpy.ndarray, shape (R,)
    w : numpy.ndarray, shape (R, d)

    Returns
    -------
    loss, da : numpy.ndarray, shape (R,)
    dw : numpy.ndarray, shape (R, d)

    Notes
    -----
    No input checks (the inner loop of :func:`~bnlib.minibatch.bn_sgd`); a batch on which
    xᵀw is constant gives ``nan``.
    """
    B = Xb.shape[-2]
    if Xb.ndim == 2:                                     # one batch shared by every run
        xi = w @ Xb.T                                    # (R, B)
    else:
        xi = np.matmul(Xb, w[:, :, None])[:, :, 0]
    xi -= xi.mean(axis=1, keepdims=True)
    s = np.sqrt(np.mean(xi * xi, axis=1))
    z = xi / s[:, None]
    p = np.mean(yb * z, axis=1)
    loss = 0.5 * (np.mean(yb * yb, axis=-1) - 2.0 * a * p + a * a)
    coef = (a / (B * s))[:, None] * (p[:, None] * z - (yb - yb.mean(axis=-1, keepdims=True)))
    dw = coef @ Xb if Xb.ndim == 2 else np.matmul(coef[:, None, :], Xb)[:, 0, :]
    return loss, a - p, dw


def _sgd_batch_grad(Xb, yb, w):
    if Xb.ndim == 2:                                     # one batch shared by every run
        r = yb - w @ Xb.T
        return 0.5 * np.mean(r * r, axis=1), -(r @ Xb) / Xb.shape[0]
    r = yb - np.matmul(Xb, w[:, :, None])[:, :, 0]
    return 0.5 * np.mean(r * r, axis=1), -np.matmul(r[:, None, :], Xb)[:, 0, :] / Xb.shape[1]


def _check_common(lr, steps, batch, n, seed, record, blowup, repeats):
    lr = v.positive_array(lr, "lr")
    steps = v.count(steps, "steps", minimum=0)
    batch = v.count(batch, "batch", minimum=2)
    if batch > n:
        raise ValueError(f"batch must be <= n = {n}, the size of the training set, got {batch}")
    seed = v.count(seed, "seed", minimum=0)
    if record not in _RECORDS:
        raise ValueError(f"record must be one of {_RECORDS}, got {record!r}")
    blowup = v.positive_scalar(blowup, "blowup")
    if blowup <= 1:
        raise ValueError(f"blowup must be > 1, got {blowup}")
    if repeats is not None:
        repeats = v.count(repeats, "repeats", minimum=1)
    return lr, steps, batch, seed, blowup, repeats


def _check_problem(problem, d):
    if problem is None:
        return None
    if not isinstance(problem, OLS):
        raise TypeError(f"problem must be a bnlib.OLS or None, got {type(problem).__name__}")
    if problem.d != d:
        raise ValueError(f"problem has dimension {problem.d}, the data {d}")
    return problem


def _excess(U, target, H):
    """½ (u − û)ᵀ H (u − û) for U of shape (R, d)."""
    E = U - target
    return 0.5 * np.vecdot(E @ H, E)


class _Batches:
    """Per-run batches: a fresh permutation of range(n) per run and epoch (the data are
    gathered in that order once per epoch; a batch is then a slice)."""

    def __init__(self, X, y, batch, runs, seed):
        self.X, self.y, self.batch, self.runs = X, y, batch, runs
        self.n = X.shape[0]
        self.per_epoch = self.n // batch
        self.rng = np.random.default_rng(seed)
        self.full = batch == self.n

    def __call__(self, k):
        """Indices (R, B) and the batch (R, B, d), (R, B) of step k."""
        if self.full:                              # the whole set: no draw needed
            idx = np.broadcast_to(np.arange(self.n), (self.runs, self.n))
            return idx, self.X, self.y
        j = k % self.per_epoch
        if j == 0:
            base = np.broadcast_to(np.arange(self.n), (self.runs, self.n))
            self.perm = self.rng.permuted(base, axis=1)
            self.Xp, self.yp = self.X[self.perm], self.y[self.perm]
        sl = slice(j * self.batch, (j + 1) * self.batch)
        return self.perm[:, sl], self.Xp[:, sl], self.yp[:, sl]


def _run(bn, X, y, problem, lr, lr_a, A, W, steps, batch, seed, record, blowup, shape,
         wd=None, mom=None):
    """The engine: R runs in lockstep. W (R, d), A (R,) or None, lr and lr_a (R,).

    ``wd`` (weight decay υ on w) and ``mom`` (heavy-ball momentum ς on a and w), arrays (R,)
    or None: with either given the step is Δw_k = ς Δw_{k−1} − ε (∇_w J_B + υ w_k),
    w_{k+1} = w_k + Δw_k (Δw_{−1} = 0), and the same for a with ε_a and ∂_a J_B; with both
    None it is the plain step, bit for bit."""
    n, d = X.shape
    R = W.shape[0]
    train = train_problem((X, y), centered=bn)
    Hn, un = train.H, train.u_star
    draw = _Batches(X, y, batch, R, seed)
    rows = {k: [] for k in ("loss", "excess", "test", "w_norm", "lr_eff", "w", "a")}
    brows = {k: [] for k in ("batch_loss", "grad_norm2", "batches")}
    alive = np.ones(R, dtype=bool)
    limit = None
    heavy = wd is not None or mom is not None
    if heavy:
        wd = np.zeros(R) if wd is None else wd
        mom = np.zeros(R) if mom is None else mom
        SW, SA = np.zeros_like(W), np.zeros(R)
    with np.errstate(all="ignore"), threadpool_limits(limits=1, user_api="blas"):
        for k in range(steps + 1):
            if bn:
                n2 = np.vecdot(W @ Hn, W)
                U = (A / np.sqrt(n2))[:, None] * W
            else:
                U = W
            exc = _excess(U, un, Hn)
            loss = train.min_loss + exc
            if limit is None:
                limit = blowup * np.maximum(loss, 0.5 * train.c)
            alive &= loss <= limit
            if bn:
                alive &= n2 < np.inf
            dead = ~alive
            if dead.any():
                W[dead] = np.nan
                U[dead] = np.nan
                if bn:
                    A[dead] = np.nan
            rows["loss"].append(np.where(alive, loss, np.inf))
            rows["excess"].append(np.where(alive, exc, np.inf))
            if problem is not None:
                if bn:
                    Up = (A / np.sqrt(np.vecdot(W @ problem.H, W)))[:, None] * W
                else:
                    Up = W
                te = _excess(Up, problem.u_star, problem.H)
                rows["test"].append(np.where(alive, te, np.inf))
            if bn:
                rows["w_norm"].append(np.sqrt(np.vecdot(W, W)))
                rows["lr_eff"].append(lr * A * A / n2)
            if record == "all":
                rows["w"].append(W.copy())
                if bn:
                    rows["a"].append(A.copy())
            if k == steps:
                break
            idx, Xb, yb = draw(k)
            if bn:
                bl, da, dw = bn_batch_grad(Xb, yb, A, W)
            else:
                bl, dw = _sgd_batch_grad(Xb, yb, W)
            if heavy:
                SW = mom[:, None] * SW - lr[:, None] * (dw + wd[:, None] * W)
                W = W + SW
                if bn:
                    SA = mom * SA - lr_a * da
                    A = A + SA
            else:
                W = W - lr[:, None] * dw
                if bn:
                    A = A - lr_a * da
            brows["batch_loss"].append(np.where(alive, bl, np.nan))
            brows["grad_norm2"].append(np.where(alive, np.vecdot(dw, dw), np.nan))
            if record == "all":
                brows["batches"].append(np.array(idx))

    def st(x, tail=()):
        if not x:
            return np.empty((0,) + shape + tail)
        return np.stack(x).reshape((len(x),) + shape + tail)

    def scal(z):
        return z[()] if z.ndim == 0 else z

    out = dict(
        loss=st(rows["loss"]), excess=st(rows["excess"]),
        test_excess=st(rows["test"]) if problem is not None else None,
        batch_loss=st(brows["batch_loss"]), grad_norm2=st(brows["grad_norm2"]),
        diverged=scal((~alive).reshape(shape)), lr=scal(lr.reshape(shape).copy()),
        w_final=W.reshape(shape + (d,)), steps=steps, batch=batch,
        w=st(rows["w"], (d,)) if record == "all" else None,
        batches=(np.stack(brows["batches"]).reshape((steps,) + shape + (batch,))
                 if record == "all" and steps > 0 else None),
    )
    if bn:
        out.update(a=st(rows["a"]) if record == "all" else None, lr_eff=st(rows["lr_eff"]),
                   w_norm=st(rows["w_norm"]), lr_a=scal(lr_a.reshape(shape).copy()),
                   a_final=scal(A.reshape(shape)))
    return MiniBatchRun(**out)


def _shape(shapes, names, repeats):
    try:
        S = np.broadcast_shapes(*shapes)
    except ValueError:
        listed = ", ".join(f"{nm} {s}" for nm, s in zip(names, shapes, strict=True))
        raise ValueError(f"shapes do not broadcast: {listed}") from None
    return S if repeats is None else (repeats,) + S


def bn_sgd(data, lr, steps, a0, w0, batch, lr_a=1.0, *, seed=0, repeats=None, problem=None,
           record="loss", blowup=1e10, weight_decay=0.0, momentum=0.0):
    """Mini-batch SGD with a BN layer: a_{k+1} = a_k − ε_a ∂_a J_B, w_{k+1} = w_k − ε ∇_w J_B.

    J_B is the BN loss of the step's batch, normalised by the batch statistics, and its
    gradient is taken through them (:func:`~bnlib.minibatch.bn_batch_grad`).

    Parameters
    ----------
    data : tuple (X, y)
        The training set, X of shape (n, d), y of shape (n,).
    lr : float or array_like
        Weight step(s) ε > 0.
    steps : int
        Number of steps K ≥ 0.
    a0 : float or array_like
        Start of the scale a.
    w0 : array_like, shape (d,) or (S..., d)
        Start of the weights, nonzero.
    batch : int
        Batch size B, 2 ≤ B ≤ n. B = n is full-batch BNGD on the training set.
    lr_a : float or array_like
        Step(s) ε_a > 0 of a.
    seed : int
        Seed of the batch draws (one generator for all runs; each run draws its own batches).
    repeats : int, optional
        If given, S independent repeats of every run, on a new leading axis of the result.
    problem : bnlib.ols.OLS, optional
        The population the data came from; adds ``test_excess``.
    record : {"loss", "all"}
        ``"all"`` also keeps every iterate and the batch indices.
    blowup : float
        A run is diverged once its training loss exceeds ``blowup * max(J_n(a0, w0), c_n/2)``
        or its state is not finite.
    weight_decay : float or array_like
        Coupled weight decay υ ≥ 0 on w (not on a): the w-step is taken on
        J_B + υ‖w‖²/2. Broadcast with the batch shape like ``lr``.
    momentum : float or array_like
        Heavy-ball momentum ς ∈ [0, 1) on a and w: Δw_k = ς Δw_{k−1} − ε (∇_w J_B + υ w_k),
        w_{k+1} = w_k + Δw_k (Δw_{−1} = 0), the same for a with ε_a (SGD with momentum as
        frameworks write it, for a constant step). ``grad_norm2`` stays ‖∇_w J_B‖². With
        υ = ς = 0 (the default) the runs are the plain ones bit for bit.

    Returns
    -------
    MiniBatchRun

    Raises
    ------
    TypeError
        If ``data`` is not a tuple (X, y), ``problem`` not an OLS, or an argument not numeric.
    ValueError
        If a step size is not > 0 and finite, ``steps < 0``, ``batch`` is not in [2, n],
        ``w0`` has the wrong shape or is zero, shapes do not broadcast, ``problem`` has
        another dimension, ``weight_decay < 0`` or ``momentum`` is outside [0, 1).
    """
    X, y = _data(data)
    n, d = X.shape
    lr, steps, batch, seed, blowup, repeats = _check_common(lr, steps, batch, n, seed, record,
                                                            blowup, repeats)
    problem = _check_problem(problem, d)
    lr_a = v.positive_array(lr_a, "lr_a")
    a0 = v.finite_array(a0, "a0")
    w0 = v.vector_batch(w0, "w0", d)
    if np.any(np.all(w0 == 0, axis=-1)):
        raise ValueError("w0 must be nonzero: BN is undefined at w = 0")
    wd, mom = v.heavy_options(weight_decay, momentum)
    names, shapes = _option_shapes(wd, mom)
    shape = _shape([lr.shape, lr_a.shape, a0.shape, w0.shape[:-1]] + shapes,
                   ["lr", "lr_a", "a0", "w0[..., 0]"] + names, repeats)
    R = int(np.prod(shape))
    W = np.array(np.broadcast_to(w0, shape + (d,)), dtype=float).reshape(R, d)
    A = np.array(np.broadcast_to(a0, shape), dtype=float).reshape(R)
    eps = np.ascontiguousarray(np.broadcast_to(lr, shape)).reshape(R)
    eps_a = np.ascontiguousarray(np.broadcast_to(lr_a, shape)).reshape(R)
    return _run(True, X, y, problem, eps, eps_a, A, W, steps, batch, seed, record, blowup, shape,
                *_flat_options(wd, mom, shape, R))


def _option_shapes(wd, mom):
    pairs = [(nm, x.shape) for nm, x in (("weight_decay", wd), ("momentum", mom)) if x is not None]
    return [nm for nm, _ in pairs], [s for _, s in pairs]


def _flat_options(wd, mom, shape, R):
    """Weight decay and momentum broadcast to the run shape (a leading ``repeats`` axis
    included) and flattened to (R,); None stays None."""
    def flat(x):
        if x is None:
            return None
        return np.ascontiguousarray(np.broadcast_to(x, shape), dtype=float).reshape(R)
    return flat(wd), flat(mom)


def sgd(data, lr, steps, batch, w0=None, *, seed=0, repeats=None, problem=None, record="loss",
        blowup=1e10, weight_decay=0.0, momentum=0.0):
    """Plain mini-batch SGD on least squares: w_{k+1} = w_k − ε ∇J0_B(w_k).

    Parameters
    ----------
    data : tuple (X, y)
    lr : float or array_like
        Step size(s) ε > 0.
    steps : int
    batch : int
        Batch size B, 2 ≤ B ≤ n (B = n is GD on ``train_problem(data, centered=False)``).
    w0 : array_like, shape (d,) or (S..., d), optional
        Start; zeros by default.
    seed, repeats, problem, record, blowup, weight_decay, momentum
        As in :func:`~bnlib.minibatch.bn_sgd` (the decay on w, the momentum on w).

    Returns
    -------
    MiniBatchRun
        The BN-only fields are ``None``.

    Raises
    ------
    TypeError, ValueError
        As in :func:`~bnlib.minibatch.bn_sgd`.
    """
    X, y = _data(data)
    n, d = X.shape
    lr, steps, batch, seed, blowup, repeats = _check_common(lr, steps, batch, n, seed, record,
                                                            blowup, repeats)
    problem = _check_problem(problem, d)
    w0 = np.zeros(d) if w0 is None else v.vector_batch(w0, "w0", d)
    wd, mom = v.heavy_options(weight_decay, momentum)
    names, shapes = _option_shapes(wd, mom)
    shape = _shape([lr.shape, w0.shape[:-1]] + shapes, ["lr", "w0[..., 0]"] + names, repeats)
    R = int(np.prod(shape))
    W = np.array(np.broadcast_to(w0, shape + (d,)), dtype=float).reshape(R, d)
    eps = np.ascontiguousarray(np.broadcast_to(lr, shape)).reshape(R)
    return _run(False, X, y, problem, eps, None, None, W, steps, batch, seed, record, blowup,
                shape, *_flat_options(wd, mom, shape, R))
