"""Closed-form predictions for GD and BNGD on OLS.

GD on J0 contracts the error e_k = w_k − u* as e_{k+1} = (I − εH) e_k, so it converges from
every start iff 0 < ε < 2/λ_max, with per-step contraction ``ρ_GD(ε) = max_i |1 − ελ_i|`` in the
H-norm, best at ε_opt = 2/(λ_max + λ_min) where ρ = (κ − 1)/(κ + 1).

Linearising BNGD at a minimiser (a*, w* = s u*) gives a block-diagonal Jacobian with a-block
1 − ε_a and w-block I − ε̂ H*, where H* = H − H u* u*ᵀ H / (u*ᵀ H u*) is the *effective
Hessian* and ε̂ = ε a*² / ‖w*‖²_H the effective step. Its local rate is
``ρ = max(|1 − ε_a|, max_i |1 − ε̂ λ*_i|)`` over the d − 1 nonzero eigenvalues λ*_i of H*.

Every function takes the problem either as arrays (``H``, and ``u_star`` where needed) or
as an :class:`~bnlib.ols.OLS` in place of ``H`` (then without ``u_star``: the problem's own
is used, and its stored eigenvalues are not recomputed), e.g. ``kappa_star(problem)`` equals
``kappa_star(problem.H, problem.u_star)`` and ``bngd_rate(problem, lr_eff, lr_a)`` equals
``bngd_rate(problem.H, problem.u_star, lr_eff, lr_a)``.
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from .ols import OLS

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


def _eig(H):
    """Ascending eigenvalues of H (one matrix or a stack), or of an OLS's H (stored)."""
    return H.eigvals if isinstance(H, OLS) else v.spd(H, "H", stack=True)[1]


def _out(x):
    return v.scalar_or_array(x)


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
    H : array_like, shape (d, d), or bnlib.OLS
    lr : float or array_like, any shape, > 0

    Returns
    -------
    float or numpy.ndarray, shape of ``lr``
        ρ < 1 means convergence; the loss excess contracts at ρ².
    """
    lam = _eig(H)
    lr = v.positive_array(lr, "lr")
    return _out(np.max(np.abs(1.0 - lr[..., None] * lam), axis=-1))


def kappa(H):
    """Condition number κ = λ_max / λ_min.

    Parameters
    ----------
    H : array_like, shape (d, d) or (S..., d, d), or bnlib.OLS
        One SPD matrix or a stack of them.

    Returns
    -------
    float or numpy.ndarray, shape S
    """
    lam = _eig(H)
    return _out(lam[..., -1] / lam[..., 0])


def _u(H, u_star):
    if isinstance(H, OLS):
        if u_star is not None:
            raise TypeError("u_star must not be given with an OLS problem (it has its own)")
        return H.H, H.u_star
    if u_star is None:
        raise TypeError("u_star is required when H is an array")
    H = v.spd(H, "H", stack=True)[0]
    u = v.finite_array(u_star, "u_star")
    if u.shape != H.shape[:-1]:
        raise ValueError(f"u_star must have shape {H.shape[:-1]}, got {u.shape}")
    if not np.all(np.any(u != 0, axis=-1)):
        raise ValueError("u_star must be nonzero: the effective Hessian needs a direction")
    return H, u


def effective_hessian(H, u_star=None) -> np.ndarray:
    """H* = H − H u* u*ᵀ H / (u*ᵀ H u*): symmetric, positive semidefinite, H* u* = 0.

    Parameters
    ----------
    H : array_like, shape (d, d) or (S..., d, d), or bnlib.OLS
        One SPD matrix or a stack of them.
    u_star : array_like, shape (d,) or (S..., d); omitted when H is an OLS
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


def effective_eigvals(H, u_star=None) -> np.ndarray:
    """The d − 1 nonzero eigenvalues of H*, ascending (empty when d = 1).

    H* u* = 0 and, by interlacing, every other eigenvalue lies in [λ_min, λ_max] > 0, so the
    smallest computed eigenvalue is the structural zero and is dropped.

    Returns
    -------
    numpy.ndarray, shape (d − 1,) or (S..., d − 1) for stacks as in :func:`effective_hessian`
    """
    return np.linalg.eigvalsh(effective_hessian(H, u_star))[..., 1:]


def kappa_star(H, u_star=None):
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


_UNSET = object()


def bngd_rate(H, u_star=None, lr_eff=None, lr_a=_UNSET):
    """Local rate of BNGD at a minimiser, ``max(|1 − ε_a|, max_i |1 − ε̂ λ*_i|)``.

    Parameters
    ----------
    H : array_like, shape (d, d), or bnlib.OLS
    u_star : array_like, shape (d,); omitted when H is an OLS
    lr_eff : float or array_like, > 0
        Effective step ε̂ = ε a*² / ‖w*‖²_H.
    lr_a : float or array_like, > 0
        Step of a, broadcast with ``lr_eff``.

    Returns
    -------
    float or numpy.ndarray, shape ``broadcast(lr_eff, lr_a)``
    """
    if isinstance(H, OLS) and u_star is not None:      # bngd_rate(problem, lr_eff[, lr_a])
        if lr_eff is not None:
            if lr_a is not _UNSET:
                raise TypeError("lr_a given twice: bngd_rate(problem, lr_eff, lr_a)")
            lr_a = lr_eff
        u_star, lr_eff = None, u_star
    if lr_eff is None:
        raise TypeError("bngd_rate needs lr_eff")
    if not isinstance(H, OLS):
        H = v.spd(H, "H")[0]                       # one matrix, not a stack
    lam = effective_eigvals(H, u_star)
    lr_eff = v.positive_array(lr_eff, "lr_eff")
    lr_a = v.positive_array(1.0 if lr_a is _UNSET else lr_a, "lr_a")
    w_part = (np.max(np.abs(1.0 - lr_eff[..., None] * lam), axis=-1) if lam.size
              else np.zeros(lr_eff.shape))
    return _out(np.maximum(np.abs(1.0 - lr_a), w_part))
