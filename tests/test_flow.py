"""bnlib.flow.bn_flow against a closed form, scipy's integrator, the conservation law,
the energy identity of a gradient flow, RK4's order and BNGD's Euler limit."""

import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from bnlib import OLS, bn_flow, bngd


@pytest.fixture
def starts(problem):
    rng = np.random.default_rng(11)
    return rng.standard_normal(5), rng.standard_normal((5, problem.d))


def test_one_dimensional_closed_form():
    """d = 1: ∇_w J = 0, so w stays put and a(t) = a* + (a0 − a*) e^{−ρ_a t}, a* = sign(w) g/√h."""
    p = OLS([[2.0]], [3.0], 10.0)
    a0 = np.array([0.0, -4.0, 5.0])
    w0 = np.array([[0.7], [-1.3], [2.0]])
    lr_a = np.array([1.0, 0.5, 3.0])
    run = bn_flow(p, 2.0, 400, a0, w0, lr_a=lr_a)
    a_star = np.sign(w0[:, 0]) * 3.0 / np.sqrt(2.0)
    expect = a_star + (a0 - a_star) * np.exp(-lr_a * run.t[:, None])
    assert np.allclose(run.a, expect, rtol=0, atol=1e-9)
    assert np.all(run.w == w0)


def test_against_scipy(problem, starts):
    a0, w0 = starts
    run = bn_flow(problem, 3.0, 300, a0, w0, lr_a=0.7)
    H, g = problem.H, problem.g

    def rhs(_, z):
        a, w = z[0], z[1:]
        da, dw = problem.bn_grad(a, w)
        return np.concatenate([[-0.7 * da], -dw])

    for i in range(len(a0)):
        sol = solve_ivp(rhs, (0, 3.0), np.concatenate([[a0[i]], w0[i]]), method="DOP853",
                        rtol=1e-12, atol=1e-12, t_eval=run.t[::50])
        assert np.allclose(run.a[::50, i], sol.y[0], atol=1e-8)
        assert np.allclose(run.w[::50, i], sol.y[1:].T, atol=1e-8)
    assert H is problem.H and g is problem.g


def test_norm_of_w_is_conserved(problem, starts):
    a0, w0 = starts
    run = bn_flow(problem, 5.0, 2000, a0, w0)
    rel = np.abs(run.w_norm / run.w_norm[0] - 1)
    assert rel.max() < 1e-8
    assert np.allclose(run.w_norm, np.linalg.norm(run.w, axis=-1))


def test_energy_identity(problem, starts):
    """dJ/dt = −(ρ_a (∂_a J)² + ‖∇_w J‖²) along the flow (central differences in t)."""
    a0, w0 = starts
    run = bn_flow(problem, 2.0, 2000, a0, w0, lr_a=2.0)
    dJ_da, dJ_dw = problem.bn_grad(run.a, run.w)
    dissipation = 2.0 * dJ_da**2 + np.sum(dJ_dw**2, axis=-1)
    h = run.t[1] - run.t[0]
    dloss = (run.loss[2:] - run.loss[:-2]) / (2 * h)
    assert np.allclose(dloss, -dissipation[1:-1], rtol=1e-3, atol=1e-8)
    assert np.allclose(run.loss, problem.bn_loss(run.a, run.w), rtol=1e-12)
    u = problem.bn_to_ols(run.a, run.w)
    assert np.allclose(run.excess, problem.loss(u) - problem.min_loss, atol=1e-12)


def test_fourth_order(problem, starts):
    """Halving the step divides the error at T by about 2⁴ = 16."""
    a0, w0 = starts
    ref = bn_flow(problem, 4.0, 6400, a0, w0)
    errs = []
    for n in (100, 200, 400):
        run = bn_flow(problem, 4.0, n, a0, w0)
        errs.append(np.max(np.abs(run.w[-1] - ref.w[-1])) + np.max(np.abs(run.a[-1] - ref.a[-1])))
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all((ratios > 12) & (ratios < 20)), ratios


def test_bngd_is_the_euler_discretisation(problem, starts):
    """BNGD with steps ε and ε_a = ρ_a ε follows the flow to first order in ε."""
    a0, w0 = starts
    T, lr_a = 2.0, 0.5
    ref = bn_flow(problem, T, 400, a0, w0, lr_a=lr_a)
    errs = []
    for eps in (0.01, 0.005):
        run = bngd(problem, eps, round(T / eps), a0, w0, lr_a=lr_a * eps)
        errs.append(np.max(np.abs(run.w[-1] - ref.w[-1])))
    assert 1.8 < errs[0] / errs[1] < 2.2


def test_divergence_is_flagged_without_warnings(problem):
    w0 = np.stack([np.ones(problem.d), np.ones(problem.d)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = bn_flow(problem, 3e5, 3, np.array([1.0, 1.0]), w0, lr_a=np.array([1.0, 1e-6]))
    assert run.diverged[0] and not run.diverged[1]
    assert np.isnan(run.a[-1, 0]) and np.isinf(run.loss[-1, 0])
    assert np.all(np.isfinite(run.a[:, 1]))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"problem": "p"}, TypeError, "problem"),
        ({"w0": np.zeros(6)}, ValueError, "w0 must be nonzero"),
        ({"w0": np.ones(5)}, ValueError, "w0 must have shape"),
        ({"w0": np.full(6, np.nan)}, ValueError, "w0 must be finite"),
        ({"a0": np.inf}, ValueError, "a0"),
        ({"a0": np.ones(3), "w0": np.ones((2, 6))}, ValueError, "broadcast"),
        ({"t_end": 0.0}, ValueError, "t_end"),
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.5}, TypeError, "steps"),
        ({"lr_a": -1.0}, ValueError, "lr_a"),
    ],
)
def test_bad_input(problem, kwargs, exc, match):
    args = {"problem": problem, "a0": 1.0, "w0": np.ones(6), "t_end": 1.0, "steps": 10}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        bn_flow(**args)


def test_old_argument_order_fails_loudly(problem, rng):
    """bn_flow(problem, t_end, steps, a0, w0) follows bngd(problem, lr, steps, a0, w0); a call in
    the old order (a0, w0, t_end, steps) passes a weight vector as ``steps`` and must raise."""
    w0 = rng.standard_normal(problem.d)
    with pytest.raises((TypeError, ValueError), match="steps"):
        bn_flow(problem, 0.5, w0, 1.0, 50)


def test_divergence_limit_is_on_the_loss_not_the_excess(problem):
    """RK4 with a huge step grows the loss; with blowup set so that blowup · max(J(start), c/2)
    lies J* below the loss after one step, that step is the first flagged (a limit written on
    the excess must be that bound minus J*, not plus: J* = 0.25 here)."""
    free = bn_flow(problem, 20.0, 5, 1.0, np.ones(problem.d), blowup=1e300)
    assert not free.diverged and problem.min_loss > 0.1
    start = max(free.loss[0], 0.5 * problem.c)
    assert free.loss[0] <= start < free.loss[1] - problem.min_loss
    blowup = (free.loss[1] - problem.min_loss) / start
    run = bn_flow(problem, 20.0, 5, 1.0, np.ones(problem.d), blowup=blowup)
    assert run.diverged and np.isfinite(run.loss[0]) and np.all(np.isinf(run.loss[1:]))
