"""Closed-form rates and limits against independent computations."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from bnlib import OLS, bngd, gd, theory
from tools.probe import unit_roundoff

# the rounding unit of the arithmetic in use (2**-53, or the rounding probe's delta)
U = unit_roundoff()


def sqrtm_spd(H):
    lam, Q = np.linalg.eigh(H)
    return (Q * np.sqrt(lam)) @ Q.T


def bngd_map(p, lr, lr_a):
    """One BNGD step as a function of the stacked state z = (a, w), using only bn_grad."""
    def step(z):
        da, dw = p.bn_grad(z[0], z[1:])
        return np.concatenate([[z[0] - lr_a * da], z[1:] - lr * dw])
    return step


def fd_jacobian(f, z, h=1e-6):
    cols = [(f(z + h * e) - f(z - h * e)) / (2 * h) for e in np.eye(z.size)]
    return np.array(cols).T


def test_gd_rate_is_spectral_norm(problem):
    for lr in (1e-3, 0.01, 0.05, 0.2):
        M = np.eye(problem.d) - lr * problem.H
        assert np.isclose(theory.gd_rate(problem.H, lr), np.linalg.norm(M, 2))
    lrs = np.array([1e-3, 0.01])
    assert theory.gd_rate(problem.H, lrs).shape == (2,)


def test_gd_rate_matches_measured_contraction(problem):
    """The tail ratio of excess losses of a run tends to ρ²."""
    lr = 0.7 / problem.eigvals[-1]
    run = gd(problem, lr, 400, np.random.default_rng(0).standard_normal(problem.d))
    measured = np.sqrt(run.excess[-1] / run.excess[-2])
    assert np.isclose(measured, theory.gd_rate(problem.H, lr), rtol=1e-4)


def test_gd_lr_max_is_the_edge(problem):
    edge = theory.gd_lr_max(problem.H)
    assert np.isclose(edge, 2 / np.linalg.norm(problem.H, 2))
    run = gd(problem, np.array([0.99, 1.01]) * edge, 4000, np.zeros(problem.d))
    assert run.excess[-1, 0] < run.excess[0, 0] and run.excess[-1, 1] > 10 * run.excess[0, 1]


def test_gd_lr_opt_minimises_rate(problem):
    res = minimize_scalar(lambda t: np.linalg.norm(np.eye(problem.d) - t * problem.H, 2),
                          bounds=(0, theory.gd_lr_max(problem.H)), method="bounded",
                          options={"xatol": 1e-10})
    assert np.isclose(theory.gd_lr_opt(problem.H), res.x, rtol=1e-5)
    k = theory.kappa(problem.H)
    assert np.isclose(k, 50.0)
    assert np.isclose(theory.gd_rate(problem.H, theory.gd_lr_opt(problem.H)), (k - 1) / (k + 1))


def test_gd_excess_and_steps_match_real_runs(problem, rng):
    w0 = rng.standard_normal(problem.d)
    lrs = np.array([0.005, 0.02, 0.9 * theory.gd_lr_max(problem.H)])
    run = gd(problem, lrs, 300, w0)
    ks = np.array([0, 1, 7, 300])
    closed = theory.gd_excess(problem, lrs[:, None], ks[None, :], w0)
    assert np.allclose(closed, run.excess[ks].T, rtol=1e7 * U, atol=1e-25)
    tol = 1e-3 * float(run.excess[0, 0])
    assert np.array_equal(theory.gd_steps_to(problem, lrs, w0, tol, 300), run.steps_to(tol))
    assert theory.gd_steps_to(problem, 1.5 * theory.gd_lr_max(problem.H), w0, tol, 300) == np.inf
    # "excess <= tol": a tol equal to the start's excess (the closed form at k = 0, the same
    # for every step size) is reached at k = 0, also beyond the edge
    start = theory.gd_excess(problem, 1.0, 0, w0)
    assert np.all(theory.gd_steps_to(problem, lrs, w0, start, 300) == 0)
    assert theory.gd_steps_to(problem, 1.5 * theory.gd_lr_max(problem.H), w0, start, 300) == 0
    # at the edge itself GD is still stable (the top mode keeps its size): a tol above that
    # mode's part of the excess is reached, at the step count of a real run
    edge = theory.gd_lr_max(problem.H)
    at_edge = gd(problem, edge, 300, w0, record="loss")
    tol = 1.5 * float(at_edge.excess[-1])
    assert np.isfinite(at_edge.steps_to(tol))
    assert theory.gd_steps_to(problem, edge, w0, tol, 300) == at_edge.steps_to(tol)


def test_gd_best_step_beats_every_step_of_a_brute_force_grid(problem, rng):
    w0 = rng.standard_normal(problem.d)
    tol = 1e-6
    lr_best, n_best = theory.gd_best_step(problem, w0, tol, 2000)
    grid = np.linspace(1e-3, 1, 1000) * theory.gd_lr_max(problem.H)
    brute = gd(problem, grid, 2000, w0, tol=tol, record="loss").steps_to(tol)
    assert n_best <= brute.min()
    assert gd(problem, lr_best, 2000, w0, tol=tol, record="loss").steps_to(tol) == n_best
    # not on the boundary of the count: the excess at the last step keeps a margin
    assert theory.gd_excess(problem, lr_best, int(n_best), w0) < (1 - 1e-6) * tol


def test_asymptotic_speedup_is_the_ratio_of_log_rates():
    H = np.diag([1.0, 2.0, 100.0])
    p = OLS(H, H @ np.array([0.0, 0.0, 1.0]), 2e2)              # u* on the top eigenvector
    rho_gd, rho_bn = 99 / 101, 1 / 3                            # κ = 100, κ* = 2
    assert np.isclose(theory.asymptotic_speedup(p), np.log(rho_bn) / np.log(rho_gd))
    p1 = OLS(np.eye(2), np.ones(2), 3.0)
    assert theory.asymptotic_speedup(p1) == 1.0


def test_effective_hessian_against_projection(problem):
    """H* = H^{1/2} (I − v vᵀ/vᵀv) H^{1/2}, v = H^{1/2} u*."""
    S = sqrtm_spd(problem.H)
    vv = S @ problem.u_star
    expect = S @ (np.eye(problem.d) - np.outer(vv, vv) / (vv @ vv)) @ S
    Hs = theory.effective_hessian(problem.H, problem.u_star)
    assert np.allclose(Hs, expect, atol=1e-10)
    assert np.allclose(Hs @ problem.u_star, 0, atol=1e-10)
    lam = theory.effective_eigvals(problem.H, problem.u_star)
    assert lam.shape == (problem.d - 1,)
    assert np.isclose(theory.kappa_star(problem.H, problem.u_star), lam[-1] / lam[0])


def test_jacobian_of_bngd_at_minimiser(problem):
    """Finite-difference Jacobian of one BNGD step = blockdiag(1 − ε_a, I − ε̂ H*)."""
    s, lr, lr_a = 1.7, 0.4, 0.6
    w_star = s * problem.u_star
    a_star = np.sqrt(problem.u_star @ problem.H @ problem.u_star)
    z = np.concatenate([[a_star], w_star])
    J = fd_jacobian(bngd_map(problem, lr, lr_a), z)
    lr_eff = lr * a_star**2 / (w_star @ problem.H @ w_star)
    assert np.isclose(lr_eff, lr / s**2)
    expect = np.zeros_like(J)
    expect[0, 0] = 1 - lr_a
    expect[1:, 1:] = np.eye(problem.d) - lr_eff * theory.effective_hessian(problem.H, problem.u_star)
    fd_tol = 1e-7 + 1e7 * U                  # truncation + rounding / (finite-difference step)
    assert np.allclose(J, expect, atol=fd_tol)
    # the local rate: spectral radius off the neutral direction u*
    P = np.eye(problem.d) - np.outer(problem.u_star, problem.u_star) / (problem.u_star @ problem.u_star)
    rho = max(abs(J[0, 0]), np.linalg.norm(J[1:, 1:] @ P, 2))
    assert np.isclose(theory.bngd_rate(problem.H, problem.u_star, lr_eff, lr_a), rho, atol=fd_tol)


def test_bngd_rate_matches_a_run_near_the_minimiser(problem):
    a_star = np.sqrt(problem.u_star @ problem.H @ problem.u_star)
    w0 = problem.u_star + 1e-3 * np.random.default_rng(1).standard_normal(problem.d)
    lr = 0.5 / problem.eigvals[-1]
    run = bngd(problem, lr, 600, a_star * 1.001, w0, lr_a=0.9)
    measured = np.sqrt(run.excess[-1] / run.excess[-2])
    predicted = theory.bngd_rate(problem.H, problem.u_star, run.lr_eff[-1], 0.9)
    assert np.isclose(measured, predicted, rtol=1e-3)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(2, 12), logk=st.floats(0.1, 6))
def test_interlacing(seed, d, logk):
    p = OLS.random(d, 10.0**logk, seed=seed)
    lam_s = theory.effective_eigvals(p.H, p.u_star)
    tol = 1e-9 * p.eigvals[-1]
    assert lam_s[0] >= p.eigvals[0] - tol and lam_s[-1] <= p.eigvals[-1] + tol
    assert theory.kappa_star(p.H, p.u_star) <= theory.kappa(p.H) * (1 + 1e-8)


def test_kappa_star_along_eigenvectors():
    H = np.diag([1.0, 3.0, 10.0, 100.0])
    e = np.eye(4)
    assert np.isclose(theory.kappa_star(H, e[3]), 10.0)    # drops the top eigenvalue
    assert np.isclose(theory.kappa_star(H, e[0]), 100 / 3)  # drops the bottom one
    assert theory.kappa_star(np.eye(1) * 2, [1.0]) == 1.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: theory.gd_rate(np.eye(2), 0.0), "lr"),
        (lambda: theory.gd_lr_max([[1, 2], [0, 1]]), "symmetric"),
        (lambda: theory.kappa(-np.eye(2)), "positive definite"),
        (lambda: theory.effective_hessian(np.eye(2), [0.0, 0.0]), "u_star must be nonzero"),
        (lambda: theory.effective_hessian(np.eye(2), [1.0]), "u_star must have shape"),
        (lambda: theory.bngd_rate(np.eye(2), [1.0, 0.0], -1.0), "lr_eff"),
        (lambda: theory.bngd_rate(np.eye(2), [1.0, 0.0], 1.0, 0.0), "lr_a"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_stacks_of_problems():
    """κ, H*, its eigenvalues and κ* over a stack of problems, against the projection form
    H* = H^{1/2}(I − P)H^{1/2} computed one problem at a time and known eigenvector cases."""
    probs = [OLS.random(5, k, seed=s) for s, k in ((0, 3.0), (1, 40.0), (2, 1e3))]
    Hs = np.stack([p.H for p in probs])
    us = np.stack([p.u_star for p in probs])
    assert np.allclose(theory.kappa(Hs), [3.0, 40.0, 1e3])
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))[0]
    assert np.isclose(theory.kappa(Q @ np.diag([0.5, 2.0, 3.0]) @ Q.T), 6.0)   # λ_min ≠ 1
    Hstar = theory.effective_hessian(Hs, us)
    lam_s = theory.effective_eigvals(Hs, us)
    assert Hstar.shape == (3, 5, 5) and lam_s.shape == (3, 4)
    for i, p in enumerate(probs):
        S = sqrtm_spd(p.H)
        vv = S @ p.u_star
        expect = S @ (np.eye(5) - np.outer(vv, vv) / (vv @ vv)) @ S
        assert np.allclose(Hstar[i], expect, atol=1e-9 * p.eigvals[-1])
        assert np.allclose(lam_s[i], np.linalg.eigvalsh(expect)[1:], atol=1e-9 * p.eigvals[-1])
    kst = theory.kappa_star(Hs, us)
    assert kst.shape == (3,) and np.allclose(kst, lam_s[:, -1] / lam_s[:, 0])
    # u* along the top / bottom eigenvector of diag(1, 3, 10, 100): drops that eigenvalue
    D = np.broadcast_to(np.diag([1.0, 3.0, 10.0, 100.0]), (2, 2, 4, 4))
    U = np.zeros((2, 2, 4))
    U[:, 0, 3] = 1.0
    U[:, 1, 0] = 1.0
    assert np.allclose(theory.kappa_star(D, U), [[10.0, 100 / 3]] * 2)
    assert np.allclose(theory.kappa_star(np.full((3, 1, 1), 2.0), np.ones((3, 1))), 1.0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: theory.kappa(np.stack([np.eye(2), [[1.0, 2.0], [0.0, 1.0]]])), "symmetric"),
        (lambda: theory.kappa(np.stack([np.eye(2), -np.eye(2)])), "positive definite"),
        (lambda: theory.kappa(np.ones((2, 2, 3))), "square"),
        (lambda: theory.kappa_star(np.stack([np.eye(2)] * 2), np.ones(2)), "u_star must have shape"),
        (lambda: theory.kappa_star(np.stack([np.eye(2)] * 2), [[1.0, 0.0], [0.0, 0.0]]),
         "u_star must be nonzero"),
        (lambda: theory.bngd_rate(np.stack([np.eye(2)] * 2), np.ones((2, 2)), 1.0), "square matrix"),
    ],
)
def test_bad_stacks(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_wn_effective_hessian_and_kappas(problem, rng):
    from bnlib import wn_effective_eigvals, wn_effective_hessian, wn_kappa, wn_kappa_eff

    H, u = problem.H, problem.u_star
    M = wn_effective_hessian(H, u)
    assert np.allclose(M @ u, 0, atol=1e-12) and np.allclose(M, M.T)
    # the compression of H to u*⊥, from an explicit orthonormal basis of u*⊥
    B = np.linalg.qr(np.column_stack([u, rng.standard_normal((problem.d, problem.d - 1))]))[0][:, 1:]
    assert np.allclose(wn_effective_eigvals(H, u), np.linalg.eigvalsh(B.T @ H @ B))
    lam = problem.eigvals
    nu = wn_effective_eigvals(H, u)
    assert np.all(lam[:-1] <= nu + 1e-12) and np.all(nu <= lam[1:] + 1e-12)    # interlacing
    assert np.isclose(wn_kappa_eff(H, u, 1.0), theory.kappa(H))
    assert np.all(wn_kappa_eff(H, u, np.logspace(-4, 4, 41)) >= wn_kappa(H, u) * (1 - 1e-12))
    # u* along an eigenvector: WN's and BN's effective condition numbers coincide
    v = np.linalg.eigh(H)[1][:, 2]
    assert np.isclose(wn_kappa(H, 2 * v), theory.kappa_star(H, 2 * v))


def test_measured_wngd_rate_matches_wn_rate():
    from bnlib import contraction, eigen_problem, wn_rate, wngd

    lam = np.logspace(0, 1, 8)
    p = eigen_problem(lam, seed=1, noise=0.0)
    w0 = p.u_star + 0.05 * np.random.default_rng(0).standard_normal(8)
    run = wngd(p, 0.05, 400, np.linalg.norm(p.u_star), w0, lr_a=0.05)
    c = contraction(run.excess, power=2)
    assert c.steady
    pred = wn_rate(p.H, p.u_star, run.lr_eff[-1], 0.05)
    assert np.isclose(c.rate, pred, rtol=2e-3)


def eigen_steps_to(lam, e0, lrs, tol, max_steps):
    """GD's step count to 1/2 sum_i lam_i (1 - lr lam_i)^(2k) e0_i^2 <= tol, by bisection in k
    (each mode written out in the eigenbasis; stable steps only)."""
    f2 = (1 - np.outer(lrs, lam)) ** 2

    def excess(k):
        return 0.5 * np.sum(lam * e0**2 * f2 ** k[:, None], axis=1)

    lo, hi = np.zeros(len(lrs)), np.full(len(lrs), float(max_steps))
    for _ in range(int(np.log2(max_steps)) + 2):
        mid = np.floor((lo + hi) / 2)
        good = excess(mid) <= tol
        lo, hi = np.where(good, lo, mid), np.where(good, mid, hi)
    return np.where(excess(hi) <= tol, hi, np.inf)


def test_gd_best_step_is_the_middle_of_a_narrow_count_minimising_interval():
    """κ = 1000 and a tight tolerance: the steps reaching the fewest count (3220 here) form an
    interval about half a cell of the 2001-point first grid wide, which that grid misses
    (its best is one step more); the refinement must find the interval and return its middle.
    The interval comes from a brute-force grid 4·10⁻⁴ of its width fine, in the eigenbasis."""
    from bnlib import eigen_problem

    lam = np.array([1.0, np.sqrt(1000.0), 1000.0])
    p = eigen_problem(lam, seed=0)
    w0, tol = np.zeros(3), 1e-10 * p.excess_at_zero
    lr_best, n_best = theory.gd_best_step(p, w0, tol, 200_000)
    star, edge = 2 / (lam[0] + lam[-1]), 2 / lam[-1]  # the rate-optimal step, the edge
    fine = np.linspace((1 - 5e-3) * star, edge, 60_001)
    assert np.array_equal(p.H, np.diag(lam))           # H is diagonal: the eigenbasis is e_i
    count = eigen_steps_to(lam, w0 - p.u_star, fine, tol, 200_000)
    best = fine[count == count.min()]
    assert np.all(np.diff(np.flatnonzero(count == count.min())) == 1)   # one interval
    lo, hi = best.min(), best.max()
    coarse = edge / 2000
    assert 0.2 * coarse < hi - lo < 0.8 * coarse       # narrower than the first grid's cell
    assert n_best == count.min()
    first = eigen_steps_to(lam, w0 - p.u_star, np.linspace(edge / 2001, edge, 2001), tol, 200_000)
    assert first.min() == n_best + 1                   # the first grid alone misses it
    # without refinement the first grid's best count stays; one refinement finds the interval
    assert theory.gd_best_step(p, w0, tol, 200_000, refine=0)[1] == n_best + 1
    assert theory.gd_best_step(p, w0, tol, 200_000, refine=1)[1] == n_best
    assert abs(lr_best - (lo + hi) / 2) <= 0.01 * (hi - lo)
