"""Weight normalization (WN) on OLS: u = a w/‖w‖ with the Euclidean norm.

Weight normalization (Salimans & Kingma, 2016) reparameterises a weight vector as a scale
times a direction, like BN, but divides by the *Euclidean* norm of w instead of the standard
deviation ‖w‖_H of the pre-activation: no data enter the normalisation. On OLS the loss is

    J_WN(a, w) = J0(a w/‖w‖) = ½ (c − 2 a wᵀg/‖w‖ + a² wᵀHw/‖w‖²),

and with r = H u − g, u = a w/‖w‖, ŵ = w/‖w‖ its gradients are

    ∂_a J_WN = ŵᵀ r,     ∇_w J_WN = (a/‖w‖) (I − ŵŵᵀ) r.

:func:`~bnlib.weightnorm.wngd` runs gradient descent on (a, w) (WNGD) with the interface,
vectorisation and divergence flagging of :func:`~bnlib.descent.bngd`. The other functions
give the linearisation of WNGD at a minimiser (a*, w*) = (‖u*‖, s û), û = u*/‖u*‖, s > 0:

- :func:`~bnlib.weightnorm.wn_jacobian` — the Jacobian of one WNGD step there;
- :func:`~bnlib.weightnorm.wn_effective_hessian` — the w-block's matrix P H P with
  P = I − ûûᵀ (the compression of H to the complement of u*), with the effective step
  ε̂ = ε a*²/‖w*‖²; :func:`~bnlib.weightnorm.wn_kappa` its condition number on û⊥;
- :func:`~bnlib.weightnorm.wn_rate` — the local rate, from the eigenvalues of Λ H with the
  preconditioner Λ = ε_a ûûᵀ + ε̂ (I − ûûᵀ) (the a-block and the coupling included);
- :func:`~bnlib.weightnorm.wn_kappa_eff` — the condition number of Λ H for a step ratio
  ε_a/ε̂ (equal to κ at ratio 1, never below :func:`~bnlib.weightnorm.wn_kappa`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate as v
from ._engine import check_problem as _check_problem
from ._engine import normalized_run
from ._layout import _Data, _stack
from .ols import check_spd
from .runs import BNGDRun

__all__ = ["WNGDRun", "wn_loss", "wn_grad", "wngd", "wngd_stack", "wn_jacobian",
           "wn_effective_hessian", "wn_effective_eigvals", "wn_kappa", "wn_rate",
           "wn_kappa_eff"]


@dataclass(frozen=True, kw_only=True)
class WNGDRun(BNGDRun):
    """The result of :func:`~bnlib.weightnorm.wngd`: the fields of
    :class:`~bnlib.runs.BNGDRun`, with ``loss`` = J_WN(a_k, w_k), ``excess`` = J_WN − J*
    computed as ½ (u_k − u*)ᵀH(u_k − u*), u_k = a_k w_k/‖w_k‖, and ``lr_eff`` the effective
    step ε a_k²/‖w_k‖² with the **Euclidean** norm (BN's uses ‖w_k‖_H)."""


# ---------------------------------------------------------------------------- loss
def _aw(problem, a, w):
    _check_problem(problem)
    a, w = v.scale_weights(a, w, problem.d)
    n2 = np.einsum("...i,...i->...", w, w)
    if np.any(n2 <= 0):
        raise ValueError("w must be nonzero: w/||w|| is undefined at w = 0")
    return a, w, np.sqrt(n2)


def wn_loss(problem, a, w) -> np.ndarray:
    """J_WN(a, w) = J0(a w/‖w‖).

    Parameters
    ----------
    problem : bnlib.ols.OLS
    a : array_like, shape broadcastable with ``w.shape[:-1]``
    w : array_like, shape (..., d), nonzero

    Returns
    -------
    numpy.ndarray, shape ``broadcast(a.shape, w.shape[:-1])``

    Raises
    ------
    TypeError
        If ``problem`` is not an OLS or an argument is not numeric.
    ValueError
        If ``w`` has the wrong last dimension, is zero, or shapes do not broadcast.
    """
    a, w, n = _aw(problem, a, w)
    return problem.loss((a / n)[..., None] * w)


def wn_grad(problem, a, w):
    """Gradients of :func:`~bnlib.weightnorm.wn_loss`.

    Returns
    -------
    dJ_da : numpy.ndarray, shape ``broadcast(a.shape, w.shape[:-1])``
        ŵᵀ (H u − g).
    dJ_dw : numpy.ndarray, shape ``dJ_da.shape + (d,)``
        (a/‖w‖) (I − ŵŵᵀ)(H u − g).

    Raises
    ------
    TypeError, ValueError
        As :func:`~bnlib.weightnorm.wn_loss`.
    """
    a, w, n = _aw(problem, a, w)
    what = w / n[..., None]
    r = problem.grad(a[..., None] * what)
    da = np.einsum("...i,...i->...", what, r)
    dw = (a / n)[..., None] * (r - da[..., None] * what)
    return da, dw


# ---------------------------------------------------------------------------- runs
def _wngd(data, lr, steps, a0, w0, lr_a, tol, record, blowup):
    # The engine of GD and BNGD, with the Euclidean norm in the shared BN/WN kernel.
    return normalized_run("wn", data, lr, steps, a0, w0, lr_a, tol, record, blowup, WNGDRun)


def wngd(problem, lr, steps, a0, w0, lr_a=1.0, *, tol=None, record="all", blowup=1e10):
    """Gradient descent on the weight-normalized loss J_WN(a, w) (WNGD).

    a_{k+1} = a_k − ε_a ∂_a J_WN(a_k, w_k),   w_{k+1} = w_k − ε ∇_w J_WN(a_k, w_k).

    The interface, shapes, vectorisation over step sizes and divergence flagging are those
    of :func:`~bnlib.descent.bngd`; a run is diverged once its state is not finite or its
    loss exceeds ``blowup * max(J_WN(a0, w0), c/2)`` (``loss`` is then ``inf`` and the
    iterates ``nan``), and no floating-point warning escapes.

    Parameters
    ----------
    problem, lr, steps, a0, w0, tol, record, blowup
        As in :func:`~bnlib.descent.bngd` (``w0`` nonzero).
    lr_a : float or array_like
        Step(s) ε_a > 0 of a, broadcast with ``lr``. Unlike BN's, the curvature of J_WN in a
        is ŵᵀHŵ, not 1, so ε_a ≤ 1 is not a safe default for every problem.

    Returns
    -------
    WNGDRun

    Raises
    ------
    TypeError, ValueError
        On the arguments :func:`~bnlib.descent.bngd` rejects, for the same reasons.
    """
    _check_problem(problem)
    return _wngd(_Data([problem], stacked=False), lr, steps, a0, w0, lr_a, tol, record, blowup)


def wngd_stack(problems, lr, steps, a0, w0, lr_a=1.0, *, tol=None, record="all", blowup=1e10):
    """:func:`~bnlib.weightnorm.wngd` on S problems of equal dimension at once.

    The broadcasting (batch shape (S, B...), the problem axis first: M step sizes for every
    problem are ``lr[None, :]``), the layout of the :class:`~bnlib.weightnorm.WNGDRun` it
    returns and the errors it raises are those of :func:`~bnlib.descent.bngd_stack`.
    """
    return _wngd(_stack(problems), lr, steps, a0, w0, lr_a, tol, record, blowup)


# ---------------------------------------------------------------------------- linearisation
def _hu(H, u_star):
    H = check_spd(H, "H")
    u = v.finite_array(u_star, "u_star")
    if u.shape != (H.shape[0],):
        raise ValueError(f"u_star must have shape ({H.shape[0]},), got {u.shape}")
    nu = np.linalg.norm(u)
    if nu == 0:
        raise ValueError("u_star must be nonzero: the minimiser needs a direction")
    return H, u / nu, nu


def wn_effective_hessian(H, u_star) -> np.ndarray:
    """P H P with P = I − ûûᵀ, û = u*/‖u*‖: the matrix of WNGD's w-block at a minimiser.

    The w-block of the Jacobian is I − ε̂ P H P with ε̂ = ε a*²/‖w*‖². P H P is symmetric
    positive semidefinite, P H P û = 0, and on û⊥ it is the compression of H.

    Parameters
    ----------
    H : array_like, shape (d, d), SPD
    u_star : array_like, shape (d,), nonzero

    Returns
    -------
    numpy.ndarray, shape (d, d)

    Raises
    ------
    ValueError
        If ``H`` is not SPD or ``u_star`` has the wrong shape or is zero.
    """
    H, uh, _ = _hu(H, u_star)
    P = np.eye(H.shape[0]) - np.outer(uh, uh)
    M = P @ H @ P
    return 0.5 * (M + M.T)


def wn_effective_eigvals(H, u_star) -> np.ndarray:
    """The d − 1 eigenvalues of P H P on û⊥, ascending (by Cauchy interlacing they lie in
    [λ_min, λ_max] > 0, so the structural zero is the smallest and is dropped).

    Returns
    -------
    numpy.ndarray, shape (d − 1,)
    """
    return np.linalg.eigvalsh(wn_effective_hessian(H, u_star))[1:]


def wn_kappa(H, u_star) -> float:
    """κ_WN = ν_max/ν_min over :func:`~bnlib.weightnorm.wn_effective_eigvals` (1 if d = 1)."""
    nu = wn_effective_eigvals(H, u_star)
    return float(nu[-1] / nu[0]) if nu.size else 1.0


def wn_jacobian(H, u_star, lr, lr_a, s=1.0) -> np.ndarray:
    """Jacobian of one WNGD step at the minimiser (a*, w*) = (‖u*‖, s û), in the variables
    (a, w_1, …, w_d):

        I − diag(ε_a, ε I) M,  M = [[ûᵀHû, (a*/s) ûᵀHP], [(a*/s) PHû, (a*/s)² PHP]].

    Parameters
    ----------
    H : array_like, shape (d, d), SPD
    u_star : array_like, shape (d,), nonzero
    lr, lr_a : float
        ε > 0 and ε_a > 0.
    s : float
        ‖w*‖ > 0.

    Returns
    -------
    numpy.ndarray, shape (d + 1, d + 1)

    Raises
    ------
    ValueError
        On a non-SPD ``H``, a bad ``u_star`` or a step or ``s`` that is not > 0.
    """
    H, uh, nu = _hu(H, u_star)
    lr, lr_a, s = (v.positive_scalar(x, nm) for x, nm in ((lr, "lr"), (lr_a, "lr_a"), (s, "s")))
    d = H.shape[0]
    P = np.eye(d) - np.outer(uh, uh)
    C = np.concatenate([uh[:, None], (nu / s) * P], axis=1)          # du/d(a, w)
    M = C.T @ H @ C
    return np.eye(d + 1) - np.concatenate([[lr_a], np.full(d, lr)])[:, None] * M


def _lam_h(H, uh, lr_eff, lr_a):
    """Eigenvalues of Λ^{1/2} H Λ^{1/2}, Λ = ε_a ûûᵀ + ε̂ P; shape broadcast + (d,)."""
    d = H.shape[0]
    Q = np.linalg.svd(uh[:, None], full_matrices=True)[0]             # Q[:, 0] = ±û
    K = Q.T @ H @ Q
    scale = np.ones(np.broadcast_shapes(lr_eff.shape, lr_a.shape) + (d,))
    scale = scale * np.sqrt(lr_eff)[..., None]
    scale[..., 0] = np.sqrt(np.broadcast_to(lr_a, scale.shape[:-1]))
    S = scale[..., :, None] * K * scale[..., None, :]
    return np.linalg.eigvalsh(S)


def wn_rate(H, u_star, lr_eff, lr_a):
    """Local rate of WNGD at a minimiser: ``max_i |1 − μ_i|`` over the d eigenvalues μ_i of
    Λ H, Λ = ε_a ûûᵀ + ε̂ (I − ûûᵀ) (the Jacobian's other eigenvalue is the neutral 1 of
    the direction (0, w*), along which only ‖w‖ changes).

    Parameters
    ----------
    H : array_like, shape (d, d), SPD
    u_star : array_like, shape (d,), nonzero
    lr_eff : float or array_like, > 0
        ε̂ = ε a*²/‖w*‖² (Euclidean norm).
    lr_a : float or array_like, > 0
        ε_a, broadcast with ``lr_eff``.

    Returns
    -------
    float or numpy.ndarray, shape ``broadcast(lr_eff, lr_a)``

    Raises
    ------
    ValueError
        On a non-SPD ``H``, a bad ``u_star`` or steps that are not > 0.
    """
    H, uh, _ = _hu(H, u_star)
    lr_eff = v.positive_array(lr_eff, "lr_eff")
    lr_a = v.positive_array(lr_a, "lr_a")
    rate = np.max(np.abs(1.0 - _lam_h(H, uh, lr_eff, lr_a)), axis=-1)
    return float(rate) if rate.ndim == 0 else rate


def wn_kappa_eff(H, u_star, ratio):
    """Condition number of Λ H for the step ratio ``ratio`` = ε_a/ε̂ (Λ as in
    :func:`~bnlib.weightnorm.wn_rate`): WNGD's best local rate at that ratio is
    (κ_eff − 1)/(κ_eff + 1). It equals κ(H) at ratio 1 and, by Cauchy interlacing, is never
    below :func:`~bnlib.weightnorm.wn_kappa`.

    Parameters
    ----------
    H : array_like, shape (d, d), SPD
    u_star : array_like, shape (d,), nonzero
    ratio : float or array_like, > 0

    Returns
    -------
    float or numpy.ndarray, shape of ``ratio``
    """
    H, uh, _ = _hu(H, u_star)
    ratio = v.positive_array(ratio, "ratio")
    mu = _lam_h(H, uh, np.ones(ratio.shape), ratio)
    out = mu[..., -1] / mu[..., 0]
    return float(out) if out.ndim == 0 else out
