"""Ordinary least squares (OLS) with and without batch normalization.

The population problem is described by its second moments

    H = E[x xᵀ] (symmetric positive definite),  g = E[x y],  c = E[y²],

with E[x] = 0. Plain OLS minimises J0(w) = ½ (c − 2 wᵀg + wᵀH w); batch
normalization of the linear output xᵀw gives N(xᵀw) = xᵀw / ‖w‖_H and the loss

    J(a, w) = ½ (c − 2 a wᵀg / ‖w‖_H + a²),   ‖w‖_H = sqrt(wᵀ H w),

whose gradients are ∂_a J = a − wᵀg/‖w‖_H and
∇_w J = −(a/‖w‖_H) (g − (wᵀg/‖w‖²_H) H w).

The module also builds problems directly in H's eigenbasis (:func:`eigen_problem`: GD and
BNGD commute with rotations, so a run on it has the losses of a run on any rotated copy at
O(d) instead of O(d²) per step) and draws random rotations (:func:`random_rotation`).

The gradient kernel shared by BN and weight normalization (``normalized_grad``,
``normalized_excess``) reparameterises u = a w/‖w‖_M with M = H (BN) or M = I (WN). With
t = wᵀg/‖w‖²_H, r = u* − t w and G = g − t H w = H r,

    ∂_a J   = a ‖w‖²_H/‖w‖²_M − wᵀg/‖w‖_M,
    ∇_w J   = −(a/‖w‖_M) D,   D = G − δ (H w − (‖w‖²_H/‖w‖²_M) w),   δ = a/‖w‖_M − t,
    J − J*  = ½ (∂_a J)² ‖w‖²_M/‖w‖²_H + ½ rᵀH r,   rᵀH r = u*ᵀG − t wᵀG.

For BN the δ term vanishes identically, so D = G. Every term is formed from G, which
vanishes at the minimum, so the excess keeps its relative accuracy far below the rounding
error of the loss J* + (J − J*).
"""

from __future__ import annotations

import numpy as np

from . import PUBLIC
from . import checks as v

__all__ = list(PUBLIC["ols"])


def _readonly(a: np.ndarray) -> np.ndarray:
    """Return a read-only float64 array; a fresh float64 array of its own is frozen without a copy."""
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
    """

    __slots__ = ("H", "g", "c", "d", "u_star", "min_loss", "eigvals", "_basis")

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
        """Build the problem with H = diag(eigvals) in O(d): ``eigvals`` > 0 and ``g`` (d,) are valid."""
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
        values = dict(H=_readonly(H), g=_readonly(g), c=c, d=H.shape[0], u_star=_readonly(u_star),
                      min_loss=max(0.5 * (c - explained), 0.0), eigvals=_readonly(eigvals), _basis=None)
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        """Refuse to set an attribute: an OLS problem is immutable."""
        raise AttributeError(f"OLS is immutable; cannot set {name!r}")

    def __delattr__(self, name):
        """Refuse to delete an attribute: an OLS problem is immutable."""
        raise AttributeError(f"OLS is immutable; cannot delete {name!r}")

    def __repr__(self) -> str:
        """Return ``OLS(d=…, eigenvalues in […, …], min_loss=…)``."""
        lam = self.eigvals
        return (f"OLS(d={self.d}, eigenvalues in [{lam[0]:.4g}, {lam[-1]:.4g}], "
                f"min_loss={self.min_loss:.4g})")

    @property
    def excess_at_zero(self) -> float:
        """J0(0) − J* = ½ u*ᵀg = ½ ‖u*‖²_H, the excess loss of the start w = 0 (float).

        The natural scale of an excess loss; the same bits as ``u_star @ g / 2``.
        """
        return float(self.u_star @ self.g / 2)

    def eigenbasis(self):
        """Return (Q, λ) with H = Q diag(λ) Qᵀ, Q orthogonal and λ ascending (read-only arrays).

        Computed once (``numpy.linalg.eigh``) and kept; none is needed for a diagonal H (Q
        permutes the axes) or a problem of :meth:`random` (its own Q and λ). λ equals
        ``eigvals`` to rounding.
        """
        if self._basis is None:
            if v.is_diagonal(self.H):
                lam, Q = self.eigvals, np.eye(self.d)[:, np.argsort(np.diagonal(self.H), kind="stable")]
            else:
                lam, Q = np.linalg.eigh(self.H)
            object.__setattr__(self, "_basis", (_readonly(Q), _readonly(lam)))
        return self._basis

    # ------------------------------------------------------------------ constructors
    @classmethod
    def random(cls, d, kappa, seed, noise=1.0) -> OLS:
        """Draw a random problem with a prescribed spectrum.

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
        """
        d = v.count(d, "d", minimum=1)
        kappa = v.positive_scalar(kappa, "kappa")
        if kappa < 1:
            raise ValueError(f"kappa must be >= 1, got {kappa}")
        if d == 1 and kappa != 1:
            raise ValueError(f"kappa must be 1 when d = 1, got {kappa}")
        seed = v.count(seed, "seed", minimum=0)
        noise = float(v.nonnegative_array(noise, "noise"))
        rng = np.random.default_rng(seed)
        Q = random_rotation(d, rng)
        lam = np.logspace(0.0, np.log10(kappa), d)
        H = (Q * lam) @ Q.T
        u = rng.standard_normal(d) / np.sqrt(d)
        g = H @ u
        problem = cls(H, g, float(u @ g) + noise)
        object.__setattr__(problem, "_basis", (_readonly(Q), _readonly(lam)))
        return problem

    @classmethod
    def from_samples(cls, X, y) -> OLS:
        """Moments estimated from samples: H = XᵀX/n, g = Xᵀy/n, c = yᵀy/n.

        Parameters
        ----------
        X : array_like, shape (n, d)
            Inputs (assumed centred, as in the model E[x] = 0).
        y : array_like, shape (n,)
            Labels. ``ValueError`` if XᵀX/n is not positive definite (e.g. n < d).
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
            H = v.spd(H, "X^T X / n")[0]
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
        """Return the OLS weight u = a w / ‖w‖_H that (a, w) represents: J(a, w) = J0(u)."""
        a, w, _, n2 = self._aw(a, w)
        return (a / np.sqrt(n2))[..., None] * w


def check_problem(problem):
    """Return the problem after checking that it is a :class:`OLS` (a ``TypeError`` if not)."""
    if not isinstance(problem, OLS):
        raise TypeError(f"problem must be a bnlib.OLS, got {type(problem).__name__}")
    return problem


def eigen_problem(eigvals, seed, *, noise=1.0, signal=1.0) -> OLS:
    """Build an OLS problem with H = diag(eigvals) and a random solution u*.

    ``u* = signal · z / sqrt(d)`` with ``z ~ N(0, I_d)`` from
    ``numpy.random.default_rng(seed)``, so ``‖u*‖ ≈ signal``; ``g = H u*`` and
    ``c = u*ᵀ H u* + noise`` (label-noise variance ``noise``, ``min_loss = noise / 2``).
    With ``eigvals = np.logspace(0, log10(κ), d)`` and ``signal = 1`` this is the law of
    :meth:`~bnlib.ols.OLS.random` written in H's eigenbasis (there u* is also isotropic).
    ``signal = sqrt(d)`` gives every coordinate O(1) signal (‖u*‖² ≈ d).

    Parameters
    ----------
    eigvals : array_like, shape (d,)
        The spectrum of H, every entry > 0 (any order).
    seed : int
        Seed (≥ 0) of the draw of u*.
    noise : float, optional
        Label-noise variance σ² ≥ 0.
    signal : float, optional
        Scale of u*, > 0.

    Returns
    -------
    bnlib.ols.OLS
    """
    lam = v.positive_array(eigvals, "eigvals")
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"eigvals must be a non-empty 1-D array, got shape {lam.shape}")
    seed = v.count(seed, "seed", minimum=0)
    noise = float(v.nonnegative_array(noise, "noise"))
    signal = v.positive_scalar(signal, "signal")
    d = lam.size
    u = signal * np.random.default_rng(seed).standard_normal(d) / np.sqrt(d)
    g = lam * u
    return OLS._eigenbasis(lam, g, float(u @ g) + noise)


def random_rotation(d, seed, *, batch=()):
    """Draw a uniformly random d×d rotation.

    Q of the QR factorisation of a Gaussian matrix with the signs of its columns fixed
    (Q ← Q · sign(diag R)), so the draw is unique and Haar-distributed on the orthogonal group.

    Parameters
    ----------
    d : int
        Dimension, ≥ 1.
    seed : int or numpy.random.Generator
        Seed (≥ 0) of ``numpy.random.default_rng``, or a generator to draw from (then its
        state advances by ``prod(batch) · d²`` normals).
    batch : tuple of int, optional
        Leading shape: that many independent rotations.

    Returns
    -------
    numpy.ndarray, shape batch + (d, d)
        Orthogonal: ``Q @ Q.T = I`` to rounding.

    Examples
    --------
    >>> Q = random_rotation(3, seed=0)
    >>> bool(np.allclose(Q @ Q.T, np.eye(3)))
    True
    """
    d = v.count(d, "d", minimum=1)
    rng = v.rng(seed, "seed")
    if not isinstance(batch, tuple):
        raise TypeError(f"batch must be a tuple of integers, got {batch!r}")
    batch = tuple(v.count(n, "batch", minimum=0) for n in batch)
    Q, R = np.linalg.qr(rng.standard_normal(batch + (d, d)))
    return Q * np.sign(np.diagonal(R, axis1=-2, axis2=-1))[..., None, :]


def normalized_grad(A, W, HW, wg, w2, n2, g, *, euclidean=False, out=None, d_out=None):
    """Compute the gradient terms at a batch of states (a, w).

    Parameters
    ----------
    A : numpy.ndarray, shape B
    W, HW : numpy.ndarray, shape B + (d,)
        The weights and H w.
    wg, w2, n2 : numpy.ndarray, shape B
        wᵀg, ‖w‖² and ‖w‖²_H.
    g : numpy.ndarray, broadcastable to B + (d,)
    euclidean : bool
        False for BN (M = H), True for weight normalization (M = I).
    out, d_out : numpy.ndarray, shape B + (d,), optional
        Buffers for G and (WN only) D; ``out`` may be ``HW`` itself for BN.

    Returns
    -------
    dA, rm, t : numpy.ndarray, shape B
        ∂_a J, 1/‖w‖_M and t = wᵀg/‖w‖²_H.
    G, D : numpy.ndarray, shape B + (d,)
        G = g − t H w and D with ∇_w J = −(a rm) D (``D is G`` for BN).
    """
    t = wg / n2
    G = np.multiply(HW, t[..., None], out=out)
    if euclidean:
        rm = 1.0 / np.sqrt(w2)
        s = n2 / w2
        dA = A * s - wg * rm
        D = np.multiply(W, s[..., None], out=d_out)
        np.subtract(HW, D, out=D)                  # H w − s w (before G overwrites nothing)
        np.subtract(g, G, out=G)
        np.multiply(D, (A * rm - t)[..., None], out=D)
        np.subtract(G, D, out=D)
    else:
        rm = 1.0 / np.sqrt(n2)
        dA = A - wg * rm
        np.subtract(g, G, out=G)
        D = G
    return dA, rm, t, G, D


def normalized_excess(dA, t, uG, wG, w2=None, n2=None):
    """Compute J − J* = ½ (∂_a J)² ‖w‖²_M/‖w‖²_H + ½ (u*ᵀG − t wᵀG) (``w2``, ``n2``: WN only)."""
    first = dA * dA if w2 is None else dA * dA * (w2 / n2)
    return 0.5 * (first + (uG - t * wG))
