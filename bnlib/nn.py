"""Networks: a numpy multilayer perceptron with optional BN, its data and its training.

This module carries the book's OLS findings over to networks, as in the experiments of
Cai, Li & Shen (2019): a dense network whose every dense layer is followed by BN (before the
activation: ReLU in hidden layers, softmax at the output), trained by plain mini-batch SGD
with a constant step ε for the weights and biases and a separate step ε_a for BN's γ and β.

Many networks train at once: every parameter array carries a leading *model* shape P (e.g.
``(seeds, step sizes)``), and the models of a seed see the same mini-batches in lockstep.

Conventions
-----------
- ``sizes = (d_in, h_1, ..., h_L, n_classes)``; layer l maps ``sizes[l]`` to ``sizes[l+1]``.
- Parameters are a dict of arrays: ``"W{l}"`` of shape (P..., sizes[l], sizes[l+1]); without
  BN a bias ``"b{l}"`` of shape (P..., 1, sizes[l+1]); with BN ``"gamma{l}"``, ``"beta{l}"`` and
  the running averages ``"mean{l}"``, ``"var{l}"`` of shape (P..., 1, sizes[l+1]) instead
  (a bias in front of BN would be removed by the centring, so it is left out).
- A mini-batch ``X`` has shape (B, d_in) (shared by all models) or (Q..., B, d_in) with Q
  broadcasting to P; labels ``y`` are integers in [0, n_classes), shape (B,) or (Q..., B).
- Losses: ``"cross_entropy"`` (mean over the batch of −log softmax) and ``"quadratic"``,
  mean over the batch *and* the classes of (onehot − softmax)², the loss of the paper's code.

The effective step of a BN unit, ε γ_j²/(σ_j² + ν) with σ_j² the batch variance of
z_j = x·w_j, is the network analogue of BNGD's ε̂ = ε a²/‖w‖²_H.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
from threadpoolctl import threadpool_limits

from . import PUBLIC
from . import checks as v
from .bn import batchnorm_forward, normalize, normalize_backward
from .decay import angular_update
from .descent import drive, option_shapes
from .descent import options as descent_options

__all__ = list(PUBLIC["nn"])


@dataclass(frozen=True)
class Digits:
    """A fixed train/test split of scikit-learn's handwritten digits.

    Attributes
    ----------
    X_train, X_test : numpy.ndarray
        Shapes (n_train, 64) and (n_test, 64): 8×8 images flattened row by row, pixels / 16.
    y_train, y_test : numpy.ndarray of int
        Shapes (n_train,) and (n_test,): digit labels 0–9.
    seed : int
    test_fraction : float
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    seed: int
    test_fraction: float
    n_classes: int = 10


def load_digits_split(seed=0, test_fraction=0.25):
    """Load scikit-learn's bundled digits (1,797 images, no download) and split them.

    The first ``round(test_fraction * 1797)`` images of the permutation of
    ``numpy.random.default_rng(seed)`` form the test set, the rest the training set.

    Returns
    -------
    Digits
    """
    from sklearn.datasets import load_digits

    seed = v.count(seed, "seed")
    test_fraction = v.positive_scalar(test_fraction, "test_fraction")    # < 1: checked below
    data = load_digits()
    X = data.data.astype(np.float64) / 16.0
    y = data.target.astype(np.int64)
    n_test = int(round(test_fraction * len(y)))
    if not 0 < n_test < len(y):
        raise ValueError(f"test_fraction {test_fraction} leaves an empty train or test set")
    perm = np.random.default_rng(seed).permutation(len(y))
    test, train = perm[:n_test], perm[n_test:]
    return Digits(X[train], y[train], X[test], y[test], seed, test_fraction)


_LOSSES = ("cross_entropy", "quadratic")


def _onehot(y, n):
    return (y[..., None] == np.arange(n)).astype(np.float64)


def _softmax(z):
    """Return z − max z, the sum of the exponentials and the softmax, along the last axis."""
    zs = z - z.max(axis=-1, keepdims=True)
    e = np.exp(zs)
    s = e.sum(axis=-1, keepdims=True)
    return zs, s, e / s


def _matmul_batch_major(a, b):
    """Return ``a @ b``, shape (P..., B, n), laid out in memory as (B, P..., n).

    The same numbers as ``a @ b`` (one matrix product per model either way); the layout
    makes the BN layer's means and sums over the batch, and its broadcasts of (P..., 1, n)
    arrays, run along contiguous rows of all models at once instead of rows of n (slow for
    n = 10), adding in the same order.
    """
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    out = np.empty((a.shape[-2],) + lead + (b.shape[-1],))
    return np.matmul(a, b, out=np.moveaxis(out, 0, -2))


@dataclass(frozen=True)
class MLP:
    """A dense network ``sizes[0] → … → sizes[-1]`` with ReLU hidden units (ReLU'(0) = 0).

    Parameters
    ----------
    sizes : tuple of int
        Layer widths (d_in, h_1, ..., n_classes), at least two entries, each ≥ 1
        (``n_classes`` ≥ 2).
    bn : bool
        Batch normalization after every dense layer, before its activation (then no biases).
    loss : {"cross_entropy", "quadratic"}
    var_offset : float, default 1e-5
        BN's variance offset ν ≥ 0; 0 makes BN exactly scale invariant.
    momentum : float
        Running averages for evaluation: ``run ← momentum·run + (1 − momentum)·batch``, in
        [0, 1), with the unbiased batch variance. In :func:`~bnlib.nn.train` the first
        mini-batch's statistics start the averages (no trace of the initial values).
    """

    sizes: tuple
    bn: bool = True
    loss: str = "cross_entropy"
    var_offset: float = 1e-5
    momentum: float = 0.9
    depth: int = field(init=False, repr=False)
    _layout: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if isinstance(self.sizes, str | bytes) or not hasattr(self.sizes, "__len__"):
            raise TypeError(f"sizes must be a sequence of integers, got {self.sizes!r}")
        sizes = tuple(v.count(s, "sizes entry", minimum=1) for s in self.sizes)
        if len(sizes) < 2 or sizes[-1] < 2:
            raise ValueError(f"sizes needs (d_in, ..., n_classes) with n_classes >= 2, got {sizes}")
        if not isinstance(self.bn, bool | np.bool_):
            raise TypeError(f"bn must be True or False, got {self.bn!r}")
        if self.loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}, got {self.loss!r}")
        offset, mom = v.var_offset(self.var_offset), float(v.momentum_factor(self.momentum))
        for k, x in dict(var_offset=offset, sizes=sizes, bn=bool(self.bn), momentum=mom,
                         depth=len(sizes) - 1).items():
            object.__setattr__(self, k, x)
        object.__setattr__(self, "_layout", self._make_layout())

    def _make_layout(self):
        """Every parameter array as (name, layer, is_weight, trainable), layer by layer."""
        kinds = ("W", "gamma", "beta") if self.bn else ("W", "b")
        return tuple([(f"{k}{layer}", layer, k == "W", True) for layer in range(self.depth) for k in kinds]
                     + [(f"{k}{layer}", layer, False, False) for layer in range(self.depth)
                        for k in ("mean", "var") if self.bn])

    # -------------------------------------------------------------------- parameters
    @property
    def n_classes(self) -> int:
        return self.sizes[-1]

    def param_names(self, trainable_only=True):
        """Names of the parameter arrays, layer by layer (running averages last if asked)."""
        return [name for name, _, _, trainable in self._layout if trainable or not trainable_only]

    def bn_param_names(self):
        """Return the names stepped with ε_a (γ and β); empty without BN."""
        return [name for name, _, is_weight, trainable in self._layout
                if trainable and not is_weight and self.bn]

    def init(self, seed=0, shape=(), weight_scale=1.0):
        """Glorot-uniform weights, zero biases, γ = 1, β = 0, running mean 0 and variance 1.

        Every model of the shape gets the same draw (a seed's networks differ only in what
        they are later trained with).

        Parameters
        ----------
        seed : int
            Seed of ``numpy.random.default_rng((seed, 1))``.
        shape : tuple of int
            The model shape P.
        weight_scale : float
            r > 0, multiplies every weight matrix.

        Returns
        -------
        dict of numpy.ndarray
        """
        seed = v.count(seed, "seed")
        weight_scale = v.positive_scalar(weight_scale, "weight_scale")
        shape = tuple(v.count(s, "shape entry") for s in np.atleast_1d(shape)) if np.size(shape) else ()
        rng = np.random.default_rng((seed, 1))
        params = {}
        for layer, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            lim = np.sqrt(6.0 / (n_in + n_out))
            W = weight_scale * rng.uniform(-lim, lim, (n_in, n_out))
            params[f"W{layer}"] = np.broadcast_to(W, shape + W.shape).copy()
            row = shape + (1, n_out)
            kinds = ("gamma", "beta", "mean", "var") if self.bn else ("b",)
            params |= {f"{k}{layer}": (np.ones if k in ("gamma", "var") else np.zeros)(row) for k in kinds}
        return params

    def _check_params(self, params):
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
        missing = [k for k in self.param_names(trainable_only=False) if k not in params]
        if missing:
            raise ValueError(f"params lacks {missing} for {self}")
        P, out = np.shape(params["W0"])[:-2], {}     # every shape is checked below
        for name, layer, is_weight, _ in self._layout:
            n_in, n_out = self.sizes[layer], self.sizes[layer + 1]
            want = P + ((n_in, n_out) if is_weight else (1, n_out))
            arr = v.finite_array(params[name], f"params[{name!r}]")
            if arr.shape != want:
                raise ValueError(f"params[{name!r}] must have shape {want}, got {arr.shape}")
            out[name] = arr
        return out, P

    def _check_data(self, X, y, P):
        X = v.finite_array(X, "X")
        if X.ndim < 2 or X.shape[-1] != self.sizes[0]:
            raise ValueError(f"X must have shape (..., B, {self.sizes[0]}), got {X.shape}")
        Q = X.shape[:-2]
        try:
            if np.broadcast_shapes(Q, P) != P:
                raise ValueError
        except ValueError:
            raise ValueError(f"X's leading shape {Q} must broadcast to the model shape {P}") from None
        y = np.asarray(y)
        if not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
        if y.shape != X.shape[:-1]:
            raise ValueError(f"y must have shape {X.shape[:-1]} to match X, got {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(f"y must lie in [0, {self.n_classes}), got range [{y.min()}, {y.max()}]")
        if self.bn and X.shape[-2] < 2:
            raise ValueError(f"BN needs a mini-batch of at least 2 examples, got {X.shape[-2]}")
        return X, y

    # -------------------------------------------------------------- forward/backward
    def _loss(self, z, y):
        """Per-model loss (mean over the batch) and dL/dz."""
        B, C = z.shape[-2], z.shape[-1]
        t, (zs, s, p) = _onehot(y, C), _softmax(z)
        if self.loss == "cross_entropy":
            logp = zs - np.log(s)
            loss = -np.sum(np.ascontiguousarray(t * logp), axis=(-2, -1)) / B
            dz = (p - t) / B
        else:   # (the sums over the batch of a contiguous array: the bits of any layout)
            r = p - t
            loss = np.sum(np.ascontiguousarray(r * r), axis=(-2, -1)) / (B * C)
            dp = 2.0 * r / (B * C)
            dz = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
        return loss, dz

    def _train_pass(self, params, X, y):
        """Forward and backward in training mode; returns loss, grads, batch statistics.

        Unchecked (the callers check their arguments once), with BN's unchecked layer of
        :mod:`bnlib.bn`. The activations are laid out batch-major (see
        :func:`_matmul_batch_major`).
        """
        a = X
        inputs, caches, masks, stats = [], [], [], []
        for layer in range(self.depth):
            inputs.append(a)
            z = _matmul_batch_major(a, params[f"W{layer}"])
            if self.bn:
                out, cache, mu = normalize(z, params[f"gamma{layer}"], params[f"beta{layer}"],
                                           self.var_offset, -2)
                caches.append(cache)
                # the biased batch variance, recovered from 1/sqrt(var + var_offset)
                stats.append((mu, cache.inv_std ** -2 - self.var_offset))
            else:
                out = z + params[f"b{layer}"]
            if layer < self.depth - 1:
                mask = out > 0
                masks.append(mask)
                a = np.maximum(out, 0.0, out=out)     # out * mask up to the sign of zeros
            else:
                logits = out
        loss, d = self._loss(logits, y)
        grads = {}
        for layer in reversed(range(self.depth)):
            if self.bn:
                d, dgamma, dbeta = normalize_backward(d, caches[layer])
                grads |= {f"beta{layer}": dbeta, f"gamma{layer}": dgamma}
            else:
                grads[f"b{layer}"] = d.sum(axis=-2, keepdims=True)
            grads[f"W{layer}"] = np.swapaxes(inputs[layer], -1, -2) @ d
            if layer > 0:
                d = _matmul_batch_major(d, np.swapaxes(params[f"W{layer}"], -1, -2))
                d *= masks[layer - 1]
        return loss, grads, stats

    def loss_and_grad(self, params, X, y):
        """Training-mode loss and its gradient for every model.

        Parameters
        ----------
        params : dict of numpy.ndarray
            As from :meth:`~bnlib.nn.MLP.init`, model shape P.
        X : array_like, shape (B, d_in) or (Q..., B, d_in), Q broadcasting to P
        y : array_like of int, shape X.shape[:-1]

        Returns
        -------
        loss : numpy.ndarray, shape P
            Mean loss over the mini-batch (BN with the batch's own statistics).
        grads : dict of numpy.ndarray
            Gradients of ``loss`` for every trainable parameter, shapes as in ``params``.

        Raises
        ------
        TypeError, ValueError
            On parameters or data that do not fit the network (BN needs a batch of 2), or
            if a BN unit with ``var_offset`` 0 is constant over the batch.
        """
        params, P = self._check_params(params)
        X, y = self._check_data(X, y, P)
        with np.errstate(divide="ignore", invalid="ignore"):
            loss, grads, stats = self._train_pass(params, X, y)
        if self.var_offset == 0 and any(np.any(var == 0) for _, var in stats):
            raise ValueError("a BN unit is constant over the batch; use var_offset > 0")
        return loss, grads

    def predict_logits(self, params, X):
        """Evaluation-mode logits (BN with running averages), shape (P..., n, n_classes)."""
        params, P = self._check_params(params)
        X, _ = self._check_data(X, np.zeros(np.shape(X)[:-1], dtype=int), P)
        return self._eval_logits(params, X)

    def _eval_logits(self, params, X):
        a = X
        for layer in range(self.depth):
            z = a @ params[f"W{layer}"]
            if self.bn:
                z = (params[f"gamma{layer}"] * (z - params[f"mean{layer}"])
                     / np.sqrt(params[f"var{layer}"] + self.var_offset) + params[f"beta{layer}"])
            else:
                z = z + params[f"b{layer}"]
            a = np.maximum(z, 0.0) if layer < self.depth - 1 else z
        return a

    def evaluate(self, params, X, y):
        """Evaluation-mode loss and accuracy on a data set, for every model.

        Parameters
        ----------
        params : dict of numpy.ndarray, model shape P
        X : array_like, shape (n, d_in)
        y : array_like of int, shape (n,)

        Returns
        -------
        loss, accuracy : numpy.ndarray, shape P
        """
        params, P = self._check_params(params)
        X, y = self._check_data(X, y, P)
        return self._eval_loss_acc(params, X, y)

    def _eval_loss_acc(self, params, X, y):
        logits = self._eval_logits(params, X)
        loss, _ = self._loss(logits, y)
        acc = np.mean(np.argmax(logits, axis=-1) == y, axis=-1)
        return loss, acc


@dataclass(frozen=True, kw_only=True)
class SGDRun:
    """The result of :func:`~bnlib.nn.train`.

    Model shape ``(S, L...)``: S seeds, L the broadcast shape of ``lr`` and ``lr_a``.

    Attributes
    ----------
    lr, lr_a : numpy.ndarray
        Steps ε (weights, biases) and ε_a (BN's γ, β; ``nan`` without BN), shape L.
    seeds : tuple of int
    batch_loss : numpy.ndarray
        Shape (K, S, L...): training-mode loss of each of the K mini-batches, before its
        step; ``inf`` from the step at which a model diverged.
    train_loss, train_acc, test_loss, test_acc : numpy.ndarray
        Shape (S, L...): evaluation-mode loss and accuracy after training on the full
        training and test sets; ``inf`` and ``nan`` for diverged models.
    diverged : numpy.ndarray of bool
        Shape (S, L...): the model diverged (see :func:`~bnlib.nn.train`) and was masked
        from then on.
    params : dict of numpy.ndarray or None
        Final parameters with leading shape (S, L...) if ``keep_params`` (``nan`` for
        diverged models).
    epochs, batch_size : int
    """

    lr: np.ndarray
    lr_a: np.ndarray
    seeds: tuple
    batch_loss: np.ndarray
    train_loss: np.ndarray
    train_acc: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    diverged: np.ndarray
    params: dict | None
    epochs: int
    batch_size: int


@dataclass(frozen=True, kw_only=True)
class HeavySGDRun(SGDRun):
    """The result of :func:`~bnlib.nn.train` with weight decay or momentum.

    The fields of :class:`~bnlib.nn.SGDRun`, plus the following.

    Attributes
    ----------
    weight_decay, momentum : numpy.ndarray
        υ and ς of each model, shape L.
    w_angle2 : numpy.ndarray
        Shape (K, S, L..., depth): per step and weight matrix W_l, the mean over its columns
        (each feeds one BN unit, so is scale invariant) of the squared angle between the
        column before and after the step; ``nan`` after divergence.
    """

    weight_decay: np.ndarray
    momentum: np.ndarray
    w_angle2: np.ndarray


def _batch_order(seed, n, batch_size, epochs):
    """Return the indices of every mini-batch of a seed, shape (K, batch_size).

    A fresh permutation per epoch, the last ``n mod batch_size`` examples of each left out.
    """
    rng = np.random.default_rng((seed, 2))
    per = n // batch_size
    return np.concatenate([rng.permutation(n)[: per * batch_size].reshape(per, batch_size)
                           for _ in range(epochs)])


CHUNK_BYTES = 2_097_152  # 2 MiB: largest activation array of one chunk of models (see train)
WORKERS = 2              # threads over chunks


def train(net, data, lr, lr_a=None, *, epochs=3, batch_size=100, seeds=(0,), weight_scale=1.0,
          keep_params=False, **options):
    """Train a grid of networks by plain mini-batch SGD with constant steps, in lockstep.

    For each seed s, all models start from ``net.init(s, weight_scale=...)`` and see the
    same mini-batches; they differ only in their steps: W, b ← · − ε ∇, and γ, β ← · − ε_a ∇.
    The batches of seed s: per epoch, ``rng.permutation(n_train)`` of one
    ``rng = numpy.random.default_rng((s, 2))`` cut into groups of ``batch_size``, the rest left out.
    So the first e epochs of a longer run are the batches of an e-epoch run, and a sequence
    of ``epochs`` trains once to the largest and evaluates at every one of them.

    Parameters
    ----------
    net : MLP
    data : Digits
        Or any object with ``X_train, y_train, X_test, y_test`` arrays.
    lr : float or array_like
        Steps ε > 0, shape L1.
    lr_a : float or array_like, optional
        Steps ε_a > 0 for γ and β (BN networks only), broadcast with ``lr``; ``None`` means
        ε_a = ε (one step for all parameters).
    epochs : int or sequence of int
        Passes over the training set (≥ 1); a strictly increasing sequence of them (budgets)
        returns one result per budget, each equal to the run of that ``epochs`` alone.
    batch_size : int
        Mini-batch size (in [2, n_train]).
    seeds : int or sequence of int
        One seed per repetition (an int: one); the model shape is ``(len(seeds), L...)``.
    weight_scale : float
        r: the initial weights are multiplied by r (see :meth:`~bnlib.nn.MLP.init`).
    keep_params : bool
        Return the final parameters (memory: one network per model and budget).
    **options
        ``blowup``, ``weight_decay`` and ``momentum`` as in :func:`~bnlib.descent.gd`, keywords
        only: a model is diverged once its batch loss is not finite or exceeds ``blowup``
        times its first, or a parameter is not finite; the decay acts on the weight matrices
        W_l only, the momentum on every trainable parameter (v ← ς v + ∇ (+ υ W), θ ← θ − ε v).

    Returns
    -------
    SGDRun or HeavySGDRun, or dict of them
        :class:`~bnlib.nn.HeavySGDRun` when weight decay or momentum is nonzero; for a
        sequence of ``epochs``, a dict ``{epochs: run}`` in its order.

    Notes
    -----
    Models are trained in chunks whose largest activation array stays below ``CHUNK_BYTES``,
    as many per seed as keep ``WORKERS`` threads equally busy, with single-threaded BLAS
    (faster on these small products); the results depend on neither. A BN unit with
    ``var_offset`` 0 that is constant over a mini-batch makes its model diverge.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a bnlib.nn.MLP, got {type(net).__name__}")
    Xtr, ytr, Xte, yte = (getattr(data, k, None) for k in ("X_train", "y_train", "X_test", "y_test"))
    if any(a is None for a in (Xtr, ytr, Xte, yte)):
        raise TypeError("data must have X_train, y_train, X_test and y_test (see load_digits_split)")
    Xtr, ytr = net._check_data(Xtr, ytr, ())          # X 2-D: its leading shape broadcasts to ()
    Xte, yte = net._check_data(Xte, yte, ())
    lr = v.positive_array(lr, "lr")
    if lr_a is not None and not net.bn:
        raise ValueError("lr_a steps BN's gamma and beta; this network has no BN")
    lr_a = lr if lr_a is None else v.positive_array(lr_a, "lr_a")
    unknown = set(options) - {"blowup", "weight_decay", "momentum"}
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
    budgets = _budgets(epochs)
    opt = descent_options(0, **options)
    L = v.broadcast(lr=lr.shape, lr_a=lr_a.shape, **option_shapes(opt))
    batch_size = v.count(batch_size, "batch_size", minimum=2)
    if batch_size > len(ytr):
        raise ValueError(f"batch_size must be <= n_train = {len(ytr)}, got {batch_size}")
    seeds = (seeds,) if isinstance(seeds, int | np.integer) else tuple(seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    seeds = tuple(v.count(s, "seed") for s in seeds)
    bases = [net.init(seed, weight_scale=v.positive_scalar(weight_scale, "weight_scale"))
             for seed in seeds]
    order = np.stack([_batch_order(s, len(ytr), batch_size, budgets[-1]) for s in seeds])  # (S, K, B)
    opt = replace(opt, steps=order.shape[1])
    per_epoch = len(ytr) // batch_size
    with threadpool_limits(limits=1, user_api="blas"):
        outs = _sgd(net, (Xtr, ytr, Xte, yte), bases, order, opt,
                    {k: np.broadcast_to(x, L).reshape(-1) for k, x in
                     (("eps", lr), ("eps_a", lr_a), ("wd", opt.weight_decay),
                      ("mom", opt.momentum)) if x is not None}, keep_params,
                    tuple(e * per_epoch for e in budgets))
    common = dict(lr=np.broadcast_to(lr, L).copy(), seeds=seeds, batch_size=batch_size,
                  lr_a=np.broadcast_to(lr_a, L).copy() if net.bn else np.full(L, np.nan))
    extra = {k: np.broadcast_to(0.0 if x is None else x, L).copy() for k, x in
             (("weight_decay", opt.weight_decay), ("momentum", opt.momentum))}
    runs = {e: _result(out, (len(seeds),) + L, net.depth, dict(common, epochs=e), extra)
            for e, out in zip(budgets, outs, strict=True)}
    return runs[budgets[0]] if np.ndim(epochs) == 0 else runs


def _budgets(epochs):
    """Return the budgets of :func:`train`'s ``epochs`` (an int or a sequence) as a tuple."""
    if np.ndim(epochs) == 0:
        return (v.count(epochs, "epochs", minimum=1),)
    if isinstance(epochs, str | bytes) or not hasattr(epochs, "__len__"):
        raise TypeError(f"epochs must be an integer or a sequence of integers, got {epochs!r}")
    budgets = tuple(v.count(e, "epochs", minimum=1) for e in epochs)
    if not budgets or any(np.diff(budgets) <= 0):
        raise ValueError(f"epochs must be a nonempty, strictly increasing sequence, got {budgets}")
    return budgets


def _result(out, shape, depth, fields, extra):
    """Build the SGDRun (or HeavySGDRun) of one budget from :func:`_sgd`'s flat results."""
    params = out.pop("params", None)
    run = dict(fields, batch_loss=out.pop("batch_loss").reshape((-1,) + shape),
               params=None if params is None else {k: p.reshape(shape + p.shape[2:])
                                                   for k, p in params.items()},
               **{k: x.reshape(shape) for k, x in out.items() if k != "w_angle2"})
    if "w_angle2" not in out:
        return SGDRun(**run)
    return HeavySGDRun(**run, **extra, w_angle2=out["w_angle2"].reshape((-1,) + shape + (depth,)))


class _Chunk:
    """SGD of a chunk of models of one seed, the step :func:`~bnlib.descent.drive` runs.

    The state is the parameter dict with the models on axis 0; ``measure`` is the training
    pass on the step's mini-batch (its loss is the loss of the divergence test; the last
    state, after the last batch, is only tested for finite parameters), ``step`` the update.
    At each step count of ``ends`` (the budgets) ``measure`` keeps the state's finite
    models in ``shots``: {steps: (their columns, their parameters)}.
    """

    names, fills, prunable = (), (), True

    def __init__(self, net, base, batches, X, y, runs, opt, ends):
        m = len(runs["eps"])
        self.net, self.batches, self.X, self.y, self.k = net, batches, X, y, 0
        self.ends, self.shots = frozenset(ends), {}
        self.params = {k: np.broadcast_to(p, (m,) + p.shape).copy() for k, p in base.items()}
        slow = set(net.bn_param_names())
        self.lr = {k: runs["eps_a" if k in slow else "eps"][:, None, None] for k in net.param_names()}
        self.shape, self.pos = (m,), np.arange(m)
        self.heavy = "wd" in runs or "mom" in runs
        self.step_names = ("w_angle2",) if self.heavy else ()
        if self.heavy:
            self.decay = {k: runs.get("wd", np.zeros(m))[:, None, None] for k in self.lr
                          if k.startswith("W")}
            self.mom = runs.get("mom", np.zeros(m))[:, None, None]
            self.vel = {k: np.zeros_like(self.params[k]) for k in self.lr}

    def keep(self, live):
        """Keep the models ``live`` only."""
        self.pos = self.pos[live]
        for d in (self.params, self.lr, self.grads) + ((self.decay, self.vel) if self.heavy else ()):
            for k in d:
                d[k] = d[k][live]
        self.stats = [(mu[live], var[live]) for mu, var in self.stats]
        if self.heavy:
            self.mom = self.mom[live]

    def measure(self):
        """Return the batch loss (twice), whether every parameter is finite, and no records."""
        ok = np.ones(len(self.pos), dtype=bool)
        for p in self.params.values():
            ok &= np.all(np.isfinite(p), axis=(-2, -1))
        if self.k in self.ends:   # copies: the step below updates in place
            self.shots[self.k] = (self.pos[ok], {k: p[ok] for k, p in self.params.items()})
        if self.k == len(self.batches):
            return np.zeros(ok.shape), np.zeros(ok.shape), ok, ()
        params = self.params if ok.all() else {   # a non-finite model is masked (its loss
            k: np.where(ok[:, None, None], p, 0.0) for k, p in self.params.items()}   # is not)
        rows = self.batches[self.k]
        self.loss, self.grads, self.stats = self.net._train_pass(params, self.X[rows], self.y[rows])
        return self.loss, self.loss, ok, ()

    def step(self):
        """Take one SGD step of every model; return the squared column angles (momentum)."""
        p, g = self.params, self.grads
        if self.heavy:
            for k in self.lr:
                self.vel[k] = self.mom * self.vel[k] + (g[k] + self.decay[k] * p[k]
                                                        if k in self.decay else g[k])
            new = {k: p[k] - self.lr[k] * self.vel[k] for k in self.lr}
            rows = (np.stack([_col_angle2(p[f"W{i}"], new[f"W{i}"]) for i in range(self.net.depth)],
                             axis=-1),)
            new = p | new
        else:   # p - lr g in place, bit for bit
            for k, lr in self.lr.items():
                g[k] *= lr
                p[k] -= g[k]
            new, rows = p, ()
        if self.net.bn:  # the first batch's statistics start the averages
            m, B = (self.net.momentum if self.k else 0.0), self.batches.shape[1]
            for layer, (mu, var) in enumerate(self.stats):
                new[f"mean{layer}"] = m * p[f"mean{layer}"] + (1 - m) * mu
                new[f"var{layer}"] = m * p[f"var{layer}"] + (1 - m) * var * B / (B - 1)
        self.params, self.k = new, self.k + 1
        return rows

    def finals(self):
        """Return nothing: the states of the budgets are read from ``shots`` by :func:`_sgd`."""
        return {}


def _chunks(S, nL, models):
    """Split the nL models of each of S seeds into equal chunks of at most ``models``.

    Return one task (seed, model indices) per chunk; more chunks than needed when that
    makes the number of tasks a multiple of ``WORKERS`` (no thread idles at the end).
    """
    n = -(-nL // models)
    n = next((m for m in range(n, min(n + WORKERS, nL + 1)) if S * m % WORKERS == 0), n)
    return [(si, idx) for si in range(S) for idx in np.array_split(np.arange(nL), n)]


def _sgd(net, data, bases, order, opt, runs, keep_params, ends):
    """Train every model in chunks of one seed over ``WORKERS`` threads.

    Return one dict of flat results (S, nL) per step count of ``ends``.
    """
    Xtr, ytr, Xte, yte = data
    S, nL = order.shape[0], len(runs["eps"])

    def blank():
        out = {k: np.full((S, nL), np.inf if "loss" in k else np.nan)
               for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
        out["diverged"] = np.ones((S, nL), dtype=bool)
        if keep_params:
            out["params"] = {k: np.full((S, nL) + p.shape, np.nan) for k, p in bases[0].items()}
        return out

    outs = {K: blank() for K in ends}

    def train_chunk(si, idx):
        stepper = _Chunk(net, bases[si], order[si], Xtr, ytr,
                         {k: x[idx] for k, x in runs.items()}, opt, ends)
        res = drive(stepper, opt, 0.0)
        for K, out in outs.items():
            for k, src in (("batch_loss", res["loss"]), ("w_angle2", res.get("w_angle2"))):
                if src is not None:
                    out.setdefault(k, np.full((K, S, nL) + src.shape[2:], np.nan))[:, si, idx] = src[:K]
            pos, params = stepper.shots.get(K, (np.zeros(0, dtype=int), {}))
            alive = np.isfinite(res["loss"][K - 1, pos])   # alive through step K - 1's test
            live, where = {k: p[alive] for k, p in params.items()}, idx[pos[alive]]
            out["diverged"][si, where] = False
            if keep_params:
                for k, p in live.items():
                    out["params"][k][si, where] = p
            if where.size:
                for name, (X_, y_) in (("train", (Xtr, ytr)), ("test", (Xte, yte))):
                    out[f"{name}_loss"][si, where], out[f"{name}_acc"][si, where] = (
                        _evaluate_chunked(net, live, X_, y_))

    chunk = _per_chunk(net, order.shape[2])
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for future in [pool.submit(train_chunk, *task) for task in _chunks(S, nL, chunk)]:
            future.result()
    return [outs[K] for K in ends]


def _col_angle2(W_old, W_new):
    """Return the mean over output units of the squared angle of each column's step, shape (models,)."""
    th = angular_update(np.swapaxes(np.stack([W_old, W_new]), -1, -2))[0]    # the columns' angles
    return np.mean(th * th, axis=-1)


def train_variants(sizes, loss, data, lr, lr_a=(1.0, 0.1, 0.01), *, epochs=3, batch_size=100,
                   seeds=(0, 1, 2), var_offset=1e-5, uniform=False):
    """Train the paper's three variants of one architecture over a grid of steps.

    - ``"gd"``: no BN (biases instead), every parameter stepped with ε;
    - ``"bn"``: BN after every dense layer, one step ε for all parameters (ε_a = ε);
    - ``"bn_split"``: BN, ε for the weights and each ε_a of ``lr_a`` for γ and β.

    All variants of a seed start from the same weights and see the same mini-batches.

    Parameters
    ----------
    sizes, loss, var_offset
        As :class:`~bnlib.nn.MLP`.
    data, epochs, batch_size, seeds
        As :func:`~bnlib.nn.train`.
    lr : array_like, shape (n,)
        The grid of ε.
    lr_a : array_like, shape (A,)
        The values of ε_a for ``"bn_split"``.
    uniform : bool
        If true, every variant has model shape (S, A, n): ``"gd"`` and ``"bn"`` with A = 1
        (their ``lr_a`` of shape (1, n)), so one code path reads all three.

    Returns
    -------
    dict of SGDRun
        ``"gd"`` and ``"bn"`` with model shape (S, n), ``"bn_split"`` with (S, A, n); all
        (S, A, n) with ``uniform=True``. The numbers do not depend on ``uniform``. For a
        sequence of ``epochs``, ``{epochs: that dict}``, trained once (see :func:`train`).
    """
    lr = v.positive_array(lr, "lr")
    lr_a = v.positive_array(lr_a, "lr_a")
    if lr.ndim != 1 or lr_a.ndim != 1:
        raise ValueError(f"lr and lr_a must be 1-D grids, got shapes {lr.shape} and {lr_a.shape}")
    kw = {"epochs": epochs, "batch_size": batch_size, "seeds": seeds}
    plain = MLP(sizes, bn=False, loss=loss, var_offset=var_offset)
    bn = MLP(sizes, bn=True, loss=loss, var_offset=var_offset)
    grid = lr[None, :] if uniform else lr
    out = {"gd": train(plain, data, grid, **kw),
           "bn": train(bn, data, grid, **kw),
           "bn_split": train(bn, data, lr[None, :], lr_a[:, None], **kw)}
    if np.ndim(epochs) == 0:
        return out
    return {e: {key: runs[e] for key, runs in out.items()} for e in out["gd"]}


def _per_chunk(net, rows):
    """Models per chunk (at least one) whose largest activation array fits ``CHUNK_BYTES``.

    That array holds ``rows`` × the widest layer float64 numbers per model.
    """
    return max(1, CHUNK_BYTES // (8 * rows * max(net.sizes)))


def _evaluate_chunked(net, params, X, y):
    """:meth:`~bnlib.nn.MLP.evaluate` over the models in chunks of :func:`_per_chunk`."""
    M = len(params["W0"])
    step = _per_chunk(net, len(y))
    parts = [net._eval_loss_acc({k: p[i:i + step] for k, p in params.items()}, X, y)
             for i in range(0, M, step)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def effective_steps(net, params, X, lr):
    """Effective step ε γ_j² / (σ_j² + ε_BN) of every BN unit, on one batch in training mode.

    Parameters
    ----------
    net : bnlib.nn.MLP
        A network with BN.
    params : dict of numpy.ndarray
        Model shape P (as from :meth:`bnlib.nn.MLP.init` or ``SGDRun.params``).
    X : array_like, shape (B, d_in)
        The batch (B ≥ 2) whose statistics define σ_j² (e.g. the whole training set).
    lr : float or array_like
        ε, broadcasting with P.

    Returns
    -------
    list of numpy.ndarray
        One array per layer, shape (P..., n_out).
    """
    params, P, X = _bn_batch(net, params, X, "effective_steps")
    lr = v.positive_array(lr, "lr")
    try:
        lr_b = np.broadcast_to(lr, P)[..., None]
    except ValueError:
        raise ValueError(f"lr of shape {lr.shape} does not broadcast with the model shape {P}") from None
    return [lr_b * params[f"gamma{layer}"][..., 0, :] ** 2 / (z.var(axis=-2) + net.var_offset)
            for layer, (z, _, _) in enumerate(_bn_layers(net, params, X))]


def _bn_layers(net, params, X):
    """Yield z, the BN output and its cache of every layer, in training mode on the batch X."""
    a = X
    for layer in range(net.depth):
        z = a @ params[f"W{layer}"]
        out, cache = batchnorm_forward(z, params[f"gamma{layer}"], params[f"beta{layer}"],
                                       net.var_offset, axis=z.ndim - 2)
        yield z, out, cache
        a = np.maximum(out, 0.0)


def top_bn_hessian(net, params, X, y):
    """Hessian of the training-mode loss in the output layer's BN parameters (γ, β).

    The logits are z_i = γ ⊙ x̂_i + β, with x̂_i the normalised pre-activations of the last
    layer (batch statistics of ``X``), which do not depend on γ and β. So the Hessian is
    (1/B) Σ_i J_iᵀ A_i J_i with J_i = [diag(x̂_i), I] and A_i the Hessian of one example's
    loss in its logits: A = diag(p) − p pᵀ for cross-entropy, and for the quadratic loss
    (1/C) Σ_k (p_k − t_k)², with r = p − t, s = r ⊙ p and σ = Σ_k s_k,
    A = (2/C) [J_p J_p + diag(s) − s pᵀ − p sᵀ + 2σ p pᵀ − σ diag(p)], J_p = diag(p) − p pᵀ.
    For softmax regression (``net.depth == 1``) these are all of BN's parameters.

    Parameters
    ----------
    net, params, X
        As :func:`~bnlib.nn.effective_steps`.
    y : array_like of int, shape (B,)

    Returns
    -------
    numpy.ndarray, shape (P..., 2C, 2C)
        Rows and columns ordered (γ_1, …, γ_C, β_1, …, β_C), C = ``net.n_classes``.
    """
    xhat, p, t = _top_layer(net, params, X, y)
    B, C = p.shape[-2], p.shape[-1]
    if net.loss == "cross_entropy":
        alpha, diag, u, c = 1.0, p, np.zeros_like(p), -np.ones(p.shape[:-1] + (1,))
    else:  # A = alpha [diag(D) - u p^T - p u^T + c p p^T]
        s = (p - t) * p
        sigma = s.sum(axis=-1, keepdims=True)
        q = (p * p).sum(axis=-1, keepdims=True)
        alpha, diag, u, c = 2.0 / C, p * p + s - sigma * p, p * p + s, q + 2 * sigma
    ones = np.ones_like(xhat)

    def block(m1, m2):
        """(1/B) Σ_i diag(m1_i) A_i diag(m2_i), summed with matrix products over i."""
        def mm(a, b):
            return np.swapaxes(a, -1, -2) @ b
        out = -mm(m1 * u, m2 * p) - mm(m1 * p, m2 * u) + mm(m1 * p, c * m2 * p)
        idx = np.arange(C)
        out[..., idx, idx] += (m1 * m2 * diag).sum(axis=-2)
        return alpha * out / B

    gg, gb, bb = block(xhat, xhat), block(xhat, ones), block(ones, ones)
    top = np.concatenate([gg, gb], axis=-1)
    bottom = np.concatenate([np.swapaxes(gb, -1, -2), bb], axis=-1)
    return np.concatenate([top, bottom], axis=-2)


def top_bn_sharpness(net, params, X, y):
    """Return the largest eigenvalue λ of :func:`~bnlib.nn.top_bn_hessian` (same arguments), shape P.

    GD on (γ, β) alone with step ε_a is stable near a minimum when ε_a λ < 2.
    """
    return np.linalg.eigvalsh(top_bn_hessian(net, params, X, y))[..., -1]


def _bn_batch(net, params, X, who):
    """Check a BN network, its parameters (model shape P) and one batch X; return them."""
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a bnlib.nn.MLP, got {type(net).__name__}")
    if not net.bn:
        raise ValueError(f"{who} needs a network with BN")
    params, P = net._check_params(params)
    X = v.finite_array(X, "X")
    if X.ndim != 2 or X.shape[1] != net.sizes[0] or X.shape[0] < 2:
        raise ValueError(f"X must have shape (B >= 2, {net.sizes[0]}), got {X.shape}")
    return params, P, X


def _top_layer(net, params, X, y):
    """x̂ of the last layer, the softmax output p and the one-hot labels t, shape (P..., B, C)."""
    params, _, X = _bn_batch(net, params, X, "top_bn_hessian")
    X, y = net._check_data(X, y, ())
    *_, (_, out, cache) = _bn_layers(net, params, X)
    return cache.xhat, _softmax(out)[2], _onehot(y, net.n_classes)
