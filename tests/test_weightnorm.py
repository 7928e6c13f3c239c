"""Weight normalization on OLS against independent computations."""

import warnings

import numpy as np
import pytest

import bnlib
from bnlib import (
    WNGDRun,
    contraction,
    eigen_problem,
    theory,
    wn_effective_eigvals,
    wn_effective_hessian,
    wn_grad,
    wn_jacobian,
    wn_kappa,
    wn_kappa_eff,
    wn_loss,
    wn_rate,
    wngd,
    wngd_stack,
)


def naive_loss(p, a, w):
    u = a * w / np.sqrt(w @ w)
    return 0.5 * (p.c - 2 * u @ p.g + u @ p.H @ u)


def naive_wngd(p, a, w, lr, lr_a, steps):
    """The update written out from the chain rule, one run at a time."""
    a_s, w_s = [a], [w.copy()]
    for _ in range(steps):
        n = np.sqrt(w @ w)
        what = w / n
        r = p.H @ (a * what) - p.g
        da = what @ r
        dw = a / n * (r - (what @ r) * what)
        a, w = a - lr_a * da, w - lr * dw
        a_s.append(a)
        w_s.append(w.copy())
    return np.array(a_s), np.array(w_s)


def fd_grad(f, z, h=1e-6):
    return np.array([(f(z + h * e) - f(z - h * e)) / (2 * h) for e in np.eye(z.size)])


def test_loss_and_grad_against_finite_differences(problem, rng):
    for _ in range(4):
        a, w = rng.standard_normal(), rng.standard_normal(problem.d)
        assert np.isclose(wn_loss(problem, a, w), naive_loss(problem, a, w), rtol=1e-12)
        da, dw = wn_grad(problem, a, w)
        fd = fd_grad(lambda z: naive_loss(problem, z[0], z[1:]), np.concatenate([[a], w]))
        assert np.allclose(np.concatenate([[da], dw]), fd, rtol=1e-6, atol=1e-8)
        assert abs(w @ dw) < 1e-12 * np.linalg.norm(w) * np.linalg.norm(dw) + 1e-15


def test_wngd_vectorised_equals_naive_loop(problem, rng):
    w0 = rng.standard_normal(problem.d)
    lrs = np.array([1e-3, 0.1, 10.0, 1e4])
    lr_as = np.array([0.005, 0.01])
    a0s = np.array([-0.5, 2.0])
    run = wngd(problem, lrs[:, None, None], 40, a0s, w0, lr_a=lr_as[None, :, None])
    assert isinstance(run, WNGDRun) and run.w.shape == (41, 4, 2, 2, problem.d)
    for i, lr in enumerate(lrs):
        for j, la in enumerate(lr_as):
            for m, a0 in enumerate(a0s):
                a_n, w_n = naive_wngd(problem, a0, w0, lr, la, 40)
                assert np.allclose(run.a[:, i, j, m], a_n, rtol=1e-10, atol=1e-12)
                assert np.allclose(run.w[:, i, j, m], w_n, rtol=1e-10, atol=1e-12)
                loss = [naive_loss(problem, a, w) for a, w in zip(a_n, w_n, strict=True)]
                assert np.allclose(run.loss[:, i, j, m], loss, rtol=1e-10)
                assert np.allclose(run.lr_eff[:, i, j, m], lr * a_n**2 / np.sum(w_n**2, -1))
    assert np.allclose(run.excess, run.loss - problem.min_loss, atol=1e-10)


def test_norm_identity_and_scaling_law(problem, rng):
    w0 = rng.standard_normal(problem.d)
    lrs = np.logspace(-2, 6, 5)
    run = wngd(problem, lrs, 50, 1.0, w0, lr_a=0.01)
    _, dw = wn_grad(problem, run.a[:-1], run.w[:-1])
    assert np.allclose(run.w_norm[1:] ** 2, run.w_norm[:-1] ** 2 + lrs**2 * np.sum(dw**2, -1),
                       rtol=1e-12)
    r = np.array([1e-3, 7.0, 1e3])
    ref = wngd(problem, 0.5, 100, 1.0, w0, lr_a=0.01)
    scaled = wngd(problem, 0.5 * r**2, 100, 1.0, r[:, None] * w0, lr_a=0.01)
    assert np.allclose(scaled.a, ref.a[:, None], rtol=1e-11)
    assert np.allclose(scaled.w / r[:, None], ref.w[:, None], rtol=1e-11, atol=1e-13)


def test_input_scaling_changes_only_a(problem, rng):
    """x -> αx: the run equals the original one with a0 -> α a0 and ε_a -> α² ε_a."""
    alpha, w0 = 3.0, rng.standard_normal(problem.d)
    scaled_p = bnlib.OLS(alpha**2 * problem.H, alpha * problem.g, problem.c)
    s = wngd(scaled_p, 0.7, 60, 0.4, w0, lr_a=0.001)
    o = wngd(problem, 0.7, 60, alpha * 0.4, w0, lr_a=alpha**2 * 0.001)
    assert np.allclose(alpha * s.a, o.a, rtol=1e-10) and np.allclose(s.w, o.w, rtol=1e-10)


def test_divergence_flagged_without_warnings(problem, rng):
    w0 = rng.standard_normal(problem.d)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = wngd(problem, np.array([0.1, 1.0]), 300, 1.0, w0, lr_a=np.array([[0.01], [10.0]]))
    assert run.diverged.tolist() == [[False, False], [True, True]]
    k = int(np.argmax(np.isinf(run.loss[:, 1, 0])))
    assert k > 0 and np.all(np.isinf(run.loss[k:, 1])) and np.all(np.isnan(run.w[k:, 1]))
    assert np.all(np.isfinite(run.loss[:, 0])) and np.all(np.isnan(run.a_final[1]))


def test_stack_tol_and_record(rng):
    lam = np.logspace(0, 1, 5)
    probs = [eigen_problem(lam, seed=s) for s in range(3)]
    w0 = rng.standard_normal((3, 1, 5))
    lrs = np.array([0.1, 1.0])
    st = wngd_stack(probs, lrs[None, :], 80, 1.0, w0, lr_a=0.05, record="loss")
    assert st.w is None and st.a is None and st.loss.shape == (81, 3, 2)
    for s, p in enumerate(probs):
        one = wngd(p, lrs, 80, 1.0, w0[s, 0], lr_a=0.05)
        assert np.allclose(st.excess[:, s], one.excess, rtol=1e-9, atol=1e-15)
    t = wngd(probs[0], 1.0, 10_000, 1.0, w0[0, 0], lr_a=0.05, tol=1e-12)
    assert t.excess[-1] <= 1e-12 < t.excess[-2] and t.steps_to(1e-12) == t.loss.shape[0] - 1


def test_bad_input(problem):
    w0 = np.ones(problem.d)
    with pytest.raises(TypeError, match="problem"):
        wngd("x", 0.1, 5, 1.0, w0)
    with pytest.raises(ValueError, match="w0"):
        wngd(problem, 0.1, 5, 1.0, np.zeros(problem.d))
    with pytest.raises(ValueError, match="lr_a"):
        wngd(problem, 0.1, 5, 1.0, w0, lr_a=-1.0)
    with pytest.raises(ValueError, match="lr"):
        wngd(problem, 0.0, 5, 1.0, w0)
    with pytest.raises(ValueError, match="broadcast"):
        wngd(problem, np.ones(3), 5, np.ones(2), w0)
    with pytest.raises(ValueError, match="u_star"):
        wn_kappa(problem.H, np.zeros(problem.d))


def test_jacobian_against_finite_differences(problem):
    nu = np.linalg.norm(problem.u_star)
    for s, lr, la in ((1.0, 0.3, 0.01), (2.5, 4.0, 0.05)):
        def step(z, lr=lr, la=la):
            a, w = naive_wngd(problem, z[0], z[1:], lr, la, 1)
            return np.concatenate([a[1:], w[1]])
        z0 = np.concatenate([[nu], s * problem.u_star / nu])
        J_fd = fd_grad(step, z0).T
        assert np.allclose(wn_jacobian(problem.H, problem.u_star, lr, la, s), J_fd, atol=1e-7)
        mods = np.sort(np.abs(np.linalg.eigvals(J_fd)))
        lam = np.linalg.eigvals(J_fd)
        neutral = np.argmin(np.abs(lam - 1))                      # direction (0, w*)
        assert np.isclose(lam[neutral], 1, atol=1e-7)
        others = np.delete(np.abs(lam), neutral)
        assert np.isclose(others.max(), wn_rate(problem.H, problem.u_star, lr * nu**2 / s**2, la),
                          rtol=1e-6)
        assert mods.size == problem.d + 1


def test_effective_hessian_and_kappas(problem, rng):
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


def test_measured_rate_matches_wn_rate():
    lam = np.logspace(0, 1, 8)
    p = eigen_problem(lam, seed=1, noise=0.0)
    w0 = p.u_star + 0.05 * np.random.default_rng(0).standard_normal(8)
    run = wngd(p, 0.05, 400, np.linalg.norm(p.u_star), w0, lr_a=0.05)
    c = contraction(run.excess, power=2)
    assert c.steady
    pred = wn_rate(p.H, p.u_star, run.lr_eff[-1], 0.05)
    assert np.isclose(c.rate, pred, rtol=2e-3)
