"""Ordinary least squares (OLS) with and without batch normalization.

The population problem is described by its second moments

    H = E[x xᵀ] (symmetric positive definite),  g = E[x y],  c = E[y²],

with E[x] = 0. Plain OLS minimises J0(w) = ½ (c − 2 wᵀg + wᵀH w); batch
normalization of the linear output xᵀw gives N(xᵀw) = xᵀw / ‖w‖_H and the loss

    J(a, w) = ½ (c − 2 a wᵀg / ‖w‖_H + a²),   ‖w‖_H = sqrt(wᵀ H w),

whose gradients are ∂_a J = a − wᵀg/‖w‖_H and
∇_w J = −(a/‖w‖_H) (g − (wᵀg/‖w‖²_H) H w).
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from ._kernel import normalized_grad

__all__ = ["OLS", "check_spd"]


def check_spd(H, name: str = "H") -> np.ndarray:
    """Validate a finite, square, symmetric, positive definite matrix.

    Parameters
    ----------
    H : array_like, shape (d, d)
        Candidate matrix.
    name : str
        Argument name used in error messages.

    Returns
    -------
    numpy.ndarray, shape (d, d)
        A float64 copy, symmetrised exactly as ``(H + Hᵀ)/2``.

    Raises
    ------
    TypeError
        If ``H`` does not hold real numbers.
    ValueError
        If ``H`` is not finite, not square, not symmetric (to relative 1e-10) or not
        positive definite.
    """
    return v.spd(H, name)[0]


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only float64 array; a fresh float64 array of its own is frozen without a copy."""
    if not (isinstance(a, np.ndarray) and a.dtype == np.float64 and a.base is None and a.flags.owndata):
        a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


class OLS:
    """An immutable population OLS problem given by its moments ``(H, g, c)``.

    Parameters
    ----------
    H : array_like, shape (d, d)
        E[x xᵀ]; finite, symmetric, positive definite.
    g : array_like, shape (d,)
        E[x y].
    c : float
        E[y²]; must satisfy c ≥ gᵀH⁻¹g (the least-squares loss cannot be negative).

    Attributes
    ----------
    H, g : numpy.ndarray
        Read-only copies of the moments.
    c : float
    d : int
        Dimension.
    u_star : numpy.ndarray, shape (d,)
        The OLS solution H⁻¹g (called w* in the slides).
    min_loss : float
        J* = ½ (c − u*ᵀ H u*), the minimum of J0 and of J.
    eigvals : numpy.ndarray, shape (d,)
        Eigenvalues of H in ascending order.

    The property :attr:`excess_at_zero` is J0(0) − J*, the natural scale of an excess loss.

    Raises
    ------
    TypeError
        If an argument does not hold real numbers.
    ValueError
        If ``H`` is not finite, square, symmetric and positive definite, if ``g`` does not
        have shape (d,) or is not finite, or if ``c`` is not a finite scalar ≥ gᵀH⁻¹g.
    """

    __slots__ = ("H", "g", "c", "d", "u_star", "min_loss", "eigvals", "_frozen")

    def __init__(self, H, g, c):
        H, eigvals = v.spd(H, "H")
        d = H.shape[0]
        g = v.finite_array(g, "g")
        if g.shape != (d,):
            raise ValueError(f"g must have shape ({d},) to match H, got shape {g.shape}")
        c = v.finite_array(c, "c")
        if c.ndim != 0:
            raise ValueError(f"c must be a scalar, got shape {c.shape}")
        c = float(c)
        u_star = g / np.diagonal(H) if v.is_diagonal(H) else np.linalg.solve(H, g)
        self._fill(H, g, c, u_star, eigvals)

    @classmethod
    def _eigenbasis(cls, eigvals, g, c) -> OLS:
        """The problem with H = diag(eigvals), for validated ``eigvals`` > 0 and ``g`` (d,):
        O(d) work besides writing H, no dense check or eigendecomposition."""
        self = object.__new__(cls)
        H = np.zeros((eigvals.size, eigvals.size))
        np.fill_diagonal(H, eigvals)
        self._fill(H, g, float(c), g / eigvals, np.sort(eigvals))
        return self

    def _fill(self, H, g, c, u_star, eigvals):
        explained = float(g @ u_star)
        if c < explained - 1e-12 * max(1.0, abs(explained)):
            raise ValueError(
                f"c must be >= g^T H^-1 g = {explained:.6g} (E[y^2] cannot be smaller than the "
                f"variance explained by x), got c = {c:.6g}"
            )
        for name, value in (
            ("H", _readonly(H)),
            ("g", _readonly(g)),
            ("c", c),
            ("d", H.shape[0]),
            ("u_star", _readonly(u_star)),
            ("min_loss", max(0.5 * (c - explained), 0.0)),
            ("eigvals", _readonly(eigvals)),
        ):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name, value):
        raise AttributeError(f"OLS is immutable; cannot set {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"OLS is immutable; cannot delete {name!r}")

    def __repr__(self) -> str:
        lam = self.eigvals
        return (f"OLS(d={self.d}, eigenvalues in [{lam[0]:.4g}, {lam[-1]:.4g}], "
                f"min_loss={self.min_loss:.4g})")

    @property
    def excess_at_zero(self) -> float:
        """J0(0) − J* = ½ u*ᵀg = ½ ‖u*‖²_H, the excess loss of the start w = 0 (float).

        The natural scale of an excess loss; the same bits as ``u_star @ g / 2``.
        """
        return float(self.u_star @ self.g / 2)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def random(cls, d, kappa, seed, noise=1.0) -> OLS:
        """A random problem with a prescribed spectrum.

        ``H = Q diag(λ) Qᵀ`` with Q a uniformly random orthogonal matrix (QR of a Gaussian
        matrix, signs fixed) and λ log-spaced in [1, κ]; ``u* ~ N(0, I_d / d)`` so that
        ‖u*‖ ≈ 1 whatever d; ``g = H u*`` and ``c = u*ᵀ H u* + noise``, i.e. the label noise
        has variance ``noise`` and ``min_loss = noise / 2``.

        Parameters
        ----------
        d : int
            Dimension, ≥ 1.
        kappa : float
            Condition number κ ≥ 1 (must be 1 when d = 1).
        seed : int
            Seed of ``numpy.random.default_rng``.
        noise : float, optional
            Label-noise variance σ² ≥ 0.

        Returns
        -------
        OLS

        Raises
        ------
        TypeError, ValueError
            On a non-integer or non-positive ``d``, ``kappa < 1`` (or ≠ 1 with d = 1),
            a negative ``noise``, or a seed that is not a non-negative integer.
        """
        d = v.count(d, "d", minimum=1)
        kappa = v.positive_scalar(kappa, "kappa")
        if kappa < 1:
            raise ValueError(f"kappa must be >= 1, got {kappa}")
        if d == 1 and kappa != 1:
            raise ValueError(f"kappa must be 1 when d = 1, got {kappa}")
        seed = v.count(seed, "seed", minimum=0)
        noise = float(v.finite_array(noise, "noise"))
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        from .sweeps import random_rotation  # sweeps builds on OLS

        rng = np.random.default_rng(seed)
        Q = random_rotation(d, rng)
        lam = np.logspace(0.0, np.log10(kappa), d)
        H = (Q * lam) @ Q.T
        u = rng.standard_normal(d) / np.sqrt(d)
        g = H @ u
        return cls(H, g, float(u @ g) + noise)

    @classmethod
    def from_samples(cls, X, y) -> OLS:
        """Moments estimated from samples: H = XᵀX/n, g = Xᵀy/n, c = yᵀy/n.

        Parameters
        ----------
        X : array_like, shape (n, d)
            Inputs (assumed centred, as in the model E[x] = 0).
        y : array_like, shape (n,)
            Labels.

        Raises
        ------
        ValueError
            If shapes disagree, data are not finite, or XᵀX/n is not positive definite
            (e.g. n < d).
        """
        X = v.finite_array(X, "X")
        y = v.finite_array(y, "y")
        if X.ndim != 2:
            raise ValueError(f"X must have shape (n, d), got shape {X.shape}")
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
        n = X.shape[0]
        H = X.T @ X / n
        try:
            H = check_spd(H, "X^T X / n")
        except ValueError as exc:
            raise ValueError(f"X gives a singular second-moment matrix: {exc}") from None
        return cls(H, X.T @ y / n, float(y @ y) / n)

    # ------------------------------------------------------------------ sampling
    def sample(self, n, seed):
        """Draw ``n`` samples of a Gaussian model with exactly these moments.

        ``x ~ N(0, H)`` and ``y = xᵀu* + σ ξ`` with ξ ~ N(0, 1) and σ² = 2 J* = c − u*ᵀHu*.

        Parameters
        ----------
        n : int
            Number of samples, ≥ 1.
        seed : int
            Seed of ``numpy.random.default_rng``.

        Returns
        -------
        X : numpy.ndarray, shape (n, d)
        y : numpy.ndarray, shape (n,)
        """
        n = v.count(n, "n", minimum=1)
        seed = v.count(seed, "seed", minimum=0)
        rng = np.random.default_rng(seed)
        L = np.linalg.cholesky(self.H)
        X = rng.standard_normal((n, self.d)) @ L.T
        y = X @ self.u_star + np.sqrt(2.0 * self.min_loss) * rng.standard_normal(n)
        return X, y

    # ------------------------------------------------------------------ losses
    def _w(self, w, name: str = "w") -> np.ndarray:
        return v.vector_batch(w, name, self.d)

    def h_norm(self, w) -> np.ndarray:
        """‖w‖_H = sqrt(wᵀ H w), over leading batch axes: shape ``w.shape[:-1]``."""
        w = self._w(w)
        return np.sqrt(np.einsum("...i,...i->...", w @ self.H, w))

    def loss(self, w) -> np.ndarray:
        """J0(w) = ½ (c − 2 wᵀg + wᵀ H w) for ``w`` of shape (..., d); shape ``w.shape[:-1]``."""
        w = self._w(w)
        return 0.5 * (self.c - 2.0 * (w @ self.g) + np.einsum("...i,...i->...", w @ self.H, w))

    def grad(self, w) -> np.ndarray:
        """∇J0(w) = H w − g, shape ``w.shape``."""
        w = self._w(w)
        return w @ self.H - self.g

    def _aw(self, a, w):
        a, w = v.scale_weights(a, w, self.d)
        Hw = w @ self.H
        n2 = np.einsum("...i,...i->...", Hw, w)
        if np.any(n2 <= 0):
            raise ValueError("w must be nonzero: BN's output x^T w / ||w||_H is undefined at w = 0")
        return a, w, Hw, n2

    def bn_loss(self, a, w) -> np.ndarray:
        """J(a, w) = ½ (c − 2 a wᵀg / ‖w‖_H + a²).

        Parameters
        ----------
        a : array_like, shape broadcastable with ``w.shape[:-1]``
        w : array_like, shape (..., d), nonzero

        Returns
        -------
        numpy.ndarray
            Shape ``broadcast(a.shape, w.shape[:-1])``.

        Raises
        ------
        ValueError
            If ``w`` has the wrong last dimension, is zero, or shapes do not broadcast.
        """
        a, w, _, n2 = self._aw(a, w)
        return 0.5 * (self.c - 2.0 * a * (w @ self.g) / np.sqrt(n2) + a * a)

    def bn_grad(self, a, w):
        """Gradients of :meth:`~bnlib.ols.OLS.bn_loss`.

        Returns
        -------
        dJ_da : numpy.ndarray, shape ``broadcast(a.shape, w.shape[:-1])``
            a − wᵀg / ‖w‖_H.
        dJ_dw : numpy.ndarray, shape ``dJ_da.shape + (d,)``
            −(a / ‖w‖_H) (g − (wᵀg / ‖w‖²_H) H w).
        """
        a, w, Hw, n2 = self._aw(a, w)
        dJ_da, rn, _, G, _ = normalized_grad(a, w, Hw, w @ self.g, None, n2, self.g)
        return dJ_da, -(a * rn)[..., None] * G

    def bn_to_ols(self, a, w) -> np.ndarray:
        """The OLS weight u = a w / ‖w‖_H that (a, w) represents: J(a, w) = J0(u)."""
        a, w, _, n2 = self._aw(a, w)
        return (a / np.sqrt(n2))[..., None] * w
