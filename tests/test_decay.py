"""Weight decay: closed forms against runs and written-out computations."""

import numpy as np
import pytest

import bnlib
from bnlib import decay, eigen_problem, theory


@pytest.fixture
def small():
    p = eigen_problem(np.logspace(0, 1, 6), seed=2)
    w0 = np.random.default_rng(4).standard_normal(6)
    return p, w0 / np.linalg.norm(w0)


def test_floor_leading_matches_long_runs(small):
    """The simulated floor tends to ευ λ*_max ‖u*‖²/4 as ευ → 0, with an O(ευ) correction."""
    p, w0 = small
    prods = np.array([1e-3, 1e-2])
    sw = decay.floor_sweep(p, np.array([0.3, 3.0]), prods, 5000, 1.0, w0, tail=500)
    assert not sw.diverged.any()
    assert np.all(np.abs(sw.ratio - 1) < 10 * prods)
    assert np.allclose(sw.edge, 2.0, atol=0.01)
    lam = theory.effective_eigvals(p.H, p.u_star).max()
    assert np.isclose(theory.floor_leading(p, 0.02), 0.02 * lam * (p.u_star @ p.u_star) / 4)
    # the same ευ at another ε: the same equilibrium (only ευ matters there)
    assert np.allclose(sw.floor[0], sw.floor[1], rtol=1e-4)


def test_angular_update_of_a_known_rotation():
    k = np.arange(7)
    theta = 1e-3
    r = np.exp(0.1 * k)[:, None]
    w = r * np.stack([np.cos(theta * k), np.sin(theta * k), np.zeros(7)], axis=-1)
    ang = decay.angular_update(w)
    assert ang.shape == (6,) and np.allclose(ang, theta, rtol=1e-9)
    w2 = np.stack([w, 2 * w], axis=1)                  # (K+1, 2, d), step axis 0
    assert np.allclose(decay.angular_update(w2), theta, rtol=1e-9)
    with pytest.raises(ValueError, match="axis"):
        decay.angular_update(w, axis=-1)


def test_angular_equilibrium_against_the_exact_norm_balance():
    """ς = 0: at a fixed norm with an orthogonal gradient, tan θ = √(ευ(2 − ευ))/(1 − ευ)."""
    lr, wd = 0.5, np.array([1e-6, 1e-4, 1e-2])
    x = lr * wd
    exact = np.arctan(np.sqrt(x * (2 - x)) / (1 - x))
    assert np.allclose(theory.angular_equilibrium(lr, wd), exact, rtol=2 * x.max())
    assert np.isclose(theory.angular_equilibrium(1.0, 0.01, 0.9), np.sqrt(0.02 / 1.9))
    with pytest.raises(ValueError, match="momentum"):
        theory.angular_equilibrium(1.0, 0.01, 1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        theory.angular_equilibrium(1.0, -0.01)


def test_decay_windows_gd_against_closed_form(small):
    """GD with decay: w_K = r + (I − ε(H + υI))^K (0 − r), r the ridge solution."""
    p, w0 = small
    lr = np.logspace(-3, np.log10(0.18), 13)                  # below 2/(λ_max + υ)
    wd = np.array([0.0, 0.05])
    win = decay.decay_windows(p, lr, wd, 200, 1.0, w0, 1e-3 * p.excess_at_zero)
    lam = np.diag(p.H)
    for i, u in enumerate(wd):
        ridge = p.g / (lam + u)
        wK = ridge - (1 - lr[:, None] * (lam + u)) ** 200 * ridge
        e = wK - p.u_star
        exc = 0.5 * np.sum(lam * e * e, axis=-1)
        ok = np.isfinite(win.gd[i])
        assert np.allclose(win.gd[i][ok], exc[ok], rtol=1e-8)
    assert win.top_predicted[0] == np.inf
    assert np.isclose(win.top_predicted[1],
                      win.tol / (0.05 * theory.floor_leading(p, 1.0)))


def test_bad_input(small):
    p, w0 = small
    with pytest.raises(ValueError, match="lr_decay"):
        theory.floor_leading(p, -1.0)
    with pytest.raises(TypeError):
        theory.floor_leading("p", 1.0)
    with pytest.raises(ValueError, match="steps"):
        decay.floor_sweep(p, np.ones(2), np.ones(2) * 1e-3, 10, 1.0, w0, tail=20)
    with pytest.raises(ValueError, match="one-dimensional"):
        decay.decay_windows(p, np.ones((2, 2)), np.zeros(1), 5, 1.0, w0, 1e-3)


def test_module_is_public():
    assert bnlib.theory.floor_leading is theory.floor_leading


@pytest.mark.parametrize("steps", [800, 101])
def test_floor_sweep_floor_and_spread_are_the_tail_statistics(small, steps):
    """floor and spread are the mean and (max − min)/mean of the last ``tail`` excesses of the
    run with υ = p/ε, recomputed here from a separate single-run bngd call; any steps > tail
    is allowed (101 with tail 100: the smallest)."""
    p, w0 = small
    sw = decay.floor_sweep(p, np.array([0.3]), np.array([1e-2]), steps, 1.0, w0, tail=100)
    run = bnlib.bngd(p, 0.3, steps, 1.0, w0, weight_decay=1e-2 / 0.3, record="loss")
    tail = run.excess[-100:]
    spread = (tail.max() - tail.min()) / tail.mean()
    assert np.isclose(float(sw.floor.ravel()[0]), tail.mean(), rtol=1e-9)
    assert abs(float(sw.spread.ravel()[0]) - spread) <= 1e-6 * spread + 1e-12


def test_decay_windows_count_a_final_excess_equal_to_tol():
    """'Final excess <= tol': with tol equal to one run's final excess, that run is inside
    (widths are grid points times the spacing, 4 points per decade here)."""
    p = eigen_problem(np.array([1.0, 3.0, 10.0]), seed=1)
    lr = np.logspace(-2, 0, 9)
    w0 = np.ones(3) / np.sqrt(3)
    first = decay.decay_windows(p, lr, np.zeros(1), 30, 1.0, w0, 1e-3)
    for name in ("gd", "bngd"):
        final = getattr(first, name)[0]
        t = float(np.sort(final[np.isfinite(final)])[2])        # the third smallest final excess
        win = decay.decay_windows(p, lr, np.zeros(1), 30, 1.0, w0, t)
        assert getattr(win, "width_" + name)[0] == pytest.approx(np.count_nonzero(final <= t) / 4)
