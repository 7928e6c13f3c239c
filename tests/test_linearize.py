"""bnlib.linearize against independent computations: real BNGD/GD runs, dense algebra, and
sequences with a known contraction ratio."""

import warnings

import numpy as np
import pytest

import bnlib
from bnlib import OLS, bngd, gd, linearize, theory
from tools.probe import unit_roundoff

# the rounding unit of the arithmetic in use (2**-53, or the rounding probe's delta):
# rounding-level tolerances below are multiples of it
U = unit_roundoff()


def test_effective_step_and_projector(problem, rng):
    w = rng.standard_normal((3, problem.d))
    a = np.array([0.5, -2.0, 1.3])
    n2 = np.array([x @ problem.H @ x for x in w])
    assert np.allclose(linearize.effective_step(problem, 0.3, a, w), 0.3 * a**2 / n2)
    P = linearize.h_projector(problem, w)
    for Pi, wi in zip(P, w, strict=True):
        assert np.allclose(Pi @ wi, 0, atol=1e-12)
        assert np.allclose(Pi @ Pi, Pi)
        assert np.allclose(problem.H @ Pi, (problem.H @ Pi).T)
        x = rng.standard_normal(problem.d)          # (I − P) x is the H-projection onto w
        assert np.allclose((np.eye(problem.d) - Pi) @ x, (wi @ problem.H @ x) / (wi @ problem.H @ wi) * wi)
    with pytest.raises(ValueError, match="nonzero"):
        linearize.h_projector(problem, np.zeros(problem.d))
    with pytest.raises(TypeError, match="problem"):
        linearize.effective_step(problem.H, 1.0, 1.0, w[0])


@pytest.mark.parametrize("lr, lr_a", [(0.05, 1.0), (2.0, 0.4), (30.0, 1.7)])
def test_linear_map_predicts_a_real_bngd_step(problem, rng, lr, lr_a):
    """The prediction error of one real step shrinks like the square of the distance to u*."""
    w = rng.standard_normal(problem.d)
    u_star = problem.u_star
    direction = rng.standard_normal(problem.d)
    errors = []
    for delta in (1e-2, 1e-3):
        u = u_star + delta * direction / np.linalg.norm(direction)
        # any state (a, w') with a w'/||w'||_H = u: w' along u, with w's norm
        w_k = u * np.linalg.norm(w) / np.linalg.norm(u)
        a_k = float(problem.h_norm(u))
        M = linearize.linear_map(problem, lr, lr_a, a_k, w_k)
        run = bngd(problem, lr, 1, a_k, w_k, lr_a=lr_a)
        u_next = problem.bn_to_ols(run.a[1], run.w[1])
        errors.append(np.linalg.norm(u_next - u_star - M @ (u - u_star)) / delta)
    assert errors[1] < 0.2 * errors[0]                  # first-order error: ~10x smaller


def test_linear_map_off_the_minimiser_direction(problem, rng):
    """w not parallel to u: the map still predicts (u − u* small, w arbitrary)."""
    w = rng.standard_normal(problem.d)
    w_hat = w / float(problem.h_norm(w))
    # choose a and the state so that u = a w/||w||_H lies near u*: needs u* near the w line,
    # so instead move u* by building a problem whose solution is that u
    a = 1.3
    u = a * w_hat
    prob = OLS(problem.H, problem.H @ (u + 1e-4 * rng.standard_normal(problem.d)), 50.0)
    M = linearize.linear_map(prob, 0.7, 0.8, a, w)
    run = bngd(prob, 0.7, 1, a, w, lr_a=0.8)
    u_next = prob.bn_to_ols(run.a[1], run.w[1])
    pred = prob.u_star + M @ (u - prob.u_star)
    assert np.linalg.norm(u_next - pred) < 1e-3 * np.linalg.norm(u - prob.u_star)


def test_linear_map_at_minimiser_has_the_spectrum_of_h_star(problem):
    lr, lr_a, s = 0.08, 0.6, 1.7
    M = linearize.linear_map(problem, lr, lr_a, float(problem.h_norm(problem.u_star)),
                             s * problem.u_star)
    expect = np.sort(np.concatenate([[1 - lr_a], 1 - lr / s**2 * theory.effective_eigvals(
        problem.H, problem.u_star)]))
    assert np.allclose(np.sort(np.linalg.eigvals(M).real), expect)


def test_compare_acceleration_counts_steps_of_real_runs(problem, rng):
    w0 = rng.standard_normal(problem.d)
    lrs = np.array([0.1, 1.0, 10.0])
    tol = 1e-10
    out = linearize.compare_acceleration(problem, lrs, 0.5, w0, tol, 4000)
    assert out.gd_steps_opt == gd(problem, theory.gd_lr_opt(problem.H), 4000, w0,
                                  record="loss").steps_to(tol)
    assert out.gd_steps_best <= out.gd_steps_opt
    bn = bngd(problem, lrs, 4000, 0.5, w0, record="loss").steps_to(tol)
    assert np.array_equal(out.bngd_steps, bn) and out.bngd_steps_best == bn.min()
    assert np.isclose(out.speedup_best, out.gd_steps_best / bn.min())
    assert np.isclose(out.speedup_opt, out.gd_steps_opt / bn.min())
    assert bnlib.linearize is linearize


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


def test_kappa_star_eigenbasis_matches_dense(rng):
    lam = np.logspace(0, 2, 12)
    u = rng.standard_normal((40, 12))
    dense = theory.kappa_star(np.broadcast_to(np.diag(lam), (40, 12, 12)), u)
    assert np.allclose(linearize.kappa_star_eigenbasis(lam, u), dense, rtol=1e-10)
    with pytest.raises(ValueError, match="increasing"):
        linearize.kappa_star_eigenbasis(lam[::-1], u)


@pytest.mark.parametrize("lr, lr_a", [(0.1, 1.0), (3.0, 0.5), (0.02, 1.5)])
def test_saddle_multipliers_are_eigenvalues_of_the_real_step(problem, rng, lr, lr_a):
    """Central differences of one real BNGD step at a saddle, in the full (a, w) space:
    eigenvalues λ+, λ− and 1 (d − 1 times, along the set of saddles)."""
    w = rng.standard_normal(problem.d)
    w -= (w @ problem.g) / (problem.g @ problem.g) * problem.g
    z0 = np.concatenate([[0.0], w])

    def step(z):
        run = bngd(problem, lr, 1, z[0], z[1:], lr_a=lr_a)
        return np.concatenate([[run.a[1]], run.w[1]])

    h = 1e-6
    jac = np.array([(step(z0 + h * e) - step(z0 - h * e)) / (2 * h) for e in np.eye(problem.d + 1)]).T
    ev = np.sort(np.linalg.eigvals(jac).real)
    lam_plus, lam_minus = linearize.saddle_multipliers(problem, lr, lr_a, w)
    expected = np.sort(np.concatenate([[lam_plus, lam_minus], np.ones(problem.d - 1)]))
    assert lam_plus > 1
    assert np.allclose(ev, expected, atol=1e-6)


def test_saddle_escape_time_grows_like_log_inverse_distance(problem, rng):
    """Steps to reach a small excess from distance δ of a saddle: slope 1/log λ+ in log(1/δ).

    (At a step where |λ−| is close to 1 the path after the escape can depend on δ and the
    count is not a clean line; ε = 0.01 keeps λ− near 0 here.)"""
    w = rng.standard_normal(problem.d)
    w -= (w @ problem.g) / (problem.g @ problem.g) * problem.g
    w /= np.linalg.norm(w)
    lam_plus, _ = linearize.saddle_multipliers(problem, 0.01, 1.0, w)
    delta = np.logspace(-2, -14, 7)
    starts = w + delta[:, None] * problem.g / np.linalg.norm(problem.g)
    run = bngd(problem, 0.01, 5000, 0.0, starts, lr_a=1.0, tol=1e-10, record="loss")
    steps = run.steps_to(1e-10)
    slope = np.polyfit(np.log(1 / delta), steps, 1)[0]
    assert np.all(np.isfinite(steps))
    assert abs(slope * np.log(lam_plus) - 1) < 0.05


def test_saddle_multipliers_reject_bad_input(problem):
    w = np.ones(problem.d)
    with pytest.raises(ValueError, match="saddle"):
        linearize.saddle_multipliers(problem, 0.1, 1.0, w)
    with pytest.raises(ValueError, match="lr_a"):
        linearize.saddle_multipliers(problem, 0.1, 0.0, w)
    with pytest.raises(TypeError, match="problem"):
        linearize.saddle_multipliers(problem.H, 0.1, 1.0, w)


def _h_star_by_hand(problem):
    Hu = problem.H @ problem.u_star
    return problem.H - np.outer(Hu, Hu) / (problem.u_star @ Hu)


@pytest.mark.parametrize("lr, lr_a", [(0.1, 1.0), (3.0, 0.5)])
def test_step_jacobian_matches_a_loop_and_the_minimiser_spectrum(problem, rng, lr, lr_a):
    a, w = 0.7, rng.standard_normal(problem.d)
    z0, h = np.concatenate([[a], w]), 1e-6

    def step(z):
        run = bngd(problem, lr, 1, z[0], z[1:], lr_a=lr_a)
        return np.concatenate([[run.a[1]], run.w[1]])

    loop = np.array([(step(z0 + h * e) - step(z0 - h * e)) / (2 * h)
                     for e in np.eye(problem.d + 1)]).T
    assert np.allclose(linearize.step_jacobian(problem, lr, lr_a, a, w), loop, atol=1e-12)
    # at a minimiser (|u*|_H, s u*): 1 - eps_a, 1 (along u*) and 1 - (eps/s^2) lambda*_i
    s = 1.7
    jac = linearize.step_jacobian(problem, lr, lr_a, float(problem.h_norm(problem.u_star)),
                                  s * problem.u_star)
    lam_star = np.linalg.eigvalsh(_h_star_by_hand(problem))[1:]
    expect = np.sort(np.concatenate([[1 - lr_a, 1.0], 1 - lr / s**2 * lam_star]))
    assert np.allclose(np.sort(np.linalg.eigvals(jac).real), expect, atol=1e-7)
    with pytest.raises(ValueError, match="h"):
        linearize.step_jacobian(problem, lr, lr_a, a, w, h=0.0)


def test_mode_coordinates_are_multiplied_by_the_predicted_factors(problem, rng):
    """One real BNGD step near a minimiser multiplies each coordinate by 1 − ε̂λ*_i, up to
    an error of second order in the distance to u*."""
    lr, lr_a, s = 0.4, 0.6, 1.3
    lam_hand = np.linalg.eigvalsh(_h_star_by_hand(problem))[1:]
    a_star = float(problem.h_norm(problem.u_star))
    misses, direction = [], rng.standard_normal(problem.d + 1)
    for delta in (1e-3, 1e-4):
        kick = delta * direction
        a0, w0 = a_star + kick[0], s * problem.u_star + kick[1:]
        run = bngd(problem, lr, 1, a0, w0, lr_a=lr_a)
        lam_star, c = linearize.mode_coordinates(problem, problem.bn_to_ols(run.a, run.w))
        eps_hat = lr * a0**2 / float(problem.h_norm(w0)) ** 2
        misses.append(np.max(np.abs(c[1] - (1 - eps_hat * lam_star) * c[0])) / delta)
        assert np.allclose(lam_star, lam_hand)
    assert misses[1] < 0.2 * misses[0]                  # the miss is O(delta^2)
    # an error along u* has no coordinates on the modes
    _, c_along = linearize.mode_coordinates(problem, 1.2 * problem.u_star)
    assert np.allclose(c_along, 0, atol=1e-12)
    with pytest.raises(ValueError, match="u must have shape"):
        linearize.mode_coordinates(problem, np.ones(problem.d + 1))


def test_wn_jacobian_against_finite_differences(problem):
    from test_descent import fd_grad, naive_wngd  # the naive WNGD loop of the run tests

    from bnlib import wn_jacobian, wn_rate

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


@pytest.mark.parametrize(("jump", "steady"), [(0.5, True), (2.0, False)])
def test_contraction_steady_flag_at_its_tolerance(jump, steady):
    """A tail made of two geometric halves whose log-slopes differ by ``jump`` times the
    tolerance rtol·max|slope| is steady below the tolerance and not above it (the two halves
    are the two halves of the fitted tail, split at its middle)."""
    from bnlib import contraction

    rtol, s1 = 0.05, -0.2
    s2 = s1 * (1 + jump * rtol)                    # |s1 - s2| = jump · rtol · |s1|
    n = 400                                        # tail=0.5: the fit is the last 200 points
    k = np.arange(n)
    logh = np.where(k < 300, s1 * k, s1 * 300 + s2 * (k - 300))
    c = contraction(np.exp(logh), rtol=rtol, rel_floor=1e-300, min_decay=1.0)
    assert bool(c.steady) is steady


@pytest.mark.parametrize("kink", [240, 300, 330, 370])
def test_contraction_fits_the_last_half_and_splits_it_at_its_middle(kink):
    """A log-history bending at ``kink`` inside the fitted tail (n = 400: the last 200
    points). The rate is the least-squares slope over exactly those 200 points, and steady
    is decided by the slopes of points 200–299 against 300–399 (np.polyfit on each): a
    kink at 300 separates them completely, one elsewhere mixes one half."""
    from bnlib import contraction

    n, rtol, s1, s2 = 400, 0.05, -0.2, -0.212            # |s1 - s2| = 1.2 · rtol · |s1|
    k = np.arange(n)
    logh = np.where(k < kink, s1 * k, s1 * kink + s2 * (k - kink))
    c = contraction(np.exp(logh), rtol=rtol, rel_floor=1e-300, min_decay=1.0)
    fit = np.polyfit(k[200:], logh[200:], 1)[0]
    h1, h2 = np.polyfit(k[200:300], logh[200:300], 1)[0], np.polyfit(k[300:], logh[300:], 1)[0]
    agree = bool(abs(h1 - h2) <= rtol * max(abs(h1), abs(h2)))
    assert c.points == 200
    assert np.isclose(c.rate, np.exp(fit), rtol=1e-12)
    assert bool(c.steady) is agree
    assert agree is (kink != 300)    # the cases are not all alike


@pytest.mark.parametrize(("factor", "steady"), [(0.99, True), (1.01, False)])
def test_contraction_min_decay_is_the_fall_across_the_fitted_tail(factor, steady):
    """h = ρ^k, n = 400: the fit is the last 200 points, over which h falls by ρ^-199 (from
    h[200] to the last entry h[399]); steady holds for min_decay just below that, not above."""
    from bnlib import contraction

    rho = 0.95
    h = rho ** np.arange(400.0)
    c = contraction(h, rel_floor=1e-300, min_decay=factor * rho**-199.0)
    assert c.points == 200 and np.isclose(c.rate, rho, rtol=1e-12)
    assert bool(c.steady) is steady


def test_contraction_of_a_constant_history():
    """Nothing changes: rate 1; with min_decay = 1 (a fall by a factor 1 is enough) it is
    steady, the two halves' slopes being both 0, which agree."""
    from bnlib import contraction

    c = contraction(np.full(50, 0.3), min_decay=1.0)
    assert c.rate == 1.0 and c.points == 25 and bool(c.steady)
    assert not bool(contraction(np.full(50, 0.3), min_decay=1.5).steady)
