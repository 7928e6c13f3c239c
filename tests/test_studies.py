"""bnlib.studies and the network measures of bnlib.nn and bnlib.windows against
independent computations: per-unit numpy loops for the effective step, the scaling law
for its invariance, and a hand count of grid cells for the windows."""

import numpy as np
import pytest

from bnlib import MLP, SGDRun, nn, studies, windows
from tools.probe import unit_roundoff


def naive_effective(net, params, X, lr):
    """One unit at a time, the BN layer written out with numpy's own mean and var."""
    out, a = [], X
    for layer in range(net.depth):
        W, g, b = params[f"W{layer}"], params[f"gamma{layer}"][0], params[f"beta{layer}"][0]
        z = a @ W
        eff = np.array([lr * g[j] ** 2 / (np.var(z[:, j]) + net.var_offset) for j in range(z.shape[1])])
        out.append(eff)
        a = np.maximum(g * (z - z.mean(0)) / np.sqrt(z.var(0) + net.var_offset) + b, 0)
    return out


def test_effective_steps_match_a_per_unit_loop():
    rng = np.random.default_rng(0)
    net = MLP((5, 4, 3), bn=True, loss="quadratic")
    params = net.init(1)
    params["gamma0"] = rng.uniform(0.5, 2, (1, 4))
    params["gamma1"] = rng.uniform(0.5, 2, (1, 3))
    params["beta0"] = rng.normal(size=(1, 4))
    X = rng.normal(size=(20, 5))
    got = nn.effective_steps(net, params, X, 0.3)
    want = naive_effective(net, params, X, 0.3)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def test_effective_steps_obey_the_scaling_law_and_batch_over_models():
    net = MLP((6, 5, 3), bn=True, loss="quadratic", var_offset=0.0)
    X = np.random.default_rng(2).normal(size=(30, 6))
    base = net.init(0)
    scaled = net.init(0, shape=(2,), weight_scale=4.0)
    e1 = nn.effective_steps(net, base, X, 0.5)
    e2 = nn.effective_steps(net, scaled, X, np.array([0.5, 16.0 * 0.5]))
    for a, b in zip(e1, e2, strict=True):
        assert b.shape == (2,) + a.shape
        np.testing.assert_allclose(b[1], a, rtol=1e-12)        # r = 4, step r^2 eps
        np.testing.assert_allclose(b[0], a / 16.0, rtol=1e-12)  # r = 4, same eps


def test_effective_steps_rejects_bad_input():
    X = np.zeros((4, 3)) + np.arange(4)[:, None]
    with pytest.raises(ValueError, match="BN"):
        nn.effective_steps(MLP((3, 2), bn=False), MLP((3, 2), bn=False).init(0), X, 1.0)
    net = MLP((3, 2), bn=True)
    with pytest.raises(ValueError, match="lr"):
        nn.effective_steps(net, net.init(0), X, -1.0)
    with pytest.raises(ValueError, match="X"):
        nn.effective_steps(net, net.init(0), X[:, :2], 1.0)
    with pytest.raises(TypeError, match="net"):
        nn.effective_steps("net", {}, X, 1.0)


def fake_run(acc, lr, diverged=None):
    acc = np.asarray(acc, dtype=float)
    div = np.zeros(acc.shape, bool) if diverged is None else diverged
    z = np.zeros(acc.shape)
    return SGDRun(lr=np.broadcast_to(lr, acc.shape[1:]).copy(), lr_a=z[0], seeds=(0, 1),
                  batch_loss=z[None], train_loss=z, train_acc=z, test_loss=z, test_acc=acc,
                  diverged=div, params=None, epochs=1, batch_size=2)


def test_window_decades_counts_grid_cells_of_the_seed_mean():
    lr = np.logspace(0, 2, 9)                  # 4 points per decade: each counts 0.25
    acc = np.array([[0.1, 0.9, 0.9, 0.9, 0.5, 0.9, 0.9, 0.2, 0.1],
                    [0.1, 0.75, 0.9, 0.9, 0.5, 0.9, 0.9, 0.2, 0.1]])
    div = np.zeros_like(acc, dtype=bool)
    div[0, 6] = True                           # a diverged seed removes its grid point
    split = np.stack([acc, acc], axis=1)       # (S, A, n)
    out = windows.window_decades({"gd": fake_run(acc, lr, div), "bn_split": fake_run(split, lr)}, 0.8)
    assert out["gd"] == pytest.approx(4 * 0.25)          # points 1 (mean 0.825), 2, 3, 5
    np.testing.assert_allclose(out["bn_split"], [5 * 0.25, 5 * 0.25])
    with pytest.raises(TypeError, match="runs"):
        windows.window_decades([1], 0.8)


def test_window_margin_is_the_closest_seed_mean_to_the_threshold():
    lr = np.logspace(0, 1, 5)
    acc = np.array([[0.1, 0.79, 0.95, 0.9, 0.3],
                    [0.1, 0.83, 0.95, 0.2, 0.3]])   # means 0.1, 0.81, 0.95, 0.55, 0.3
    div = np.zeros_like(acc, dtype=bool)
    div[1, 0] = True                                # grid point 0 is left out
    split = np.stack([acc, acc[::-1]], axis=1)      # (S, A, n)
    out = windows.window_margin({"gd": fake_run(acc, lr, div), "bn_split": fake_run(split, lr)}, 0.8)
    assert out["gd"] == pytest.approx(0.01)
    np.testing.assert_allclose(out["bn_split"], [0.01, 0.01])
    all_div = windows.window_margin({"gd": fake_run(acc, lr, np.ones_like(div))}, 0.8)
    assert all_div["gd"] == np.inf
    with pytest.raises(TypeError, match="runs"):
        windows.window_margin([1], 0.8)
    with pytest.raises(ValueError, match="threshold"):
        windows.window_margin({"gd": fake_run(acc, lr)}, np.nan)


@pytest.mark.parametrize("loss", ["quadratic", "cross_entropy"])
@pytest.mark.parametrize("sizes", [(5, 4), (5, 6, 3)])
def test_top_bn_hessian_matches_finite_differences(loss, sizes):
    """Central differences of bnlib's backward pass (the γ, β gradient) and second
    differences of the loss alone, on a random state of a softmax or one-hidden-layer net."""
    rng = np.random.default_rng(3)
    net = MLP(sizes, bn=True, loss=loss)
    params = net.init(2, shape=(2,))
    C = sizes[-1]
    top = net.depth - 1
    params[f"gamma{top}"] = rng.uniform(0.5, 3.0, (2, 1, C))
    params[f"beta{top}"] = rng.normal(size=(2, 1, C))
    X, y = rng.normal(size=(12, sizes[0])), rng.integers(0, C, 12)
    H = nn.top_bn_hessian(net, params, X, y)
    assert H.shape == (2, 2 * C, 2 * C)
    np.testing.assert_allclose(H, np.swapaxes(H, -1, -2), atol=1e-15)
    names, h = (f"gamma{top}", f"beta{top}"), 1e-5

    def grad(par):
        _, g = net.loss_and_grad(par, X, y)
        return np.concatenate([g[names[0]][:, 0], g[names[1]][:, 0]], axis=-1)

    fd = np.empty_like(H)
    for j in range(2 * C):
        plus = {k: val.copy() for k, val in params.items()}
        minus = {k: val.copy() for k, val in params.items()}
        plus[names[j // C]][:, 0, j % C] += h
        minus[names[j // C]][:, 0, j % C] -= h
        fd[:, :, j] = (grad(plus) - grad(minus)) / (2 * h)
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-9)
    # one diagonal entry from the loss alone (no backward pass)
    loss0, _ = net.loss_and_grad(params, X, y)
    hh = 1e-4
    shifted = []
    for sign in (1, -1):
        par = {k: val.copy() for k, val in params.items()}
        par[names[1]][:, 0, 0] += sign * hh
        shifted.append(net.loss_and_grad(par, X, y)[0])
    second = (shifted[0] - 2 * loss0 + shifted[1]) / hh**2
    # a second difference loses |L| u / hh^2 to rounding (u: the unit roundoff, larger
    # under the rounding probe)
    slack = 10 * unit_roundoff() * np.max(np.abs(loss0)) / hh**2
    np.testing.assert_allclose(H[:, C, C], second, rtol=1e-5, atol=1e-8 + slack)
    lam = nn.top_bn_sharpness(net, params, X, y)
    np.testing.assert_allclose(lam, [np.linalg.eigvalsh(Hm).max() for Hm in fd], rtol=1e-6)


def test_top_bn_hessian_rejects_bad_input():
    with pytest.raises(ValueError, match="BN"):
        nn.top_bn_hessian(MLP((3, 2), bn=False), MLP((3, 2), bn=False).init(0),
                                  np.zeros((4, 3)), np.zeros(4, dtype=int))
    with pytest.raises(TypeError, match="net"):
        nn.top_bn_sharpness("net", {}, np.zeros((4, 3)), np.zeros(4, dtype=int))


def test_split_runs_repeat_the_sweep_and_keep_parameters():
    from bnlib import load_digits_split

    data = load_digits_split(0)
    lr = np.array([0.1, 10.0])
    runs = studies.softmax_quadratic(data, lr_a=(0.1, 100.0), epochs=1, seeds=(0,), lr=lr)
    split = studies.split_runs(data, (100.0,), epochs=1, seeds=(0,), lr=lr)
    assert split.params["W0"].shape == (1, 1, 2, 64, 10)
    np.testing.assert_array_equal(split.test_acc[:, 0], runs["bn_split"].test_acc[:, 1])
    with pytest.raises(ValueError, match="1-D"):
        studies.split_runs(data, [[1.0]], epochs=1)


def test_hidden_widths_grid_and_models_trained_alone():
    from bnlib import load_digits_split

    lr = studies.WIDTH_LR
    assert np.allclose(np.diff(np.log10(lr)), 0.5)              # two points per decade
    assert np.isin(lr, studies.SOFTMAX_LR).all()               # points of the finer grid
    data = load_digits_split(0)
    runs = studies.hidden_widths(data, (3,), epochs=1, seeds=(0,), lr=lr[[3, 5]],
                                 gd_lr=lr[[3, 5]])
    assert runs[3]["gd"].test_acc.shape == (1, 2)
    assert runs[3]["bn_split"].test_acc.shape == (1, 1, 2)
    # each model of the grid is the network trained alone at its eps (eps_a = 0.1 with BN)
    alone_gd = nn.train(MLP((64, 3, 10), bn=False, loss="quadratic"), data, lr[5], epochs=1)
    alone_bn = nn.train(MLP((64, 3, 10), bn=True, loss="quadratic"), data, lr[5], 0.1,
                        epochs=1)
    np.testing.assert_allclose(runs[3]["gd"].batch_loss[:, 0, 1], alone_gd.batch_loss[:, 0],
                               rtol=1e-12)
    np.testing.assert_allclose(runs[3]["bn_split"].batch_loss[:, 0, 0, 1],
                               alone_bn.batch_loss[:, 0], rtol=1e-12)
    with pytest.raises(ValueError, match="1-D"):
        studies.hidden_widths(data, (3,), epochs=1, lr=[[1.0]])
    with pytest.raises(ValueError, match="1-D"):
        studies.hidden_widths(data, (3,), epochs=1, gd_lr=[[1.0]])
    with pytest.raises(ValueError, match="widths"):
        studies.hidden_widths(data, (0,), epochs=1, lr=[1.0])


def test_hidden_widths_gd_grid_and_budgets():
    """gd's grid is the study's up to 10^2.5; a sequence of budgets reads one run twice."""
    from bnlib import load_digits_split

    assert np.array_equal(studies.WIDTH_GD_LR, studies.WIDTH_LR[studies.WIDTH_LR < 10**2.6])
    assert np.isclose(studies.WIDTH_GD_LR[-1], 10**2.5)
    data = load_digits_split(0)
    kw = {"seeds": (1,), "lr": studies.WIDTH_LR[[4, 12]], "gd_lr": studies.WIDTH_LR[[4]]}
    both = studies.hidden_widths(data, (2, 3), epochs=(1, 2), **kw)
    assert list(both) == [1, 2] and list(both[1]) == [2, 3]
    for e in (1, 2):
        alone = studies.hidden_widths(data, (2, 3), epochs=e, **kw)
        for h in (2, 3):
            assert both[e][h]["gd"].test_acc.shape == (1, 1)
            assert both[e][h]["bn_split"].test_acc.shape == (1, 1, 2)
            for key in ("gd", "bn_split"):
                np.testing.assert_array_equal(both[e][h][key].batch_loss,
                                              alone[h][key].batch_loss)
                np.testing.assert_array_equal(both[e][h][key].test_acc, alone[h][key].test_acc)


def test_split_runs_budgets_keep_the_parameters_of_each():
    from bnlib import load_digits_split

    data = load_digits_split(0)
    lr = np.array([0.1, 1000.0])
    runs = studies.split_runs(data, (1.0, 1e3), epochs=(1, 2), seeds=(0,), lr=lr)
    one = studies.split_runs(data, (1.0, 1e3), epochs=1, seeds=(0,), lr=lr)
    for k, p in one.params.items():
        np.testing.assert_array_equal(runs[1].params[k], p)
    assert not np.array_equal(runs[2].params["W0"], runs[1].params["W0"])
    q = studies.softmax_quadratic(data, (1e3,), epochs=(1, 2), seeds=(0,), lr=lr)
    np.testing.assert_array_equal(q[2]["bn_split"].test_acc[:, 0], runs[2].test_acc[:, 1])
def test_standard_decay_settings_are_the_chapters(monkeypatch):
    """The weight-decay chapter's settings, read off the two calls standard_decay makes (the
    runs themselves are stubbed: they take seconds) and checked against numpy: H with
    eigenvalues log-spaced in [1, 100], a unit start along seed 1's normal draw, and the
    windows' tolerance 10⁻³ (J0(0) − J*) = 10⁻³ u*ᵀHu*/2."""
    calls = {}
    monkeypatch.setattr(studies, "floor_sweep", lambda *a, **k: calls.setdefault("sweep", a))
    monkeypatch.setattr(studies, "decay_windows", lambda *a, **k: calls.setdefault("win", a))
    problem, _, _ = studies.standard_decay()
    p, lr, lr_decay, steps, a0, w0 = calls["sweep"]
    q, lr_w, wd, steps_w, a0_w, w0_w, tol = calls["win"]
    assert p is problem and q is problem
    np.testing.assert_allclose(np.linalg.eigvalsh(problem.H), np.logspace(0, 2, 20), rtol=1e-12)
    draw = np.random.default_rng(1).standard_normal(20)
    np.testing.assert_allclose(w0, draw / np.sqrt(draw @ draw), rtol=1e-12)
    assert w0_w is w0 and a0 == a0_w == 1.0
    u_star = np.linalg.solve(problem.H, problem.g)
    assert np.isclose(tol, 1e-3 * 0.5 * u_star @ problem.H @ u_star, rtol=1e-12)
    np.testing.assert_allclose(lr, [0.1, 1.0, 10.0])
    np.testing.assert_allclose(np.log10(lr_decay), np.linspace(-4, -1, 7), rtol=1e-12)
    np.testing.assert_allclose(np.log10(lr_w), np.linspace(-4, 6, 101), atol=1e-12)
    np.testing.assert_allclose(wd, [0.0, 1e-4, 1e-3, 1e-2])
    assert (steps, steps_w) == (10_000, 4000)


def test_window_decades_counts_a_seed_mean_exactly_at_the_threshold():
    """'Reaches' includes equality: a seed mean of exactly 0.75 (binary-exact) is inside."""
    lr = np.logspace(0, 1, 3)                  # 2 points per decade: each counts 0.5
    acc = np.array([[0.5, 0.5, 1.0], [0.5, 1.0, 1.0]])   # seed means 0.5, 0.75, 1.0
    assert acc.mean(axis=0)[1] == 0.75
    out = windows.window_decades({"gd": fake_run(acc, lr)}, 0.75)
    assert out["gd"] == pytest.approx(2 * 0.5)
