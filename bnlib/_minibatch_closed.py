"""The closed forms of :mod:`bnlib.minibatch` for Gaussian data: the gradient noise of a
mini-batch, the growth of ‖w‖ and the loss floors of BN-SGD and SGD.
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from .bn import batch_std_mean
from .ols import OLS


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
    float or numpy.ndarray
        The excess, broadcast over ``batch`` and ``lr``; ``inf`` without a stationary state.

    Raises
    ------
    TypeError, ValueError
        As :func:`~bnlib.minibatch.scale_floor` for ``problem`` and ``batch`` (here any
        ``batch`` >= 1 is allowed), or if ``lr`` is not > 0.
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
