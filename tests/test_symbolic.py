"""Symbolic moment expectations against exact averages over a centred data set."""

import numpy as np
import pytest
import sympy as sp

from bnlib import (
    OLS,
    bn_ols_calculus,
    book_latex,
    expect_quadratic,
    moment_symbols,
    symmetric_matrix,
    vector,
)


def centred(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    X -= X.mean(axis=0)
    y = X @ rng.standard_normal(d) + rng.standard_normal(n)
    return X, y


def test_expectation_equals_data_average():
    """On the empirical distribution of centred data the moments are exact, so E[expr] must
    equal the plain average of expr over the data."""
    d = 3
    x, y, H, g, c = moment_symbols(d)
    a, b = sp.symbols("a b", real=True)
    expr = (y - a * x[0] + b * x[2]) ** 2 / 2 + 3 * x[1] * y - x[0] * x[1] + 7 + b * x[2]
    E = expect_quadratic(expr, x, y, H, g, c)
    X, Y = centred(500, d, 0)
    p = OLS.from_samples(X, Y)
    subs = {a: 0.7, b: -1.3, c: p.c}
    subs.update({H[i, j]: p.H[i, j] for i in range(d) for j in range(d)})
    subs.update({g[i]: p.g[i] for i in range(d)})
    direct = np.mean(sp.lambdify((x, y, a, b), expr, "numpy")(X.T, Y, 0.7, -1.3))
    assert np.isclose(float(E.subs(subs)), direct, rtol=1e-12)


def test_ols_loss_closed_form():
    x, y, H, g, c = moment_symbols(2)
    w = vector("w", 2)
    J0 = expect_quadratic((y - (x.T * w)[0]) ** 2 / 2, x, y, H, g, c)
    assert sp.expand(J0 - (c - 2 * (w.T * g)[0] + (w.T * H * w)[0]) / 2) == 0


def test_symmetric_matrix():
    S = symmetric_matrix("S", 3)
    assert S == S.T and len(S.free_symbols) == 6


def test_bad_input():
    x, y, H, g, c = moment_symbols(2)
    with pytest.raises(ValueError, match="degree 3"):
        expect_quadratic(x[0] ** 2 * y, x, y, H, g, c)
    with pytest.raises(ValueError, match="linear in y"):
        expect_quadratic(y + 1, x, y, H, g, c)
    with pytest.raises(ValueError, match="must be 2x2"):
        expect_quadratic(x[0] ** 2, x, y, symmetric_matrix("H", 3), g, c)
    with pytest.raises(ValueError, match="d must be"):
        symmetric_matrix("H", 0)
    with pytest.raises(TypeError, match="name"):
        vector("", 2)


def test_bn_ols_calculus_against_ols_bn_grad():
    """grad_w(J) and dJ/da, evaluated at a numeric point, equal OLS.bn_grad (an independent
    numpy implementation), and J equals OLS.bn_loss."""
    s = bn_ols_calculus()
    p = OLS.random(4, 10.0, seed=2)
    w = np.random.default_rng(5).standard_normal(4)
    a = 0.8
    num = {s.p: float(w @ p.g), s.q: float(w @ p.H @ w), s.a: a, s.c: p.c}
    dJ_dw = s.symmetric(s.grad_w(s.J))
    # dJ_dw = phi1 g + phi2 H w with scalar coefficients in (a, p, q)
    phi1, phi2 = sp.diff(s.J, s.p), 2 * sp.diff(s.J, s.q)
    assert sp.simplify(s.symmetric(sp.expand(dJ_dw - (phi1 * s.g + phi2 * s.H * s.w)))) \
        == sp.ZeroMatrix(s.d, 1)
    grad = float(phi1.subs(num)) * p.g + float(phi2.subs(num)) * (p.H @ w)
    da, dw = p.bn_grad(a, w)
    assert np.allclose(grad, dw, rtol=1e-12)
    assert np.isclose(float(sp.diff(s.J, s.a).subs(num)), da, rtol=1e-12)
    assert np.isclose(float(s.J.subs(num)), p.bn_loss(a, w), rtol=1e-12)


def test_bn_ols_calculus_helpers():
    s = bn_ols_calculus()
    assert s.grad_p == s.g
    assert sp.simplify(s.grad_q - 2 * s.H * s.w) == sp.ZeroMatrix(s.d, 1)
    # scale invariance of J in w: w^T grad_w J = 0 (p, q homogeneous of degree 1 and 2)
    assert s.as_scalars(sp.expand(s.w.T * s.grad_w(s.J))).applyfunc(sp.simplify) == sp.zeros(1, 1)
    assert s.symmetric(s.H.T * s.w) == s.H * s.w
    assert str(s.u_star) == "u^*" and s.identity == sp.Identity(s.d)
    assert s.q.is_positive and s.p.is_real and s.d.is_integer


def test_import_bnlib_does_not_import_sympy():
    import subprocess
    import sys

    code = "import sys, bnlib; assert 'sympy' not in sys.modules; bnlib.symbolic.vector; " \
           "assert 'sympy' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_book_latex_uses_the_book_notation():
    """I for the identity, 0 for a zero block, u^{*\\top}, positive terms first, ε."""
    kit = bn_ols_calculus()
    m, s = sp.symbols("m s", positive=True)
    eps = sp.Symbol("varepsilon", positive=True)
    H_star = kit.H - kit.H * kit.u_star * kit.u_star.T * kit.H / m
    assert r"\mathbb{I}" in sp.latex(kit.identity - eps * H_star)       # sympy's default
    assert book_latex(H_star) == r"H - \frac{1}{m} H u^{*} u^{*\top} H"
    assert book_latex(kit.identity - eps / s**2 * H_star) == (
        r"I - \frac{\varepsilon}{s^{2}} \left(H - \frac{1}{m} H u^{*} u^{*\top} H\right)")
    assert book_latex(sp.ZeroMatrix(1, kit.d)) == "0"
    assert book_latex(kit.w.T * kit.g) == r"w^{\top} g"
    assert book_latex(1 - sp.Symbol("varepsilon_a")) == r"1 - \varepsilon_{a}"
