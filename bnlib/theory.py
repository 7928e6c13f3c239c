"""Closed-form predictions for GD and BNGD on OLS.

GD on J0 contracts the error e_k = w_k − u* as e_{k+1} = (I − εH) e_k, so it converges from
every start iff 0 < ε < 2/λ_max, with per-step contraction ``ρ_GD(ε) = max_i |1 − ελ_i|`` in the
H-norm, best at ε_opt = 2/(λ_max + λ_min) where ρ = (κ − 1)/(κ + 1).

Linearising BNGD at a minimiser (a*, w* = s u*) gives a block-diagonal Jacobian with a-block
1 − ε_a and w-block I − ε̂ H*, where H* = H − H u* u*ᵀ H / (u*ᵀ H u*) is the *effective
Hessian* and ε̂ = ε a*² / ‖w*‖²_H the effective step. Its local rate is
``ρ = max(|1 − ε_a|, max_i |1 − ε̂ λ*_i|)`` over the d − 1 nonzero eigenvalues λ*_i of H*.
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from .ols import check_spd

__all__ = [
    "gd_lr_max",
    "gd_lr_opt",
    "gd_rate",
    "kappa",
    "effective_hessian",
    "effective_eigvals",
    "kappa_star",
    "bngd_rate",
]


def _spd(H, name="H"):
    """check_spd for one matrix (d, d), or for a stack (..., d, d) of them."""
    arr = v.as_real_array(H, name)
    if arr.ndim <= 2:
        return check_spd(arr, name)
    arr = v.finite_array(arr, name)
    if arr.shape[-1] != arr.shape[-2] or arr.shape[-1] == 0:
        raise ValueError(f"{name} must be a stack of non-empty square matrices, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must hold at least one matrix, got shape {arr.shape}")
    sym = np.swapaxes(arr, -1, -2)
    scale = np.maximum(np.max(np.abs(arr), axis=(-2, -1)), np.finfo(float).tiny)
    if np.any(np.max(np.abs(arr - sym), axis=(-2, -1)) > 1e-10 * scale):
        raise ValueError(f"{name} must be symmetric (every matrix of the stack)")
    arr = 0.5 * (arr + sym)
    lam_min = np.min(np.linalg.eigvalsh(arr)[..., 0])
    if not lam_min > 0:
        raise ValueError(f"{name} must be positive definite; its smallest eigenvalue is {lam_min:.3g}")
    return arr


def _eig(H):
    return np.linalg.eigvalsh(check_spd(H, "H"))


def _out(x):
    return float(x) if np.ndim(x) == 0 else x


def gd_lr_max(H) -> float:
    """The stability edge 2/λ_max of GD: it converges from every start iff ε < this."""
    return 2.0 / _eig(H)[-1]


def gd_lr_opt(H) -> float:
    """The best constant GD step 2/(λ_max + λ_min)."""
    lam = _eig(H)
    return 2.0 / (lam[-1] + lam[0])


def gd_rate(H, lr):
    """Per-step contraction of GD's error in the H-norm, ``ρ_GD(ε) = max_i |1 − ε λ_i|``.

    Parameters
    ----------
    H : array_like, shape (d, d)
    lr : float or array_like, any shape, > 0

    Returns
    -------
    float or numpy.ndarray, shape of ``lr``
        ρ < 1 means convergence; the loss excess contracts at ρ².
    """
    lam = _eig(H)
    lr = v.positive_array(lr, "lr")
    rate = np.max(np.abs(1.0 - lr[..., None] * lam), axis=-1)
    return float(rate) if rate.ndim == 0 else rate


def kappa(H):
    """Condition number κ = λ_max / λ_min.

    Parameters
    ----------
    H : array_like, shape (d, d) or (S..., d, d)
        One SPD matrix or a stack of them.

    Returns
    -------
    float or numpy.ndarray, shape S
    """
    lam = np.linalg.eigvalsh(_spd(H, "H"))
    return _out(lam[..., -1] / lam[..., 0])


def _u(H, u_star):
    H = _spd(H, "H")
    u = v.finite_array(u_star, "u_star")
    if u.shape != H.shape[:-1]:
        raise ValueError(f"u_star must have shape {H.shape[:-1]}, got {u.shape}")
    if not np.all(np.any(u != 0, axis=-1)):
        raise ValueError("u_star must be nonzero: the effective Hessian needs a direction")
    return H, u


def effective_hessian(H, u_star) -> np.ndarray:
    """H* = H − H u* u*ᵀ H / (u*ᵀ H u*): symmetric, positive semidefinite, H* u* = 0.

    Parameters
    ----------
    H : array_like, shape (d, d) or (S..., d, d)
        One SPD matrix or a stack of them.
    u_star : array_like, shape (d,) or (S..., d)
        The OLS solution(s), one per matrix; nonzero.

    Returns
    -------
    numpy.ndarray, shape (d, d) or (S..., d, d)

    Raises
    ------
    ValueError
        If ``H`` is not SPD or ``u_star`` has the wrong shape or is zero.
    """
    H, u = _u(H, u_star)
    Hu = np.einsum("...ij,...j->...i", H, u)
    Hs = H - Hu[..., :, None] * Hu[..., None, :] / np.einsum("...i,...i->...", u, Hu)[..., None, None]
    return 0.5 * (Hs + np.swapaxes(Hs, -1, -2))


def effective_eigvals(H, u_star) -> np.ndarray:
    """The d − 1 nonzero eigenvalues of H*, ascending (empty when d = 1).

    H* u* = 0 and, by interlacing, every other eigenvalue lies in [λ_min, λ_max] > 0, so the
    smallest computed eigenvalue is the structural zero and is dropped.

    Returns
    -------
    numpy.ndarray, shape (d − 1,) or (S..., d − 1) for stacks as in :func:`effective_hessian`
    """
    return np.linalg.eigvalsh(effective_hessian(H, u_star))[..., 1:]


def kappa_star(H, u_star):
    """Effective condition number κ* = λ*_max / λ*_min over the nonzero eigenvalues of H*
    (1 when d = 1).

    Returns
    -------
    float or numpy.ndarray, shape S for stacks as in :func:`effective_hessian`
    """
    lam = effective_eigvals(H, u_star)
    if lam.shape[-1] == 0:
        return _out(np.ones(lam.shape[:-1]))
    return _out(lam[..., -1] / lam[..., 0])


def bngd_rate(H, u_star, lr_eff, lr_a=1.0):
    """Local rate of BNGD at a minimiser, ``max(|1 − ε_a|, max_i |1 − ε̂ λ*_i|)``.

    Parameters
    ----------
    H : array_like, shape (d, d)
    u_star : array_like, shape (d,)
    lr_eff : float or array_like, > 0
        Effective step ε̂ = ε a*² / ‖w*‖²_H.
    lr_a : float or array_like, > 0
        Step of a, broadcast with ``lr_eff``.

    Returns
    -------
    float or numpy.ndarray, shape ``broadcast(lr_eff, lr_a)``
    """
    lam = effective_eigvals(check_spd(H, "H"), u_star)
    lr_eff = v.positive_array(lr_eff, "lr_eff")
    lr_a = v.positive_array(lr_a, "lr_a")
    w_part = (np.max(np.abs(1.0 - lr_eff[..., None] * lam), axis=-1) if lam.size
              else np.zeros(lr_eff.shape))
    rate = np.maximum(np.abs(1.0 - lr_a), w_part)
    return float(rate) if rate.ndim == 0 else rate
