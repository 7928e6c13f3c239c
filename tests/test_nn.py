"""Networks of bnlib.nn against independent computations: per-model loops with the BN
formula written out, scikit-learn's losses, finite differences, hand-made SGD steps."""

import dataclasses
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import log_loss

from bnlib import (
    MLP,
    Digits,
    SGDRun,
    batchnorm_backward,
    batchnorm_forward,
    load_digits_split,
    nn,
    train,
    train_variants,
)
from tools.probe import unit_roundoff


# ------------------------------------------------------------------------------ helpers
def naive_logits(net, params, X, train=True):
    """One model at a time, the BN layer written out with numpy's own mean and var."""
    a = X
    for layer in range(net.depth):
        z = a @ params[f"W{layer}"]
        if net.bn:
            if train:
                mu, var = z.mean(axis=0), z.var(axis=0)
            else:
                mu, var = params[f"mean{layer}"][0], params[f"var{layer}"][0]
            g, b = params[f"gamma{layer}"][0], params[f"beta{layer}"][0]
            z = g * (z - mu) / np.sqrt(var + net.var_offset) + b
        else:
            z = z + params[f"b{layer}"][0]
        a = np.maximum(z, 0) if layer < net.depth - 1 else z
    return a


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def randomise(net, params, rng):
    """Perturb every trainable parameter so the test does not sit at the init."""
    out = {k: p.copy() for k, p in params.items()}
    for k in net.param_names():
        out[k] = out[k] + 0.3 * rng.standard_normal(out[k].shape)
    return out


def tiny_data(rng, n=40, d=5, C=3):
    X = rng.standard_normal((n, d))
    y = rng.integers(0, C, n)
    m = 3 * n // 4
    return Digits(X[:m], y[:m], X[m:], y[m:], seed=0, test_fraction=0.25, n_classes=C)


# --------------------------------------------------------------------------------- data
def test_digits_split_is_a_partition_of_the_scaled_data():
    data = load_digits_split(seed=3, test_fraction=0.25)
    ref = load_digits()
    assert data.X_train.shape == (1348, 64) and data.X_test.shape == (449, 64)
    assert data.y_train.shape == (1348,) and data.y_test.shape == (449,)
    assert data.X_train.min() == 0 and data.X_train.max() == 1
    together = np.concatenate([np.c_[data.X_train, data.y_train], np.c_[data.X_test, data.y_test]])
    expect = np.c_[ref.data / 16.0, ref.target]
    assert np.array_equal(together[np.lexsort(together.T)], expect[np.lexsort(expect.T)])
    assert set(np.unique(data.y_test)) == set(range(10))


def test_digits_split_is_seeded():
    a, b, c = load_digits_split(0), load_digits_split(0), load_digits_split(1)
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_test, c.y_test)
    assert load_digits_split(0, 0.5).X_test.shape == (898, 64)


@pytest.mark.parametrize(("kwargs", "err"), [
    ({"test_fraction": 0.0}, ValueError), ({"test_fraction": 1.0}, ValueError),
    ({"test_fraction": -0.2}, ValueError), ({"test_fraction": np.nan}, ValueError),
    ({"test_fraction": 1e-6}, ValueError), ({"seed": -1}, ValueError),
    ({"seed": 1.5}, TypeError), ({"test_fraction": "half"}, TypeError),
])
def test_digits_split_bad_input(kwargs, err):
    with pytest.raises(err):
        load_digits_split(**kwargs)


# ------------------------------------------------------------------------------ forward
@pytest.mark.parametrize("bn", [True, False])
def test_forward_and_losses_against_sklearn(bn, rng):
    net_ce = MLP((5, 7, 4, 3), bn=bn, loss="cross_entropy")
    net_q = MLP((5, 7, 4, 3), bn=bn, loss="quadratic")
    X, y = rng.standard_normal((12, 5)), rng.integers(0, 3, 12)
    y[:3] = [0, 1, 2]
    params = randomise(net_ce, net_ce.init(seed=1), rng)
    z = naive_logits(net_ce, params, X)
    p = softmax(z)
    loss_ce, _ = net_ce.loss_and_grad(params, X, y)
    loss_q, _ = net_q.loss_and_grad(params, X, y)
    assert np.isclose(loss_ce, log_loss(y, p, labels=[0, 1, 2]), rtol=1e-10)
    assert np.isclose(loss_q, np.mean((np.eye(3)[y] - p) ** 2), rtol=1e-12)


def test_forward_models_in_lockstep_equal_single_models(rng):
    """Model shape (2, 3) with per-seed batches (2, 1, B, d) against one model at a time."""
    net = MLP((4, 6, 3), bn=True, loss="quadratic")
    sets = [[randomise(net, net.init(s), rng) for _ in range(3)] for s in range(2)]
    params = {k: np.array([[sets[i][j][k] for j in range(3)] for i in range(2)])
              for k in net.param_names(False)}
    X = rng.standard_normal((2, 1, 9, 4))
    y = rng.integers(0, 3, (2, 1, 9))
    loss, grads = net.loss_and_grad(params, X, y)
    assert loss.shape == (2, 3) and grads["W0"].shape == (2, 3, 4, 6)
    for i in range(2):
        for j in range(3):
            one = {k: p[i, j] for k, p in params.items()}
            l1, g1 = net.loss_and_grad(one, X[i, 0], y[i, 0])
            p1 = softmax(naive_logits(net, one, X[i, 0]))
            assert np.isclose(l1, np.mean((np.eye(3)[y[i, 0]] - p1) ** 2), rtol=1e-12)
            assert np.isclose(loss[i, j], l1, rtol=1e-12)
            assert all(np.allclose(grads[k][i, j], g1[k], rtol=1e-10, atol=1e-14) for k in g1)


def test_eval_mode_uses_running_averages(rng):
    net = MLP((5, 6, 3), bn=True, var_offset=1e-3)
    params = randomise(net, net.init(2), rng)
    for k in ("mean0", "mean1"):
        params[k] = rng.standard_normal(params[k].shape)
    for k in ("var0", "var1"):
        params[k] = rng.uniform(0.5, 2.0, params[k].shape)
    X, y = rng.standard_normal((20, 5)), rng.integers(0, 3, 20)
    z = naive_logits(net, params, X, train=False)
    assert np.allclose(net.predict_logits(params, X), z, rtol=1e-12)
    loss, acc = net.evaluate(params, X, y)
    assert np.isclose(loss, log_loss(y, softmax(z), labels=[0, 1, 2]), rtol=1e-10)
    assert acc == np.mean(z.argmax(1) == y)


def test_init_is_glorot_uniform():
    net = MLP((64, 1000, 10), bn=False)
    p = net.init(seed=0, shape=(2,))
    lim = np.sqrt(6 / 1064)
    W = p["W0"][0]
    assert np.array_equal(p["W0"][0], p["W0"][1])
    assert np.abs(W).max() <= lim and np.abs(W).max() > 0.99 * lim
    assert np.isclose(W.var(), lim**2 / 3, rtol=0.02)
    assert np.all(p["b0"] == 0) and np.all(p["b1"] == 0)
    assert np.allclose(net.init(0, weight_scale=3.0)["W1"], 3 * net.init(0)["W1"])


# ----------------------------------------------------------------------------- backward
@pytest.mark.parametrize("loss", ["cross_entropy", "quadratic"])
@pytest.mark.parametrize("bn", [True, False])
def test_backward_finite_differences(bn, loss, rng):
    net = MLP((4, 6, 5, 3), bn=bn, loss=loss, var_offset=1e-3)
    params = randomise(net, net.init(seed=4), rng)
    X, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    _, grads = net.loss_and_grad(params, X, y)
    h = 1e-6
    for k in net.param_names():
        num = np.zeros_like(params[k])
        for idx in np.ndindex(params[k].shape):
            plus = {**params, k: params[k].copy()}
            minus = {**params, k: params[k].copy()}
            plus[k][idx] += h
            minus[k][idx] -= h
            num[idx] = (net.loss_and_grad(plus, X, y)[0] - net.loss_and_grad(minus, X, y)[0]) / (2 * h)
        assert np.allclose(grads[k], num, atol=1e-7, rtol=1e-5), k


def test_bn_weights_gradient_is_orthogonal_and_scale_invariant(rng):
    """With eps = 0 the loss does not depend on the scale of W feeding BN (chapter 01)."""
    net = MLP((5, 6, 3), bn=True, var_offset=0.0)
    params = randomise(net, net.init(0), rng)
    X, y = rng.standard_normal((10, 5)), rng.integers(0, 3, 10)
    loss, g = net.loss_and_grad(params, X, y)
    for k in ("W0", "W1"):
        assert abs(np.sum(params[k] * g[k])) < 1e-12 * np.linalg.norm(params[k]) * np.linalg.norm(g[k])
        scaled = {**params, k: 5.0 * params[k]}
        l5, g5 = net.loss_and_grad(scaled, X, y)
        assert np.isclose(l5, loss, rtol=1e-12)
        assert np.allclose(5.0 * g5[k], g[k], rtol=1e-9)


# ---------------------------------------------------------------------------------- SGD
def test_sgd_steps_by_hand(rng):
    """Full-batch SGD (batch = training set) for 2 epochs is two hand-made gradient steps
    with ε for W and ε_a for γ, β; running averages follow the stated rule, starting from
    the first batch's statistics."""
    data = tiny_data(rng)
    net = MLP((5, 4, 3), bn=True, loss="cross_entropy", momentum=0.8)
    lr, lr_a = 0.7, 0.05
    run = train(net, data, lr, lr_a, epochs=2, batch_size=30, seeds=5, keep_params=True)
    p = net.init(5)
    Xb, yb = data.X_train, data.y_train
    mom = {k: p[k] for k in ("mean0", "var0", "mean1", "var1")}
    for step in range(2):
        _, g = net.loss_and_grad(p, Xb, yb)
        z0 = Xb @ p["W0"]
        zn = (z0 - z0.mean(0)) / np.sqrt(z0.var(0) + net.var_offset)
        a0 = np.maximum(p["gamma0"][0] * zn + p["beta0"][0], 0)
        z1 = a0 @ p["W1"]
        for name, z in (("0", z0), ("1", z1)):
            keep = 0.8 if step else 0.0          # the first batch initialises the averages
            mom["mean" + name] = keep * mom["mean" + name] + (1 - keep) * z.mean(0)
            mom["var" + name] = keep * mom["var" + name] + (1 - keep) * z.var(0, ddof=1)
        p = {k: p[k] - (lr_a if k[:4] in ("gamm", "beta") else lr) * g[k] for k in net.param_names()}
        p.update(mom)
    for k in p:
        assert np.allclose(run.params[k][0], p[k], rtol=1e-10, atol=1e-13), k
    loss, acc = net.evaluate(p, data.X_test, data.y_test)
    assert np.isclose(run.test_loss[0], loss) and run.test_acc[0] == acc
    assert run.batch_loss.shape == (2, 1) and run.lr_a == lr_a


def test_sgd_grid_equals_separate_runs_and_chunks_and_threads_do_not_matter(rng, monkeypatch):
    data = tiny_data(rng, n=90)
    net = MLP((5, 8, 3), bn=True, loss="quadratic")
    lr = np.array([0.1, 3.0, 100.0])
    lr_a = np.array([[1.0], [0.1]])
    grid = train(net, data, lr, lr_a, epochs=2, batch_size=20, seeds=(0, 7))
    monkeypatch.setattr(nn, "CHUNK_BYTES", 1)
    small = train(net, data, lr, lr_a, epochs=2, batch_size=20, seeds=(0, 7))
    monkeypatch.setattr(nn, "WORKERS", 1)
    serial = train(net, data, lr, lr_a, epochs=2, batch_size=20, seeds=(0, 7))
    assert np.array_equal(small.test_loss, serial.test_loss)
    assert np.array_equal(small.batch_loss, serial.batch_loss)
    assert grid.test_acc.shape == (2, 2, 3) and grid.batch_loss.shape == (6, 2, 2, 3)
    assert np.array_equal(grid.batch_loss, small.batch_loss)
    for s, seed in enumerate((0, 7)):
        for i in range(2):
            for j in range(3):
                one = train(net, data, lr[j], lr_a[i, 0], epochs=2, batch_size=20, seeds=seed)
                assert np.allclose(one.batch_loss[:, 0], grid.batch_loss[:, s, i, j], rtol=1e-12)
                assert np.isclose(one.test_loss[0], grid.test_loss[s, i, j], rtol=1e-12)


def test_sgd_batches_follow_the_documented_order(rng):
    """At a step far too small to move the weights, the recorded batch losses are the
    losses of the initial network on the documented mini-batches."""
    data = tiny_data(rng, n=40)
    net = MLP((5, 4, 3), bn=True)
    run = train(net, data, 1e-300, epochs=3, batch_size=7, seeds=11)
    assert run.batch_loss.shape == (3 * (30 // 7), 1)
    order = np.random.default_rng((11, 2))
    p0 = net.init(11)
    expect = []
    for _ in range(3):
        perm = order.permutation(30)
        for b in range(30 // 7):
            rows = perm[7 * b: 7 * b + 7]
            expect.append(net.loss_and_grad(p0, data.X_train[rows], data.y_train[rows])[0])
    assert np.allclose(run.batch_loss[:, 0], expect, rtol=1e-12)


def test_scaling_law_is_exact_for_powers_of_two():
    """Weights feeding BN times r, step times r²: the same training (eps = 0)."""
    data = load_digits_split(0)
    net = MLP((64, 16, 10), bn=True, loss="quadratic", var_offset=0.0)
    lr = np.array([0.1, 10.0, 1000.0])
    base = train(net, data, lr, 0.1, epochs=1, seeds=(0, 1))
    scaled = train(net, data, 16 * lr, 0.1, epochs=1, seeds=(0, 1), weight_scale=4.0)
    assert np.array_equal(base.batch_loss, scaled.batch_loss)
    assert np.array_equal(base.test_acc, scaled.test_acc)
    unscaled = train(net, data, lr, 0.1, epochs=1, seeds=(0, 1), weight_scale=4.0)
    assert not np.allclose(base.batch_loss[-1], unscaled.batch_loss[-1], rtol=1e-3)


def test_divergence_is_flagged_without_warnings(rng):
    data = load_digits_split(0)
    net = MLP((64, 32, 10), bn=False, loss="cross_entropy")
    lr = np.array([1e-2, 1e3, 1e12])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = train(net, data, lr, epochs=1, seeds=(0, 1), keep_params=True)
    assert run.diverged.tolist() == [[False, False, True], [False, False, True]]
    assert np.all(np.isinf(run.test_loss[:, 2])) and np.all(np.isnan(run.test_acc[:, 2]))
    assert np.all(np.isfinite(run.test_loss[:, :2]))
    k = np.argmax(np.isinf(run.batch_loss[:, 0, 2]))
    assert k >= 1 and np.all(np.isinf(run.batch_loss[k:, :, 2]))
    for p in run.params.values():                  # diverged models masked, as in bnlib.descent
        assert np.all(np.isnan(p[:, 2])) and np.all(np.isfinite(p[:, :2]))


@pytest.mark.parametrize(("call", "err"), [
    (lambda n, d: train(n, d, 0.0), ValueError),
    (lambda n, d: train(n, d, [0.1, -1.0]), ValueError),
    (lambda n, d: train(n, d, np.nan), ValueError),
    (lambda n, d: train(n, d, 0.1, lr_a=0.0), ValueError),
    (lambda n, d: train(n, d, [0.1, 1.0], lr_a=[1.0, 0.1, 0.01]), ValueError),
    (lambda n, d: train(MLP((5, 3), bn=False), d, 0.1, lr_a=0.1), ValueError),
    (lambda n, d: train(n, d, 0.1, epochs=0), ValueError),
    (lambda n, d: train(n, d, 0.1, batch_size=1), ValueError),
    (lambda n, d: train(n, d, 0.1, batch_size=31), ValueError),
    (lambda n, d: train(n, d, 0.1, seeds=()), ValueError),
    (lambda n, d: train(n, d, 0.1, seeds=(-1,)), ValueError),
    (lambda n, d: train(n, d, 0.1, blowup=1.0), ValueError),
    (lambda n, d: train(n, d, 0.1, workers=2), TypeError),
    (lambda n, d: train(n, d, 0.1, epochs=1.5), TypeError),
    (lambda n, d: train("net", d, 0.1), TypeError),
    (lambda n, d: train(n, (1, 2), 0.1), TypeError),
    (lambda n, d: train(MLP((6, 3)), d, 0.1), ValueError),
    (lambda n, d: train(n, Digits(d.X_train * np.nan, d.y_train, d.X_test, d.y_test, 0, 0.25, 3), 0.1),
     ValueError),
    (lambda n, d: train(n, Digits(d.X_train, d.y_train + 3, d.X_test, d.y_test, 0, 0.25, 3), 0.1),
     ValueError),
    (lambda n, d: train(n, Digits(d.X_train, d.y_train * 1.0, d.X_test, d.y_test, 0, 0.25, 3), 0.1),
     TypeError),
])
def test_sgd_bad_input(call, err, rng):
    data = tiny_data(rng)
    with pytest.raises(err):
        call(MLP((5, 3)), data)


@pytest.mark.parametrize(("kwargs", "err"), [
    ({"sizes": (5,)}, ValueError), ({"sizes": (5, 1)}, ValueError), ({"sizes": (5, 0, 3)}, ValueError),
    ({"sizes": (5, 2.5, 3)}, TypeError), ({"sizes": "53"}, TypeError), ({"loss": "hinge"}, ValueError),
    ({"var_offset": -1e-5}, ValueError),
    ({"var_offset": np.nan}, ValueError),
    ({"momentum": 1.0}, ValueError), ({"bn": "yes"}, TypeError),
])
def test_mlp_bad_construction(kwargs, err):
    with pytest.raises(err):
        MLP(**({"sizes": (5, 4, 3)} | kwargs))


def test_param_names_follow_the_layout():
    assert MLP((5, 4, 3), bn=False).param_names() == ["W0", "b0", "W1", "b1"]
    bn = MLP((5, 4, 3))
    assert bn.param_names() == ["W0", "gamma0", "beta0", "W1", "gamma1", "beta1"]
    assert bn.param_names(trainable_only=False)[6:] == ["mean0", "var0", "mean1", "var1"]
    assert bn.bn_param_names() == ["gamma0", "beta0", "gamma1", "beta1"]
    assert {k: q.shape for k, q in bn.init(0, shape=(2,)).items()} == {
        "W0": (2, 5, 4), "gamma0": (2, 1, 4), "beta0": (2, 1, 4), "mean0": (2, 1, 4),
        "var0": (2, 1, 4), "W1": (2, 4, 3), "gamma1": (2, 1, 3), "beta1": (2, 1, 3),
        "mean1": (2, 1, 3), "var1": (2, 1, 3)}


def test_loss_and_grad_bad_input(rng):
    net = MLP((5, 4, 3))
    p = net.init(0)
    X, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    with pytest.raises(ValueError, match="X"):
        net.loss_and_grad(p, X[:, :4], y)
    with pytest.raises(ValueError, match="finite"):
        net.loss_and_grad(p, np.where(X > 1, np.inf, X), y)
    with pytest.raises(ValueError, match="y"):
        net.loss_and_grad(p, X, y[:5])
    with pytest.raises(ValueError, match="at least 2"):
        net.loss_and_grad(p, X[:1], y[:1])
    with pytest.raises(ValueError, match="gamma1"):
        net.loss_and_grad({k: q for k, q in p.items() if k != "gamma1"}, X, y)
    with pytest.raises(ValueError, match="W1"):
        net.loss_and_grad({**p, "W1": p["W1"].T}, X, y)
    with pytest.raises(ValueError, match="model shape"):
        net.loss_and_grad(p, np.stack([X, X]), np.stack([y, y]))
    with pytest.raises(TypeError):
        net.loss_and_grad([p], X, y)


def test_sweep_runs_the_three_variants(rng):
    data = tiny_data(rng, n=60)
    lr = np.array([0.1, 1.0, 10.0])
    out = train_variants((5, 4, 3), "quadratic", data, lr, lr_a=(1.0, 0.01), epochs=2,
                         batch_size=15, seeds=(0, 1))
    assert out["gd"].test_acc.shape == (2, 3) and out["bn_split"].test_acc.shape == (2, 2, 3)
    assert np.all(np.isnan(out["gd"].lr_a)) and np.array_equal(out["bn"].lr_a, lr)
    one = train(MLP((5, 4, 3), bn=True, loss="quadratic"), data, 10.0, 0.01, epochs=2, batch_size=15,
              seeds=1)
    assert np.allclose(one.batch_loss[:, 0], out["bn_split"].batch_loss[:, 1, 1, 2], rtol=1e-12)
    plain = train(MLP((5, 4, 3), bn=False, loss="quadratic"), data, 0.1, epochs=2, batch_size=15, seeds=0)
    assert np.allclose(plain.batch_loss[:, 0], out["gd"].batch_loss[:, 0, 0], rtol=1e-12)
    with pytest.raises(ValueError):
        train_variants((5, 3), "quadratic", data, lr[None], epochs=1, batch_size=15)


def test_sweep_uniform_shapes_hold_the_same_numbers(rng):
    data = tiny_data(rng, n=60)
    lr = np.array([0.1, 1.0, 10.0])
    kw = dict(lr_a=(1.0, 0.01), epochs=1, batch_size=15, seeds=(0, 1))
    mixed = train_variants((5, 3), "quadratic", data, lr, var_offset=0.5, **kw)
    same = train_variants((5, 3), "quadratic", data, lr, var_offset=0.5, uniform=True, **kw)
    for key in ("gd", "bn"):
        assert same[key].test_acc.shape == (2, 1, 3) and same[key].lr.shape == (1, 3)
        assert np.array_equal(same[key].batch_loss[:, :, 0], mixed[key].batch_loss)
        assert np.array_equal(same[key].test_loss[:, 0], mixed[key].test_loss)
    assert np.array_equal(same["bn_split"].batch_loss, mixed["bn_split"].batch_loss)
    other = train_variants((5, 3), "quadratic", data, lr, **kw)          # the offset reaches the nets
    assert not np.array_equal(other["bn"].batch_loss, mixed["bn"].batch_loss)


# ------------------------------------------------------------------- weight decay, momentum
def test_sgd_heavy_defaults_are_plain_sgd_bitwise(rng):
    data = tiny_data(rng)
    net = MLP((5, 4, 3), bn=True, loss="cross_entropy")
    lrs = np.array([0.1, 1.0])
    base = train(net, data, lrs, 0.1, epochs=3, batch_size=10, seeds=(0, 1), keep_params=True)
    run = train(net, data, lrs, 0.1, epochs=3, batch_size=10, seeds=(0, 1), keep_params=True,
              weight_decay=0.0, momentum=0.0)
    for k in base.params:
        assert np.array_equal(base.params[k], run.params[k])
    assert np.array_equal(base.batch_loss, run.batch_loss)
    assert type(run) is SGDRun and not hasattr(run, "w_angle2")


def test_sgd_heavy_steps_by_hand(rng):
    """Full-batch SGD with decay on W only and momentum on everything, written out with
    velocities v ← ς v + ∇ + υ W, θ ← θ − ε v; and the recorded column angles."""
    data = tiny_data(rng)
    net = MLP((5, 4, 3), bn=True, loss="cross_entropy")
    lr, lr_a, ups, mom = 0.7, 0.05, 0.03, 0.9
    run = train(net, data, lr, lr_a, epochs=3, batch_size=30, seeds=5, keep_params=True,
              weight_decay=ups, momentum=mom)
    p = net.init(5)
    vel = {k: np.zeros_like(p[k]) for k in net.param_names()}
    ang = []
    for _ in range(3):
        _, g = net.loss_and_grad(p, data.X_train, data.y_train)
        old = p["W0"].copy()
        for k in net.param_names():
            vel[k] = mom * vel[k] + g[k] + (ups * p[k] if k.startswith("W") else 0.0)
            p[k] = p[k] - (lr_a if k[:4] in ("gamm", "beta") else lr) * vel[k]
        cos = np.sum(old * p["W0"], 0) / np.linalg.norm(old, axis=0) / np.linalg.norm(p["W0"], axis=0)
        ang.append(np.mean(np.arccos(np.clip(cos, -1, 1)) ** 2))
    for k in net.param_names():
        assert np.allclose(run.params[k][0], p[k], rtol=1e-10, atol=1e-13), k
    assert np.allclose(run.w_angle2[:, 0, 0], ang, rtol=1e-6)
    assert run.weight_decay == ups and run.momentum == mom


def test_sgd_heavy_bad_input(rng):
    data = tiny_data(rng)
    net = MLP((5, 4, 3), bn=True, loss="cross_entropy")
    with pytest.raises(ValueError, match="weight_decay"):
        train(net, data, 0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        train(net, data, 0.1, momentum=1.0)
    with pytest.raises(ValueError, match="broadcast"):
        train(net, data, np.ones(2), weight_decay=np.ones(3))


# --------------------------------------------------------------------- budgets, one pass
def assert_runs_equal(a, b):
    """Every field of two SGDRuns equal, bit for bit (nan where nan)."""
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, dict):
            assert x.keys() == y.keys(), f.name
            for k in x:
                assert np.array_equal(x[k], y[k], equal_nan=True), (f.name, k)
        elif isinstance(x, np.ndarray):
            assert x.shape == y.shape and np.array_equal(x, y, equal_nan=True), f.name
        else:
            assert x == y, f.name


def test_sgd_budgets_are_the_shorter_runs_bit_for_bit():
    """epochs=(1, 2, 3): one run to 3 epochs read at 1, 2 and 3 is each run of that many
    epochs alone, every field bit for bit, with models that diverge between the budgets
    (plain SGD, quadratic loss, a low blow-up limit)."""
    data = load_digits_split(0)
    net = MLP((64, 8, 10), bn=False, loss="quadratic")
    lr = np.logspace(-1, 3, 17)[[0, 8, 12, 15, 16]]
    kw = dict(batch_size=200, seeds=(0, 1), blowup=1.5, keep_params=True)
    runs = train(net, data, lr, epochs=(1, 2, 3), **kw)
    assert list(runs) == [1, 2, 3]
    for e, run in runs.items():
        assert run.epochs == e and run.batch_loss.shape == (6 * e, 2, 5)
        assert_runs_equal(run, train(net, data, lr, epochs=e, **kw))
    late = runs[3].diverged & ~runs[2].diverged       # alive after 12 steps, not after 18
    assert late.any() and runs[1].diverged.any() and not runs[3].diverged.all()


def test_sgd_budgets_with_bn_momentum_and_decay(rng):
    data = tiny_data(rng, n=60)
    net = MLP((5, 4, 3), bn=True, loss="cross_entropy")
    kw = dict(batch_size=15, seeds=(0, 3), keep_params=True, weight_decay=0.01, momentum=0.9)
    lr, lr_a = np.array([0.1, 1.0, 30.0]), np.array([[1.0], [0.1]])
    runs = train(net, data, lr, lr_a, epochs=(2, 5), **kw)
    for e in (2, 5):
        assert_runs_equal(runs[e], train(net, data, lr, lr_a, epochs=e, **kw))
    assert runs[5].w_angle2.shape == (15, 2, 2, 3, 2)
    variants = train_variants((5, 4, 3), "quadratic", data, lr, (1.0, 0.1), epochs=(1, 2),
                              batch_size=15, seeds=(0, 3))
    alone = train_variants((5, 4, 3), "quadratic", data, lr, (1.0, 0.1), epochs=1,
                           batch_size=15, seeds=(0, 3))
    assert list(variants) == [1, 2] and list(variants[1]) == ["gd", "bn", "bn_split"]
    for key, run in alone.items():
        assert_runs_equal(variants[1][key], run)


@pytest.mark.parametrize(("epochs", "err"), [
    ((3, 1), ValueError), ((2, 2), ValueError), ((), ValueError), ((0, 2), ValueError),
    ((1.5, 2), TypeError), ("12", TypeError), ({1, 2}, TypeError),
])
def test_sgd_budgets_bad_input(epochs, err, rng):
    with pytest.raises(err, match="epochs"):
        train(MLP((5, 3)), tiny_data(rng), 0.1, epochs=epochs)


def bn_layer_pass(net, params, X, y):
    """One model at a time, BN through bnlib.bn's checked layer, the loss written out."""
    loss, grads = [], {k: [] for k in net.param_names()}
    for m in range(len(params["W0"])):
        p = {k: q[m] for k, q in params.items()}
        a, caches, masks, inputs = X, [], [], []
        for layer in range(net.depth):
            inputs.append(a)
            out, cache = batchnorm_forward(a @ p[f"W{layer}"], p[f"gamma{layer}"],
                                           p[f"beta{layer}"], net.var_offset)
            caches.append(cache)
            masks.append(out > 0)
            a = out * masks[-1]
        B, C = out.shape
        t = (y[:, None] == np.arange(C)).astype(float)
        zs = out - out.max(axis=-1, keepdims=True)
        e = np.exp(zs)
        s = e.sum(axis=-1, keepdims=True)
        q = e / s
        if net.loss == "cross_entropy":
            loss.append(-np.sum(t * (zs - np.log(s))) / B)
            d = (q - t) / B
        else:
            loss.append(np.sum((q - t) * (q - t)) / (B * C))
            dq = 2.0 * (q - t) / (B * C)
            d = q * (dq - np.sum(dq * q, axis=-1, keepdims=True))
        for layer in reversed(range(net.depth)):
            d, dg, db = batchnorm_backward(d, caches[layer])
            grads[f"gamma{layer}"].append(dg)
            grads[f"beta{layer}"].append(db)
            grads[f"W{layer}"].append(inputs[layer].T @ d)
            if layer:
                d = (d @ p[f"W{layer}"].T) * masks[layer - 1]
    return np.array(loss), {k: np.stack(g) for k, g in grads.items()}


@pytest.mark.parametrize("loss", ["cross_entropy", "quadratic"])
def test_training_pass_is_the_bn_layer_bit_for_bit(loss, rng):
    """The training pass writes BN out unchecked, on batch-major activations: the same bits
    as bnlib.bn's checked layer applied model by model."""
    net = MLP((6, 12, 10), bn=True, loss=loss)
    params = randomise(net, net.init(2, shape=(4,)), rng)
    X, y = rng.standard_normal((9, 6)), rng.integers(0, 10, 9)
    got, grads = net.loss_and_grad(params, X, y)
    want, ref = bn_layer_pass(net, params, X, y)
    u = unit_roundoff()           # the probe moves bnlib's sums, not this file's: then close
    tol = 0.0 if u == 2.0**-53 else 1e3 * u

    def same(a, b):
        return np.all(np.abs(a - b) <= tol * np.max(np.abs(b)))

    assert same(got, want)
    for k in ref:
        assert same(grads[k], ref[k]), k


def test_constant_unit_without_offset_is_rejected_or_diverges(rng):
    net = MLP((5, 3), bn=True, var_offset=0.0)
    p = net.init(0)
    p["W0"][:, 1] = 0.0                   # unit 1 is 0 on every example
    X, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    with pytest.raises(ValueError, match="constant"):
        net.loss_and_grad(p, X, y)
    assert np.isfinite(MLP((5, 3), bn=True).loss_and_grad(p, X, y)[0])
def test_predict_logits_without_bn_adds_the_biases(rng):
    """Evaluation of a plain network (no BN): z = a W + b per layer, as written out by hand."""
    net = MLP((5, 6, 3), bn=False)
    params = net.init(2)
    for k in params:
        params[k] = rng.standard_normal(params[k].shape)        # nonzero biases too
    X = rng.standard_normal((20, 5))
    assert np.allclose(net.predict_logits(params, X), naive_logits(net, params, X), rtol=1e-12)


def test_relu_passes_no_gradient_at_exactly_zero():
    """ReLU'(0) = 0, as in the frameworks: a hidden unit whose pre-activation is exactly 0 on
    every example gets no gradient, the one-sided derivative towards negative inputs (the
    other side, measured by a finite difference, is not zero, so the choice matters)."""
    net = MLP((3, 2, 2), bn=False)
    params = net.init(seed=0)
    params["W0"][:, 0], params["b0"][0, 0] = 0.0, 0.0
    X = np.random.default_rng(5).uniform(0.1, 1.0, (6, 3))
    y = np.array([0, 1, 0, 1, 1, 0])
    loss, grads = net.loss_and_grad(params, X, y)
    assert grads["b0"][0, 0] == 0.0 and np.all(grads["W0"][:, 0] == 0.0)
    h = 1e-6
    for sign, nonzero in ((-1, False), (1, True)):
        moved = {k: v.copy() for k, v in params.items()}
        moved["b0"][0, 0] = sign * h
        slope = (net.loss_and_grad(moved, X, y)[0] - loss) / (sign * h)
        assert (abs(slope) > 1e-3) == nonzero
