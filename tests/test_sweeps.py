"""bnlib.sweeps against closed forms, Monte Carlo and the dense rotated problem."""

import numpy as np
import pytest

from bnlib import OLS, bngd, eigen_problem, gd, log_width, random_rotation


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


def test_log_width_of_intervals_and_holes():
    lr = np.logspace(-4, 8, 97)                    # 8 points per decade
    inside = (lr >= 1e-2) & (lr <= 10.0)
    assert np.isclose(log_width(inside, lr), np.log10(10.0 / 1e-2) + 1 / 8)
    holes = inside & (np.arange(97) % 2 == 0)
    assert np.isclose(log_width(holes, lr), np.count_nonzero(holes) / 8)
    assert log_width(np.zeros(97, bool), lr) == 0.0
    grid = np.stack([inside, ~inside, holes])      # shape (3, 97): along axis -1
    assert np.allclose(log_width(grid, lr), [3.125, 12.125 - 3.125, np.count_nonzero(holes) / 8])
    assert np.allclose(log_width(grid.T, lr, axis=0), log_width(grid, lr))


@pytest.mark.parametrize(
    "ok, lr, err, match",
    [
        (np.ones(3), np.logspace(0, 1, 3), TypeError, "boolean"),
        (np.ones(3, bool), np.logspace(1, 0, 3), ValueError, "increasing"),
        (np.ones(3, bool), np.array([1.0]), ValueError, "at least 2"),
        (np.ones(4, bool), np.logspace(0, 1, 3), ValueError, "3 entries"),
        (np.ones(3, bool), np.array([-1.0, 1.0, 3.0]), ValueError, "lr must be > 0"),
    ],
)
def test_log_width_bad_input(ok, lr, err, match):
    with pytest.raises(err, match=match):
        log_width(ok, lr)


def test_log_width_cells_by_hand():
    """Each point counts its cell between geometric midpoints, half a spacing beyond the ends."""
    lr = np.logspace(0, 4, 9)                 # 2 points per decade: each counts 1/2 decade
    score = np.array([0.1, 0.5, 0.91, 0.95, 0.9, 0.2, np.nan, 0.93, 0.92])
    assert np.isclose(log_width(score >= 0.9, lr), 2.5)     # 5 points >= 0.9, nan outside
    assert log_width(score >= 0.99, lr) == 0.0
    assert np.isclose(log_width(np.ones(9, bool), lr), 4.5)
    # log-grid 0, 1, 3: cell edges -0.5, 0.5, 2, 4, so the outer cells measure 1 and 2
    assert np.isclose(log_width(np.array([True, False, True]), [1.0, 10.0, 1000.0]), 3.0)
    assert np.isclose(log_width(np.array([False, True, False]), [1.0, 10.0, 1000.0]), 1.5)


def test_log_width_equals_count_times_spacing_on_uniform_grids():
    rng = np.random.default_rng(3)
    for n, lo, hi in [(5, -3.0, 1.0), (40, 0.0, 7.5), (2, 1.0, 1.5)]:
        lr = np.logspace(lo, hi, n)
        ok = rng.random((4, n)) < 0.5
        assert np.allclose(log_width(ok, lr), ok.sum(axis=1) * (hi - lo) / (n - 1), rtol=1e-12)


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
