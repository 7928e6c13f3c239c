"""GD and BNGD runs against independent computations."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bnlib
from bnlib import OLS, WNGDRun, bngd, eigen_problem, gd, wn_grad, wn_kappa, wn_loss, wngd, wngd_stack
from tools.probe import unit_roundoff

# the rounding unit of the arithmetic in use (2**-53, or the rounding probe's delta):
# rounding-level tolerances below are multiples of it
U = unit_roundoff()


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



@pytest.mark.parametrize("record", ["all", "loss"])
def test_tol_stop_keeps_the_rows_of_the_full_run(problem, record):
    # the records grow while a tol run goes on and are cut where it stops; with divergent
    # runs (masked, then dropped once they are 1/8 of the columns) every row must equal the
    # same row of the run without tol, which is written at full length from the start
    lrs = np.array([0.3, 0.5, 0.9, 2.5, 3.0, 4.0]) / problem.eigvals[-1]
    short = gd(problem, lrs, 5000, np.ones(problem.d), tol=1e-6, record=record)
    L = short.loss.shape[0]
    assert 200 < L < 5001 and short.diverged.tolist() == [False] * 3 + [True] * 3
    full = gd(problem, lrs, L - 1, np.ones(problem.d), record=record)
    for name in ("loss", "excess") + (("w",) if record == "all" else ()):
        assert np.array_equal(getattr(short, name), getattr(full, name), equal_nan=True), name
    assert np.isinf(short.loss[-1, 3:]).all() and np.isnan(short.w_final[3:]).all()


@pytest.mark.parametrize("divergent", [0, 1])
def test_tol_stop_includes_a_tie(problem, divergent):
    # the stop is "every live run has excess <= tol": with tol equal to the largest live
    # excess at step k (read off the run without tol, which takes the very same steps) the
    # run stops right there, also while a diverged run is masked (one of nine columns: too
    # few to be dropped); GD's excess decreases strictly, so no earlier step qualifies
    lrs = np.append(np.linspace(0.2, 0.9, 8), [3.0][:divergent]) / problem.eigvals[-1]
    full = gd(problem, lrs, 120, np.ones(problem.d), record="loss")
    live = ~full.diverged
    assert live.sum() == 8 and np.all(np.isinf(full.excess[100, ~live]))
    worst = full.excess[:, live].max(axis=1)
    assert np.all(np.diff(worst[:101]) < 0)
    short = gd(problem, lrs, 120, np.ones(problem.d), tol=worst[100], record="loss")
    assert short.loss.shape[0] == 101
    assert np.array_equal(short.excess, full.excess[:101])


def _mp_gd_excess(problem, w, digits=40):
    """J0(w) − J* = ½ (w − u*)ᵀH(w − u*) in mpmath at ``digits`` digits (w taken exactly)."""
    import mpmath

    with mpmath.workdps(digits):
        H = mpmath.matrix(problem.H.tolist())
        e = mpmath.matrix(list(w)) - mpmath.matrix(problem.u_star.tolist())
        return float((e.T * H * e)[0] / 2)


def test_excess_is_accurate_near_the_minimum(problem):
    """Against 40-digit arithmetic on the same iterates: the rounding error of the excess
    ½ (w − u*)ᵀ(Hw − g) is about ε_mach · ‖w − u*‖ · ‖H‖‖w‖, i.e. it shrinks like
    sqrt(excess) instead of stalling at the rounding error of J0 itself (~1e-16 · J0)."""
    run = gd(problem, 1.0 / problem.eigvals[-1], 3000, tol=1e-26)
    assert run.excess[-1] <= 1e-26
    ks = np.unique(np.geomspace(1, run.excess.shape[0] - 1, 30).astype(int))
    ref = np.array([_mp_gd_excess(problem, run.w[k]) for k in ks])
    assert ref.min() < 1e-25 * (U / 2**-53) ** 2 and ref.max() > 1e-2   # floors scale as U²
    assert np.all(np.abs(run.excess[ks] - ref) <= 1e3 * U * (np.sqrt(ref) + ref))
    big = ref > 1e-6
    assert np.allclose(run.excess[ks][big], ref[big], rtol=1e7 * U)


# ---------------------------------------------------------------- BNGD
def test_bngd_matches_naive_loop(problem, rng):
    w0 = rng.standard_normal(problem.d)
    for lr, lr_a in [(0.1, 1.0), (10.0, 0.5), (1e4, 0.1)]:
        run = bngd(problem, lr, 25, 0.3, w0, lr_a=lr_a)
        a, w = naive_bngd(problem.H, problem.g, 0.3, w0, lr, lr_a, 25)
        assert np.allclose(run.a, a, rtol=1e6 * U, atol=1e4 * U)
        assert np.allclose(run.w, w, rtol=1e6 * U, atol=1e4 * U)
        assert np.allclose(run.loss, problem.bn_loss(a, w), rtol=1e6 * U)
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
    assert np.allclose(scaled.a, base.a, rtol=1e7 * U, atol=1e4 * U)
    assert np.allclose(scaled.w, r * base.w, rtol=1e7 * U, atol=1e4 * U * r)
    assert np.allclose(scaled.lr_eff, base.lr_eff, rtol=1e7 * U)


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


# ---------------------------------------------------------------- sweeps: accuracy, pruning, stacks
def _mp_excess(problem, a, w, digits=40):
    """J(a, w) − J* = ½ (u − u*)ᵀH(u − u*), u = a w/‖w‖_H, in mpmath at ``digits`` digits."""
    import mpmath

    with mpmath.workdps(digits):
        H = mpmath.matrix(problem.H.tolist())
        u_star = mpmath.matrix(problem.u_star.tolist())
        w = mpmath.matrix(list(w))
        n = mpmath.sqrt((w.T * H * w)[0])
        e = mpmath.mpf(a) / n * w - u_star
        return float((e.T * H * e)[0] / 2)


def test_bngd_excess_is_accurate_near_the_minimum(problem, rng):
    """Against 40-digit arithmetic: the error shrinks with the excess itself (about
    1e-16 · sqrt(excess)) instead of stalling at the rounding error of J ≈ J*."""
    w0 = rng.standard_normal(problem.d)
    run = bngd(problem, 1.0, 5000, 0.5, w0, tol=1e-26)
    assert run.excess[-1] <= 1e-26
    ks = np.unique(np.geomspace(1, run.excess.shape[0] - 1, 30).astype(int))
    ref = np.array([_mp_excess(problem, run.a[k], run.w[k]) for k in ks])
    assert ref.min() < 1e-25 * (U / 2**-53) ** 2 and ref.max() > 1e-2   # floors scale as U²
    assert np.all(np.abs(run.excess[ks] - ref) <= 1e3 * U * (np.sqrt(ref) + ref))
    big = ref > 1e-6
    assert np.allclose(run.excess[ks][big], ref[big], rtol=1e7 * U)


def test_gd_sweep_with_many_divergent_runs_equals_single_runs(problem, rng):
    """Runs that diverge at different steps are dropped from the batch; the survivors and
    every recorded row must be unaffected."""
    w0 = rng.standard_normal(problem.d)
    edge = 2 / problem.eigvals[-1]
    lrs = edge * np.array([0.3, 1.02, 0.9, 1.05, 3.0, 1.2, 100.0, 0.99, 1.5, 1e4])
    batch = gd(problem, lrs, 600, w0)
    lean = gd(problem, lrs, 600, w0, record="loss")
    assert list(batch.diverged) == [False, True, False, True, True, True, True, False, True, True]
    k_dead = np.argmax(np.isinf(batch.loss), axis=0)
    assert len(set(k_dead[batch.diverged])) >= 5          # dropped from the batch one by one
    for m, lr in enumerate(lrs):
        one = gd(problem, lr, 600, w0)
        assert np.allclose(batch.loss[:, m], one.loss, rtol=1e4 * U)
        assert np.allclose(batch.excess[:, m], one.excess, rtol=1e4 * U)
        assert np.allclose(batch.w[:, m], one.w, rtol=1e4 * U, equal_nan=True)
        assert np.allclose(batch.w_final[m], one.w_final, equal_nan=True)
        assert np.allclose(lean.w_final[m], one.w_final, equal_nan=True)
    for m in np.flatnonzero(batch.diverged):
        assert np.isnan(batch.w[k_dead[m]:, m]).all() and np.isfinite(batch.w[: k_dead[m], m]).all()
    _same_to_rounding(lean, batch, ("loss", "excess"))
    assert np.array_equal(batch.steps_to(1e-3), [gd(problem, lr, 600, w0).steps_to(1e-3) for lr in lrs])


def test_bngd_sweep_with_divergent_runs_equals_single_runs(problem, rng):
    w0 = rng.standard_normal(problem.d)
    lr_a = np.array([0.5, 2.5, 1.0, 3.0, 2.2, 1.9])     # ε_a ≥ 2 diverges
    batch = bngd(problem, 0.2, 300, 0.3, w0, lr_a=lr_a)
    lean = bngd(problem, 0.2, 300, 0.3, w0, lr_a=lr_a, record="loss")
    assert list(batch.diverged) == [False, True, False, True, True, False]
    for m, la in enumerate(lr_a):
        one = bngd(problem, 0.2, 300, 0.3, w0, lr_a=la)
        for name in ("loss", "excess", "lr_eff", "w_norm", "a", "w"):
            # runs that blow up amplify a last-bit difference between the two paths
            assert np.allclose(getattr(batch, name)[:, m], getattr(one, name), rtol=1e7 * U,
                               equal_nan=True), name
        assert np.allclose(lean.a_final[m], one.a_final, equal_nan=True)
    _same_to_rounding(lean, batch, ("loss", "excess", "lr_eff", "w_norm"), tol=1e7)   # as above


# record="loss" runs in H's eigenbasis, record="all" in the original one: they differ by the
# rounding of the rotation and of O(d) instead of O(d²) sums, as a batch and a single run
# differ by their summation orders, and the dynamics carry it alike: ~1e2 U on converging
# runs, up to 1.2e4 U (1.1e4 U under the probe) on the test's runs that diverge or sit near
# their edge, which amplify it. TOL = 1e5 rounding units U (1e-11 relative) bounds that;
# a wrong rotation errs by O(1).
TOL = 1e5


def _same_to_rounding(lean, full, names, tol=TOL):
    """``lean`` (record="loss") and ``full`` (record="all") are the same runs to rounding.

    The same runs diverge at the same step; ``names`` and ``w_final`` (relative to each run's
    largest |w|) agree to ``tol`` · U relative, the excess, whose error is that of the
    iterate times ‖H (w − u*)‖ ~ sqrt(excess), to ``tol`` · U (√e + e).
    """
    assert np.array_equal(lean.diverged, full.diverged)
    for name in names + ("w_final",):
        x, y = np.asarray(getattr(lean, name)), np.asarray(getattr(full, name))
        assert np.array_equal(np.isfinite(x), np.isfinite(y)), name
        ok = np.isfinite(y)
        if name == "w_final":
            scale = np.broadcast_to(np.max(np.abs(y), axis=-1, keepdims=True), y.shape)
        elif name == "excess":
            scale = np.sqrt(np.abs(y)) + np.abs(y)
        else:
            scale = np.abs(y)
        err = np.abs(x[ok] - y[ok]) / (U * scale[ok])
        assert np.all(err <= tol), (name, err.max())


def _problems(d=5, S=3):
    return [OLS.random(d, 30.0, seed=s, noise=0.2) for s in range(S)]


def test_bngd_stack_matches_naive_loops(rng):
    problems = _problems()
    w0 = rng.standard_normal((3, 1, 5))                 # one start per problem
    lrs = np.array([0.05, 1.0, 30.0, 1e3])
    run = bnlib.bngd_stack(problems, lrs[None, :], 20, 0.4, w0, lr_a=0.7)
    assert run.w.shape == (21, 3, 4, 5) and run.loss.shape == (21, 3, 4)
    assert run.diverged.shape == (3, 4) and run.lr.shape == (3, 4) and run.a_final.shape == (3, 4)
    # 20 steps up to lr = 1e3 amplify a rounding difference between the two orders of
    # summation about 1e4-fold (measured: 7e3 U plainly, 2e4 U under the probe), so the
    # tolerance is 1e5 rounding units, relative to each run's largest |w|
    tol = 1e5 * U
    for s, p in enumerate(problems):
        for m, lr in enumerate(lrs):
            a, w = naive_bngd(p.H, p.g, 0.4, w0[s, 0], lr, 0.7, 20)
            assert np.allclose(run.a[:, s, m], a, rtol=tol, atol=0.0)
            assert np.allclose(run.w[:, s, m], w, rtol=tol, atol=tol * np.abs(w).max())
            assert np.allclose(run.loss[:, s, m], p.bn_loss(a, w), rtol=1e-10)
            assert np.allclose(run.excess[:, s, m], p.bn_loss(a, w) - p.min_loss, rtol=1e-6, atol=1e-12)


def test_gd_stack_closed_form(rng):
    problems = _problems()
    w0 = rng.standard_normal(5)                         # shared start
    lrs = np.array([0.3, 1.0, 2.5]) / 30.0              # the last one diverges (λ_max = 30)
    run = bnlib.gd_stack(problems, lrs[None, :], 40, w0)
    assert run.loss.shape == (41, 3, 3) and run.w_final.shape == (3, 3, 5)
    assert run.diverged[:, 2].all() and not run.diverged[:, :2].any()
    for s, p in enumerate(problems):
        for m, lr in enumerate(lrs[:2]):
            M = np.eye(5) - lr * p.H
            expect = p.u_star + np.linalg.matrix_power(M, 40) @ (w0 - p.u_star)
            assert np.allclose(run.w_final[s, m], expect, atol=1e-12)
            assert np.allclose(run.loss[:, s, m], p.loss(run.w[:, s, m]), rtol=1e-10)


def test_stack_batch_shape_rules(rng):
    problems = _problems()
    w0 = rng.standard_normal(5)
    assert bnlib.bngd_stack(problems, 1.0, 3, 1.0, w0).loss.shape == (4, 3)
    paired = bnlib.bngd_stack(problems, np.array([0.1, 1.0, 10.0]), 3, 1.0, w0)   # lr s ↔ problem s
    assert paired.loss.shape == (4, 3) and np.allclose(paired.lr, [0.1, 1.0, 10.0])
    one = bngd(problems[1], 1.0, 3, 1.0, w0)
    assert np.allclose(paired.loss[:, 1], one.loss, rtol=1e-12)
    grid = bnlib.bngd_stack(problems, np.ones((1, 4, 2)), 3, 1.0, w0, lr_a=np.ones(2))
    assert grid.loss.shape == (4, 3, 4, 2)
    with pytest.raises(ValueError, match="problem axis"):
        bnlib.bngd_stack(problems, np.ones(4), 3, 1.0, w0)
    with pytest.raises(ValueError, match="problem axis"):
        bnlib.gd_stack(problems[:1], np.ones(4), 3)     # S = 1 still needs lr[None, :]
    assert bnlib.gd_stack(problems[:1], np.ones((1, 4)) * 0.01, 3).loss.shape == (4, 1, 4)


def test_stack_divergence_and_tol(rng):
    problems = _problems()
    w0 = rng.standard_normal((3, 1, 5))
    lr_a = np.array([[1.0], [2.5], [0.5]])              # problem 1's runs diverge
    run = bnlib.bngd_stack(problems, np.array([[0.1, 10.0]]), 200, 1.0, w0, lr_a=lr_a,
                           record="loss")
    assert run.diverged.tolist() == [[False, False], [True, True], [False, False]]
    assert np.isinf(run.loss[-1, 1]).all() and np.isnan(run.a_final[1]).all()
    fast = bnlib.bngd_stack(problems, np.array([[0.1, 10.0]]), 100_000, 1.0, w0, tol=1e-8)
    assert fast.loss.shape[0] < 100_001 and np.all(fast.excess[-1] <= 1e-8)
    steps = fast.steps_to(1e-8)
    assert steps.shape == (3, 2) and np.all(np.isfinite(steps))
    for s, p in enumerate(problems):
        assert steps[s, 1] == bngd(p, 10.0, 100_000, 1.0, w0[s, 0], tol=1e-8).steps_to(1e-8)


@pytest.mark.parametrize(
    "problems, kwargs, err, match",
    [
        ([], {}, ValueError, "at least one"),
        ("abc", {}, TypeError, "problems\\[0\\] must be a bnlib.OLS"),
        (3, {}, TypeError, "sequence"),
        (None, {}, TypeError, "sequence"),
        ([OLS.random(5, 2.0, seed=0), OLS.random(4, 2.0, seed=0)], {}, ValueError, "dimension"),
        ([OLS.random(5, 2.0, seed=0), np.eye(5)], {}, TypeError, "problems\\[1\\]"),
        ([OLS.random(5, 2.0, seed=0)], dict(lr=-1.0), ValueError, "lr must be > 0"),
        ([OLS.random(5, 2.0, seed=0)], dict(w0=np.ones(4)), ValueError, "w0 must have shape"),
        ([OLS.random(5, 2.0, seed=0)] * 2, dict(w0=np.array([np.ones(5), np.zeros(5)])),
         ValueError, "w0 must be nonzero"),
        ([OLS.random(5, 2.0, seed=0)], dict(record="w"), ValueError, "record"),
    ],
)
def test_bngd_stack_bad_input(problems, kwargs, err, match):
    args = dict(lr=0.1, steps=5, a0=1.0, w0=np.ones(5))
    args.update(kwargs)
    with pytest.raises(err, match=match):
        bnlib.bngd_stack(problems, **args)


def test_stack_rejects_a_single_problem():
    p = OLS.random(5, 2.0, seed=0)
    with pytest.raises(TypeError, match="single problem use gd/bngd"):
        bnlib.gd_stack(p, 0.1, 5)
    with pytest.raises(ValueError, match="w0 must be finite"):
        bnlib.gd_stack([p], 0.1, 5, w0=np.full(5, np.nan))


def test_diagonal_problem_equals_rotated_dense_problem(rng):
    """GD and BNGD commute with rotations: the run on (QΛQᵀ, Qg, Qw0) is Q times the run on
    (Λ, g, w0). The diagonal problem takes the elementwise path, the rotated one the matrix
    product, so this checks both against each other."""
    d = 7
    lam = np.linspace(1.0, 40.0, d)
    u = rng.standard_normal(d)
    diag = OLS(np.diag(lam), lam * u, u @ (lam * u) + 0.3)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    dense = OLS(Q @ np.diag(lam) @ Q.T, Q @ (lam * u), diag.c)
    w0 = rng.standard_normal((3, d))
    lrs = np.array([0.01, 1.0, 100.0])
    a, b = bngd(diag, lrs, 60, 0.5, w0), bngd(dense, lrs, 60, 0.5, w0 @ Q.T)
    assert np.allclose(a.excess, b.excess, rtol=1e-7, atol=1e-13)
    assert np.allclose(a.w @ Q.T, b.w, rtol=1e-8, atol=1e-10)
    assert np.allclose(a.lr_eff, b.lr_eff, rtol=1e-8)
    for lr in lrs:                                    # the diagonal path against the naive loop
        a_n, w_n = naive_bngd(diag.H, diag.g, 0.5, w0[0], lr, 1.0, 60)
        assert np.allclose(bngd(diag, lr, 60, 0.5, w0[0]).w, w_n, rtol=1e-10, atol=1e-12)
    lrs_gd = np.array([0.01, 0.049, 0.06])            # 2/λ_max = 0.05
    ga, gb = gd(diag, lrs_gd, 80, w0), gd(dense, lrs_gd, 80, w0 @ Q.T)
    assert np.allclose(ga.loss, gb.loss, rtol=1e-9) and list(ga.diverged) == [False, False, True]
    stacked = bnlib.bngd_stack([diag, dense], lrs[None, :], 60, 0.5, w0[0])   # mixed: dense path
    assert np.allclose(stacked.excess[:, 1], bngd(dense, lrs, 60, 0.5, w0[0]).excess,
                       rtol=1e-10, atol=1e-14)
    both_diag = bnlib.bngd_stack([diag, diag], lrs[None, :], 60, 0.5, w0[:2, None, :])
    assert np.allclose(both_diag.excess[:, 1], bngd(diag, lrs, 60, 0.5, w0[1]).excess,
                       rtol=1e-10, atol=1e-14)


def test_steps_to_with_an_array_of_tolerances(problem, rng):
    w0 = rng.standard_normal(problem.d)
    run = bngd(problem, np.array([0.1, 1.0, 10.0]), 400, 1.0, w0, record="loss")
    tols = np.array([1e-3, 1e-6, 1e-9])
    by_array = run.steps_to(tols)
    for m, t in enumerate(tols):
        hit = np.flatnonzero(run.excess[:, m] <= t)          # independent: first index by hand
        assert by_array[m] == (hit[0] if hit.size else np.inf)
    assert np.array_equal(run.steps_to(1e-6), run.steps_to(np.full(3, 1e-6)))
    with pytest.raises(ValueError, match="does not broadcast"):
        run.steps_to(np.ones(4) * 1e-3)
    with pytest.raises(ValueError, match="tol must be > 0"):
        run.steps_to(np.array([1e-3, 0.0, 1e-3]))
    single = bngd(problem, 1.0, 50, 1.0, w0)
    with pytest.raises(ValueError, match="does not broadcast"):
        single.steps_to(np.ones(2) * 1e-3)
    assert isinstance(single.steps_to(1e-3), float)


# ---------------------------------------------------------------- weight decay and momentum
def naive_heavy_bngd(H, g, a, w, lr, lr_a, steps, decay, mom):
    """Heavy-ball BNGD on J + υ‖w‖²/2 written out with velocities, one run at a time:
    v ← ς v + ∇, θ ← θ − ε v (the framework form), the decay on w only."""
    va, vw = 0.0, np.zeros_like(w)
    a_s, w_s = [a], [w.copy()]
    for _ in range(steps):
        n2 = w @ H @ w
        da = a - w @ g / np.sqrt(n2)
        dw = -a / np.sqrt(n2) * (g - (w @ g / n2) * (H @ w)) + decay * w
        va, vw = mom * va + da, mom * vw + dw
        a, w = a - lr_a * va, w - lr * vw
        a_s.append(a)
        w_s.append(w.copy())
    return np.array(a_s), np.array(w_s)


def test_heavy_defaults_are_the_plain_runs_bitwise(problem, rng):
    w0 = rng.standard_normal(problem.d)
    lrs = np.logspace(-2, 3, 6)
    base = bngd(problem, lrs, 40, 0.5, w0)
    for kw in (dict(weight_decay=0.0), dict(momentum=0.0), dict(weight_decay=0, momentum=0)):
        run = bngd(problem, lrs, 40, 0.5, w0, **kw)
        for f in ("w", "a", "loss", "excess", "lr_eff", "w_norm"):
            assert np.array_equal(getattr(run, f), getattr(base, f), equal_nan=True)
    g0 = gd(problem, lrs, 40)
    g1 = gd(problem, lrs, 40, weight_decay=0.0, momentum=0.0)
    assert np.array_equal(g0.w, g1.w, equal_nan=True)
    assert np.array_equal(g0.excess, g1.excess)


@pytest.mark.parametrize("decay, mom", [(0.03, 0.0), (0.0, 0.9), (0.01, 0.5)])
def test_heavy_bngd_matches_naive_loop(problem, rng, decay, mom):
    w0 = rng.standard_normal(problem.d)
    lrs = np.array([0.05, 0.7, 4.0])
    # 20 steps and a loose tolerance: with decay the runs reach the stability edge, where
    # rounding differences between the loop and the engine grow by decades within 60 steps
    # (a wrong update differs at O(1))
    run = bngd(problem, lrs, 20, 0.8, w0, lr_a=0.6, weight_decay=decay, momentum=mom)
    for j, lr in enumerate(lrs):
        a_s, w_s = naive_heavy_bngd(problem.H, problem.g, 0.8, w0, lr, 0.6, 20, decay, mom)
        assert np.allclose(run.w[:, j], w_s, rtol=1e-7, atol=1e-10)
        assert np.allclose(run.a[:, j], a_s, rtol=1e-7, atol=1e-10)


def test_heavy_options_broadcast_with_the_batch(problem, rng):
    w0 = rng.standard_normal(problem.d)
    lrs = np.array([0.1, 1.0])
    decays = np.array([[0.0], [0.02], [0.05]])                  # batch shape (3, 2)
    run = bngd(problem, lrs, 20, 1.0, w0, weight_decay=decays, momentum=0.3)
    assert run.loss.shape == (21, 3, 2)
    for i, dcy in enumerate(decays[:, 0]):
        _, w_s = naive_heavy_bngd(problem.H, problem.g, 1.0, w0, lrs[1], 1.0, 20, dcy, 0.3)
        assert np.allclose(run.w[:, i, 1], w_s, rtol=1e-7, atol=1e-10)
    stack = bnlib.bngd_stack(_problems(), 0.5, 20, 1.0, np.ones(5),
                             weight_decay=np.array([0.0, 0.01, 0.1])[:, None])
    for s, p in enumerate(_problems()):
        dcy = [0.0, 0.01, 0.1][s]
        _, w_s = naive_heavy_bngd(p.H, p.g, 1.0, np.ones(5), 0.5, 1.0, 20, dcy, 0.0)
        assert np.allclose(stack.w[:, s, 0], w_s, rtol=1e-7, atol=1e-10)


def test_decayed_norm_recursion_on_runs(problem, rng):
    """‖w_{k+1}‖² = (1 − ευ)²‖w_k‖² + ε²‖∇_w J‖², the gradient from the closed form."""
    w0 = rng.standard_normal(problem.d)
    lr, decay = 0.3, 0.05
    run = bngd(problem, lr, 50, 0.7, w0, weight_decay=decay)
    for k in range(50):
        a, w = run.a[k], run.w[k]
        n2 = w @ problem.H @ w
        grad = -a / np.sqrt(n2) * (problem.g - (w @ problem.g / n2) * (problem.H @ w))
        rhs = (1 - lr * decay) ** 2 * (w @ w) + lr**2 * (grad @ grad)
        assert np.isclose(run.w_norm[k + 1] ** 2, rhs, rtol=1e-12)


def test_heavy_gd_converges_to_the_ridge_solution(problem):
    """GD with weight decay υ (and momentum) minimises J0 + υ‖w‖²/2: w → (H + υI)⁻¹g."""
    decay = 0.2
    ridge = np.linalg.solve(problem.H + decay * np.eye(problem.d), problem.g)
    edge = 2 / (np.linalg.eigvalsh(problem.H).max() + decay)
    run = gd(problem, np.array([0.5, 0.9]) * edge, 3000, weight_decay=decay, momentum=0.5)
    assert np.allclose(run.w_final, ridge, rtol=1e-10, atol=1e-12)
    # GD's plain recursion with momentum, written out
    w, s = np.zeros(problem.d), np.zeros(problem.d)
    lr = 0.5 * edge
    for _ in range(25):
        s = 0.5 * s - lr * (problem.H @ w - problem.g + decay * w)
        w = w + s
    short = gd(problem, lr, 25, weight_decay=decay, momentum=0.5)
    assert np.allclose(short.w_final, w, rtol=1e-12, atol=1e-14)


def test_decayed_scaling_law(problem, rng):
    """(a0, r w0, r²ε, υ/r²) runs as (a_k, r w_k): only ευ and ε/‖w0‖² matter."""
    w0 = rng.standard_normal(problem.d)
    base = bngd(problem, 0.4, 80, 0.9, w0, weight_decay=0.01, momentum=0.5)
    r = 4.0
    big = bngd(problem, 0.4 * r**2, 80, 0.9, r * w0, weight_decay=0.01 / r**2, momentum=0.5)
    assert np.allclose(big.w, r * base.w, rtol=1e-12, atol=0)
    assert np.allclose(big.excess, base.excess, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("kwargs, match", [
    (dict(weight_decay=-0.1), "weight_decay"), (dict(momentum=1.0), "momentum"),
    (dict(momentum=-0.1), "momentum"), (dict(weight_decay=np.nan), "weight_decay"),
    (dict(weight_decay=np.ones(3)), "broadcast")])
def test_heavy_bad_input(problem, kwargs, match):
    with pytest.raises(ValueError, match=match):
        bngd(problem, np.ones(2), 3, 1.0, np.ones(problem.d), **kwargs)
    with pytest.raises(ValueError, match=match):
        gd(problem, np.ones(2), 3, **kwargs)


# ---- weight normalization (WNGD) runs, against independent computations


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


def test_steps_to_counts_an_excess_equal_to_tol(problem, rng):
    """'First k with excess <= tol': a tol equal to a recorded excess is reached at that step."""
    run = gd(problem, np.array([0.01, 0.03]), 50, rng.standard_normal(problem.d), record="loss")
    for m in range(2):
        tol = run.excess[20, m]
        assert run.steps_to(np.array([tol, tol]))[m] == np.flatnonzero(run.excess[:, m] <= tol)[0]
        assert np.all(run.excess[:20, m] > tol)                 # strictly decreasing: k = 20


def test_divergence_is_flagged_at_blowup_times_the_larger_of_the_start_loss_and_c_half(problem):
    """GD beyond its edge from w0 = 0 (J0 = c/2), from a far start (J0 > c/2) and from near u*
    (J0 < c/2): the loss is recorded up to the last step with J0 <= blowup · max(J0(w0), c/2),
    computed here by iterating e ← (I − εH) e with numpy, and is inf from the next one."""
    H, u = problem.H, problem.u_star
    lr = 1.1 * 2 / np.linalg.eigvalsh(H)[-1]
    for w0 in (np.zeros(problem.d), 30 * u, 0.9 * u):
        e, losses = w0 - u, []
        for _ in range(61):
            losses.append(problem.min_loss + 0.5 * e @ H @ e)
            e = e - lr * (H @ e)
        limit = 100.0 * max(losses[0], 0.5 * problem.c)
        first = int(np.argmax(np.array(losses) > limit))
        assert 0 < first < 60
        run = gd(problem, lr, 60, w0, record="loss", blowup=100.0)
        assert run.diverged
        assert np.all(np.isfinite(run.loss[:first])) and np.all(np.isinf(run.loss[first:]))


@pytest.mark.parametrize("method", ["gd", "bngd"])
def test_a_loss_exactly_at_the_divergence_limit_does_not_exceed_it(problem, method):
    """'Exceeds' is strict: blowup chosen so that blowup · max(J(start), c/2) equals, in
    floating point, the loss of a diverging run (GD beyond its edge, BNGD with ε_a = 2.5) at
    its first step k above 1.5 times that maximum; step k lives, step k + 1 is flagged."""
    w0 = np.ones(problem.d)
    if method == "gd":
        lr = 1.3 * 2 / np.linalg.eigvalsh(problem.H)[-1]
        run_with = lambda blowup: gd(problem, lr, 40, w0, record="loss", blowup=blowup)  # noqa: E731
    else:
        run_with = lambda blowup: bngd(problem, 0.1, 40, 1.0, w0, lr_a=2.5, record="loss",  # noqa: E731
                                       blowup=blowup)
    free = run_with(1e300)
    start = max(free.loss[0], 0.5 * problem.c)
    k = int(np.argmax(free.loss > 1.5 * start))
    target = free.loss[k]
    b = target / start
    blowup = next(x for x in (b, np.nextafter(b, 0), np.nextafter(b, np.inf)) if x * start == target)
    assert 0 < k < 39 and np.all(free.loss[:k] < target) and free.loss[k + 1] > target
    run = run_with(blowup)
    assert np.all(np.isfinite(run.loss[:k + 1])) and np.all(np.isinf(run.loss[k + 1:]))


@pytest.mark.parametrize("method", ["gd", "bngd", "wngd"])
def test_record_loss_matches_record_all_on_a_dense_problem(rng, method):
    """Without iterates a run is computed in H's eigenbasis: the same runs as record="all"
    (the dense path) to rounding, diverged ones included, one problem or a stack."""
    problems = [OLS.random(8, 40.0, seed=s, noise=0.3) for s in range(3)]
    assert not any(np.allclose(p.H, np.diag(np.diagonal(p.H))) for p in problems)
    w0 = rng.standard_normal(8)
    if method == "gd":
        lrs = np.array([0.1, 0.6, 1.2, 3.0]) * 2 / 40.0     # edge 2/λ_max: two diverge
        one = lambda p, w, record: gd(p, lrs, 300, w, record=record, momentum=0.2)  # noqa: E731
        stack = lambda w, record: bnlib.gd_stack(problems, lrs[None, :], 300, w, record=record)  # noqa: E731
    else:
        lrs, lr_a = np.array([0.02, 0.2])[:, None], np.array([0.5, 1.0, 3.0])   # ε_a > 2 diverges
        if method == "wngd":                   # J_WN's curvature in a is up to λ_max = 40
            lrs, lr_a = lrs / 4, np.array([0.005, 0.02, 2.0])
        kw = dict(weight_decay=1e-3) if method == "bngd" else {}
        f, f_stack = (bngd, bnlib.bngd_stack) if method == "bngd" else (wngd, wngd_stack)
        one = lambda p, w, record: f(p, lrs, 300, 0.5, w, lr_a=lr_a, record=record, **kw)  # noqa: E731
        stack = lambda w, record: f_stack(problems, lrs[None], 300, 0.5, w, lr_a=lr_a[None],  # noqa: E731
                                          record=record)
    for p in problems:
        lean, full = one(p, w0, "loss"), one(p, w0, "all")
        assert lean.w is None and full.diverged.any() and not full.diverged.all()
        _same_to_rounding(lean, full, ("loss", "excess") if method == "gd" else
                          ("loss", "excess", "lr_eff", "w_norm", "a_final"))
    lean, full = stack(w0, "loss"), stack(w0, "all")
    assert full.loss.shape[1] == 3 and full.diverged.any() and not full.diverged.all()
    _same_to_rounding(lean, full, ("loss", "excess") if method == "gd" else
                      ("loss", "excess", "lr_eff", "w_norm", "a_final"))


def test_bngd_rejects_a_w0_whose_h_norm_underflows():
    """BN divides by ‖w‖_H: a w0 ≠ 0 with ‖w0‖²_H = 0 in floating point (1e-320 · 1e-4
    underflows) is rejected like w0 = 0, on a diagonal (eigenbasis) problem as on a dense one."""
    from bnlib import eigen_problem

    p = eigen_problem(np.array([1e-4, 1.0]), seed=0)
    w0 = np.array([1e-160, 0.0])
    assert w0 @ p.H @ w0 == 0.0 and np.all(np.diag(p.H) == [1e-4, 1.0])
    Q = np.array([[0.6, -0.8], [0.8, 0.6]])
    dense = OLS(Q @ p.H @ Q.T, Q @ p.g, p.c)
    for problem, w in ((p, w0), (dense, Q @ w0)):
        with pytest.raises(ValueError, match="w0 must be nonzero"):
            bngd(problem, 0.1, 5, 1.0, w)
