"""bnlib.sweeps against closed forms, Monte Carlo and the dense rotated problem."""

import numpy as np
import pytest

from bnlib import OLS, bngd, gd
from bnlib.sweeps import eigen_problem, log_width


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
        (np.ones(3, bool), np.array([1.0, 2.0, 5.0]), ValueError, "equally spaced"),
        (np.ones(3, bool), np.logspace(1, 0, 3), ValueError, "increasing"),
        (np.ones(3, bool), np.array([1.0]), ValueError, "at least 2"),
        (np.ones(4, bool), np.logspace(0, 1, 3), ValueError, "3 entries"),
        (np.ones(3, bool), np.array([-1.0, 1.0, 3.0]), ValueError, "lr must be > 0"),
    ],
)
def test_log_width_bad_input(ok, lr, err, match):
    with pytest.raises(err, match=match):
        log_width(ok, lr)
