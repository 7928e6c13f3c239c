"""bnlib.linearize.contraction against sequences with a known ratio and against GD theory."""

import warnings

import numpy as np
import pytest

from bnlib import OLS, bngd, gd, linearize, theory


def test_geometric_sequences_batched():
    rho = np.array([0.1, 0.5, 0.9, 0.99])
    k = np.arange(2000)[:, None]
    h = 2.5 * rho ** (2 * k)                        # an excess: error^2
    est = linearize.contraction(h, power=2, rel_floor=1e-300)
    assert est.rate.shape == (4,)
    assert np.allclose(est.rate, rho, rtol=1e-12)
    assert np.all(est.steady) and not np.any(est.diverged)
    # power 1: the history's own ratio
    assert np.allclose(linearize.contraction(h, rel_floor=1e-300).rate, rho**2, rtol=1e-12)


def test_scalar_history_gives_scalars():
    est = linearize.contraction(0.3 ** np.arange(30.0))
    assert isinstance(est.rate, float) and np.isclose(est.rate, 0.3)
    assert bool(est.steady)


def test_machine_precision_floor_is_ignored():
    """A geometric decay that hits a rounding floor and then jitters there."""
    rng = np.random.default_rng(0)
    k = np.arange(300.0)
    h = np.maximum(0.7**k, 1e-16 * (1 + rng.random(300)))   # floor reached near k = 103
    naive = (h[-1] / h[-101]) ** 0.01
    assert abs(naive - 0.7) > 0.2                    # a naive tail ratio is nonsense
    est = linearize.contraction(h, floor=1e-14)
    assert np.isclose(est.rate, 0.7, rtol=1e-10) and est.steady
    est = linearize.contraction(h, rel_floor=1e-13)      # the default kind of floor, relative to h_0
    assert np.isclose(est.rate, 0.7, rtol=1e-10) and est.steady
    assert est.points < 90


def test_transient_then_asymptotic():
    """Two modes: the tail is ruled by the slower one once the faster has died out."""
    k = np.arange(600.0)
    h = 100 * 0.5**k + 0.95**k
    est = linearize.contraction(h, rel_floor=1e-300)
    assert np.isclose(est.rate, 0.95, rtol=1e-9) and est.steady


def test_slow_mixture_is_not_steady():
    """Many slow modes: the tail slope drifts too slowly for the halves to disagree, but the
    history has hardly decayed, so the run is not called asymptotic."""
    k = np.arange(3000.0)[:, None]
    h = np.sum(0.9999 ** (k * np.linspace(1, 20, 10)), axis=1)
    est = linearize.contraction(h)
    assert not est.steady and est.rate < 0.9999 - 1e-5      # the mixture looks faster than it is
    k = np.arange(150_000.0)[:, None]                       # run long enough: the slowest mode rules
    h = np.sum(0.9999 ** (k * np.linspace(1, 20, 10)), axis=1)
    est = linearize.contraction(h)
    assert est.steady and np.isclose(est.rate, 0.9999, rtol=1e-9)


def test_too_little_decay_is_not_steady():
    """An exactly geometric but very slow history: the rate is right, but with a tail that
    fell by only 1.5 % the run is not called asymptotic unless min_decay allows it."""
    h = 0.99999 ** np.arange(3000.0)
    est = linearize.contraction(h)
    assert np.isclose(est.rate, 0.99999, rtol=1e-12) and not est.steady
    assert linearize.contraction(h, min_decay=1.0).steady


def test_changing_rate_is_not_steady():
    k = np.arange(200.0)
    h = np.where(k < 150, 0.9**k, 0.9**150 * 0.5 ** (k - 150))
    est = linearize.contraction(h, rel_floor=1e-300)
    assert not est.steady


def test_diverged_history_uses_finite_prefix():
    h = 1.5 ** np.arange(50.0)
    h[30:] = np.inf
    est = linearize.contraction(h)
    assert est.diverged and not est.steady
    assert np.isclose(est.rate, 1.5, rtol=1e-12)
    assert est.points == 15                          # half of the 30 finite entries
    nan = linearize.contraction(np.array([1.0, np.nan, np.nan]))
    assert nan.diverged and np.isnan(nan.rate)


def test_negative_rounding_noise_ends_the_history():
    h = 0.5 ** np.arange(40.0)
    h[30:] = -1e-32 * (1 + np.arange(10) % 2)        # an excess that rounded below zero
    est = linearize.contraction(h, rel_floor=1e-300)
    assert np.isclose(est.rate, 0.5, rtol=1e-12) and est.steady and est.points == 15


def test_degenerate_histories():
    est = linearize.contraction(np.zeros((5, 2)))
    assert np.all(np.isnan(est.rate)) and not np.any(est.steady)
    short = linearize.contraction(np.array([1.0, 0.5, 0.25]))
    assert np.isclose(short.rate, 0.5) and not short.steady   # too few points for steady


def test_gd_runs_agree_with_theory():
    """Measured tails of GD runs against ρ_GD(ε) = max|1 − ελ|, including diverging steps."""
    p = OLS.random(5, 30.0, seed=7, noise=0.2)
    lrs = np.linspace(0.05, 1.1, 12) * theory.gd_lr_max(p.H)
    w0 = np.random.default_rng(2).standard_normal(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = gd(p, lrs, 3000, w0, record="loss")
        est = linearize.contraction(run.excess, power=2)
    predicted = theory.gd_rate(p.H, lrs)
    assert np.all(est.steady == ~run.diverged)
    assert np.allclose(est.rate[est.steady], predicted[est.steady], rtol=2e-3)
    # the diverged runs grew at the predicted factor too (finite prefix)
    assert np.all(predicted[run.diverged] > 1)
    assert np.allclose(est.rate[run.diverged], predicted[run.diverged], rtol=2e-2)


def test_bngd_run_agrees_with_local_theory():
    p = OLS.random(4, 10.0, seed=1)
    w0 = p.u_star + 0.3 * np.random.default_rng(5).standard_normal(4)
    run = bngd(p, 0.3, 800, 0.5, w0, lr_a=0.5, record="loss")
    est = linearize.contraction(run.excess, power=2)
    assert est.steady
    assert np.isclose(est.rate, theory.bngd_rate(p.H, p.u_star, run.lr_eff[-1], 0.5), rtol=1e-3)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"history": 1.0}, ValueError, "history must have shape"),
        ({"history": [1.0]}, ValueError, "history must have shape"),
        ({"history": [-1.0, 0.5]}, ValueError, "history must start nonnegative"),
        ({"history": "abc"}, TypeError, "history"),
        ({"history": [1.0, 0.5], "power": 0}, ValueError, "power"),
        ({"history": [1.0, 0.5], "floor": -1.0}, ValueError, "floor"),
        ({"history": [1.0, 0.5], "rel_floor": 1.5}, ValueError, "rel_floor"),
        ({"history": [1.0, 0.5], "tail": 1.5}, ValueError, "tail"),
        ({"history": [1.0, 0.5], "tail": 0.0}, ValueError, "tail"),
        ({"history": [1.0, 0.5], "min_points": 2}, ValueError, "min_points"),
        ({"history": [1.0, 0.5], "min_points": 5.0}, TypeError, "min_points"),
        ({"history": [1.0, 0.5], "rtol": 0.0}, ValueError, "rtol"),
        ({"history": [1.0, 0.5], "min_decay": 0.5}, ValueError, "min_decay"),
    ],
)
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        linearize.contraction(**kwargs)
