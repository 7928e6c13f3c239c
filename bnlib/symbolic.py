"""Symbolic helpers (sympy) shared by the chapters' derivations.

The population losses of the book are expectations of polynomials of degree two in the data
(x, y). With E[x] = 0 such an expectation is fixed by the moments H = E[x xᵀ], g = E[x y]
and c = E[y²]; :func:`~bnlib.symbolic.expect_quadratic` performs that replacement term by term.
"""

from __future__ import annotations

import sympy as sp

from . import _validate as v

__all__ = ["symmetric_matrix", "vector", "moment_symbols", "expect_quadratic"]


def symmetric_matrix(name: str, d: int) -> sp.Matrix:
    """A d×d symmetric matrix of real symbols ``name11, name12, ...`` (``name_ij = name_ji``)."""
    d = v.count(d, "d", minimum=1)
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    return sp.Matrix(d, d, lambda i, j: sp.Symbol(f"{name}{min(i, j) + 1}{max(i, j) + 1}", real=True))


def vector(name: str, d: int) -> sp.Matrix:
    """A column of d real symbols ``name1 … named``."""
    d = v.count(d, "d", minimum=1)
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    return sp.Matrix(sp.symbols(f"{name}1:{d + 1}", real=True))


def moment_symbols(d: int):
    """Symbols for the data and the moments in dimension d.

    Returns
    -------
    x : sympy.Matrix, shape (d, 1)
    y : sympy.Symbol
    H : sympy.Matrix, shape (d, d), symmetric
    g : sympy.Matrix, shape (d, 1)
    c : sympy.Symbol
    """
    return vector("x", d), sp.Symbol("y", real=True), symmetric_matrix("H", d), vector("g", d), \
        sp.Symbol("c", real=True)


def expect_quadratic(expr, x, y, H, g, c):
    """E[expr] for a polynomial of degree ≤ 2 in the data (x, y), given E[x] = 0.

    Every monomial is replaced by its moment: 1 → 1, x_i → 0, y² → c, x_i y → g_i,
    x_i x_j → H_ij. Coefficients may be any expressions free of x and y. ``y`` alone has no
    moment in this model and raises.

    Parameters
    ----------
    expr : sympy expression
    x : sympy.Matrix, shape (d, 1)
    y : sympy.Symbol
    H : sympy.Matrix, shape (d, d)
    g : sympy.Matrix, shape (d, 1)
    c : sympy expression

    Returns
    -------
    sympy expression

    Raises
    ------
    ValueError
        If ``expr`` has a term of degree > 2 in (x, y), or a term linear in y alone, or if the
        shapes of x, H and g disagree.
    """
    xs = list(x)
    d = len(xs)
    if H.shape != (d, d) or len(list(g)) != d:
        raise ValueError(f"H must be {d}x{d} and g of length {d} to match x; got H {H.shape}, "
                         f"g of length {len(list(g))}")
    poly = sp.Poly(sp.expand(expr), *xs, y)
    out = sp.Integer(0)
    for monom, coeff in poly.terms():
        px, py = monom[:d], monom[d]
        order = sum(px) + py
        if order > 2:
            raise ValueError(f"expr has a term of degree {order} > 2 in the data: {monom}")
        if order == 0:
            out += coeff
        elif py == 2:
            out += coeff * c
        elif py == 1 and sum(px) == 1:
            out += coeff * g[px.index(1)]
        elif py == 0 and sum(px) == 2:
            i, j = [k for k in range(d) for _ in range(px[k])]
            out += coeff * H[i, j]
        elif py == 1:
            raise ValueError("expr has a term linear in y alone; E[y] is not a moment of the model")
        # a term linear in x has expectation 0
    return sp.expand(out)
