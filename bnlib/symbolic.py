"""Symbolic helpers (sympy) shared by the chapters' derivations.

``import bnlib`` does not import sympy; it is loaded the first time ``bnlib.symbolic`` is used.
The book's population losses are expectations of polynomials of degree two in (x, y), fixed
by H = E[x xᵀ], g = E[x y] and c = E[y²] when E[x] = 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sympy as sp
from sympy.printing.latex import LatexPrinter

from . import PUBLIC
from . import checks as v

__all__ = list(PUBLIC["symbolic"])


def symmetric_matrix(name: str, d: int) -> sp.Matrix:
    """Return a d×d symmetric matrix of real symbols ``name11, name12, ...`` (``name_ij = name_ji``)."""
    d = _name_dim(name, d)
    return sp.Matrix(d, d, lambda i, j: sp.Symbol(f"{name}{min(i, j) + 1}{max(i, j) + 1}", real=True))


def vector(name: str, d: int) -> sp.Matrix:
    """Return a column of d real symbols ``name1 … named``."""
    d = _name_dim(name, d)
    return sp.Matrix(sp.symbols(f"{name}1:{d + 1}", real=True))


def _name_dim(name, d):
    """Check a non-empty symbol name and a dimension d >= 1; return d."""
    d = v.count(d, "d", minimum=1)
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    return d


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
    x_i x_j → H_ij. Coefficients may be any expressions free of x and y. A term linear in
    ``y`` alone (no moment in this model) or of degree > 2 raises ``ValueError``.

    Parameters
    ----------
    expr : sympy expression
    x, y, H, g, c
        The data and moments, as from :func:`~bnlib.symbolic.moment_symbols`.

    Returns
    -------
    sympy expression
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


@dataclass(frozen=True, kw_only=True)
class BNOLSCalculus:
    """Symbols and chain-rule helpers for the BN loss of OLS (see :func:`bn_ols_calculus`).

    Attributes
    ----------
    d : sympy.Symbol
        The dimension (integer, positive).
    w, g, u_star : sympy.MatrixSymbol
        Columns of d rows: the weight, g = E[x y] and the OLS solution u* (printed ``u^*``).
    H : sympy.MatrixSymbol, shape (d, d)
        H = E[x xᵀ]; :meth:`symmetric` applies Hᵀ = H.
    identity : sympy.Identity
        I_d.
    a, c, p : sympy.Symbol
        The BN scale, c = E[y²], and p = wᵀg (real).
    q : sympy.Symbol
        q = wᵀHw = ‖w‖²_H (positive).
    J : sympy.Expr
        J(a, w) = (c − 2 a p/√q + a²)/2 in the scalars p and q.
    grad_p, grad_q : sympy.MatrixExpr
        Columns of d rows: ∇_w p = g and ∇_w q = 2 H w, as sympy differentiates them (with Hᵀ = H applied).
    """

    d: sp.Symbol
    w: sp.MatrixSymbol
    g: sp.MatrixSymbol
    H: sp.MatrixSymbol
    u_star: sp.MatrixSymbol
    identity: sp.Identity
    a: sp.Symbol
    c: sp.Symbol
    p: sp.Symbol
    q: sp.Symbol
    J: sp.Expr
    grad_p: sp.MatrixExpr
    grad_q: sp.MatrixExpr

    def symmetric(self, M):
        """``M`` with every Hᵀ replaced by H (H is symmetric)."""
        return M.subs(self.H.T, self.H)

    def grad_w(self, f):
        """∇_w f for a scalar f(p(w), q(w)) by the chain rule: ∂f/∂p · g + ∂f/∂q · 2Hw (a column)."""
        return sp.diff(f, self.p) * self.grad_p + sp.diff(f, self.q) * self.grad_q

    def as_scalars(self, M):
        """``M`` with the 1×1 products wᵀg and wᵀHw replaced by the symbols p and q."""
        w, g, H = self.w, self.g, self.H
        return M.subs({w.T * g: sp.Matrix([[self.p]]), w.T * H * w: sp.Matrix([[self.q]])}).doit()


def bn_ols_calculus() -> BNOLSCalculus:
    """Return the symbols and helpers for deriving with J(a, w) = ½ (c − 2 a wᵀg/‖w‖_H + a²).

    The loss is written through two scalars, p = wᵀg and q = wᵀHw, so that gradients in w
    follow from the chain rule (:meth:`BNOLSCalculus.grad_w`). The names printed by sympy
    are ``w``, ``g``, ``H``, ``u^*``, ``a``, ``c``, ``p``, ``q``, ``d``.

    Returns
    -------
    BNOLSCalculus

    Examples
    --------
    >>> import sympy as sp
    >>> s = bn_ols_calculus()
    >>> sp.diff(s.J, s.a)
    a - p/sqrt(q)
    >>> sp.simplify(s.as_scalars(sp.expand(s.w.T * s.grad_w(s.J))))   # w ⟂ ∇_w J
    Matrix([[0]])
    """
    d = sp.Symbol("d", integer=True, positive=True)
    w, g = sp.MatrixSymbol("w", d, 1), sp.MatrixSymbol("g", d, 1)
    H = sp.MatrixSymbol("H", d, d)
    a, c, p = sp.symbols("a c p", real=True)
    q = sp.Symbol("q", positive=True)
    return BNOLSCalculus(
        d=d, w=w, g=g, H=H, u_star=sp.MatrixSymbol("u^*", d, 1), identity=sp.Identity(d),
        a=a, c=c, p=p, q=q, J=(c - 2 * a * p / sp.sqrt(q) + a**2) / 2,
        grad_p=(w.T * g).diff(w).subs(H.T, H), grad_q=(w.T * H * w).diff(w).subs(H.T, H),
    )


class _BookLatexPrinter(LatexPrinter):
    """sympy's LaTeX with the book's conventions for matrix expressions."""

    def _print_Identity(self, expr):
        return "I"

    def _print_ZeroMatrix(self, expr):
        return "0"

    def _print_Transpose(self, expr):
        arg = self._print(expr.arg)
        if isinstance(expr.arg, sp.MatrixSymbol):
            base, sup = re.fullmatch(r"(.*?)(?:\^\{(.*)\})?", arg).groups()
            return f"{base}^{{{sup or ''}\\top}}"          # u^{*} -> u^{*\top}
        return f"\\left({arg}\\right)^{{\\top}}"

    def _print_MatAdd(self, expr):
        terms = [self._print(t) for t in expr.args]
        terms = sorted(terms, key=lambda t: t.startswith("-"))   # positive terms first
        out = terms[0]
        for t in terms[1:]:
            out += " - " + t[1:].lstrip() if t.startswith("-") else " + " + t
        return out


def book_latex(expr, **settings) -> str:
    r"""Return the LaTeX of a sympy expression in the book's notation (``book/notation.md``).

    Like ``sympy.latex``, except that the identity matrix prints as ``I`` (not
    ``\mathbb{I}``), a zero matrix as ``0``, a transpose as ``^{\top}``, and a sum of matrix
    terms lists its positive terms first (``H - ...`` rather than ``- ... + H``). Symbols
    named ``varepsilon`` print as ``\varepsilon`` (ε), as with ``sympy.latex``.

    Parameters
    ----------
    expr : sympy expression
    **settings
        Passed to sympy's LaTeX printer (e.g. ``order``).

    Returns
    -------
    str

    Examples
    --------
    >>> d = sp.Symbol("d", integer=True, positive=True)
    >>> H = sp.MatrixSymbol("H", d, d)
    >>> book_latex(sp.Identity(d) - H)
    'I - H'
    """
    return _BookLatexPrinter(settings).doprint(expr)
