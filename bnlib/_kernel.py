"""The one gradient kernel of batch and weight normalization on OLS.

Both reparameterise the OLS weight as u = a w/‖w‖_M, a scale times a direction, with the
norm ‖w‖_M = sqrt(wᵀMw) of BN (M = H, the standard deviation of the pre-activation) or of
weight normalization (M = I, the Euclidean norm). With t = wᵀg/‖w‖²_H, the part
r = u* − t w of u* that is H-orthogonal to w, and G = g − t H w = H r,

    ∂_a J   = a ‖w‖²_H/‖w‖²_M − wᵀg/‖w‖_M,
    ∇_w J   = −(a/‖w‖_M) D,   D = G − δ (H w − (‖w‖²_H/‖w‖²_M) w),   δ = a/‖w‖_M − t,
    J − J*  = ½ (∂_a J)² ‖w‖²_M/‖w‖²_H + ½ rᵀH r,   rᵀH r = u*ᵀG − t wᵀG.

For BN (M = H) the δ term vanishes identically (the projection I − H w wᵀ/‖w‖²_H removes
H w), so D = G and ∂_a J = a − wᵀg/‖w‖_H: :func:`normalized_grad` then skips it. Every term
is formed from G, which vanishes at the minimum, so the excess keeps its relative accuracy
far below the rounding error of the loss J* + (J − J*). :mod:`bnlib.ols` (``bn_grad``),
:mod:`bnlib.flow` (the flow's field and excess), the BNGD engine and WNGD
(:mod:`bnlib.weightnorm`) all call these two functions.
"""

from __future__ import annotations

import numpy as np


def normalized_grad(A, W, HW, wg, w2, n2, g, *, euclidean=False, out=None, d_out=None):
    """The gradient terms at a batch of states (a, w).

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
    """J − J* = ½ (∂_a J)² ‖w‖²_M/‖w‖²_H + ½ (u*ᵀG − t wᵀG); give ``w2`` and ``n2`` for
    weight normalization (for BN the ratio is 1)."""
    first = dA * dA if w2 is None else dA * dA * (w2 / n2)
    return 0.5 * (first + (uG - t * wG))
