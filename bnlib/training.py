"""Training of the network experiments: plain mini-batch SGD over grids of step sizes in
lockstep (:func:`~bnlib.nn.sgd`) and the paper's three variants over one grid
(:func:`~bnlib.nn.sweep`);
re-exported by :mod:`bnlib.nn`.

Many networks train at once. Every parameter array carries a leading *model* shape P (for
example ``(seeds, step sizes)``); all models see the same mini-batches of their seed and
advance in lockstep, so a grid of 30 step sizes costs one batched run, not 30.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from . import _validate as v
from ._engine import heavy_options
from .mlp import MLP
from .sweeps import log_width

__all__ = ["SGDRun", "sgd", "sweep", "decades_above"]


# --------------------------------------------------------------------------------- SGD
@dataclass(frozen=True)
class SGDRun:
    """The result of :func:`~bnlib.nn.sgd`. Model shape ``(S, L...)``: S seeds, L the broadcast shape of
    ``lr`` and ``lr_a``.

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
        Shape (S, L...): a parameter became non-finite or exceeded ``blowup`` in absolute
        value; the model was frozen from then on, without floating-point warnings.
    params : dict of numpy.ndarray or None
        Final parameters with leading shape (S, L...) if ``keep_params`` (diverged models hold
        their last finite parameters).
    epochs, batch_size : int
    weight_decay, momentum : numpy.ndarray or None
        υ and ς of each model, shape L; ``None`` when both were zero (the plain step).
    w_angle2 : numpy.ndarray or None
        Shape (K, S, L..., depth): for every step and weight matrix W_l, the mean over its
        output units j of the squared angle between column j before and after the step
        (each column feeds one BN unit, so each is a scale-invariant vector in a BN
        network); ``nan`` after divergence; ``None`` when both options were zero.
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
    weight_decay: np.ndarray | None = None
    momentum: np.ndarray | None = None
    w_angle2: np.ndarray | None = None


def _batch_order(seed, n, batch_size, epochs):
    """Indices of every mini-batch of a seed: a fresh permutation per epoch, the last
    ``n mod batch_size`` examples of each permutation left out. Shape (K, batch_size)."""
    rng = np.random.default_rng((seed, 2))
    per = n // batch_size
    return np.concatenate([rng.permutation(n)[: per * batch_size].reshape(per, batch_size)
                           for _ in range(epochs)])


def sgd(net, data, lr, lr_a=None, *, epochs=3, batch_size=100, seeds=(0,), weight_scale=1.0,
        keep_params=False, blowup=1e30, max_chunk_bytes=2**21, workers=2, weight_decay=0.0,
        momentum=0.0):
    """Train a grid of networks by plain mini-batch SGD with constant steps, in lockstep.

    For each seed s, all models start from ``net.init(s, weight_scale=...)`` and see the
    same sequence of mini-batches; they differ only in their steps: W, b ← · − ε ∇, and
    γ, β ← · − ε_a ∇. The mini-batches of seed s: per epoch, the permutation
    ``rng.permutation(n_train)`` of ``rng = numpy.random.default_rng((s, 2))`` (one generator
    for all epochs) cut into consecutive groups of ``batch_size``, the remainder left out.

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
    epochs : int
        Passes over the training set, ≥ 1.
    batch_size : int
        Mini-batch size, in [2, n_train].
    seeds : int or sequence of int
        One seed per repetition; an int means one repetition. The model shape is
        ``(len(seeds), L...)``.
    weight_scale : float
        r: the initial weights are multiplied by r (see :meth:`~bnlib.nn.MLP.init`).
    keep_params : bool
        Return the final parameters (memory: one network per model).
    blowup : float
        A model whose parameters exceed this in absolute value counts as diverged (> 1).
    max_chunk_bytes : int
        Models are trained in independent chunks whose largest activation array stays
        below this size (small chunks stay in cache); results do not depend on it.
    workers : int
        Threads that train chunks in parallel (numpy releases the GIL in its array
        operations); ≥ 1. Chunks are independent, so results do not depend on it.
    weight_decay : float or array_like
        Coupled weight decay υ ≥ 0 on the weight matrices W_l only (not on biases, γ, β):
        their step is taken on L + υ‖W_l‖²/2. Broadcast with ``lr`` and ``lr_a``.
    momentum : float or array_like
        Heavy-ball momentum ς ∈ [0, 1) on every trainable parameter, as frameworks write
        SGD with momentum: v ← ς v + ∇ (+ υ W), θ ← θ − ε v, with v = 0 at the start. With
        υ = ς = 0 (the default) training is the plain SGD bit for bit.

    Returns
    -------
    SGDRun

    Notes
    -----
    BLAS runs single-threaded inside this function: the matrix products are small, and
    threaded BLAS on them was 5–10 times slower on a busy 2-core machine. Parallelism comes
    from ``workers`` threads over independent chunks of models instead.

    Raises
    ------
    TypeError
        If ``net`` is not an :class:`~bnlib.nn.MLP` or an argument has the wrong type.
    ValueError
        If a step is ≤ 0 or not finite, ``lr_a`` is given for a network without BN, the data
        do not fit the network, or ``epochs``, ``batch_size``, ``seeds``, ``blowup`` are bad.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a bnlib.nn.MLP, got {type(net).__name__}")
    Xtr, ytr, Xte, yte = (getattr(data, k, None) for k in ("X_train", "y_train", "X_test", "y_test"))
    if any(a is None for a in (Xtr, ytr, Xte, yte)):
        raise TypeError("data must have X_train, y_train, X_test and y_test (see load_digits_split)")
    Xtr, ytr = net._check_data(Xtr, ytr, ())
    Xte, yte = net._check_data(Xte, yte, ())
    if Xtr.ndim != 2 or Xte.ndim != 2:
        raise ValueError(f"data must hold 2-D X arrays, got {Xtr.shape} and {Xte.shape}")
    lr = v.positive_array(lr, "lr")
    if lr_a is not None and not net.bn:
        raise ValueError("lr_a steps BN's gamma and beta; this network has no BN")
    lr_a_arr = lr if lr_a is None else v.positive_array(lr_a, "lr_a")
    wd, mom = heavy_options(weight_decay, momentum)
    extra = [x.shape for x in (wd, mom) if x is not None]
    try:
        L = np.broadcast_shapes(lr.shape, lr_a_arr.shape, *extra)
    except ValueError:
        raise ValueError(f"lr of shape {lr.shape} does not broadcast with lr_a of shape "
                         f"{lr_a_arr.shape} (and weight_decay, momentum)") from None
    epochs = v.count(epochs, "epochs", minimum=1)
    batch_size = v.count(batch_size, "batch_size", minimum=2)
    if batch_size > len(ytr):
        raise ValueError(f"batch_size must be <= n_train = {len(ytr)}, got {batch_size}")
    seeds = (seeds,) if isinstance(seeds, int | np.integer) else tuple(seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    seeds = tuple(v.count(s, "seed") for s in seeds)
    blowup = v.positive_scalar(blowup, "blowup")
    if blowup <= 1:
        raise ValueError(f"blowup must be > 1, got {blowup}")
    weight_scale = v.positive_scalar(weight_scale, "weight_scale")
    max_chunk_bytes = v.count(max_chunk_bytes, "max_chunk_bytes", minimum=1)
    workers = v.count(workers, "workers", minimum=1)
    with threadpool_limits(limits=1, user_api="blas"):
        return _sgd(net, (Xtr, ytr, Xte, yte), lr=lr, lr_a_arr=lr_a_arr, L=L, epochs=epochs,
                    batch_size=batch_size, seeds=seeds, weight_scale=weight_scale,
                    keep_params=keep_params, blowup=blowup, max_chunk_bytes=max_chunk_bytes,
                    workers=workers, wd=wd, mom=mom)


def _sgd(net, data, *, lr, lr_a_arr, L, epochs, batch_size, seeds, weight_scale, keep_params,
         blowup, max_chunk_bytes, workers, wd=None, mom=None):
    """The training loop of :func:`sgd` on validated arguments; ``data`` = (Xtr, ytr, Xte, yte)."""
    Xtr, ytr, Xte, yte = data
    S, nL = len(seeds), int(np.prod(L, dtype=int))
    eps_w = np.broadcast_to(lr, L).reshape(-1)
    eps_a = np.broadcast_to(lr_a_arr, L).reshape(-1)
    heavy = wd is not None or mom is not None
    if heavy:
        ups = np.broadcast_to(0.0 if wd is None else wd, L).reshape(-1)
        vs = np.broadcast_to(0.0 if mom is None else mom, L).reshape(-1)
    order = np.stack([_batch_order(s, len(ytr), batch_size, epochs) for s in seeds])  # (S, K, B)
    K = order.shape[1]
    chunk = max(1, max_chunk_bytes // (8 * batch_size * max(net.sizes)))

    out_shape = (S, nL)
    batch_loss = np.full((K,) + out_shape, np.inf)
    res = {k: np.full(out_shape, np.inf if "loss" in k else np.nan)
           for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
    diverged = np.zeros(out_shape, dtype=bool)
    angle2 = np.full((K,) + out_shape + (net.depth,), np.nan) if heavy else None
    names = net.param_names()
    slow = set(net.bn_param_names())
    bases = [net.init(seed, weight_scale=weight_scale) for seed in seeds]
    kept = ({k: np.empty((S, nL) + p.shape) for k, p in bases[0].items()} if keep_params else None)

    def train_chunk(si, idx):
        """Train models ``idx`` of seed ``si``; writes only their own result entries."""
        params = {k: np.broadcast_to(p, (len(idx),) + p.shape).copy() for k, p in bases[si].items()}
        steps = {k: (eps_a if k in slow else eps_w)[idx][:, None, None] for k in names}
        alive = np.ones(len(idx), dtype=bool)
        act = np.arange(len(idx))       # positions (in idx) of the models still training
        final = {k: p.copy() for k, p in params.items()}
        if heavy:
            decay_ = {k: ups[idx][:, None, None] for k in names if k.startswith("W")}
            mom_ = vs[idx][:, None, None]
            vel = {k: np.zeros_like(params[k]) for k in names}
        for k_step in range(K):
            rows = order[si, k_step]
            loss, grads, stats = net._train_pass(params, Xtr[rows], ytr[rows])
            batch_loss[k_step, si, idx[act]] = loss
            with np.errstate(over="ignore", invalid="ignore"):
                if heavy:
                    for k in names:
                        gk = grads[k] + decay_[k] * params[k] if k in decay_ else grads[k]
                        vel[k] = mom_ * vel[k] + gk
                    new = {k: params[k] - steps[k] * vel[k] for k in names}
                    for layer in range(net.depth):
                        angle2[k_step, si, idx[act], layer] = _col_angle2(
                            params[f"W{layer}"], new[f"W{layer}"])
                else:
                    new = {k: params[k] - steps[k] * grads[k] for k in names}
                if net.bn:  # the first batch's statistics start the averages
                    m, B = (net.momentum if k_step else 0.0), batch_size
                    for layer, (mu, var) in enumerate(stats):
                        new[f"mean{layer}"] = m * params[f"mean{layer}"] + (1 - m) * mu
                        new[f"var{layer}"] = m * params[f"var{layer}"] + (1 - m) * var * B / (B - 1)
                ok = np.isfinite(loss)
                for p in new.values():
                    ok &= np.all(np.abs(p) <= blowup, axis=(-2, -1))
            if not ok.all():
                bad = act[~ok]
                alive[bad] = False
                for k in final:
                    final[k][bad] = params[k][~ok]
                batch_loss[k_step + 1:, si, idx[bad]] = np.inf
                act = act[ok]
                new = {k: p[ok] for k, p in new.items()}
                steps = {k: s[ok] for k, s in steps.items()}
                if heavy:
                    vel = {k: p[ok] for k, p in vel.items()}
                    decay_ = {k: p[ok] for k, p in decay_.items()}
                    mom_ = mom_[ok]
            params = new
            if act.size == 0:
                break
        for k in final:
            final[k][act] = params[k]
        if act.size:
            live = {k: p[act] for k, p in final.items()}
            for name, (X_, y_) in (("train", (Xtr, ytr)), ("test", (Xte, yte))):
                loss_, acc_ = _evaluate_chunked(net, live, X_, y_, max_chunk_bytes)
                res[f"{name}_loss"][si, idx[act]] = loss_
                res[f"{name}_acc"][si, idx[act]] = acc_
        diverged[si, idx] = ~alive
        if keep_params:
            for k, p in final.items():
                kept[k][si, idx] = p

    tasks = [(si, np.arange(start, min(nL, start + chunk)))
             for si in range(S) for start in range(0, nL, chunk)]
    if workers == 1 or len(tasks) == 1:
        for task in tasks:
            train_chunk(*task)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(train_chunk, *task) for task in tasks]:
                future.result()
    shape = (S,) + L
    return SGDRun(
        lr=np.broadcast_to(lr, L).copy(),
        lr_a=np.broadcast_to(lr_a_arr, L).copy() if net.bn else np.full(L, np.nan),
        seeds=seeds,
        batch_loss=batch_loss.reshape((K,) + shape),
        **{k: r.reshape(shape) for k, r in res.items()},
        diverged=diverged.reshape(shape),
        params=None if kept is None else {k: p.reshape(shape + p.shape[2:]) for k, p in kept.items()},
        epochs=epochs,
        batch_size=batch_size,
        weight_decay=ups.reshape(L).copy() if heavy else None,
        momentum=vs.reshape(L).copy() if heavy else None,
        w_angle2=None if angle2 is None else angle2.reshape((K,) + shape + (net.depth,)),
    )


def _col_angle2(W_old, W_new):
    """Mean over output units (columns) of the squared angle between old and new columns,
    2 arcsin(‖û_new − û_old‖/2) per column; shape (models,)."""
    u0 = W_old / np.linalg.norm(W_old, axis=-2, keepdims=True)
    u1 = W_new / np.linalg.norm(W_new, axis=-2, keepdims=True)
    th = 2 * np.arcsin(np.minimum(np.linalg.norm(u1 - u0, axis=-2) / 2, 1.0))
    return np.mean(th * th, axis=-1)


def sweep(sizes, loss, data, lr, lr_a=(1.0, 0.1, 0.01), *, epochs=3, batch_size=100,
          seeds=(0, 1, 2), var_offset=None, eps=None, uniform=False):
    """The paper's three training variants on one architecture, over a grid of steps.

    - ``"gd"``: no BN (biases instead), every parameter stepped with ε;
    - ``"bn"``: BN after every dense layer, one step ε for all parameters (ε_a = ε);
    - ``"bn_split"``: BN, ε for the weights and each ε_a of ``lr_a`` for γ and β.

    All variants of a seed start from the same weights and see the same mini-batches.

    Parameters
    ----------
    sizes : tuple of int
        As :class:`~bnlib.nn.MLP`.
    loss : {"cross_entropy", "quadratic"}
    data : Digits
    lr : array_like, shape (n,)
        The grid of ε.
    lr_a : array_like, shape (A,)
        The values of ε_a for ``"bn_split"``.
    epochs, batch_size, seeds
        As :func:`~bnlib.nn.sgd`.
    var_offset : float, default 1e-5
        BN's variance offset (as :class:`~bnlib.nn.MLP`); ``eps=`` is its old name.
    uniform : bool
        If true, every variant has model shape (S, A, n): ``"gd"`` and ``"bn"`` with A = 1
        (their ``lr_a`` of shape (1, n)), so one code path reads all three.

    Returns
    -------
    dict of SGDRun
        ``"gd"`` and ``"bn"`` with model shape (S, n), ``"bn_split"`` with (S, A, n); all
        (S, A, n) with ``uniform=True``. The numbers do not depend on ``uniform``.

    Raises
    ------
    ValueError, TypeError
        As :class:`~bnlib.nn.MLP` and :func:`~bnlib.nn.sgd`; also if ``lr`` or ``lr_a`` is not
        1-D, or if both ``var_offset`` and ``eps`` are given.
    """
    lr = v.positive_array(lr, "lr")
    lr_a = v.positive_array(lr_a, "lr_a")
    if lr.ndim != 1 or lr_a.ndim != 1:
        raise ValueError(f"lr and lr_a must be 1-D grids, got shapes {lr.shape} and {lr_a.shape}")
    kw = {"epochs": epochs, "batch_size": batch_size, "seeds": seeds}
    offset = v.var_offset(var_offset, eps)
    plain = MLP(sizes, bn=False, loss=loss, var_offset=offset)
    bn = MLP(sizes, bn=True, loss=loss, var_offset=offset)
    grid = lr[None, :] if uniform else lr
    return {"gd": sgd(plain, data, grid, **kw),
            "bn": sgd(bn, data, grid, **kw),
            "bn_split": sgd(bn, data, lr[None, :], lr_a[:, None], **kw)}


def _evaluate_chunked(net, params, X, y, max_bytes):
    """:meth:`~bnlib.nn.MLP.evaluate` over the models in chunks whose activations fit ``max_bytes``."""
    M = len(params["W0"])
    step = max(1, max_bytes // (8 * len(y) * max(net.sizes)))
    parts = [net._eval_loss_acc({k: p[i:i + step] for k, p in params.items()}, X, y)
             for i in range(0, M, step)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def decades_above(lr, score, threshold):
    """Decades of step size whose score reaches ``threshold``: the old name of
    ``sweeps.log_width(score >= threshold, lr)`` (``nan`` scores count as not reaching it).

    Parameters
    ----------
    lr : array_like, shape (n,)
        Increasing positive step sizes, n ≥ 2.
    score : array_like, shape (..., n)
        A score per step size (e.g. test accuracy averaged over seeds).
    threshold : float

    Returns
    -------
    float or numpy.ndarray, shape score.shape[:-1]

    Raises
    ------
    ValueError
        If ``lr`` is not an increasing positive 1-D array of ≥ 2 points or ``score`` does
        not end in its length.
    """
    score = v.as_real_array(score, "score")
    threshold = float(v.finite_array(threshold, "threshold"))
    with np.errstate(invalid="ignore"):
        return log_width(score >= threshold, lr)
