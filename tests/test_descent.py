"""GD and BNGD runs against independent computations."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bnlib
from bnlib import OLS, bngd, gd


def naive_bngd(H, g, a, w, lr, lr_a, steps):
    """The slides' BNGD update written out step by step, one run at a time."""
    a_s, w_s = [a], [w.copy()]
    for _ in range(steps):
        n2 = w @ H @ w
        a_new = a + lr_a * (w @ g / np.sqrt(n2) - a)
        w = w + lr * a / np.sqrt(n2) * (g - (w @ g / n2) * (H @ w))
        a = a_new
        a_s.append(a)
        w_s.append(w.copy())
    return np.array(a_s), np.array(w_s)


# ---------------------------------------------------------------- GD
def test_gd_closed_form(problem, rng):
    """w_k − u* = (I − εH)^k (w_0 − u*)."""
    w0 = rng.standard_normal(problem.d)
    lr = 0.5 / problem.eigvals[-1]
    run = gd(problem, lr, 30, w0)
    M = np.eye(problem.d) - lr * problem.H
    for k in (0, 1, 7, 30):
        expect = problem.u_star + np.linalg.matrix_power(M, k) @ (w0 - problem.u_star)
        assert np.allclose(run.w[k], expect, atol=1e-12)
    assert np.allclose(run.loss, problem.loss(run.w), rtol=1e-10)
    assert run.w.shape == (31, problem.d) and run.loss.shape == (31,)
    assert run.diverged is False or run.diverged == np.False_


def test_gd_default_start_is_zero(problem):
    run = gd(problem, 0.01, 1)
    assert np.allclose(run.w[0], 0)
    assert np.allclose(run.w[1], 0.01 * problem.g)


def test_gd_vectorised_equals_single(problem, rng):
    w0 = rng.standard_normal(problem.d)
    lrs = np.array([1e-3, 1e-2, 1.5 / problem.eigvals[-1], 3.0 / problem.eigvals[-1]])
    batch = gd(problem, lrs, 40, w0)
    assert batch.w.shape == (41, 4, problem.d) and batch.loss.shape == (41, 4)
    assert batch.diverged.shape == (4,)
    for m, lr in enumerate(lrs):
        single = gd(problem, lr, 40, w0)
        assert np.allclose(batch.loss[:, m], single.loss, rtol=1e-12, equal_nan=True)
        assert batch.diverged[m] == single.diverged


def test_gd_divergence_flagged_without_warnings(problem):
    lrs = np.array([0.9, 1.1, 50.0]) * 2 / problem.eigvals[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = gd(problem, lrs, 3000, np.zeros(problem.d))
    assert list(run.diverged) == [False, True, True]
    assert np.isinf(run.loss[-1, 1:]).all() and np.isfinite(run.loss[:, 0]).all()
    assert np.isnan(run.w[-1, 2]).all()
    assert run.loss.shape == (3001, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = gd(problem, 1e300, 10)
    assert run.diverged and np.isinf(run.loss[-1]) and run.loss.shape == (11,)


def test_gd_tol_stops_early(problem):
    run = gd(problem, 1.0 / problem.eigvals[-1], 100_000, tol=1e-8)
    assert run.loss.shape[0] < 100_001
    assert run.excess[-1] <= 1e-8 < run.excess[-2]
    assert run.steps_to(1e-8) == run.loss.shape[0] - 1
    lean = gd(problem, 1.0 / problem.eigvals[-1], 50, record="loss")
    assert lean.w is None and lean.w_final.shape == (problem.d,)
    assert np.allclose(lean.w_final, gd(problem, 1.0 / problem.eigvals[-1], 50).w[-1])


def test_excess_is_accurate_near_the_minimum(problem):
    run = gd(problem, 1.0 / problem.eigvals[-1], 3000, tol=1e-26)
    e = run.w - problem.u_star
    direct = 0.5 * np.einsum("ki,ij,kj->k", e, problem.H, e)
    # the direct form loses relative accuracy as ||w − u*|| nears the rounding of w itself
    assert np.allclose(run.excess, direct, rtol=1e-2, atol=1e-30)
    assert np.allclose(run.excess[:200], direct[:200], rtol=1e-8)
    assert run.excess[-1] <= 1e-26


# ---------------------------------------------------------------- BNGD
def test_bngd_matches_naive_loop(problem, rng):
    w0 = rng.standard_normal(problem.d)
    for lr, lr_a in [(0.1, 1.0), (10.0, 0.5), (1e4, 0.1)]:
        run = bngd(problem, lr, 25, 0.3, w0, lr_a=lr_a)
        a, w = naive_bngd(problem.H, problem.g, 0.3, w0, lr, lr_a, 25)
        assert np.allclose(run.a, a, rtol=1e-10, atol=1e-12)
        assert np.allclose(run.w, w, rtol=1e-10, atol=1e-12)
        assert np.allclose(run.loss, problem.bn_loss(a, w), rtol=1e-10)
        n2 = np.einsum("ki,ij,kj->k", w, problem.H, w)
        assert np.allclose(run.lr_eff, lr * a**2 / n2, rtol=1e-10)
        assert np.allclose(run.w_norm, np.linalg.norm(w, axis=1))


def test_bngd_first_step_is_a_finite_difference_gradient_step(problem, rng):
    """Independent of the gradient formula: one step equals a step along FD derivatives."""
    a0, w0, lr, lr_a = 0.7, rng.standard_normal(problem.d), 0.3, 0.6
    run = bngd(problem, lr, 1, a0, w0, lr_a=lr_a)
    h = 1e-6
    da = (problem.bn_loss(a0 + h, w0) - problem.bn_loss(a0 - h, w0)) / (2 * h)
    dw = np.array([(problem.bn_loss(a0, w0 + h * e) - problem.bn_loss(a0, w0 - h * e)) / (2 * h)
                   for e in np.eye(problem.d)])
    assert np.isclose(run.a[1], a0 - lr_a * da, atol=1e-8)
    assert np.allclose(run.w[1], w0 - lr * dw, atol=1e-7)


def test_bngd_vectorised_over_lr_and_lr_a(problem, rng):
    w0 = rng.standard_normal(problem.d)
    lrs = np.logspace(-2, 6, 5)
    run = bngd(problem, lrs, 30, 1.0, w0, lr_a=0.5)
    assert run.w.shape == (31, 5, problem.d) and run.a.shape == (31, 5)
    assert run.lr_eff.shape == (31, 5) and run.diverged.shape == (5,)
    grid = bngd(problem, lrs[:, None], 30, 1.0, w0, lr_a=np.array([0.5, 1.0, 2.5]))
    assert grid.loss.shape == (31, 5, 3)
    for m, lr in enumerate(lrs):
        single = bngd(problem, lr, 30, 1.0, w0, lr_a=0.5)
        assert np.allclose(run.loss[:, m], single.loss, rtol=1e-12)
        assert np.allclose(grid.loss[:, m, 0], single.loss, rtol=1e-12)


def test_norm_identity_and_monotone_norm(problem, rng):
    """||w_{k+1}||² = ||w_k||² + ε² ||∇_w J(a_k, w_k)||² (orthogonality)."""
    w0 = rng.standard_normal(problem.d)
    for lr in (1e-3, 1.0, 1e3, 1e6):
        run = bngd(problem, lr, 50, 1.0, w0)
        _, dw = problem.bn_grad(run.a[:-1], run.w[:-1])
        lhs = np.sum(run.w[1:] ** 2, axis=1)
        rhs = np.sum(run.w[:-1] ** 2, axis=1) + lr**2 * np.sum(dw**2, axis=1)
        assert np.allclose(lhs, rhs, rtol=1e-10)
        assert np.all(np.diff(run.w_norm) >= -1e-12 * run.w_norm[:-1])


@settings(max_examples=25, deadline=None)
@given(r=st.floats(1e-3, 1e3), lr=st.floats(1e-3, 1e4), seed=st.integers(0, 10_000))
def test_scaling_law(r, lr, seed):
    """(a0, r w0, r² ε) gives (a_k, r w_k)."""
    p = OLS.random(4, 20.0, seed=seed % 7)
    w0 = np.random.default_rng(seed).standard_normal(4)
    base = bngd(p, lr, 20, 0.5, w0)
    scaled = bngd(p, r * r * lr, 20, 0.5, r * w0)
    assert np.allclose(scaled.a, base.a, rtol=1e-9, atol=1e-12)
    assert np.allclose(scaled.w, r * base.w, rtol=1e-9, atol=1e-12 * r)
    assert np.allclose(scaled.lr_eff, base.lr_eff, rtol=1e-9)


def test_bngd_large_lr_converges_gd_does_not():
    p = OLS.random(10, 100.0, seed=0)
    w0 = np.random.default_rng(0).standard_normal(10)
    lrs = np.array([1.0, 10.0, 100.0])               # GD's edge is 2/λ_max = 0.02
    run = bngd(p, lrs, 3000, 1.0, w0, lr_a=1.0)
    assert not run.diverged.any() and np.all(run.excess[-1] < 1e-3 * run.excess[0])
    assert gd(p, lrs, 100).diverged.all()


def test_bngd_divergence_flagged_without_warnings(problem, rng):
    w0 = rng.standard_normal(problem.d)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = bngd(problem, 1.0, 400, 1.0, w0, lr_a=np.array([0.5, 2.5]))
    assert list(run.diverged) == [False, True]
    assert np.isinf(run.loss[-1, 1]) and np.isnan(run.a[-1, 1])
    assert run.loss.shape == (401, 2)


def test_bngd_tol(problem, rng):
    w0 = rng.standard_normal(problem.d)
    run = bngd(problem, 1.0, 100_000, 1.0, w0, tol=1e-10, record="loss")
    assert run.excess[-1] <= 1e-10 and run.loss.shape[0] < 100_001
    assert run.a is None and run.w is None and np.isfinite(run.a_final)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(lr=0.0), ValueError, "lr must be > 0"),
        (dict(lr=-1.0), ValueError, "lr must be > 0"),
        (dict(lr=np.array([0.1, -0.1])), ValueError, "lr must be > 0"),
        (dict(lr=np.nan), ValueError, "lr must be finite"),
        (dict(lr="big"), TypeError, "lr"),
        (dict(steps=-1), ValueError, "steps"),
        (dict(steps=2.5), TypeError, "steps"),
        (dict(w0=np.ones(3)), ValueError, "w0 must have shape"),
        (dict(w0=np.zeros(6)), ValueError, "w0 must be nonzero"),
        (dict(w0=np.full(6, np.inf)), ValueError, "w0 must be finite"),
        (dict(lr_a=0.0), ValueError, "lr_a must be > 0"),
        (dict(a0=np.nan), ValueError, "a0 must be finite"),
        (dict(tol=0.0), ValueError, "tol"),
        (dict(record="some"), ValueError, "record"),
        (dict(lr=np.ones(3), w0=np.ones((2, 6))), ValueError, "broadcast"),
    ],
)
def test_bngd_bad_input(problem, kwargs, err, match):
    args = dict(lr=0.1, steps=5, a0=1.0, w0=np.ones(6))
    args.update(kwargs)
    with pytest.raises(err, match=match):
        bngd(problem, **args)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(lr=0.0), ValueError, "lr must be > 0"),
        (dict(w0=np.ones(5)), ValueError, "w0 must have shape"),
        (dict(steps=None), TypeError, "steps"),
    ],
)
def test_gd_bad_input(problem, kwargs, err, match):
    args = dict(lr=0.1, steps=5)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        gd(problem, **args)


def test_problem_type_checked():
    with pytest.raises(TypeError, match="problem"):
        gd(np.eye(2), 0.1, 5)
    with pytest.raises(TypeError, match="problem"):
        bngd("p", 0.1, 5, 1.0, np.ones(2))


def test_public_api_names():
    for name in ("OLS", "gd", "bngd", "theory", "bn"):
        assert hasattr(bnlib, name)
    for name in ("gd_lr_max", "gd_lr_opt", "gd_rate", "kappa", "effective_hessian",
                 "kappa_star", "bngd_rate"):
        assert callable(getattr(bnlib.theory, name))
    assert callable(bnlib.bn.batchnorm_forward) and callable(bnlib.bn.batchnorm_backward)
