"""Mini-batch SGD with and without BN against independent computations."""

import numpy as np
import pytest

import bnlib
from bnlib import batch_std_mean, batchnorm_backward, batchnorm_forward, theory, windows
from bnlib import minibatch as mb
from tools.probe import unit_roundoff

# the rounding unit of the arithmetic in use (2**-53, or the rounding probe's delta):
# rounding-level tolerances below are multiples of it
U = unit_roundoff()


@pytest.fixture
def data(problem):
    return problem.sample(40, seed=7)


def _naive_bn_step(X, y, a, w, idx):
    """One BN-SGD gradient through the BN layer: forward, backward, chain rule."""
    Xb, yb = X[idx], y[idx]
    xi = (Xb @ w)[:, None]
    z, cache = batchnorm_forward(xi, a, 0.0, var_offset=0.0)
    r = yb[:, None] - z
    loss = 0.5 * np.mean(r**2)
    dxi, da, _ = batchnorm_backward(-r / len(idx), cache)
    return loss, float(da), Xb.T @ dxi[:, 0]


def test_batch_grad_against_bn_layer_and_finite_differences(rng):
    R, B, d = 4, 6, 3
    Xb, yb = rng.standard_normal((R, B, d)), rng.standard_normal((R, B))
    a, w = rng.standard_normal(R), rng.standard_normal((R, d))
    loss, da, dw = mb.bn_batch_grad(Xb, yb, a, w)
    for r in range(R):
        X, y = Xb[r], yb[r]
        l0, da0, dw0 = _naive_bn_step(X, y, a[r], w[r], np.arange(B))
        assert np.isclose(loss[r], l0, rtol=1e-12)
        assert np.isclose(da[r], da0, rtol=1e-10)
        assert np.allclose(dw[r], dw0, rtol=1e-10)

        def f(aa, ww, X=X, y=y):
            return mb.bn_batch_grad(X[None], y[None], np.array([aa]), ww[None])[0][0]

        h = 1e-6
        fd_w = [(f(a[r], w[r] + h * e) - f(a[r], w[r] - h * e)) / (2 * h) for e in np.eye(d)]
        fd_a = (f(a[r] + h, w[r]) - f(a[r] - h, w[r])) / (2 * h)
        assert np.allclose(dw[r], fd_w, atol=1e-7) and np.isclose(da[r], fd_a, atol=1e-7)
    # scale invariance per batch: w . grad_w J_B = 0
    assert np.allclose(np.sum(w * dw, axis=1), 0, atol=1e-12)
    # the shared-batch path agrees with the per-run path
    shared = mb.bn_batch_grad(Xb[0], yb[0], a, w)
    per_run = mb.bn_batch_grad(np.broadcast_to(Xb[0], Xb.shape), np.broadcast_to(yb[0], yb.shape), a, w)
    for s_, p_ in zip(shared, per_run, strict=True):
        assert np.allclose(s_, p_, rtol=1e-12)


def test_bn_sgd_against_naive_loop(problem, data):
    X, y = data
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((2, 1, problem.d))
    lrs = np.array([0.1, 3.0])
    run = mb.bn_sgd(data, lrs, 12, 0.7, w0, 5, lr_a=np.array([0.5, 1.0]), seed=3, record="all",
                    problem=problem)
    assert run.loss.shape == (13, 2, 2) and run.batches.shape == (12, 2, 2, 5)
    train = mb.train_problem(data)
    for i in range(2):
        for j in range(2):
            a, w = 0.7, w0[i, 0].copy()
            for k in range(12):
                idx = run.batches[k, i, j]
                assert len(set(idx.tolist())) == 5
                bl, da, dw = _naive_bn_step(X, y, a, w, idx)
                assert np.isclose(run.batch_loss[k, i, j], bl, rtol=1e-10)
                assert np.isclose(run.grad_norm2[k, i, j], dw @ dw, rtol=1e-9)
                a, w = a - [0.5, 1.0][j] * da, w - lrs[j] * dw
                assert np.isclose(run.a[k + 1, i, j], a, rtol=1e-9)
                assert np.allclose(run.w[k + 1, i, j], w, rtol=1e-9)
            u = train.bn_to_ols(a, w)
            assert np.isclose(run.excess[-1, i, j], train.loss(u) - train.min_loss, rtol=1e-8)
            up = problem.bn_to_ols(a, w)
            assert np.isclose(run.test_excess[-1, i, j], problem.loss(up) - problem.min_loss,
                              rtol=1e-8)
            assert np.isclose(run.loss[-1, i, j], train.bn_loss(a, w), rtol=1e-10)
    # the norm identity per step, exactly (orthogonality per batch)
    lhs = run.w_norm[1:] ** 2 - run.w_norm[:-1] ** 2
    assert np.allclose(lhs, lrs[None, None, :] ** 2 * run.grad_norm2, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("b", [8, 10])                  # n = 40: 5 or 4 batches per epoch
def test_batches_are_epochs_without_replacement(data, b):
    n = data[0].shape[0]
    run = mb.sgd(data, np.full(3, 0.01), 2 * (n // b), b, record="all", seed=0)
    idx = run.batches                                    # (K, 3, b)
    for e in range(2):
        epoch = idx[e * (n // b):(e + 1) * (n // b)]     # n // b batches: a permutation
        for r in range(3):
            assert np.array_equal(np.sort(epoch[:, r].ravel()), np.arange(n))
    assert not np.array_equal(idx[:, 0], idx[:, 1])     # runs draw their own batches


def test_sgd_against_naive_loop(problem, data):
    X, y = data
    run = mb.sgd(data, np.array([0.01, 0.02]), 10, 4, seed=2, record="all", problem=problem)
    for j, lr in enumerate([0.01, 0.02]):
        w = np.zeros(problem.d)
        for k in range(10):
            idx = run.batches[k, j]
            r = y[idx] - X[idx] @ w
            assert np.isclose(run.batch_loss[k, j], 0.5 * np.mean(r**2), rtol=1e-12)
            w = w + lr * X[idx].T @ r / 4
        assert np.allclose(run.w[-1, j], w, rtol=1e-10)
        assert np.isclose(run.test_excess[-1, j], problem.loss(w) - problem.min_loss, rtol=1e-8)


def test_full_batch_is_deterministic_gd_and_bngd(problem, data):
    n = data[0].shape[0]
    w0 = np.random.default_rng(0).standard_normal(problem.d)
    lrs = np.logspace(-2, 2, 5)
    run = mb.bn_sgd(data, lrs, 30, 1.0, w0, n, repeats=2, seed=4)
    ref = bnlib.bngd(mb.train_problem(data), lrs, 30, 1.0, w0)
    assert np.allclose(run.excess, ref.excess[:, None, :], rtol=1e8 * U)
    assert np.allclose(run.lr_eff[:, 0], ref.lr_eff, rtol=1e8 * U)
    srun = mb.sgd(data, np.array([0.01, 0.05]), 30, n)
    sref = bnlib.gd(mb.train_problem(data, centered=False), np.array([0.01, 0.05]), 30)
    assert np.allclose(srun.excess, sref.excess, rtol=1e-8)


def test_batch_of_two_never_moves_w(problem, data):
    w0 = np.random.default_rng(0).standard_normal(problem.d)
    run = mb.bn_sgd(data, np.array([1.0, 1e3]), 20, 1.0, w0, 2, record="all")
    assert np.allclose(run.w, w0, rtol=0, atol=1e7 * U)   # rounding only: z = +-1 exactly
    four = mb.bn_sgd(data, 1.0, 20, 1.0, w0, 4)
    assert np.all(run.grad_norm2 < (1e6 * U) ** 2 * four.grad_norm2.min())


def test_divergence_is_flagged_without_warnings(problem, data):
    run = mb.sgd(data, np.array([1e-3, 1e3]), 40, 4)
    assert run.diverged.tolist() == [False, True]
    assert np.isinf(run.loss[-1, 1]) and np.all(np.isnan(run.w_final[1]))
    bad = mb.bn_sgd(data, 1.0, 40, 1.0, np.ones(problem.d), 4, lr_a=5.0)
    assert bad.diverged and np.isinf(bad.loss[-1])


def test_grad_noise_monte_carlo(problem):
    """E||grad_w J_B||^2 at w = s u* on fresh Gaussian batches, against the closed form."""
    B, R = 16, 40_000
    X, y = problem.sample(R * B, seed=11)
    s, a = 2.5, 0.8
    w = np.broadcast_to(s * problem.u_star, (R, problem.d))
    _, _, dw = mb.bn_batch_grad(X.reshape(R, B, -1), y.reshape(R, B), np.full(R, a), w)
    g2 = np.sum(dw**2, axis=1) * problem.h_norm(w[0]) ** 2 / a**2
    se = g2.std() / np.sqrt(R)
    assert abs(g2.mean() - theory.grad_noise(problem, B)) < 4 * se
    assert theory.grad_noise(problem, 2) == 0 and np.isinf(theory.grad_noise(problem, 3))
    assert theory.grad_noise(problem, [4, 8]).shape == (2,)


def test_scale_floor_against_simulation(problem):
    """a_{k+1} = (1 - ea) a_k + ea p_B with w along u*: the stationary excess of a."""
    B, R, K = 8, 4000, 60
    rng_seed = 5
    X, y = problem.sample(R * B * K, seed=rng_seed)
    X, y = X.reshape(K, R, B, -1), y.reshape(K, R, B)
    m = problem.u_star @ problem.g
    w = np.broadcast_to(problem.u_star, (R, problem.d))
    for ea in (1.0, 0.3):
        a = np.full(R, np.sqrt(m))
        for k in range(K):
            _, da, _ = mb.bn_batch_grad(X[k], y[k], a, w)
            a = a - ea * da
        exc = 0.5 * (a - np.sqrt(m)) ** 2
        assert abs(exc.mean() - theory.scale_floor(problem, B, ea)) < 4 * exc.std() / np.sqrt(R)
    es = batch_std_mean(B)
    assert np.isclose(theory.scale_floor(problem, B, 1e-12), 0.5 * m * (1 - es) ** 2)


def test_sgd_floor_against_simulation_and_small_step_limit(problem):
    B, R, K, lr = 4, 3000, 400, 0.02
    X, y = problem.sample(R * B * K, seed=9)
    X, y = X.reshape(K, R, B, -1), y.reshape(K, R, B)
    w = np.broadcast_to(problem.u_star, (R, problem.d)).copy()
    acc = []
    for k in range(K):
        r = y[k] - np.einsum("rbi,ri->rb", X[k], w)        # residuals, written out
        w -= lr * -np.einsum("rb,rbi->ri", r, X[k]) / B
        if k >= K // 2:
            acc.append(problem.loss(w) - problem.min_loss)
    acc = np.array(acc)
    # batches of R runs at steps k are independent across runs; autocorrelated in k
    per_run = acc.mean(axis=0)
    rel_se = per_run.std() / np.sqrt(R) / per_run.mean()
    assert abs(per_run.mean() / theory.sgd_floor(problem, B, lr) - 1) < 4 * rel_se
    small = theory.sgd_floor(problem, B, 1e-6)
    assert np.isclose(small, 1e-6 * 2 * problem.min_loss * np.trace(problem.H) / (4 * B), rtol=1e-5)
    assert np.isinf(theory.sgd_floor(problem, B, 10.0))


def test_sgd_floor_is_infinite_once_the_noise_feedback_reaches_one(problem):
    """Below the stability edge of every mode the floor is finite exactly while the noise
    feedback S = (ε/B) Σ λ_i/(2 − ε(1 + 1/B)λ_i) is below 1 (the geometric series of the
    recursion converges), and infinite from S = 1 on."""
    B, lam = 2, problem.eigvals
    lr = np.linspace(1e-3, 2 / ((1 + 1 / B) * lam.max()), 400, endpoint=False)
    S = lr / B * np.sum(lam / (2 - np.outer(lr * (1 + 1 / B), lam)), axis=1)
    out = theory.sgd_floor(problem, B, lr)
    assert np.any((S >= 1) & (S < 2)) and np.any(S < 1)
    assert np.all(np.isinf(out[S >= 1])) and np.all(np.isfinite(out[S < 1]))


def test_norm_growth_solves_the_recursion():
    v, lr, c = 1.0, 0.5, 2.0
    vs = [v]
    for _ in range(20000):
        vs.append(vs[-1] + lr**2 * c / vs[-1])
    pred = theory.norm_growth(1.0, lr, c, np.arange(20001))
    assert abs(vs[-1] / pred[-1] - 1) < 0.01
    v0 = 2.5                                          # another start: the whole curve
    vs = [v0]
    for _ in range(200):
        vs.append(vs[-1] + lr**2 * c / vs[-1])
    pred = theory.norm_growth(v0, lr, c, np.arange(201))
    assert np.max(np.abs(np.array(vs) / pred - 1)) < 0.01


@pytest.mark.parametrize(
    ("kwargs", "err"),
    [
        (dict(batch=1), ValueError),
        (dict(batch=41), ValueError),
        (dict(lr=-1.0), ValueError),
        (dict(steps=-1), ValueError),
        (dict(w0=np.zeros(6)), ValueError),
        (dict(w0=np.ones(5)), ValueError),
        (dict(record="x"), ValueError),
        (dict(repeats=0), ValueError),
        (dict(batch=2.5), TypeError),
        (dict(lr="a"), TypeError),
    ],
)
def test_bad_input(problem, data, kwargs, err):
    args = dict(lr=0.1, steps=3, a0=1.0, w0=np.ones(6), batch=4) | kwargs
    with pytest.raises(err):
        mb.bn_sgd(data, **args)


def test_bad_data_and_problem(problem, data):
    with pytest.raises(TypeError):
        mb.sgd([data[0], data[1]], 0.1, 3, 4)
    with pytest.raises(ValueError):
        mb.sgd((data[0], data[1][:-1]), 0.1, 3, 4)
    with pytest.raises(TypeError):
        mb.sgd(data, 0.1, 3, 4, problem="p")
    with pytest.raises(ValueError):
        mb.sgd(data, 0.1, 3, 4, problem=bnlib.OLS.random(3, 2.0, seed=0))
    with pytest.raises(ValueError):
        theory.grad_noise(problem, 1)
    with pytest.raises(ValueError):
        theory.scale_floor(problem, 4, 2.0)


def test_good_window_counts_decades_near_the_best_level():
    lr = np.logspace(-2, 2, 9)                                   # two points per decade
    final = np.array([0.9, 0.4, 0.02, 0.011, 0.01, 0.015, 0.03, np.inf, np.nan])
    # good: <= 0.5 and <= 2 * 0.01 -> indices 3, 4, 5 (0.02 is exactly 2x: also good)
    assert windows.good_window(final, lr) == pytest.approx(2.0)      # 4 points x 0.5 decades
    assert windows.good_window(final, lr, factor=1.6) == pytest.approx(1.5)
    stacked = windows.good_window(np.vstack([final, final * 100]), lr)
    assert stacked.shape == (2,) and stacked[1] == 0.0           # never below 0.5
    with pytest.raises(ValueError, match="factor"):
        windows.good_window(final, lr, factor=0.5)
    with pytest.raises(ValueError, match="below"):
        windows.good_window(final, lr, below=0.0)


# ---------------------------------------------------------------- weight decay and momentum
def test_heavy_defaults_are_the_plain_runs_bitwise(problem, data):
    w0 = np.ones(problem.d)
    lrs = np.array([0.1, 2.0])
    base = mb.bn_sgd(data, lrs, 20, 1.0, w0, 8, seed=4, record="all", repeats=2)
    run = mb.bn_sgd(data, lrs, 20, 1.0, w0, 8, seed=4, record="all", repeats=2,
                    weight_decay=0.0, momentum=0.0)
    for f in ("w", "a", "loss", "batch_loss", "grad_norm2", "lr_eff"):
        assert np.array_equal(getattr(run, f), getattr(base, f))
    s0 = mb.sgd(data, lrs * 0.01, 20, 8, seed=4)
    s1 = mb.sgd(data, lrs * 0.01, 20, 8, seed=4, weight_decay=0, momentum=0)
    assert np.array_equal(s0.loss, s1.loss)


def test_heavy_bn_sgd_against_naive_loop(problem, data):
    """Velocities written out (v ← ς v + ∇ + υ w, θ ← θ − ε v) with the BN layer's backward."""
    X, y = data
    lrs, decay, mom = np.array([0.2, 1.5]), np.array([0.01, 0.1]), 0.9
    w0 = np.linspace(1.0, 2.0, problem.d)
    run = mb.bn_sgd(data, lrs, 15, 0.7, w0, 6, lr_a=0.5, seed=2, record="all",
                    weight_decay=decay, momentum=mom, repeats=2)
    for r in range(2):
        for j in range(2):
            a, w, va, vw = 0.7, w0.copy(), 0.0, np.zeros(problem.d)
            for k in range(15):
                _, da, dw = _naive_bn_step(X, y, a, w, run.batches[k, r, j])
                va, vw = mom * va + da, mom * vw + dw + decay[j] * w
                a, w = a - 0.5 * va, w - lrs[j] * vw
            assert np.isclose(run.a[-1, r, j], a, rtol=1e-9)
            assert np.allclose(run.w[-1, r, j], w, rtol=1e-9)


def test_heavy_sgd_against_naive_loop(problem, data):
    X, y = data
    run = mb.sgd(data, 0.02, 12, 4, seed=5, record="all", weight_decay=0.3, momentum=0.5)
    w, v = np.zeros(problem.d), np.zeros(problem.d)
    for k in range(12):
        idx = run.batches[k]
        v = 0.5 * v - X[idx].T @ (y[idx] - X[idx] @ w) / 4 + 0.3 * w
        w = w - 0.02 * v
    assert np.allclose(run.w[-1], w, rtol=1e-10)


def test_heavy_minibatch_bad_input(problem, data):
    with pytest.raises(ValueError, match="weight_decay"):
        mb.bn_sgd(data, 0.1, 3, 1.0, np.ones(problem.d), 4, weight_decay=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        mb.sgd(data, 0.1, 3, 4, momentum=1.5)


@pytest.mark.parametrize("level", [0.012, 0.006])       # 0.006: a possible set of 6 of 8
def test_level_window_brackets_the_mean_by_its_standard_error(level):
    lr = np.logspace(-2, 2, 9)                                   # two points per decade
    rng = np.random.default_rng(0)
    final = 0.01 * np.exp(rng.standard_normal((4, 9)))
    final[:, 7] = np.inf                                         # a diverged step size
    low, mid, high = windows.level_window(final, lr, level)
    # naive loop: mean and standard error per step size, counted in half decades
    n_low = n_mid = n_high = 0
    for j in range(9):
        col = final[:, j]
        if not np.all(np.isfinite(col)):
            continue
        m, se = sum(col) / 4, np.sqrt(sum((col - sum(col) / 4) ** 2) / 3 / 4)
        n_low += m + 2 * se <= level
        n_mid += m <= level
        n_high += m - 2 * se <= level
    assert (low, mid, high) == pytest.approx((0.5 * n_low, 0.5 * n_mid, 0.5 * n_high))
    assert low <= mid <= high
    two = windows.level_window(np.stack([final, final], axis=1), lr,
                          np.array([[level], [1e-9]]))
    assert two[1].shape == (2, 2) and np.all(two[1][1] == 0.0)
    assert np.allclose(two[1][0], mid)
    with pytest.raises(ValueError, match="final"):
        windows.level_window(final[:1], lr, 0.01)
    with pytest.raises(ValueError, match="level"):
        windows.level_window(final, lr, -1.0)


def test_level_window_counts_a_deterministic_step_at_the_level_as_sure():
    """Identical repeats have se = 0, so a mean exactly at the level is in all three sets
    ("mean + z·se <= level"); 2^-7 keeps the mean and the deviations exact."""
    lr = np.logspace(-1, 1, 5)                                   # two points per decade
    final = np.tile([1.0, 2.0**-7, 2.0**-7, 2.0**-7, 1.0], (4, 1))
    assert windows.level_window(final, lr, 2.0**-7) == pytest.approx((1.5, 1.5, 1.5))


def test_good_window_keeps_a_run_exactly_at_its_level():
    """'At most below' and 'at most factor times the best' include the ends: 0.5 is good with
    below = 0.5, and 0.6 is good with best 0.3 and factor 2 (binary-exact: 2 · 0.3 is 0.6)."""
    lr = np.logspace(0, 2, 5)                                    # two points per decade
    final = np.array([0.5, 0.3, 0.6, 0.9, np.inf])
    assert 2 * 0.3 == 0.6
    assert windows.good_window(final, lr, below=0.5) == pytest.approx(1.0)    # 0.5, 0.3
    assert windows.good_window(final, lr, below=0.6) == pytest.approx(1.5)    # 0.5, 0.3, 0.6
