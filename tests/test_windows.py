"""bnlib.windows against exact piecewise-linear widths, GD's closed form and a hand-written BNGD."""

import numpy as np
import pytest

from bnlib import (
    bngd,
    crossing_width,
    eigen_problem,
    gd,
    log_width,
    lr_study,
    lr_windows,
    standard_windows,
    windows,
)
from tools.probe import unit_roundoff

# the rounding unit of the arithmetic in use (2**-53, or the rounding probe's delta):
# rounding-level tolerances below are multiples of it
U = unit_roundoff()


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


def test_crossing_width_is_exact_for_piecewise_linear_data():
    """y = |x - 0| - r in x = log10 ε, with the kink on a grid point: interpolation is exact,
    so the set {y <= 0} has width 2r whatever the grid spacing and the offset of r."""
    for n in (9, 17, 41):
        lr = np.logspace(-2, 2, n)
        x = np.log10(lr)
        for r in (0.37, 1.0, 1.61):
            assert np.isclose(crossing_width(np.abs(x) - r, lr, 0.0), 2 * r, atol=1e-12)
    # a hole: two V-shaped windows of half-widths 0.3 and 0.2 around x = -1 and x = 1
    lr = np.logspace(-2, 2, 81)
    x = np.log10(lr)
    y = np.minimum(np.abs(x + 1) - 0.3, np.abs(x - 1) - 0.2)
    assert np.isclose(crossing_width(y, lr, 0.0), 1.0, atol=1e-12)
    # a level per row and a non-uniform grid
    lr2 = np.array([1e-3, 1e-2, 3e-2, 1.0, 5.0])
    y2 = np.log10(lr2)[None, :] * np.array([[1.0], [-1.0]])   # y = x and y = -x
    got = crossing_width(y2, lr2, np.array([-1.5, 0.0]))
    assert np.allclose(got, [np.log10(10**-1.5 / 1e-3), np.log10(5.0)], atol=1e-12)


def test_crossing_width_non_finite_points():
    lr = np.logspace(0, 4, 5)                                   # spacing one decade
    y = np.array([1.0, -1.0, -1.0, 1.0, 1.0])
    assert np.isclose(crossing_width(y, lr, 0.0), 2.0)          # half of each end interval
    y_div = np.array([1.0, -1.0, -1.0, np.inf, np.nan])       # diverged: crossing at the finite point
    assert np.isclose(crossing_width(y_div, lr, 0.0), 1.5)
    y_zero = np.array([1.0, -np.inf, -1.0, 1.0, 1.0])          # excess exactly 0: deep inside
    assert np.isclose(crossing_width(y_zero, lr, 0.0), 2.5)
    assert crossing_width(np.full(5, np.inf), lr, 0.0) == 0.0


def test_crossing_width_rejects_bad_input():
    lr = np.logspace(0, 1, 3)
    with pytest.raises(TypeError, match="y"):
        crossing_width(np.array([True, False, True]), lr, 0.0)
    with pytest.raises(ValueError, match="lr"):
        crossing_width(np.zeros(3), lr[::-1], 0.0)
    with pytest.raises(ValueError, match="y must have 3"):
        crossing_width(np.zeros(4), lr, 0.0)
    with pytest.raises(ValueError, match="level"):
        crossing_width(np.zeros((2, 3)), lr, np.zeros(3))


def test_gd_window_matches_the_closed_form():
    """GD from 0 on H = diag(λ): e_K = (1 - ελ)^K u*, so the relative excess after K steps is
    Σ λ_i (1 - ελ_i)^{2K} u_i² / Σ λ_i u_i². Its window, found by bisection on the closed
    form, agrees with the interpolated width of the runs on a grid of 8 points per decade (the
    linear interpolation of log10 of the excess is the only error)."""
    lam = np.logspace(0, 1, 8)
    probs = [eigen_problem(lam, seed=s) for s in range(2)]
    K, tol = 300, 1e-6
    lr = np.logspace(-3, 0, 25)
    out = lr_windows(probs, lr, K, tol, np.ones(8))

    def rel(p, eps):
        u = p.u_star
        return np.sum(lam * (1 - eps * lam) ** (2 * K) * u**2) / np.sum(lam * u**2)

    for p, w, r in zip(probs, out.gd, out.rel_gd, strict=True):
        conv = lr < 2 / lam.max()
        exact = np.array([rel(p, e) for e in lr[conv]])
        big = exact > 1e-12                                   # below that both are rounding noise
        assert np.allclose(r[conv][big], exact[big], rtol=1e-6) and np.all(r[conv][~big] < 1e-11)
        assert np.all(np.isinf(r[~conv]))

        def root(p, lo, hi, inside_low):                       # bisection in log10 ε
            for _ in range(60):
                mid = np.sqrt(lo * hi)
                if (rel(p, mid) <= tol) == inside_low:
                    lo = mid
                else:
                    hi = mid
            return lo
        left = root(p, 1e-3, 0.1, False)
        right = root(p, 0.1, 2 / lam.max(), True)
        # both crossings interpolated, the right one against the extra run just below 2/λ_max
        assert abs(np.log10(right / left) - w) < 0.03


def test_gd_window_ends_by_brute_force(problem, rng):
    w0 = rng.standard_normal(problem.d)
    lo, hi = windows.gd_window(problem, w0, 200, 1e-6)
    run = gd(problem, np.array([lo * 0.999, lo * 1.001, hi * 0.999, hi * 1.001]), 200, w0,
             record="loss")
    assert np.array_equal(run.excess[-1] <= 1e-6, [False, True, True, False])


def test_bngd_window_ends_by_brute_force(problem, rng):
    w0 = rng.standard_normal(problem.d)
    a0 = 0.5 * np.sign(w0 @ problem.g)
    lo, hi = windows.bngd_window(problem, a0, w0, 1000, 1e-12, inside=1.0, below=1e-4,
                                   above=1e6, rel_tol=1e-3)
    run = bngd(problem, np.array([lo / 1.002, lo, hi, hi * 1.002]), 1000, a0, w0, record="loss")
    assert np.array_equal(run.excess[-1] <= 1e-12, [False, True, True, False])
    # one point per round (the least allowed): plain bisection finds the same ends
    lo1, hi1 = windows.bngd_window(problem, a0, w0, 1000, 1e-12, inside=1.0, below=1e-4,
                                   above=1e6, rel_tol=1e-3, points=1)
    assert np.allclose([lo1, hi1], [lo, hi], rtol=2e-3)
    with pytest.raises(ValueError, match="outcomes"):
        windows.bngd_window(problem, a0, w0, 1000, 1e-12, inside=1e-4, below=1e-5, above=1.0)


def test_bngd_window_counts_an_excess_equal_to_tol_as_reached(problem, rng):
    """Reaching tol means excess <= tol, as the runs' tol stop: a tol equal to the final
    excess at ``inside`` (the same batch of three runs, so the same bits) is reached there."""
    w0 = rng.standard_normal(problem.d)
    a0 = 0.5 * np.sign(w0 @ problem.g)
    ends = np.array([1e-4, 1.0, 1e6])
    run = bngd(problem, ends, 300, a0, w0, record="loss")
    tol = float(run.excess[-1, 1])
    assert 0 < tol < run.excess[-1, 0] and not (run.excess[-1, 2] <= tol)
    lo, hi = windows.bngd_window(problem, a0, w0, 300, tol, inside=1.0, below=1e-4,
                                 above=1e6, rel_tol=1e-2)
    assert lo <= 1.0 <= hi


def test_bngd_excess_matches_a_hand_written_loop():
    lam = np.array([1.0, 3.0, 7.0])
    p = eigen_problem(lam, seed=4)
    w0 = np.array([0.3, -1.0, 0.5])
    lr = np.array([0.05, 0.5, 5.0])
    out = lr_windows([p], lr, [7, 20], 1e-3, w0, a0=0.7, lr_a=0.5, gd=False)
    assert out.gd is None and out.rel_bngd.shape == (1, 3, 2)
    H, g = np.diag(lam), p.g
    for i, eps in enumerate(lr):
        a, w = 0.7, w0.copy()
        for k in range(1, 21):
            n = np.sqrt(w @ H @ w)
            da = a - w @ g / n
            dw = -(a / n) * (g - (w @ g) / n**2 * H @ w)
            a, w = a - 0.5 * da, w - eps * dw
            if k in (7, 20):
                u = a * w / np.sqrt(w @ H @ w)
                rel = 0.5 * (u - p.u_star) @ H @ (u - p.u_star) / (0.5 * p.u_star @ g)
                assert np.isclose(out.rel_bngd[0, i, [7, 20].index(k)], rel, rtol=1e-9)


def test_several_budgets_equal_separate_calls_and_a0_axis():
    probs, w0 = lr_study(10.0, d=6, n_seeds=2)
    lr = np.logspace(-3, 3, 13)
    both = lr_windows(probs, lr, [50, 200], 1e-4, w0, a0=np.array([1.0, 0.1]))
    assert both.bngd.shape == (2, 2, 2) and both.gd.shape == (2, 2)
    for j, K in enumerate((50, 200)):
        one = lr_windows(probs, lr, K, 1e-4, w0, a0=np.array([1.0, 0.1]))
        # the same runs; the widths are summed along another axis (rounding only)
        assert np.allclose(one.bngd, both.bngd[..., j], rtol=1e3 * U, atol=0)
        assert np.allclose(one.gd, both.gd[:, j], rtol=1e3 * U, atol=0)
        assert one.steps == K


def test_lr_study_and_standard_windows():
    probs, w0 = lr_study(100.0, d=5, n_seeds=3, seed=1)
    assert len(probs) == 3 and np.allclose(np.linalg.norm(w0, axis=1), 1.0)
    assert np.allclose(probs[2].u_star, eigen_problem(np.logspace(0, 2, 5), seed=2).u_star)
    out = standard_windows(10.0, d=4, n_seeds=2, per_decade=2)
    assert out.bngd.shape == (2,) and out.steps == 10_000 and out.tol == 1e-6
    assert np.all(out.bngd > out.gd) and np.all(out.gd > 0)
    again = standard_windows(10.0, d=4, n_seeds=2, per_decade=2)
    assert np.array_equal(out.bngd, again.bngd)                  # deterministic
    assert np.allclose(np.log10(out.lr), -4.5 + np.arange(17) / 2)  # 10^-4.5 … 10^3.5, 2/decade


def test_lr_windows_rejects_bad_input():
    probs, w0 = lr_study(10.0, d=3, n_seeds=2)
    lr = np.logspace(-2, 1, 4)
    with pytest.raises(ValueError, match="tol"):
        lr_windows(probs, lr, 10, 1.5, w0)
    with pytest.raises(ValueError, match="problems"):
        lr_windows([], lr, 10, 1e-3, w0)
    with pytest.raises(ValueError, match="w0"):
        lr_windows(probs, lr, 10, 1e-3, np.ones((3, 3)))
    with pytest.raises(ValueError, match="lr"):
        lr_windows(probs, lr[::-1], 10, 1e-3, w0)
    with pytest.raises(ValueError, match="steps"):
        lr_windows(probs, lr, 0, 1e-3, w0)
    with pytest.raises(ValueError, match="kappa"):
        lr_study(0.5)


def test_bngd_window_ends_are_the_ends_of_a_brute_force_interval():
    """Where the set of steps reaching tol is one interval (checked on a grid of 100 points per
    decade with real runs; chapter 04's problem, BNGD from a_0 of the wrong sign), the ends
    found agree with the grid's to within the grid's spacing and rel_tol."""
    from bnlib import OLS

    problem = OLS.random(10, 20.0, seed=4, noise=0.5)
    w0 = np.random.default_rng(2019).standard_normal(10)
    w0 /= np.linalg.norm(w0)
    a0 = -0.5 * np.sign(w0 @ problem.g)
    lr = np.logspace(-2.5, 2.5, 501)
    run = bngd(problem, lr, 1000, a0, w0, record="loss")
    ok = (run.excess[-1] <= 1e-12) & ~run.diverged
    i0, i1 = np.flatnonzero(ok)[[0, -1]]
    assert 0 < i0 < i1 < lr.size - 1 and ok[i0:i1 + 1].all()       # one interval inside
    rel_tol = 1e-2
    lo, hi = windows.bngd_window(problem, a0, w0, 1000, 1e-12, inside=1.0, below=lr[0],
                                 above=lr[-1], rel_tol=rel_tol)
    assert lr[i0 - 1] < lo <= lr[i0] * (1 + rel_tol)
    assert lr[i1] / (1 + rel_tol) <= hi < lr[i1 + 1]


def test_crossing_width_exact_zero_excess_before_an_outside_point():
    """An excess of exactly 0 (log −inf) is deep inside from either side: with an outside
    point to its right the crossing is at that point, a whole decade here."""
    lr = np.logspace(0, 4, 5)                                   # spacing one decade
    y = np.array([1.0, -1.0, -np.inf, 1.0, 1.0])
    assert np.isclose(crossing_width(y, lr, 0.0), 0.5 + 1.0 + 1.0)


def test_lr_windows_grid_that_already_holds_the_point_below_the_edge():
    """GD's extra run sits at 2/λ_max · (1 − 10⁻⁹); a grid that holds that very step size is
    used as it is (not with the point twice), and the width is crossing_width of the closed
    form Σ λ_i (1 − ελ_i)^{2K} u_i² / Σ λ_i u_i² on that grid."""
    lam = np.array([1.0, 4.0])
    p = eigen_problem(lam, seed=0)
    edge = 2 / lam.max() * (1 - 1e-9)
    lr = np.concatenate([np.logspace(-2, -0.5, 7), [edge]])
    K, tol = 20, 1e-3
    out = lr_windows([p], lr, K, tol, np.ones(2))
    u = p.u_star
    rel = np.array([np.sum(lam * (1 - e * lam) ** (2 * K) * u**2) for e in lr]) / np.sum(lam * u**2)
    assert rel.min() > 1e-10                              # far above rounding noise
    assert np.isclose(out.gd[0], crossing_width(np.log10(rel), lr, np.log10(tol)), rtol=1e-9)


def test_gd_window_on_the_smallest_grid():
    """n_grid = 3 (the least allowed): the grid is 2/λ_max · (10⁻¹², 10⁻⁶, 1) and a budget of
    10⁷ steps puts only the middle point inside; bisection still finds both ends (the upper
    one about 3·10⁻⁷ below the edge), checked against the closed form
    ½ Σ λ_i (1 − ελ_i)^{2K} e_i² written out in the eigenbasis."""
    lam = np.array([1.0, 2.0])
    p = eigen_problem(lam, seed=0)
    w0, K = np.zeros(2), 10**7
    e = w0 - p.u_star

    def excess(eps):
        return 0.5 * np.sum(lam * (1 - eps * lam) ** (2 * K) * e**2)

    tol = 1e-6 * excess(0.0)
    lo, hi = windows.gd_window(p, w0, K, tol, n_grid=3)
    assert 1e-12 < lo < 1e-6 < hi < 1 - 1e-7                    # 2/λ_max = 1
    near = [lo * (1 - 1e-7), lo * (1 + 1e-7), hi * (1 - 1e-7), hi * (1 + 1e-7)]
    assert [excess(x) <= tol for x in near] == [False, True, True, False]
