"""The model of the network experiments: a numpy multilayer perceptron with optional BN.

This module carries the book's OLS findings over to networks, as in the experiments of
Cai, Li & Shen (2019): a dense network whose every dense layer is followed by BN (before the
activation: ReLU in hidden layers, softmax at the output), trained by plain mini-batch SGD
with a constant step ε for the weights and biases and a separate step ε_a for BN's γ and β.

Many networks train at once. Every parameter array carries a leading *model* shape P (for
example ``(seeds, step sizes)``); all models see the same mini-batches of their seed and
advance in lockstep, so a grid of 30 step sizes costs one batched run, not 30.

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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _validate as v
from .bn import batchnorm_backward, batchnorm_forward

__all__ = ["MLP"]

_LOSSES = ("cross_entropy", "quadratic")


# ----------------------------------------------------------------------------- network
def _onehot(y, n):
    return (y[..., None] == np.arange(n)).astype(np.float64)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class MLP:
    """A dense network ``sizes[0] → … → sizes[-1]`` with ReLU hidden units.

    Parameters
    ----------
    sizes : tuple of int
        Layer widths (d_in, h_1, ..., n_classes), at least two entries, each ≥ 1
        (``n_classes`` ≥ 2).
    bn : bool
        Batch normalization after every dense layer, before its activation (then no biases).
    loss : {"cross_entropy", "quadratic"}
    var_offset : float, default 1e-5
        BN's variance offset ε_BN ≥ 0; 0 makes BN exactly scale invariant. Also accepted
        as the keyword ``eps=`` (its old name), and readable as the property ``eps``.
    momentum : float
        Running averages for evaluation: ``run ← momentum·run + (1 − momentum)·batch``, in
        [0, 1). The batch variance enters unbiased, B/(B − 1) times the biased one. In
        :func:`~bnlib.nn.sgd` the first mini-batch's statistics start the averages (so they carry no
        trace of the initial values and scale with the weights).

    Raises
    ------
    TypeError, ValueError
        On bad sizes, an unknown loss, ``var_offset < 0``, ``momentum`` outside [0, 1), or
        both ``var_offset`` and ``eps`` given.
    """

    sizes: tuple
    bn: bool = True
    loss: str = "cross_entropy"
    var_offset: float = 1e-5
    momentum: float = 0.9
    depth: int = field(init=False, repr=False)
    _layout: tuple = field(init=False, repr=False, compare=False)

    def __init__(self, sizes, bn=True, loss="cross_entropy", var_offset=None, momentum=0.9, *,
                 eps=None):
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "bn", bn)
        object.__setattr__(self, "loss", loss)
        object.__setattr__(self, "var_offset", v.var_offset(var_offset, eps))
        object.__setattr__(self, "momentum", momentum)
        self.__post_init__()

    @property
    def eps(self) -> float:
        """BN's variance offset under its old name (the same as ``var_offset``)."""
        return self.var_offset

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
        mom = float(v.finite_array(self.momentum, "momentum"))
        if not 0 <= mom < 1:
            raise ValueError(f"momentum must be in [0, 1), got {mom}")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "bn", bool(self.bn))
        object.__setattr__(self, "momentum", mom)
        object.__setattr__(self, "depth", len(sizes) - 1)
        object.__setattr__(self, "_layout", self._make_layout())

    def _make_layout(self):
        """Every parameter array as (name, layer, is_weight, trainable), layer by layer."""
        kinds = ("gamma", "beta") if self.bn else ("b",)
        out = []
        for layer in range(self.depth):
            out += [(f"W{layer}", layer, True, True)]
            out += [(f"{k}{layer}", layer, False, True) for k in kinds]
        if self.bn:
            out += [(f"{k}{layer}", layer, False, False)
                    for layer in range(self.depth) for k in ("mean", "var")]
        return tuple(out)

    # -------------------------------------------------------------------- parameters
    @property
    def n_classes(self) -> int:
        return self.sizes[-1]

    def param_names(self, trainable_only=True):
        """Names of the parameter arrays, layer by layer (running averages last if asked)."""
        return [name for name, _, _, trainable in self._layout if trainable or not trainable_only]

    def bn_param_names(self):
        """The names stepped with ε_a (γ and β); empty without BN."""
        return [f"{k}{layer}" for layer in range(self.depth) for k in ("gamma", "beta")] if self.bn else []

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
            Multiplies every weight matrix (r in the scaling law); > 0.

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
            if self.bn:
                params[f"gamma{layer}"] = np.ones(row)
                params[f"beta{layer}"] = np.zeros(row)
                params[f"mean{layer}"] = np.zeros(row)
                params[f"var{layer}"] = np.ones(row)
            else:
                params[f"b{layer}"] = np.zeros(row)
        return params

    def _check_params(self, params):
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
        missing = [k for k in self.param_names(trainable_only=False) if k not in params]
        if missing:
            raise ValueError(f"params lacks {missing} for {self}")
        W0 = v.finite_array(params["W0"], "params['W0']")
        if W0.ndim < 2 or W0.shape[-2:] != self.sizes[:2]:
            raise ValueError(f"params['W0'] must have shape (..., {self.sizes[0]}, {self.sizes[1]}), "
                             f"got {W0.shape}")
        P = W0.shape[:-2]
        out = {}
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
        t = _onehot(y, C)
        zs = z - z.max(axis=-1, keepdims=True)
        e = np.exp(zs)
        s = e.sum(axis=-1, keepdims=True)
        p = e / s
        if self.loss == "cross_entropy":
            logp = zs - np.log(s)
            loss = -np.sum(t * logp, axis=(-2, -1)) / B
            dz = (p - t) / B
        else:
            r = p - t
            loss = np.sum(r * r, axis=(-2, -1)) / (B * C)
            dp = 2.0 * r / (B * C)
            dz = p * (dp - np.sum(dp * p, axis=-1, keepdims=True))
        return loss, dz

    def _train_pass(self, params, X, y):
        """Forward and backward in training mode; returns loss, grads, batch statistics."""
        a = X
        inputs, caches, masks, stats = [], [], [], []
        for layer in range(self.depth):
            inputs.append(a)
            z = a @ params[f"W{layer}"]
            if self.bn:
                axis = z.ndim - 2
                out, cache = batchnorm_forward(z, params[f"gamma{layer}"], params[f"beta{layer}"],
                                               self.var_offset, axis=axis)
                caches.append(cache)
                # the biased batch variance, recovered from 1/sqrt(var + var_offset)
                stats.append((z.mean(axis=axis, keepdims=True),
                              cache.inv_std ** -2 - self.var_offset))
            else:
                out = z + params[f"b{layer}"]
            if layer < self.depth - 1:
                mask = out > 0
                masks.append(mask)
                a = out * mask
            else:
                logits = out
        loss, d = self._loss(logits, y)
        grads = {}
        for layer in reversed(range(self.depth)):
            if self.bn:
                d, grads[f"gamma{layer}"], grads[f"beta{layer}"] = batchnorm_backward(d, caches[layer])
            else:
                grads[f"b{layer}"] = d.sum(axis=-2, keepdims=True)
            a_in = inputs[layer]
            gW = np.swapaxes(a_in, -1, -2) @ d
            grads[f"W{layer}"] = gW
            if layer > 0:
                d = (d @ np.swapaxes(params[f"W{layer}"], -1, -2)) * masks[layer - 1]
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
            On missing or misshapen parameters, non-finite X, labels out of range or a
            BN batch of fewer than 2 examples.
        """
        params, P = self._check_params(params)
        X, y = self._check_data(X, y, P)
        loss, grads, _ = self._train_pass(params, X, y)
        return loss, grads

    def predict_logits(self, params, X):
        """Evaluation-mode logits (BN with the running averages), shape (P..., n, n_classes).

        Raises
        ------
        TypeError, ValueError
            As :meth:`~bnlib.nn.MLP.loss_and_grad`.
        """
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
