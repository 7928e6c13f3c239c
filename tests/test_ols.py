"""bnlib.ols against independent computations: the OLS problem's moments, losses and gradients,
eigen_problem (closed forms, Monte Carlo, the dense rotated problem) and random_rotation."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import bnlib
from bnlib import OLS, bngd, eigen_problem, gd, random_rotation
from tools.probe import unit_roundoff

# the rounding unit of the arithmetic in use (2**-53, or the rounding probe's delta):
# rounding-level tolerances below are multiples of it
U = unit_roundoff()


def centred_data(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    X -= X.mean(axis=0)                      # E[x] = 0 exactly on the data set
    y = X @ rng.standard_normal(d) + 0.3 * rng.standard_normal(n) + 0.2
    return X, y


def fd_grad(f, x, h=1e-6):
    """Central finite differences of a scalar function of a vector."""
    x = np.asarray(x, dtype=float)
    out = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (f(x + e) - f(x - e)) / (2 * h)
    return out


# ---------------------------------------------------------------- construction
def test_attributes(problem):
    H, g, c = problem.H, problem.g, problem.c
    assert problem.d == 6
    assert np.allclose(H @ problem.u_star, g)
    assert np.isclose(problem.min_loss, 0.25)             # noise/2
    assert np.allclose(problem.eigvals, np.linalg.eigvals(H).real[np.argsort(np.linalg.eigvals(H).real)])
    assert np.isclose(problem.eigvals[-1] / problem.eigvals[0], 50.0)
    assert np.isclose(c, problem.u_star @ H @ problem.u_star + 0.5)


def test_random_spectrum_and_seed():
    p = OLS.random(8, 1e3, seed=1, noise=0.0)
    assert np.allclose(p.eigvals, np.logspace(0, 3, 8))
    q = OLS.random(8, 1e3, seed=1, noise=0.0)
    assert np.array_equal(p.H, q.H) and np.array_equal(p.g, q.g)
    r = OLS.random(8, 1e3, seed=2, noise=0.0)
    assert not np.allclose(p.H, r.H)
    assert p.min_loss <= p.d * U * p.c       # 0 up to the rounding of c − u*ᵀg (3.6e-15 on Nehalem)


@pytest.mark.parametrize("make", ["random", "dense", "diagonal"])
def test_eigenbasis(make, rng):
    """H = Q diag(λ) Qᵀ, Q orthogonal, λ ascending: against numpy's own eigenvalues."""
    if make == "random":                         # Q and λ kept from the construction
        p = OLS.random(7, 300.0, seed=4)
    elif make == "dense":                        # computed once by eigh
        X = rng.standard_normal((40, 7)) * np.logspace(0, 1, 7)
        p = OLS.from_samples(X, X @ rng.standard_normal(7))
    else:                                        # a diagonal H needs no decomposition
        p = OLS(np.diag([3.0, 0.5, 2.0, 0.5, 9.0, 1.0, 4.0]), np.ones(7), 20.0)
    Q, lam = p.eigenbasis()
    assert Q.shape == (7, 7) and lam.shape == (7,)
    assert np.allclose(Q.T @ Q, np.eye(7), rtol=0, atol=50 * U)
    assert np.allclose((Q * lam) @ Q.T, p.H, rtol=0, atol=50 * U * lam[-1])
    assert np.all(np.diff(lam) >= 0)
    for ref in (np.linalg.eigvalsh(p.H), p.eigvals):  # eigenvalues err by rounding of ‖H‖
        assert np.allclose(lam, ref, rtol=0, atol=50 * U * lam[-1])
    assert p.eigenbasis()[0] is Q and not Q.flags.writeable and not lam.flags.writeable
    if make == "diagonal":
        assert np.array_equal(np.abs(Q), np.eye(7)[:, np.argsort(np.diagonal(p.H), kind="stable")])


def test_immutable(problem):
    with pytest.raises(AttributeError):
        problem.c = 3.0
    with pytest.raises(ValueError):
        problem.H[0, 0] = 1.0
    with pytest.raises(ValueError):
        problem.g[0] = 1.0


def test_copies_inputs():
    H = np.eye(2)
    p = OLS(H, [1.0, 0.0], 2.0)
    H[0, 0] = 5.0
    assert p.H[0, 0] == 1.0


@pytest.mark.parametrize(
    "H, g, c, match",
    [
        ([[1.0, 0.2], [0.0, 1.0]], [1, 0], 2, "symmetric"),
        ([[1.0, 0.0], [0.0, -1.0]], [1, 0], 2, "positive definite"),
        ([[1.0, 0.0], [0.0, 0.0]], [1, 0], 2, "positive definite"),
        ([[1.0, 0.0, 0.0]], [1], 2, "square"),
        ([[np.nan, 0.0], [0.0, 1.0]], [1, 0], 2, "finite"),
        ([[np.inf, 0.0], [0.0, 1.0]], [1, 0], 2, "finite"),
        (np.eye(2), [1, 0, 0], 2, "g must have shape"),
        (np.eye(2), [1, np.nan], 2, "g must be finite"),
        (np.eye(2), [1, 0], [1, 2], "c must be a scalar"),
        (np.eye(2), [1, 0], np.inf, "c must be finite"),
        (np.eye(2), [2, 0], 1.0, "c must be >="),
    ],
)
def test_bad_input(H, g, c, match):
    with pytest.raises(ValueError, match=match):
        OLS(H, g, c)


def test_bad_types():
    with pytest.raises(TypeError, match="H"):
        OLS("eye", [1], 1)
    with pytest.raises(TypeError, match="g"):
        OLS(np.eye(1), ["a"], 1)
    with pytest.raises(TypeError, match="d"):
        OLS.random(2.5, 10, 0)
    with pytest.raises(ValueError, match="kappa"):
        OLS.random(3, 0.5, 0)
    with pytest.raises(ValueError, match="noise"):
        OLS.random(3, 10, 0, noise=-1)
    with pytest.raises(ValueError, match="d must be"):
        OLS.random(0, 10, 0)


# ---------------------------------------------------------------- losses against data
def test_loss_matches_data_average():
    X, y = centred_data(200, 4, seed=0)
    p = OLS.from_samples(X, y)
    rng = np.random.default_rng(1)
    W = rng.standard_normal((5, 4))
    direct = 0.5 * np.mean((y[:, None] - X @ W.T) ** 2, axis=0)
    assert np.allclose(p.loss(W), direct, rtol=1e-12)
    assert np.isclose(p.min_loss, 0.5 * np.mean((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2))


def test_bn_loss_matches_batchnorm_on_data():
    """On a centred data set, BN over the whole set (eps = 0) is exactly x^T w / ||w||_H."""
    X, y = centred_data(300, 5, seed=2)
    p = OLS.from_samples(X, y)
    rng = np.random.default_rng(3)
    for _ in range(4):
        a, w = rng.standard_normal(), rng.standard_normal(5)
        z, _ = bnlib.bn.batchnorm_forward((X @ w)[:, None], 1.0, 0.0, var_offset=0.0)
        direct = 0.5 * np.mean((y - a * z[:, 0]) ** 2)
        assert np.isclose(p.bn_loss(a, w), direct, rtol=1e-12)


def test_sample_moments_monte_carlo(problem):
    X, y = problem.sample(200_000, seed=4)
    est = OLS.from_samples(X, y)
    scale = np.max(np.abs(problem.H))
    assert np.max(np.abs(est.H - problem.H)) < 0.03 * scale
    assert np.max(np.abs(est.g - problem.g)) < 0.03 * scale
    assert abs(est.c - problem.c) < 0.03 * problem.c


def test_from_samples_bad_input():
    with pytest.raises(ValueError, match="singular"):
        OLS.from_samples(np.ones((3, 5)), np.ones(3))
    with pytest.raises(ValueError, match="y must have shape"):
        OLS.from_samples(np.eye(3), np.ones(4))


# ---------------------------------------------------------------- gradients
def test_grad_finite_differences(problem, rng):
    w = rng.standard_normal(problem.d)
    assert np.allclose(problem.grad(w), fd_grad(problem.loss, w), atol=1e-6)


def test_bn_grad_finite_differences(problem, rng):
    for _ in range(5):
        a, w = rng.standard_normal(), rng.standard_normal(problem.d)
        da, dw = problem.bn_grad(a, w)
        assert np.isclose(da, fd_grad(lambda t, w=w: problem.bn_loss(t[0], w), [a])[0], atol=1e-7)
        assert np.allclose(dw, fd_grad(lambda x, a=a: problem.bn_loss(a, x), w), atol=1e-6)


def test_bn_broadcasting(problem, rng):
    W = rng.standard_normal((3, 4, problem.d))
    A = rng.standard_normal((3, 1))
    L = problem.bn_loss(A, W)
    da, dw = problem.bn_grad(A, W)
    assert L.shape == (3, 4) and da.shape == (3, 4) and dw.shape == (3, 4, problem.d)
    i, j = 2, 3
    assert np.isclose(L[i, j], problem.bn_loss(A[i, 0], W[i, j]))
    assert np.allclose(dw[i, j], problem.bn_grad(A[i, 0], W[i, j])[1])
    assert problem.loss(W).shape == (3, 4)


def test_bn_bad_input(problem):
    with pytest.raises(ValueError, match="nonzero"):
        problem.bn_loss(1.0, np.zeros(problem.d))
    with pytest.raises(ValueError, match="w must have shape"):
        problem.bn_grad(1.0, np.ones(problem.d + 1))
    with pytest.raises(ValueError, match="broadcast"):
        problem.bn_loss(np.ones(3), np.ones((4, problem.d)))
    with pytest.raises(ValueError, match="a must be finite"):
        problem.bn_loss(np.nan, np.ones(problem.d))


# ---------------------------------------------------------------- invariants (property-based)
vec = st.lists(st.floats(-10, 10), min_size=6, max_size=6).map(np.array)


P6 = OLS.random(6, 50.0, seed=3, noise=0.5)


@settings(max_examples=60, deadline=None)
@given(a=st.floats(-5, 5).filter(lambda t: abs(t) > 1e-6), w=vec, r=st.floats(1e-3, 1e3))
def test_invariants(a, w, r):
    problem = P6
    assume(np.linalg.norm(w) >= 1e-3)
    # J(a, w) = J0(a w / ||w||_H): BN over-parameterises OLS
    u = a * w / np.sqrt(w @ problem.H @ w)
    assert np.isclose(problem.bn_loss(a, w), problem.loss(u), rtol=1e-10, atol=1e-10)
    # scale invariance of the loss
    assert np.isclose(problem.bn_loss(a, r * w), problem.bn_loss(a, w), rtol=1e-10, atol=1e-10)
    # orthogonality w^T grad_w J = 0 (relative to the sizes of the factors)
    _, dw = problem.bn_grad(a, w)
    assert abs(w @ dw) <= 1e-10 * (np.linalg.norm(w) * np.linalg.norm(dw) + 1e-300)
    # the gradient scales as 1/r
    _, dw_r = problem.bn_grad(a, r * w)
    assert np.allclose(dw_r, dw / r, rtol=1e-8, atol=1e-12 * np.abs(dw).max() / r)


def test_excess_identity(problem, rng):
    """J0(w) − J* = ½ ||w − u*||²_H (closed form)."""
    w = rng.standard_normal(problem.d)
    e = w - problem.u_star
    assert np.isclose(problem.loss(w) - problem.min_loss, 0.5 * e @ problem.H @ e)


def test_bn_to_ols(problem, rng):
    a, w = 1.7, rng.standard_normal(problem.d)
    u = problem.bn_to_ols(a, w)
    assert np.isclose(np.sqrt(u @ problem.H @ u), abs(a))
    assert np.isclose(problem.loss(u), problem.bn_loss(a, w))


def test_excess_at_zero_is_loss_at_zero_minus_min_loss():
    p = OLS.random(5, 30.0, seed=8, noise=0.3)
    assert np.isclose(p.excess_at_zero, float(p.loss(np.zeros(5))) - p.min_loss, rtol=1e-12)
    assert np.isclose(p.excess_at_zero, 0.5 * float(p.h_norm(p.u_star)) ** 2, rtol=1e-12)
    assert np.isclose(p.excess_at_zero, float(p.u_star @ p.g / 2), rtol=4 * p.d * U, atol=0)


def test_random_uses_random_rotation():
    """OLS.random's H is Q diag(logspace) Q^T with Q = random_rotation drawn from its seed."""
    from bnlib import random_rotation

    p = OLS.random(4, 100.0, seed=3)
    Q = random_rotation(4, np.random.default_rng(3))
    assert np.allclose(p.H, (Q * np.logspace(0, 2, 4)) @ Q.T, rtol=1e-12)


# ------------------------------------------------ the SPD check of bnlib.checks and h_norm, directly
def check_spd(H, name="H"):
    return bnlib.checks.spd(H, name)[0]


def test_check_spd_accepts_and_symmetrises():
    rng = np.random.default_rng(5)
    M = rng.standard_normal((4, 4))
    H = M @ M.T + 4 * np.eye(4)
    H[0, 1] += 1e-13                                # asymmetric below the 1e-10 tolerance
    out = check_spd(H)
    assert out is not H and out.dtype == np.float64
    assert np.array_equal(out, out.T)
    assert np.array_equal(out, 0.5 * (H + H.T))
    # integer input becomes a float copy
    assert check_spd([[2, 0], [0, 3]]).dtype == np.float64


@pytest.mark.parametrize("H, word", [
    ([[1.0, 0.5], [0.0, 1.0]], "symmetric"),
    ([[1.0, 2.0], [2.0, 1.0]], "positive definite"),        # eigenvalues -1, 3
    ([[1.0, 0.0], [0.0, 0.0]], "positive definite"),        # singular, diagonal path
    ([[-1.0, 0.0], [0.0, 2.0]], "positive definite"),
    ([[1.0, 0.0, 0.0]], "square"),
    (np.zeros((0, 0)), "square"),
    ([[1.0, np.nan], [np.nan, 1.0]], "finite"),
])
def test_check_spd_rejects(H, word):
    with pytest.raises(ValueError, match=word) as info:
        check_spd(H, "Hx")
    assert "Hx" in str(info.value)


def test_check_spd_boundary_of_symmetry():
    # the tolerance is relative 1e-10 of max |H|: just inside passes, just outside fails
    H = np.array([[1e3, 0.0], [0.0, 1.0]])
    inside, outside = H.copy(), H.copy()
    inside[0, 1] = 0.9e-7
    outside[0, 1] = 1.1e-7
    check_spd(inside)
    with pytest.raises(ValueError, match="symmetric"):
        check_spd(outside)


def test_h_norm_against_independent_sums():
    p = OLS.random(5, 30.0, seed=8)
    rng = np.random.default_rng(2)
    W = rng.standard_normal((3, 4, 5))
    # double sum over i, j, written out, and the norm of the Cholesky factor
    expect = np.sqrt(np.array([[sum(w[i] * p.H[i, j] * w[j] for i in range(5) for j in range(5))
                                for w in row] for row in W]))
    L = np.linalg.cholesky(p.H)
    assert np.allclose(p.h_norm(W), expect, rtol=1e-13)
    assert np.allclose(p.h_norm(W), np.linalg.norm(W @ L, axis=-1), rtol=1e-13)
    assert p.h_norm(W).shape == (3, 4)
    # a single vector gives a 0-d result; homogeneous of degree 1; ||u*||_H^2 = u*^T g
    assert np.isclose(float(p.h_norm(W[0, 0])), expect[0, 0], rtol=1e-13)
    assert np.allclose(p.h_norm(-2.5 * W), 2.5 * p.h_norm(W), rtol=1e-14)
    assert np.isclose(float(p.h_norm(p.u_star)) ** 2, p.u_star @ p.g, rtol=1e-12)
    with pytest.raises(ValueError):
        p.h_norm(np.ones(4))


def test_eigen_problem_moments():
    lam = np.array([3.0, 1.0, 10.0, 2.0])
    p = eigen_problem(lam, seed=7, noise=0.4)
    u = 1.0 * np.random.default_rng(7).standard_normal(4) / 2.0     # signal z / sqrt(d)
    assert np.array_equal(p.H, np.diag(lam))
    assert np.allclose(p.u_star, u, rtol=1e-12) and np.allclose(p.g, lam * u)
    assert np.isclose(p.c, np.sum(lam * u**2) + 0.4) and np.isclose(p.min_loss, 0.2)
    assert np.allclose(p.eigvals, np.sort(lam))
    big = eigen_problem(lam, seed=7, noise=0.4, signal=3.0)
    assert np.allclose(big.u_star, 3.0 * p.u_star) and np.isclose(big.min_loss, 0.2)


def test_eigen_problem_has_the_law_of_ols_random():
    """Monte Carlo over seeds: E‖u*‖² = signal² and E u*ᵀHu* = signal² · mean(λ), as for
    OLS.random (whose u* is N(0, I/d) in any basis)."""
    d, kappa = 6, 50.0
    lam = np.logspace(0, np.log10(kappa), d)
    ours = [eigen_problem(lam, seed=s) for s in range(600)]
    theirs = [OLS.random(d, kappa, seed=s) for s in range(600)]
    for probs in (ours, theirs):
        assert np.isclose(np.mean([p.u_star @ p.u_star for p in probs]), 1.0, rtol=0.08)
        assert np.isclose(np.mean([p.u_star @ p.g for p in probs]), lam.mean(), rtol=0.1)
        assert np.allclose(probs[0].eigvals, lam)
    scaled = [eigen_problem(lam, seed=s, signal=np.sqrt(d)) for s in range(600)]
    assert np.isclose(np.mean([p.u_star @ p.u_star for p in scaled]), d, rtol=0.08)


def test_runs_on_the_eigenbasis_equal_runs_on_a_rotated_problem(rng):
    lam = np.logspace(0, 1.5, 5)
    p = eigen_problem(lam, seed=1, noise=0.3)
    Q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    rotated = OLS(Q @ p.H @ Q.T, Q @ p.g, p.c)
    w0 = rng.standard_normal(5)
    lrs = np.logspace(-2, 3, 6)
    a, b = bngd(p, lrs, 80, 1.0, w0), bngd(rotated, lrs, 80, 1.0, Q @ w0)
    assert np.allclose(a.excess, b.excess, rtol=1e-7, atol=1e-14)
    ga, gb = gd(p, lrs[:3] / 10, 80, w0), gd(rotated, lrs[:3] / 10, 80, Q @ w0)
    assert np.allclose(ga.excess, gb.excess, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(eigvals=[1.0, 0.0]), ValueError, "eigvals must be > 0"),
        (dict(eigvals=[[1.0, 2.0]]), ValueError, "1-D"),
        (dict(eigvals=[]), ValueError, "1-D"),
        (dict(eigvals="abc"), TypeError, "eigvals"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(noise=-0.1), ValueError, "noise"),
        (dict(signal=0.0), ValueError, "signal"),
        (dict(signal=[1.0, 2.0]), ValueError, "signal must be a scalar"),
    ],
)
def test_eigen_problem_bad_input(kwargs, err, match):
    args = dict(eigvals=[1.0, 2.0], seed=0)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        eigen_problem(**args)


def test_random_rotation_is_orthogonal_unique_and_reproducible():
    Q = random_rotation(6, seed=4)
    assert np.allclose(Q @ Q.T, np.eye(6), atol=1e-13)
    assert np.array_equal(Q, random_rotation(6, seed=4))
    # signs fixed: Q^T Z is upper triangular with a positive diagonal (the unique QR)
    Z = np.random.default_rng(4).standard_normal((6, 6))
    R = Q.T @ Z
    assert np.allclose(np.tril(R, -1), 0.0, atol=1e-12) and np.all(np.diag(R) > 0)
    stack = random_rotation(3, np.random.default_rng(1), batch=(5, 2))
    assert stack.shape == (5, 2, 3, 3)
    assert np.allclose(stack @ np.swapaxes(stack, -1, -2), np.eye(3), atol=1e-13)
    assert not np.allclose(stack[0, 0], stack[0, 1])


def test_random_rotation_is_haar():
    """For Haar Q, the entry Q[0, 0] has E = 0 and E[Q00^2] = 1/d, and det is +-1 equally often."""
    d, n = 4, 20000
    Q = random_rotation(d, seed=11, batch=(n,))
    q00 = Q[:, 0, 0]
    assert abs(q00.mean()) < 5 * np.sqrt(1 / d / n)
    assert abs(np.mean(q00**2) - 1 / d) < 5 * np.std(q00**2) / np.sqrt(n)
    frac = np.mean(np.linalg.det(Q) > 0)
    assert abs(frac - 0.5) < 5 * 0.5 / np.sqrt(n)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(d=0, seed=0), ValueError, "d must be"),
        (dict(d=2, seed=-1), ValueError, "seed"),
        (dict(d=2, seed=1.0), TypeError, "seed"),
        (dict(d=2, seed=0, batch=3), TypeError, "batch"),
        (dict(d=2, seed=0, batch=(2.0,)), TypeError, "batch"),
    ],
)
def test_random_rotation_bad_input(kwargs, err, match):
    with pytest.raises(err, match=match):
        random_rotation(**kwargs)
