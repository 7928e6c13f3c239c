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

With B = n BN-SGD is BNGD (:func:`~bnlib.descent.bngd`) on
:func:`~bnlib.minibatch.train_problem` and SGD is GD on ``train_problem(data, centered=False)``.
Both run a grid at once as :mod:`bnlib.descent` does (``lr``, ``lr_a``, ``a0``, ``w0``
broadcast to a batch shape; ``repeats=S`` adds a leading axis of S repeats), every run
drawing its own batches, with the divergence conventions of :mod:`bnlib.descent`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from . import PUBLIC
from . import checks as v
from .descent import Runs, drive, option_shapes, options
from .ols import OLS, check_problem

__all__ = list(PUBLIC["minibatch"])


@dataclass(frozen=True, kw_only=True)
class MiniBatchRun:
    """The result of :func:`~bnlib.minibatch.sgd`; K steps, batch shape S (see the module docstring).

    Attributes
    ----------
    loss : numpy.ndarray, shape (K+1, S...)
        The training loss on the whole set, J0_n(w_k) or J_n(a_k, w_k) with BN on the whole
        set's statistics (:func:`~bnlib.minibatch.train_problem`); ``inf`` after divergence.
    excess : numpy.ndarray, shape (K+1, S...)
        ``loss`` minus its minimum over the parameters, ½ (u − û)ᵀ H_n (u − û) with u the
        represented OLS weight (u = a w/‖w‖_{H_n} with BN) and û the training-set solution.
    test_excess : numpy.ndarray or None, shape (K+1, S...)
        With ``problem`` given: the population excess ½ (u − u*)ᵀ H (u − u*), for BN with
        the population statistics (u = a w/‖w‖_H, exact running statistics).
    batch_loss, grad_norm2 : numpy.ndarray, shape (K, S...)
        The batch loss of step k before its update and ‖∇_w J_B‖² (SGD: ‖∇J0_B‖²); ``nan``
        once the run diverged.
    diverged, lr, w_final, steps
        As in :class:`~bnlib.descent.GDRun`, batch shape S.
    batch : int
    w : numpy.ndarray or None, shape (K+1, S..., d); ``None`` unless ``record="all"``
    batches : numpy.ndarray of int or None, shape (K, S..., B)
        Indices of the samples of each step's batch; ``None`` unless ``record="all"``.
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
    w: np.ndarray | None
    batches: np.ndarray | None


@dataclass(frozen=True, kw_only=True)
class BNMiniBatchRun(MiniBatchRun):
    """The result of :func:`~bnlib.minibatch.bn_sgd`.

    The fields of :class:`~bnlib.minibatch.MiniBatchRun` plus ``a`` (``None`` unless
    ``record="all"``), ``lr_eff`` (ε a_k²/‖w_k‖²_{H_n}), ``w_norm``, ``lr_a`` and ``a_final``
    as in :class:`~bnlib.descent.BNGDRun`, batch shape S.
    """

    a: np.ndarray | None
    lr_eff: np.ndarray
    w_norm: np.ndarray
    lr_a: np.ndarray
    a_final: np.ndarray


def _data(data):
    if not (isinstance(data, tuple) and len(data) == 2):
        raise TypeError("data must be a tuple (X, y) of a training set")
    X, y = v.finite_array(data[0], "X"), v.finite_array(data[1], "y")
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"X must have shape (n, d) with n >= 2, got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got shape {y.shape}")
    return X, y


def train_problem(data, centered=True) -> OLS:
    """Return the training set's own OLS problem: what full-batch training minimises."""
    X, y = _data(data)
    if not centered:
        return OLS.from_samples(X, y)
    n = X.shape[0]
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    return OLS(Xc.T @ Xc / n, Xc.T @ yc / n, float(y @ y) / n)


def _xw(Xb, w):
    """Return x_iᵀw of every run's batch, (R, B); Xb is (B, d) shared by every run or (R, B, d)."""
    return w @ Xb.T if Xb.ndim == 2 else np.matmul(Xb, w[:, :, None])[:, :, 0]


def _back(coef, Xb):
    """Return Σ_i coef_i x_i of every run, (R, d)."""
    return coef @ Xb if Xb.ndim == 2 else np.matmul(coef[:, None, :], Xb)[:, 0, :]


def bn_batch_grad(Xb, yb, a, w):
    """Return the BN batch loss and its gradients, through the batch statistics, for many runs."""
    B = Xb.shape[-2]
    xi = _xw(Xb, w)
    xi -= xi.mean(axis=1, keepdims=True)
    s = np.sqrt(np.mean(xi * xi, axis=1))
    z = xi / s[:, None]
    p = np.mean(yb * z, axis=1)
    loss = 0.5 * (np.mean(yb * yb, axis=-1) - 2.0 * a * p + a * a)
    coef = (a / (B * s))[:, None] * (p[:, None] * z - (yb - yb.mean(axis=-1, keepdims=True)))
    return loss, a - p, _back(coef, Xb)


def _sgd_batch_grad(Xb, yb, w):
    r = yb - _xw(Xb, w)
    return 0.5 * np.mean(r * r, axis=1), -_back(r, Xb) / Xb.shape[-2]


def _excess(U, target, H):
    """Return ½ (u − û)ᵀ H (u − û) for U of shape (R, d)."""
    E = U - target
    return 0.5 * np.vecdot(E @ H, E)


class _Batches:
    """Per-run batches: a fresh permutation of range(n) per run and epoch.

    The data are gathered in that order once per epoch; a batch is then a slice. With ``log``
    the indices of every batch are kept.
    """

    def __init__(self, X, y, batch, runs, seed, log):
        self.X, self.y, self.batch, self.runs = X, y, batch, runs
        self.n, self.k = X.shape[0], 0
        self.per_epoch = self.n // batch
        self.rng = np.random.default_rng(seed)
        self.log = [] if log else None

    def __call__(self):
        """Return the batch (R, B, d), (R, B) of the next step (the whole set: (n, d), (n,))."""
        k, self.k = self.k, self.k + 1
        if self.batch == self.n:                   # the whole set: no draw needed
            idx, X, y = np.broadcast_to(np.arange(self.n), (self.runs, self.n)), self.X, self.y
        else:
            j = k % self.per_epoch
            if j == 0:
                base = np.broadcast_to(np.arange(self.n), (self.runs, self.n))
                self.perm = self.rng.permuted(base, axis=1)
                self.Xp, self.yp = self.X[self.perm], self.y[self.perm]
            sl = slice(j * self.batch, (j + 1) * self.batch)
            idx, X, y = self.perm[:, sl], self.Xp[:, sl], self.yp[:, sl]
        if self.log is not None:
            self.log.append(np.array(idx))
        return X, y


class _MiniBatch(Runs):
    """The step of SGD (``bn=False``) or BN-SGD on a training set, for :func:`~bnlib.descent.drive`."""

    step_names = ("batch_loss", "grad_norm2")
    prunable = False       # fewer rows change the rounding of the products: keep all runs

    def __init__(self, data, problem, bn, draw, opt, flat, W, eps, A=None, eps_a=None):
        self.bn, self.problem, self.draw, self.W, self.eps, self.A, self.eps_a = (
            bn, problem, draw, W, eps, A, eps_a)
        self.train = train_problem(data, centered=bn)
        self.shape, self.steps, self.all = (W.shape[0],), opt.steps, opt.record == "all"
        self.names = (("test_excess",) if problem is not None else ()) + (
            ("w_norm", "lr_eff") if bn else ()) + (
            (("w", "a") if bn else ("w",)) if opt.record == "all" else ())
        self.fills = tuple(np.inf if nm == "test_excess" else np.nan for nm in self.names)
        self.heavy_ball(opt, flat, scale=bn)

    def _u(self, H):
        """Return the OLS weight the state represents (BN: a w/‖w‖_H) and ‖w‖²_H."""
        if not self.bn:
            return self.W, None
        n2 = np.vecdot(self.W @ H, self.W)
        return (self.A / np.sqrt(n2))[:, None] * self.W, n2

    def measure(self):
        """Return the training loss and excess, whether ‖w‖_H is finite, and the records."""
        U, n2 = self._u(self.train.H)
        exc = _excess(U, self.train.u_star, self.train.H)
        values = ()
        if self.problem is not None:
            values += (_excess(self._u(self.problem.H)[0], self.problem.u_star, self.problem.H),)
        if self.bn:
            values += (np.sqrt(np.vecdot(self.W, self.W)), self.eps * self.A * self.A / n2)
        if self.all:
            values += (self.W,) + ((self.A,) if self.bn else ())   # the driver copies them
        return self.train.min_loss + exc, exc, None if n2 is None else n2 < np.inf, values

    def step(self):
        """Move every run one step on its next batch; return the batch loss and ‖∇_w J_B‖²."""
        Xb, yb = self.draw()
        if self.bn:
            bl, da, dw = bn_batch_grad(Xb, yb, self.A, self.W)
        else:
            bl, dw = _sgd_batch_grad(Xb, yb, self.W)
        if self.heavy:
            self.SW = self.mom[:, None] * self.SW - self.eps[:, None] * (dw + self.wd[:, None] * self.W)
            self.W = self.W + self.SW
            if self.bn:
                self.SA = self.mom * self.SA - self.eps_a * da
                self.A = self.A + self.SA
        else:
            self.W = self.W - self.eps[:, None] * dw
            if self.bn:
                self.A = self.A - self.eps_a * da
        return bl, np.vecdot(dw, dw)

    def finals(self):
        """Return the last state; the batch indices are drawn to the end if the runs all died."""
        while self.draw.log is not None and self.draw.k < self.steps:
            self.draw()
        return {"w_final": self.W} | ({"a_final": self.A} if self.bn else {})


def _launch(data, problem, shape, opt, draws, lr, w0, scale=None):
    """Broadcast the runs to ``shape``, flatten, drive and reshape into the result.

    ``draws`` is (batch, seed); ``scale`` is None for SGD, (lr_a, a0) for BN-SGD.
    """
    X, y = data
    R, d = int(np.prod(shape)), X.shape[1]

    def flat(x):
        return np.array(np.broadcast_to(x, shape), dtype=float).reshape(R)

    W = np.array(np.broadcast_to(w0, shape + (d,)), dtype=float).reshape(R, d)
    draw = _Batches(X, y, draws[0], R, draws[1], opt.record == "all")
    bn = scale is not None
    stepper = _MiniBatch(data, problem, bn, draw, opt, flat, W, flat(lr),
                         *((flat(scale[1]), flat(scale[0])) if bn else ()))
    with threadpool_limits(limits=1, user_api="blas"):
        res = drive(stepper, opt, stepper.train.c)

    def st(x, tail=()):
        return x.reshape((len(x),) + shape + tail)

    out = dict(loss=st(res["loss"]), excess=st(res["excess"]),
               test_excess=st(res["test_excess"]) if problem is not None else None,
               batch_loss=st(res["batch_loss"]), grad_norm2=st(res["grad_norm2"]),
               diverged=v.scalar_or_array(~res["alive"].reshape(shape), to=None),
               lr=v.scalar_or_array(np.broadcast_to(lr, shape).copy(), to=None),
               w_final=res["w_final"].reshape(shape + (d,)), steps=opt.steps, batch=draws[0],
               w=st(res["w"], (d,)) if "w" in res else None,
               batches=(st(np.stack(draw.log), (draws[0],)) if draw.log else None))
    if not bn:
        return MiniBatchRun(**out)
    return BNMiniBatchRun(**out, a=st(res["a"]) if "a" in res else None,
                          lr_eff=st(res["lr_eff"]), w_norm=st(res["w_norm"]),
                          lr_a=v.scalar_or_array(np.broadcast_to(scale[0], shape).copy(), to=None),
                          a_final=v.scalar_or_array(res["a_final"].reshape(shape), to=None))


def _check(data, lr, steps, batch, seed, repeats, problem, kw):
    """Validate the arguments SGD and BN-SGD share; return them with the run options."""
    X, y = _data(data)
    n, d = X.shape
    lr = v.positive_array(lr, "lr")
    batch = v.count(batch, "batch", minimum=2)
    if batch > n:
        raise ValueError(f"batch must be <= n = {n}, the size of the training set, got {batch}")
    seed = v.count(seed, "seed", minimum=0)
    unknown = set(kw) - {"record", "blowup", "weight_decay", "momentum"}
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
    opt = options(steps, **{"record": "loss", **kw})
    if repeats is not None:
        repeats = v.count(repeats, "repeats", minimum=1)
    if problem is not None and check_problem(problem).d != d:
        raise ValueError(f"problem has dimension {problem.d}, the data {d}")
    return (X, y), lr, opt, (batch, seed), repeats, problem


def _shape(repeats, **shapes):
    shape = v.broadcast(**shapes)
    return shape if repeats is None else (repeats,) + shape


def bn_sgd(data, lr, steps, a0, w0, batch, lr_a=1.0, *, seed=0, repeats=None, problem=None,
           **options):
    """Mini-batch SGD with a BN layer: a_{k+1} = a_k − ε_a ∂_a J_B, w_{k+1} = w_k − ε ∇_w J_B.

    J_B is the BN loss of the step's batch, normalised by the batch statistics, and its
    gradient is taken through them (:func:`~bnlib.minibatch.bn_batch_grad`).

    Parameters
    ----------
    data : tuple (X, y)
        The training set, X of shape (n, d), y of shape (n,).
    lr, steps, a0, w0, lr_a
        As in :func:`~bnlib.descent.bngd` (``w0`` of shape (d,) or (S..., d), nonzero).
    batch : int
        Batch size B, 2 ≤ B ≤ n. B = n is full-batch BNGD on the training set.
    seed : int
        Seed of the batch draws (one generator for all runs; each run draws its own batches).
    repeats : int, optional
        If given, S independent repeats of every run, on a new leading axis of the result.
    problem : bnlib.ols.OLS, optional
        The population the data came from; adds ``test_excess``.
    **options
        ``record`` ({"loss", "all"}, default "loss"; ``"all"`` also keeps every iterate and the
        batch indices), ``blowup``, ``weight_decay`` and ``momentum`` as in
        :func:`~bnlib.descent.bngd`, keywords only, with J_B in place of J: the divergence is
        measured on the training loss J_n, the decay acts on w only, ``grad_norm2`` stays
        ‖∇_w J_B‖².

    Returns
    -------
    BNMiniBatchRun
    """
    data, lr, opt, draws, repeats, problem = _check(data, lr, steps, batch, seed, repeats,
                                                    problem, options)
    lr_a = v.positive_array(lr_a, "lr_a")
    a0 = v.finite_array(a0, "a0")
    w0 = v.vector_batch(w0, "w0", data[0].shape[1])
    if np.any(np.all(w0 == 0, axis=-1)):
        raise ValueError("w0 must be nonzero: BN is undefined at w = 0")
    shape = _shape(repeats, lr=lr.shape, lr_a=lr_a.shape, a0=a0.shape,
                   **{"w0[..., 0]": w0.shape[:-1]}, **option_shapes(opt))
    return _launch(data, problem, shape, opt, draws, lr, w0, (lr_a, a0))


def sgd(data, lr, steps, batch, w0=None, *, seed=0, repeats=None, problem=None, **options):
    """Plain mini-batch SGD on least squares: w_{k+1} = w_k − ε ∇J0_B(w_k).

    Parameters and errors as :func:`~bnlib.minibatch.bn_sgd`, without a and its ``a0``,
    ``lr_a``; ``w0`` (shape (d,) or (S..., d)) is zero by default. Returns a
    :class:`~bnlib.minibatch.MiniBatchRun`.
    """
    data, lr, opt, draws, repeats, problem = _check(data, lr, steps, batch, seed, repeats,
                                                    problem, options)
    d = data[0].shape[1]
    w0 = np.zeros(d) if w0 is None else v.vector_batch(w0, "w0", d)
    shape = _shape(repeats, lr=lr.shape, **{"w0[..., 0]": w0.shape[:-1]}, **option_shapes(opt))
    return _launch(data, problem, shape, opt, draws, lr, w0)
