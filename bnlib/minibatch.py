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

The module also holds the closed forms the mini-batch chapter derives for Gaussian data
(:func:`~bnlib.minibatch.grad_noise`, :func:`~bnlib.minibatch.norm_growth`,
:func:`~bnlib.minibatch.scale_floor`, :func:`~bnlib.minibatch.sgd_floor`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from . import _validate as v
from .bn import batch_std_mean
from .ols import OLS

__all__ = ["MiniBatchRun", "bn_sgd", "sgd", "bn_batch_grad", "train_problem", "grad_noise",
           "norm_growth", "scale_floor", "sgd_floor"]

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


# ---------------------------------------------------------------------------- helpers
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


def _run(bn, X, y, problem, lr, lr_a, A, W, steps, batch, seed, record, blowup, shape):
    """The engine: R runs in lockstep. W (R, d), A (R,) or None, lr and lr_a (R,)."""
    n, d = X.shape
    R = W.shape[0]
    train = train_problem((X, y), centered=bn)
    Hn, un = train.H, train.u_star
    draw = _Batches(X, y, batch, R, seed)
    rows = {k: [] for k in ("loss", "excess", "test", "w_norm", "lr_eff", "w", "a")}
    brows = {k: [] for k in ("batch_loss", "grad_norm2", "batches")}
    alive = np.ones(R, dtype=bool)
    limit = None
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
                W = W - lr[:, None] * dw
                A = A - lr_a * da
            else:
                bl, dw = _sgd_batch_grad(Xb, yb, W)
                W = W - lr[:, None] * dw
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


# ---------------------------------------------------------------------------- public runs
def bn_sgd(data, lr, steps, a0, w0, batch, lr_a=1.0, *, seed=0, repeats=None, problem=None,
           record="loss", blowup=1e10):
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

    Returns
    -------
    MiniBatchRun

    Raises
    ------
    TypeError
        If ``data`` is not a tuple (X, y), ``problem`` not an OLS, or an argument not numeric.
    ValueError
        If a step size is not > 0 and finite, ``steps < 0``, ``batch`` is not in [2, n],
        ``w0`` has the wrong shape or is zero, shapes do not broadcast, or ``problem`` has
        another dimension.
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
    shape = _shape([lr.shape, lr_a.shape, a0.shape, w0.shape[:-1]],
                   ["lr", "lr_a", "a0", "w0[..., 0]"], repeats)
    R = int(np.prod(shape))
    W = np.array(np.broadcast_to(w0, shape + (d,)), dtype=float).reshape(R, d)
    A = np.array(np.broadcast_to(a0, shape), dtype=float).reshape(R)
    eps = np.ascontiguousarray(np.broadcast_to(lr, shape)).reshape(R)
    eps_a = np.ascontiguousarray(np.broadcast_to(lr_a, shape)).reshape(R)
    return _run(True, X, y, problem, eps, eps_a, A, W, steps, batch, seed, record, blowup, shape)


def sgd(data, lr, steps, batch, w0=None, *, seed=0, repeats=None, problem=None, record="loss",
        blowup=1e10):
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
    seed, repeats, problem, record, blowup
        As in :func:`~bnlib.minibatch.bn_sgd`.

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
    shape = _shape([lr.shape, w0.shape[:-1]], ["lr", "w0[..., 0]"], repeats)
    R = int(np.prod(shape))
    W = np.array(np.broadcast_to(w0, shape + (d,)), dtype=float).reshape(R, d)
    eps = np.ascontiguousarray(np.broadcast_to(lr, shape)).reshape(R)
    return _run(False, X, y, problem, eps, None, None, W, steps, batch, seed, record, blowup,
                shape)


# ---------------------------------------------------------------------------- closed forms
def _batch_sizes(batch, minimum=2):
    b = np.asarray(batch)
    if b.dtype == bool or not np.issubdtype(b.dtype, np.integer):
        raise TypeError(f"batch must hold integers, got {b.dtype}")
    if np.any(b < minimum):
        raise ValueError(f"batch must be >= {minimum} everywhere, got minimum {int(b.min())}")
    return b


def _noise_var(problem):
    if not isinstance(problem, OLS):
        raise TypeError(f"problem must be a bnlib.OLS, got {type(problem).__name__}")
    return 2.0 * problem.min_loss


def _out(x):
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


def grad_noise(problem, batch):
    """E‖∇_w J_B(a, w)‖² · ‖w‖²_H / a² at a weight w parallel to u*, for Gaussian batches.

    For x ~ N(0, H), y = xᵀu* + σξ and w = s u*, the batch gradient is pure label noise,
    ∇_w J_B = −(aσ/s_B) P_B X_cᵀξ_c/B with P_B = I − H_B u* u*ᵀ/(u*ᵀH_B u*), and

        E‖∇_w J_B‖² = (a² σ² / ‖w‖²_H) · tr(H*) · (B − 2) / (B (B − 3)),   B ≥ 4,

    with H* = H − H u* u*ᵀH/(u*ᵀH u*) the effective Hessian. B = 2 gives 0 (a BN output over
    two samples is ±1 whatever w, so the gradient vanishes); B = 3 gives ``inf`` (the mean
    is infinite).

    Parameters
    ----------
    problem : bnlib.ols.OLS
        Its label-noise variance is σ² = 2 J*.
    batch : int or array_like of int, every entry >= 2

    Returns
    -------
    float or numpy.ndarray, the shape of ``batch``
        σ² tr(H*) (B − 2)/(B (B − 3)).

    Raises
    ------
    TypeError
        If ``problem`` is not an OLS or ``batch`` not integers.
    ValueError
        If an entry of ``batch`` is below 2.
    """
    s2 = _noise_var(problem)
    b = _batch_sizes(batch).astype(float)
    H, u = problem.H, problem.u_star
    Hu = H @ u
    tr_star = np.trace(H) - Hu @ Hu / (u @ Hu)
    with np.errstate(divide="ignore"):
        q = np.where(b == 2, 0.0, np.where(b == 3, np.inf, (b - 2) / (b * np.maximum(b - 3, 1))))
    return _out(s2 * tr_star * q)


def norm_growth(v0, lr, c, k):
    """‖w_k‖² predicted from E‖w_{k+1}‖² − ‖w_k‖² = ε² c / ‖w_k‖² (noise-driven growth).

    The continuous version dv/dk = ε² c / v of the recursion gives v_k² = v_0² + 2 ε² c k.

    Parameters
    ----------
    v0 : float or array_like
        ‖w_0‖² > 0.
    lr : float or array_like
        ε > 0.
    c : float or array_like
        ‖w‖² E‖∇_w J_B‖², ≥ 0 (a scale-free constant, e.g. from :func:`grad_noise`).
    k : array_like
        Steps ≥ 0; everything broadcasts.

    Returns
    -------
    float or numpy.ndarray

    Raises
    ------
    ValueError
        If ``v0`` or ``lr`` is not > 0, or ``c`` or ``k`` is negative.
    """
    v0 = v.positive_array(v0, "v0")
    lr = v.positive_array(lr, "lr")
    c = v.finite_array(c, "c")
    k = v.finite_array(k, "k")
    if np.any(c < 0) or np.any(k < 0):
        raise ValueError("c and k must be >= 0")
    return _out(np.sqrt(v0**2 + 2.0 * lr**2 * c * k))


def scale_floor(problem, batch, lr_a):
    """Stationary population excess E[J(a, u*)] − J* of the scale a alone (w along u*).

    With w fixed along u* and independent Gaussian batches, a_{k+1} = (1 − ε_a) a_k + ε_a p_B
    with p_B = wᵀg_B/s_B, whose mean is ‖u*‖_H E[s_B] (:func:`~bnlib.bn.batch_std_mean`) and
    variance V = m ((B − 1)/B − E[s_B]²) + σ²/B, m = ‖u*‖²_H. The stationary a has that mean
    and variance ε_a V/(2 − ε_a), so

        E[½ (a − ‖u*‖_H)²] = ½ [ m (1 − E[s_B])² + ε_a V / (2 − ε_a) ].

    Parameters
    ----------
    problem : bnlib.ols.OLS
    batch : int or array_like of int, >= 2
    lr_a : float or array_like, in (0, 2)

    Returns
    -------
    float or numpy.ndarray (broadcast of ``batch`` and ``lr_a``)

    Raises
    ------
    TypeError
        If ``problem`` is not an OLS or ``batch`` not integers.
    ValueError
        If ``batch`` < 2 or ``lr_a`` is not in (0, 2).
    """
    s2 = _noise_var(problem)
    b = _batch_sizes(batch)
    lr_a = v.positive_array(lr_a, "lr_a")
    if np.any(lr_a >= 2):
        raise ValueError("lr_a must be < 2 for a stationary scale")
    m = float(problem.u_star @ problem.g)
    es = batch_std_mean(b)
    var = m * ((b - 1) / b - es**2) + s2 / b
    return _out(0.5 * (m * (1 - es) ** 2 + lr_a * var / (2 - lr_a)))


def sgd_floor(problem, batch, lr):
    """Stationary excess E[J0(w)] − J* of plain SGD with independent Gaussian batches.

    For x ~ N(0, H) the second moment P of w − u* is stationary when
    P = E[(I − εH_B) P (I − εH_B)] + ε²σ²H/B, and E[H_B P H_B] = (1 + 1/B) HPH + H tr(HP)/B.
    In H's eigenbasis P is diagonal and t = tr(HP) solves t = (t + σ²) S with
    S = (ε/B) Σ_i λ_i / (2 − ε (1 + 1/B) λ_i), so the excess is ½ t = ½ σ² S/(1 − S)
    (≈ ε σ² tr(H)/(4B) for small ε); ``inf`` where no stationary state exists.

    Parameters
    ----------
    problem : bnlib.ols.OLS
    batch : int or array_like of int, >= 1
    lr : float or array_like, > 0

    Returns
    -------
    float or numpy.ndarray (broadcast of ``batch`` and ``lr``)

    Raises
    ------
    TypeError
        If ``problem`` is not an OLS or ``batch`` not integers.
    ValueError
        If ``batch`` < 1 or ``lr`` is not > 0.
    """
    s2 = _noise_var(problem)
    b = _batch_sizes(batch, minimum=1).astype(float)
    lr = v.positive_array(lr, "lr")
    b, lr = np.broadcast_arrays(b, lr)
    lam = problem.eigvals
    den = 2.0 - (lr * (1 + 1 / b))[..., None] * lam
    with np.errstate(divide="ignore", invalid="ignore"):
        S = (lr / b) * np.sum(lam / den, axis=-1)
        out = np.where(np.all(den > 0, axis=-1) & (S < 1), 0.5 * s2 * S / (1 - S), np.inf)
    return _out(out)
