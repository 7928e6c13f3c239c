"""The batch-normalization layer against independent computations."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bnlib import batch_std_mean, batchnorm_backward, batchnorm_forward


def test_forward_against_direct_formula(rng):
    x = rng.standard_normal((16, 3)) * [1.0, 5.0, 0.1] + [2.0, -1.0, 0.0]
    gamma, beta = np.array([1.5, 0.5, 2.0]), np.array([0.1, -0.2, 0.3])
    y, _ = batchnorm_forward(x, gamma, beta, var_offset=1e-5)
    expect = gamma * (x - x.mean(0)) / np.sqrt(np.var(x, axis=0, ddof=0) + 1e-5) + beta
    assert np.allclose(y, expect, rtol=1e-12)
    # biased variance, not the unbiased one
    wrong = gamma * (x - x.mean(0)) / np.sqrt(np.var(x, axis=0, ddof=1) + 1e-5) + beta
    assert not np.allclose(y, wrong, rtol=1e-3)


@settings(max_examples=50, deadline=None)
@given(x=arrays(np.float64, st.tuples(st.integers(2, 20), st.integers(1, 4)),
                elements=st.floats(-1e3, 1e3)))
def test_zero_mean_unit_variance(x):
    assume(np.all(np.std(x, axis=0) >= 1e-3))
    y, _ = batchnorm_forward(x, 1.0, 0.0, var_offset=0.0)
    assert np.allclose(y.mean(axis=0), 0, atol=1e-9)
    assert np.allclose(y.var(axis=0), 1, rtol=1e-9)


def test_scale_invariance(rng):
    x = rng.standard_normal((10, 4))
    y1, _ = batchnorm_forward(x, 1.0, 0.0, var_offset=0.0)
    y2, _ = batchnorm_forward(7.5 * x, 1.0, 0.0, var_offset=0.0)
    assert np.allclose(y1, y2)


def test_backward_finite_differences(rng):
    x = rng.standard_normal((7, 3))
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    dy = rng.standard_normal((7, 3))

    def f(x_, g_, b_):
        return np.sum(dy * batchnorm_forward(x_, g_, b_, var_offset=1e-3)[0])

    _, cache = batchnorm_forward(x, gamma, beta, var_offset=1e-3)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)
    h = 1e-6
    num_dx = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        num_dx[idx] = (f(x + e, gamma, beta) - f(x - e, gamma, beta)) / (2 * h)
    num_dg = np.array([(f(x, gamma + h * e, beta) - f(x, gamma - h * e, beta)) / (2 * h)
                       for e in np.eye(3)])
    num_db = np.array([(f(x, gamma, beta + h * e) - f(x, gamma, beta - h * e)) / (2 * h)
                       for e in np.eye(3)])
    assert np.allclose(dx, num_dx, atol=1e-7)
    assert np.allclose(dgamma, num_dg, atol=1e-7)
    assert np.allclose(dbeta, num_db, atol=1e-7)


def test_backward_other_axis_and_broadcast_params(rng):
    x = rng.standard_normal((2, 9, 3))   # (models, batch, features), batch on axis 1
    gamma = rng.standard_normal((2, 1, 3))
    y, cache = batchnorm_forward(x, gamma, 0.0, axis=1)
    for m in range(2):
        ym, _ = batchnorm_forward(x[m], gamma[m, 0], 0.0)
        assert np.allclose(y[m], ym)
    dy = rng.standard_normal(x.shape)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)
    assert dgamma.shape == (2, 1, 3) and np.shape(dbeta) == ()
    _, c0 = batchnorm_forward(x[0], gamma[0, 0], 0.0)
    assert np.allclose(dx[0], batchnorm_backward(dy[0], c0)[0])


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.ones((1, 3)), 1.0, 0.0), "at least 2 examples"),
        ((np.array([[1.0, np.nan], [2.0, 3.0]]), 1.0, 0.0), "x must be finite"),
        ((np.ones((4, 3)), np.ones(2), 0.0), "gamma of shape"),
        ((np.ones((4, 3)), 1.0, np.ones(5)), "beta of shape"),
        ((np.ones((4, 3)), 1.0, 0.0, -1.0), "var_offset must be >= 0"),
        ((np.ones((4, 3)), 1.0, 0.0, 0.0), "constant over the batch"),
        ((np.float64(3.0), 1.0, 0.0), "batch axis"),
    ],
)
def test_forward_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        batchnorm_forward(*args)


def test_backward_bad_input(rng):
    _, cache = batchnorm_forward(rng.standard_normal((4, 2)), 1.0, 0.0)
    with pytest.raises(ValueError, match="dy must have the shape"):
        batchnorm_backward(np.ones((4, 3)), cache)
    with pytest.raises(TypeError, match="cache"):
        batchnorm_backward(np.ones((4, 2)), None)


def test_batch_std_mean_against_monte_carlo():
    rng = np.random.default_rng(7)
    for B in (2, 3, 5, 16):
        x = rng.standard_normal((200_000, B))
        s = x.std(axis=1)                       # biased (ddof = 0), as BN uses
        se = s.std() / np.sqrt(s.size)
        assert abs(s.mean() - batch_std_mean(B)) < 5 * se


def test_batch_std_mean_large_batch_and_shapes():
    B = np.array([[100, 1000], [10_000, 100_000]])
    out = batch_std_mean(B)
    assert out.shape == (2, 2)
    # 1 - 3/(4B) is the first-order expansion; the remainder is O(1/B^2)
    assert np.all(np.abs(out - (1 - 3 / (4 * B))) < 1.0 / B**2)
    assert batch_std_mean(2) == pytest.approx(np.sqrt(1 / np.pi), rel=1e-14)


@pytest.mark.parametrize("bad, err", [(1, ValueError), (0, ValueError), (2.0, TypeError),
                                      (True, TypeError), ([3, 1], ValueError)])
def test_batch_std_mean_rejects_bad_batch(bad, err):
    with pytest.raises(err, match="batch"):
        batch_std_mean(bad)


def test_cache_is_a_named_tuple_of_the_forward_quantities(rng):
    x = rng.standard_normal((6, 3))
    _, cache = batchnorm_forward(x, 2.0, np.zeros(3), 0.3)
    assert isinstance(cache, tuple) and len(cache) == 6
    assert np.allclose(cache.inv_std, 1 / np.sqrt(x.var(0, keepdims=True) + 0.3), rtol=1e-14)
    assert np.allclose(cache.xhat, (x - x.mean(0)) * cache.inv_std, rtol=1e-14)
    assert (cache.beta_shape, cache.axis, cache.shape) == ((3,), 0, (6, 3))
    assert cache.inv_std is cache[1]
