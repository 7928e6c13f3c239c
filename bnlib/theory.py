"""Closed forms: every prediction the book derives, in one place.

GD on J0, BNGD and WNGD at a minimiser (effective Hessians, condition numbers, local rates),
mini-batch BN on Gaussian data (gradient noise, growth of ‖w‖, floors) and weight decay.
"""

from __future__ import annotations

import numpy as np

from . import PUBLIC
from . import checks as v
from .bn import batch_std_mean
from .ols import check_problem

__all__ = list(PUBLIC["theory"])


def _eig(H):
    """Ascending eigenvalues of H (one matrix or a stack)."""
    return v.spd(H, "H", stack=True)[1]


def gd_lr_max(H) -> float:
    """Return the stability edge 2/λ_max of GD: it converges from every start iff ε < this."""
    return 2.0 / _eig(H)[-1]


def gd_lr_opt(H) -> float:
    """Return the best constant GD step 2/(λ_max + λ_min)."""
    lam = _eig(H)
    return 2.0 / (lam[-1] + lam[0])


def gd_rate(H, lr):
    """Per-step contraction of GD's error in the H-norm, ``ρ_GD(ε) = max_i |1 − ε λ_i|``.

    ρ < 1 means convergence; the loss excess contracts at ρ². ``H`` is one SPD matrix; the
    result has the shape of ``lr`` (> 0).
    """
    lam = _eig(H)
    lr = v.positive_array(lr, "lr")
    return v.scalar_or_array(np.max(np.abs(1.0 - lr[..., None] * lam), axis=-1))


def kappa(H):
    """Condition number κ = λ_max / λ_min of one SPD matrix (d, d) or of a stack (S..., d, d)."""
    lam = _eig(H)
    return v.scalar_or_array(lam[..., -1] / lam[..., 0])


def _u(H, u_star):
    H = v.spd(H, "H", stack=True)[0]
    u = v.finite_array(u_star, "u_star")
    if u.shape != H.shape[:-1]:
        raise ValueError(f"u_star must have shape {H.shape[:-1]}, got {u.shape}")
    if not np.all(np.any(u != 0, axis=-1)):
        raise ValueError("u_star must be nonzero: the effective Hessian needs a direction")
    return H, u


def effective_hessian(H, u_star) -> np.ndarray:
    """H* = H − H u* u*ᵀ H / (u*ᵀ H u*): symmetric, positive semidefinite, H* u* = 0.

    ``ValueError`` if ``H`` is not SPD or ``u_star`` has the wrong shape or is zero.

    Parameters
    ----------
    H : array_like, shape (d, d) or (S..., d, d)
        One SPD matrix or a stack of them.
    u_star : array_like, shape (d,) or (S..., d)
        The OLS solution(s), one per matrix; nonzero.

    Returns
    -------
    numpy.ndarray, shape (d, d) or (S..., d, d)
    """
    H, u = _u(H, u_star)
    Hu = np.einsum("...ij,...j->...i", H, u)
    Hs = H - Hu[..., :, None] * Hu[..., None, :] / np.einsum("...i,...i->...", u, Hu)[..., None, None]
    return 0.5 * (Hs + np.swapaxes(Hs, -1, -2))


def effective_eigvals(H, u_star) -> np.ndarray:
    """Return the d − 1 nonzero eigenvalues of H*, ascending (empty when d = 1).

    H* u* = 0 and, by interlacing, every other eigenvalue lies in [λ_min, λ_max] > 0, so the
    smallest computed eigenvalue is the structural zero and is dropped.

    Parameters, stacks and errors as :func:`effective_hessian`; shape (d − 1,) or (S..., d − 1).
    """
    return np.linalg.eigvalsh(effective_hessian(H, u_star))[..., 1:]


def kappa_star(H, u_star):
    """Effective condition number κ* = λ*_max/λ*_min over the nonzero eigenvalues of H* (1 if d = 1).

    Parameters, stacks and errors as :func:`effective_hessian`; shape S.
    """
    lam = effective_eigvals(H, u_star)
    if lam.shape[-1] == 0:
        return v.scalar_or_array(np.ones(lam.shape[:-1]))
    return v.scalar_or_array(lam[..., -1] / lam[..., 0])


def bngd_rate(H, u_star, lr_eff, lr_a=1.0):
    """Local rate of BNGD at a minimiser, ``max(|1 − ε_a|, max_i |1 − ε̂ λ*_i|)``.

    Parameters
    ----------
    H, u_star
        One matrix and its minimiser, as in :func:`effective_hessian`.
    lr_eff : float or array_like, > 0
        Effective step ε̂ = ε a*² / ‖w*‖²_H.
    lr_a : float or array_like, > 0
        Step of a, broadcast with ``lr_eff``.

    Returns
    -------
    float or numpy.ndarray, shape ``broadcast(lr_eff, lr_a)``
    """
    H = v.spd(H, "H")[0]                           # one matrix, not a stack
    lam = effective_eigvals(H, u_star)
    lr_eff = v.positive_array(lr_eff, "lr_eff")
    lr_a = v.positive_array(lr_a, "lr_a")
    w_part = (np.max(np.abs(1.0 - lr_eff[..., None] * lam), axis=-1) if lam.size
              else np.zeros(lr_eff.shape))
    return v.scalar_or_array(np.maximum(np.abs(1.0 - lr_a), w_part))


def _modes(problem, w0):
    p = check_problem(problem)
    w0 = v.vector_batch(w0, "w0", p.d)
    if w0.ndim != 1:
        raise ValueError(f"w0 must have shape ({p.d},), got {w0.shape}")
    Q, lam = p.eigenbasis()
    weight = 0.5 * lam * (Q.T @ (w0 - p.u_star)) ** 2      # J0 − J* = ½ Σ λ_i c_i² at k = 0
    return lam, weight


def gd_excess(problem, lr, k, w0):
    """J0(w_k) − J* of GD from w0 after k steps, in closed form (no iteration).

    ``½ Σ_i λ_i c_i² (1 − ε λ_i)^{2k}`` with c = Qᵀ(w0 − u*) in H's eigenbasis.

    Parameters
    ----------
    problem : OLS
    lr : float or array_like, > 0
    k : int or array_like of int, >= 0
        Broadcast with ``lr``.
    w0 : array_like, shape (d,)

    Returns
    -------
    float or numpy.ndarray, shape ``broadcast(lr, k)``; ``inf`` where it overflows
    """
    lam, weight = _modes(problem, w0)
    lr = v.positive_array(lr, "lr")
    k = v.finite_array(k, "k")
    if np.any(k < 0) or np.any(k != np.round(k)):
        raise ValueError("k must hold non-negative integers")
    lr, k = np.broadcast_arrays(lr, k)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        log_f = np.log(np.abs(1.0 - lr[..., None] * lam))
        terms = weight * np.exp(np.where(k[..., None] == 0, 0.0, 2 * k[..., None] * log_f))
    return v.scalar_or_array(np.sum(terms, axis=-1))


def gd_steps_to(problem, lr, w0, tol, max_steps):
    """Fewest GD steps k <= max_steps with J0(w_k) − J* <= tol, from the closed form.

    For 0 < ε <= 2/λ_max the excess never increases, so the count is found by bisection in
    k, vectorised over ``lr``.

    Parameters
    ----------
    problem : OLS
    lr : float or array_like, > 0
    w0 : array_like, shape (d,)
    tol : float, > 0
    max_steps : int, >= 1

    Returns
    -------
    float or numpy.ndarray of float, shape of ``lr``; ``inf`` where not reached in
    ``max_steps`` steps (always so above the stability edge, unless reached at k = 0)
    """
    p = check_problem(problem)
    lr = v.positive_array(lr, "lr")
    tol = v.positive_scalar(tol, "tol")
    max_steps = v.count(max_steps, "max_steps", minimum=1)
    lo = np.zeros(lr.shape)                          # excess(lo) > tol unless lo == 0 reached
    hi = np.full(lr.shape, float(max_steps))
    reached0 = gd_excess(p, np.ones(()), 0, w0) <= tol
    ok = np.asarray(gd_excess(p, lr, hi, w0)) <= tol
    stable = lr <= gd_lr_max(p.H) * (1 + 1e-12)
    for _ in range(int(np.ceil(np.log2(max_steps))) + 1):
        mid = np.floor((lo + hi) / 2)
        good = np.asarray(gd_excess(p, lr, mid, w0)) <= tol
        hi = np.where(good, mid, hi)
        lo = np.where(good, lo, mid)
    out = np.where(reached0, 0.0, np.where(ok & stable, hi, np.inf))
    return v.scalar_or_array(out)


def gd_best_step(problem, w0, tol, max_steps, n_grid=2001, refine=3):
    """GD's best constant step for reaching J0 − J* <= tol from w0, by a fine search.

    The step count of :func:`gd_steps_to` is evaluated on ``n_grid`` steps spread evenly
    over (0, 2/λ_max]; the grid is then refined ``refine`` times around the largest
    count-minimising step, each time to a span of four old grid cells. The step returned is
    the midpoint of the smallest and largest count-minimising steps seen on all grids when
    that midpoint reaches the same count (else the largest one). The largest sits on the
    boundary where the count changes, so its excess meets ``tol`` at the last step almost
    exactly and its count could move by one on another machine; the midpoint keeps a margin.

    Parameters
    ----------
    problem : OLS
    w0 : array_like, shape (d,)
    tol : float, > 0
    max_steps : int, >= 1
    n_grid : int, >= 3
    refine : int, >= 0

    Returns
    -------
    lr_best : float
    steps_best : float
        ``inf`` if no step reaches ``tol`` within ``max_steps``.
    """
    p = check_problem(problem)
    n_grid = v.count(n_grid, "n_grid", minimum=3)
    refine = v.count(refine, "refine", minimum=0)
    edge = gd_lr_max(p.H)
    grid = np.linspace(edge / n_grid, edge, n_grid)
    seen_lr, seen_steps = [], []
    for level in range(refine + 1):
        steps = gd_steps_to(p, grid, w0, tol, max_steps)
        seen_lr.append(grid)
        seen_steps.append(steps)
        i = int(np.flatnonzero(steps == steps.min())[-1])
        if level < refine:
            h = grid[1] - grid[0]
            grid = np.linspace(max(grid[i] - 2 * h, h / n_grid), min(grid[i] + 2 * h, edge), n_grid)
    lrs, counts = np.concatenate(seen_lr), np.concatenate(seen_steps)
    best = counts.min()
    if not np.isfinite(best):
        return float(grid[i]), float(best)
    at_best = lrs[counts == best]
    mid = 0.5 * (at_best.min() + at_best.max())
    if gd_steps_to(p, mid, w0, tol, max_steps) == best:
        return float(mid), float(best)
    return float(at_best.max()), float(best)


def asymptotic_speedup(problem):
    """Return log ρ_BN / log ρ_GD at the best steps: the ratio of step counts for a tiny tolerance.

    ρ_GD = (κ − 1)/(κ + 1) at ε_opt and ρ_BN = (κ* − 1)/(κ* + 1) at BNGD's best effective
    step; far into the asymptotic regime GD needs this many times BNGD's steps. ``inf``
    when κ* = 1 < κ (BNGD's best rate is 0).
    """
    p = check_problem(problem)
    k, ks = kappa(p.H), kappa_star(p.H, p.u_star)
    rho_gd, rho_bn = (k - 1) / (k + 1), (ks - 1) / (ks + 1)
    if rho_bn == 0:                      # κ* = 1; κ = 1 too means both finish in one step
        return 1.0 if rho_gd == 0 else np.inf
    return float(np.log(rho_bn) / np.log(rho_gd))


def split_u(H, u_star):
    """Check one SPD ``H`` and a nonzero ``u_star`` (d,); return ``(H, u*/‖u*‖, ‖u*‖)``."""
    H, u = _u(v.spd(H, "H")[0], u_star)
    nu = np.linalg.norm(u)
    return H, u / nu, nu


def wn_effective_hessian(H, u_star) -> np.ndarray:
    """P H P with P = I − ûûᵀ, û = u*/‖u*‖: the matrix of WNGD's w-block at a minimiser.

    The w-block of the Jacobian is I − ε̂ P H P with ε̂ = ε a*²/‖w*‖². P H P is symmetric
    positive semidefinite, P H P û = 0, and on û⊥ it is the compression of H.

    Parameters and errors as :func:`effective_hessian` for one matrix; shape (d, d).
    """
    H, uh, _ = split_u(H, u_star)
    P = np.eye(H.shape[0]) - np.outer(uh, uh)
    M = P @ H @ P
    return 0.5 * (M + M.T)


def wn_effective_eigvals(H, u_star) -> np.ndarray:
    """Return the d − 1 eigenvalues of P H P on û⊥, ascending (the structural zero dropped).

    By Cauchy interlacing they lie in [λ_min, λ_max] > 0, as for :func:`effective_eigvals`.
    Parameters as :func:`wn_effective_hessian`.
    """
    return np.linalg.eigvalsh(wn_effective_hessian(H, u_star))[1:]


def wn_kappa(H, u_star) -> float:
    """κ_WN = ν_max/ν_min over :func:`~bnlib.theory.wn_effective_eigvals` (1 if d = 1)."""
    nu = wn_effective_eigvals(H, u_star)
    return float(nu[-1] / nu[0]) if nu.size else 1.0


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
    """Local rate of WNGD at a minimiser: ``max_i |1 − μ_i|``.

    The μ_i are the d eigenvalues of Λ H, Λ = ε_a ûûᵀ + ε̂ (I − ûûᵀ) (the Jacobian's other
    eigenvalue is the neutral 1 of the direction (0, w*), along which only ‖w‖ changes).

    Parameters
    ----------
    H, u_star
        As in :func:`wn_effective_hessian`.
    lr_eff : float or array_like, > 0
        ε̂ = ε a*²/‖w*‖² (Euclidean norm).
    lr_a : float or array_like, > 0
        ε_a, broadcast with ``lr_eff``.

    Returns
    -------
    float or numpy.ndarray, shape ``broadcast(lr_eff, lr_a)``
    """
    H, uh, _ = split_u(H, u_star)
    lr_eff = v.positive_array(lr_eff, "lr_eff")
    lr_a = v.positive_array(lr_a, "lr_a")
    rate = np.max(np.abs(1.0 - _lam_h(H, uh, lr_eff, lr_a)), axis=-1)
    return v.scalar_or_array(rate)


def wn_kappa_eff(H, u_star, ratio):
    """Condition number of Λ H for the step ratio ``ratio`` = ε_a/ε̂.

    Λ is as in :func:`~bnlib.theory.wn_rate`; WNGD's best local rate at that ratio is
    (κ_eff − 1)/(κ_eff + 1). It equals κ(H) at ratio 1 and, by Cauchy interlacing, is never
    below :func:`~bnlib.theory.wn_kappa`.

    Parameters
    ----------
    H, u_star
        As in :func:`wn_effective_hessian`.
    ratio : float or array_like, > 0

    Returns
    -------
    float or numpy.ndarray, shape of ``ratio``
    """
    H, uh, _ = split_u(H, u_star)
    ratio = v.positive_array(ratio, "ratio")
    mu = _lam_h(H, uh, np.ones(ratio.shape), ratio)
    return v.scalar_or_array(mu[..., -1] / mu[..., 0])


def _noise_var(problem):
    check_problem(problem)
    return 2.0 * problem.min_loss


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
    """
    s2 = _noise_var(problem)
    b = v.batch_sizes(batch).astype(float)
    H, u = problem.H, problem.u_star
    Hu = H @ u
    tr_star = np.trace(H) - Hu @ Hu / (u @ Hu)
    with np.errstate(divide="ignore"):
        q = np.where(b == 2, 0.0, np.where(b == 3, np.inf, (b - 2) / (b * np.maximum(b - 3, 1))))
    return v.scalar_or_array(s2 * tr_star * q)


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
    """
    v0 = v.positive_array(v0, "v0")
    lr = v.positive_array(lr, "lr")
    c = v.nonnegative_array(c, "c")
    k = v.nonnegative_array(k, "k")
    return v.scalar_or_array(np.sqrt(v0**2 + 2.0 * lr**2 * c * k))


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
    """
    s2 = _noise_var(problem)
    b = v.batch_sizes(batch)
    lr_a = v.positive_array(lr_a, "lr_a")
    if np.any(lr_a >= 2):
        raise ValueError("lr_a must be < 2 for a stationary scale")
    m = float(problem.u_star @ problem.g)
    es = batch_std_mean(b)
    var = m * ((b - 1) / b - es**2) + s2 / b
    return v.scalar_or_array(0.5 * (m * (1 - es) ** 2 + lr_a * var / (2 - lr_a)))


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
    """
    s2 = _noise_var(problem)
    b = v.batch_sizes(batch, minimum=1).astype(float)
    lr = v.positive_array(lr, "lr")
    b, lr = np.broadcast_arrays(b, lr)
    lam = problem.eigvals
    den = 2.0 - (lr * (1 + 1 / b))[..., None] * lam
    with np.errstate(divide="ignore", invalid="ignore"):
        S = (lr / b) * np.sum(lam / den, axis=-1)
        out = np.where(np.all(den > 0, axis=-1) & (S < 1), 0.5 * s2 * S / (1 - S), np.inf)
    return v.scalar_or_array(out)


def floor_leading(problem, lr_decay):
    """Return the leading order of BNGD's excess floor under weight decay: ευ λ*_max ‖u*‖²/4.

    Parameters
    ----------
    problem : bnlib.ols.OLS
    lr_decay : float or array_like
        The product ευ ≥ 0 of the weight step and the weight decay.

    Returns
    -------
    float or numpy.ndarray, shape of ``lr_decay``

    Notes
    -----
    At the equilibrium the norm balance (1 − (1 − ευ)²)‖w‖² = ε²‖∇_wJ‖² holds with ε̂ pinned
    at 2/λ*_max and the error in the top eigenvector of H*; solving gives
    J − J* = ευ(2 − ευ) λ*_max ‖u*‖²/8, whose leading order this is (the chapter derives it
    with sympy and measures the next order).
    """
    check_problem(problem)
    x = v.nonnegative_array(lr_decay, "lr_decay")
    lam = float(effective_eigvals(problem.H, problem.u_star).max())
    return v.scalar_or_array(x * lam * float(problem.u_star @ problem.u_star) / 4)


def angular_equilibrium(lr, weight_decay, momentum=0.0):
    """Return the equilibrium angular update √(2ευ/(1 + ς)) (Wan et al., arXiv 2006.08419).

    For ς = 0 it follows from the norm balance ε²‖∇_wJ‖² = ευ(2 − ευ)‖w‖² with the
    gradient orthogonal to w, to leading order in ευ; the momentum factor is theirs.

    Parameters
    ----------
    lr, weight_decay : float or array_like, > 0 and >= 0
    momentum : float or array_like, in [0, 1)

    Returns
    -------
    float or numpy.ndarray, the broadcast shape
    """
    lr = v.positive_array(lr, "lr")
    wd = v.nonnegative_array(weight_decay, "weight_decay")
    mom = v.momentum_factor(momentum)
    return v.scalar_or_array(np.sqrt(2 * lr * wd / (1 + mom)))
