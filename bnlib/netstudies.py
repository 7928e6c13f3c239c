"""The network study of the book in one place: its settings, the windows of step sizes it
reports, and the effective step of a BN unit.

The networks chapter and the summary both call :func:`softmax_quadratic` and
:func:`window_decades`, so the two pages report one measurement, not two.

The effective step of a BN unit is the network analogue of BNGD's
ε̂ = ε a² / ‖w‖²_H on OLS: unit j of a layer computes γ_j (z_j − μ_j) / sqrt(σ_j² + ε_BN) + β_j
with z_j = x·w_j, so a step ε on w_j turns the unit's output by about
ε γ_j² / (σ_j² + ε_BN), where σ_j² (the batch variance of z_j) plays the role of ‖w‖²_H and
γ_j that of a.
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from .bn import batchnorm_forward
from .nn import MLP, sgd, sweep
from .sweeps import log_width

__all__ = ["SOFTMAX_LR", "SOFTMAX_SEEDS", "SOFTMAX_EPOCHS", "softmax_quadratic", "window_decades",
           "window_margin", "effective_steps", "top_bn_hessian", "top_bn_sharpness",
           "LONG_EPOCHS", "split_runs"]

#: The grid of ε of the study, 10^-2 to 10^6 with four points per decade.
SOFTMAX_LR = np.logspace(-2, 6, 33)
#: Repetitions (seeds) and epochs (13 SGD steps of batch 100 each on the digits).
SOFTMAX_SEEDS = (0, 1, 2)
SOFTMAX_EPOCHS = 3
#: The study's main budget, 30 epochs = 390 SGD steps (3 epochs are the short contrast).
LONG_EPOCHS = 30


def softmax_quadratic(data, lr_a=(0.1,), *, epochs=SOFTMAX_EPOCHS, seeds=SOFTMAX_SEEDS, lr=None):
    """The study's main experiment: softmax regression 64 → 10 with the quadratic loss.

    The three variants of :func:`bnlib.nn.sweep` (``"gd"``, ``"bn"``, ``"bn_split"``) on the
    grid :data:`SOFTMAX_LR` (or ``lr``), with the study's seeds and epochs.

    Parameters
    ----------
    data : bnlib.nn.Digits
    lr_a : array_like, shape (A,)
        The values of ε_a for ``"bn_split"``.
    epochs : int
    seeds : sequence of int
    lr : array_like or None
        Grid of ε; ``None`` for :data:`SOFTMAX_LR`.

    Returns
    -------
    dict of bnlib.nn.SGDRun
        As :func:`bnlib.nn.sweep`.

    Raises
    ------
    TypeError, ValueError
        As :func:`bnlib.nn.sweep`.
    """
    grid = SOFTMAX_LR if lr is None else lr
    return sweep((data.X_train.shape[1], 10), "quadratic", data, grid, lr_a, epochs=epochs,
                 seeds=seeds)


def split_runs(data, lr_a, *, epochs=LONG_EPOCHS, seeds=SOFTMAX_SEEDS, lr=None):
    """The ``"bn_split"`` variant of :func:`~bnlib.netstudies.softmax_quadratic` alone, final parameters kept.

    Seed by seed the same starts and mini-batches as :func:`softmax_quadratic`, so for an
    ε_a that both ran the numbers agree; the kept parameters feed
    :func:`top_bn_sharpness`.

    Parameters
    ----------
    data : bnlib.nn.Digits
    lr_a : array_like, shape (A,)
    epochs : int
    seeds : sequence of int
    lr : array_like or None
        Grid of ε; ``None`` for :data:`SOFTMAX_LR`.

    Returns
    -------
    bnlib.nn.SGDRun
        Model shape (S, A, n), with ``params``.

    Raises
    ------
    TypeError, ValueError
        As :func:`bnlib.nn.sgd`, or if ``lr_a`` or ``lr`` is not 1-D.
    """
    grid = v.positive_array(SOFTMAX_LR if lr is None else lr, "lr")
    lr_a = v.positive_array(lr_a, "lr_a")
    if grid.ndim != 1 or lr_a.ndim != 1:
        raise ValueError(f"lr and lr_a must be 1-D, got shapes {grid.shape} and {lr_a.shape}")
    net = MLP((data.X_train.shape[1], 10), bn=True, loss="quadratic")
    return sgd(net, data, grid[None, :], lr_a[:, None], epochs=epochs, seeds=seeds,
               keep_params=True)


def window_decades(runs, threshold):
    """Decades of ε whose mean test accuracy over the seeds reaches ``threshold``.

    A diverged model counts as not reaching it (its accuracy is ``nan``).

    Parameters
    ----------
    runs : dict of bnlib.nn.SGDRun
        As from :func:`softmax_quadratic` or :func:`bnlib.nn.sweep`: ``test_acc`` of shape
        (S, n) or (S, A, n) along the grid ``lr``.
    threshold : float

    Returns
    -------
    dict
        Per variant a float (shape (S, n)) or an array of shape (A,) (shape (S, A, n)).

    Raises
    ------
    TypeError
        If ``runs`` is not a dict of runs.
    ValueError
        As :func:`bnlib.sweeps.log_width` of ``accuracy >= threshold``.
    """
    if not isinstance(runs, dict):
        raise TypeError(f"runs must be a dict of SGDRun, got {type(runs).__name__}")
    out = {}
    for name, run in runs.items():
        acc = np.where(run.diverged, np.nan, run.test_acc).mean(axis=0)
        grid = run.lr.reshape(-1, acc.shape[-1])[0]
        out[name] = log_width(acc >= threshold, grid)  # nan (all seeds diverged): outside
    return out


def window_margin(runs, threshold):
    """Distance of the seed-mean test accuracy from ``threshold``, minimised over the grid.

    The width of :func:`window_decades` counts grid points at or above ``threshold``; it is
    robust (the same on another CPU or BLAS) when no point sits near the threshold. This
    is the smallest ``|mean accuracy - threshold|`` over the grid points of each variant;
    diverged points (which count as not reaching the threshold) are left out.

    Parameters
    ----------
    runs : dict of bnlib.nn.SGDRun
        As for :func:`window_decades`.
    threshold : float

    Returns
    -------
    dict
        Per variant a float (shape (S, n)) or an array of shape (A,) (shape (S, A, n));
        ``inf`` if every point diverged.

    Raises
    ------
    TypeError
        If ``runs`` is not a dict of runs.
    ValueError
        If ``threshold`` is not finite.
    """
    if not isinstance(runs, dict):
        raise TypeError(f"runs must be a dict of SGDRun, got {type(runs).__name__}")
    threshold = float(v.finite_array(threshold, "threshold"))
    out = {}
    for name, run in runs.items():
        acc = np.where(run.diverged, np.nan, run.test_acc).mean(axis=0)
        gap = np.where(np.isnan(acc), np.inf, np.abs(acc - threshold))
        margin = gap.min(axis=-1)
        out[name] = float(margin) if margin.ndim == 0 else margin
    return out


def effective_steps(net, params, X, lr):
    """Effective step ε γ_j² / (σ_j² + ε_BN) of every BN unit, on one batch in training mode.

    Parameters
    ----------
    net : bnlib.nn.MLP
        A network with BN.
    params : dict of numpy.ndarray
        Model shape P (as from :meth:`bnlib.nn.MLP.init` or ``SGDRun.params``).
    X : array_like, shape (B, d_in)
        The batch whose statistics define σ_j² (e.g. the whole training set).
    lr : float or array_like
        ε, broadcasting with P.

    Returns
    -------
    list of numpy.ndarray
        One array per layer, shape (P..., n_out).

    Raises
    ------
    TypeError
        If ``net`` is not an MLP.
    ValueError
        If ``net`` has no BN, the parameters or data do not fit it, or ``lr`` is not positive.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a bnlib.nn.MLP, got {type(net).__name__}")
    if not net.bn:
        raise ValueError("effective_steps needs a network with BN")
    params, P = net._check_params(params)
    X = v.finite_array(X, "X")
    if X.ndim != 2 or X.shape[1] != net.sizes[0] or X.shape[0] < 2:
        raise ValueError(f"X must have shape (B >= 2, {net.sizes[0]}), got {X.shape}")
    lr = v.positive_array(lr, "lr")
    try:
        lr_b = np.broadcast_to(lr, P)[..., None]
    except ValueError:
        raise ValueError(f"lr of shape {lr.shape} does not broadcast with the model shape {P}") from None
    out, a = [], X
    for layer in range(net.depth):
        z = a @ params[f"W{layer}"]
        gamma = params[f"gamma{layer}"]
        var = z.var(axis=-2)
        out.append(lr_b * gamma[..., 0, :] ** 2 / (var + net.eps))
        y, _ = batchnorm_forward(z, gamma, params[f"beta{layer}"], eps=net.eps, axis=z.ndim - 2)
        a = np.maximum(y, 0.0)
    return out


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
    net : bnlib.nn.MLP
        A network with BN.
    params : dict of numpy.ndarray
        Model shape P.
    X : array_like, shape (B, d_in)
        The batch (e.g. the whole training set); B ≥ 2.
    y : array_like of int, shape (B,)

    Returns
    -------
    numpy.ndarray, shape (P..., 2C, 2C)
        Rows and columns ordered (γ_1, …, γ_C, β_1, …, β_C), C = ``net.n_classes``.

    Raises
    ------
    TypeError
        If ``net`` is not an MLP.
    ValueError
        If ``net`` has no BN, or the parameters or data do not fit it.
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
    """Largest eigenvalue λ of :func:`~bnlib.netstudies.top_bn_hessian`: GD on (γ, β) alone with step ε_a
    is stable near a minimum when ε_a λ < 2.

    Parameters, raises
        As :func:`top_bn_hessian`.

    Returns
    -------
    numpy.ndarray, shape P
    """
    return np.linalg.eigvalsh(top_bn_hessian(net, params, X, y))[..., -1]


def _top_layer(net, params, X, y):
    """x̂ of the last layer, the softmax output p and the one-hot labels t, shape (P..., B, C)."""
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a bnlib.nn.MLP, got {type(net).__name__}")
    if not net.bn:
        raise ValueError("top_bn_hessian needs a network with BN")
    params, P = net._check_params(params)
    X = v.finite_array(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must have shape (B, {net.sizes[0]}), got {X.shape}")
    X, y = net._check_data(X, y, ())
    a = X
    for layer in range(net.depth):
        z = a @ params[f"W{layer}"]
        out, cache = batchnorm_forward(z, params[f"gamma{layer}"], params[f"beta{layer}"],
                                       eps=net.eps, axis=z.ndim - 2)
        a = np.maximum(out, 0.0)
    e = np.exp(out - out.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    t = (y[:, None] == np.arange(net.n_classes)).astype(float)
    return cache.xhat, p, t
