"""Results of runs and the bookkeeping shared by every run in bnlib.

GD and BNGD (:mod:`bnlib.descent`) and the gradient flow (:mod:`bnlib.flow`) advance many
runs together and share what happens around a step: a run is *alive* until its state stops
being finite or its loss exceeds ``blowup`` times its start (:func:`divergence_limit`); a
diverged run's later records are masked (``inf`` losses, ``nan`` states, :func:`masked`);
columns of dead runs may be dropped and put back (:func:`scatter`); recorded rows are
stacked and padded to the requested length (:func:`stack_rows`); and the step at which an
excess first reaches a tolerance is read off the record (:func:`steps_to`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate as v

__all__ = ["GDRun", "BNGDRun", "steps_to", "divergence_limit", "masked", "scatter", "stack_rows"]


@dataclass(frozen=True, kw_only=True)
class GDRun:
    """The result of :func:`~bnlib.descent.gd`.

    Attributes
    ----------
    w : numpy.ndarray or None
        Iterates, shape (K+1, B..., d), where K is the number of steps taken; ``None`` when
        called with ``record="loss"``.
    loss : numpy.ndarray, shape (K+1, B...)
        J0(w_k); ``inf`` from the step at which a run diverged.
    excess : numpy.ndarray, shape (K+1, B...)
        J0(w_k) − J*, computed as ½ (w_k − u*)ᵀ(H w_k − g) so that it stays accurate far
        below the rounding error of ``loss`` itself.
    diverged : bool or numpy.ndarray of bool, shape B
    lr : float or numpy.ndarray, shape B
    w_final : numpy.ndarray, shape (B..., d)
        The last iterate (``nan`` for diverged runs).
    steps : int
        Steps requested; ``loss.shape[0] - 1`` may be smaller when ``tol`` stopped early.
    """

    w: np.ndarray | None
    loss: np.ndarray
    excess: np.ndarray
    diverged: np.ndarray
    lr: np.ndarray
    w_final: np.ndarray
    steps: int

    def steps_to(self, tol) -> np.ndarray:
        """First iteration k with ``excess[k] <= tol`` for each run; ``inf`` if never.

        Parameters
        ----------
        tol : float or array_like
            Tolerance(s) > 0; an array is broadcast against the batch shape B (e.g. a
            relative tolerance ``1e-6 * ref[:, None]`` with one scale per problem of a stack).

        Returns
        -------
        numpy.ndarray of float, shape B (a float when B = () and ``tol`` is a scalar)

        Raises
        ------
        ValueError
            If ``tol`` is not > 0 and finite or does not broadcast against B.
        """
        return steps_to(self.excess, tol)


@dataclass(frozen=True, kw_only=True)
class BNGDRun(GDRun):
    """The result of :func:`~bnlib.descent.bngd`: the fields of :class:`~bnlib.runs.GDRun`
    (with ``loss`` = J(a_k, w_k) and ``excess`` = J − J* computed as ½ (u_k − u*)ᵀ(H u_k − g),
    u_k = a_k w_k/‖w_k‖_H), plus

    Attributes
    ----------
    a : numpy.ndarray or None, shape (K+1, B...)
        The BN scale a_k; ``None`` with ``record="loss"``.
    lr_eff : numpy.ndarray, shape (K+1, B...)
        The effective step ε a_k² / ‖w_k‖²_H.
    w_norm : numpy.ndarray, shape (K+1, B...)
        The Euclidean norm ‖w_k‖.
    lr_a : float or numpy.ndarray, shape B
    a_final : numpy.ndarray, shape B
    """

    a: np.ndarray | None
    lr_eff: np.ndarray
    w_norm: np.ndarray
    lr_a: np.ndarray
    a_final: np.ndarray


def steps_to(excess, tol) -> np.ndarray:
    """First k with ``excess[k] <= tol`` along axis 0, per run; ``inf`` if never."""
    tol = v.positive_array(tol, "tol")
    try:
        fits = np.broadcast_shapes(tol.shape, excess.shape[1:]) == excess.shape[1:]
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"tol of shape {tol.shape} does not broadcast against the batch "
                         f"shape {excess.shape[1:]}")
    hit = excess <= tol
    first = np.where(np.any(hit, axis=0), np.argmax(hit, axis=0), np.inf)
    return v.scalar_or_array(first)


def divergence_limit(loss0, c, blowup):
    """The loss above which a run counts as diverged: ``blowup · max(J(start), c/2)``."""
    return blowup * np.maximum(loss0, 0.5 * c)


def masked(alive, x, fill, vec=False):
    """``x`` where the run is alive, ``fill`` where it diverged (``vec``: x has a last axis
    of coordinates). Returns a fresh array."""
    return np.where(alive[..., None] if vec else alive, x, fill)


def scatter(x, cols, N, fill, vec=False):
    """Put the active columns ``x`` of shape (…, n), or (…, n, d) if ``vec``, back into a
    full row of N columns filled with ``fill``."""
    if cols is None:
        return x
    if vec:
        out = np.full(x.shape[:-2] + (N, x.shape[-1]), fill)
        out[..., cols, :] = x
    else:
        out = np.full(x.shape[:-1] + (N,), fill)
        out[..., cols] = x
    return out


def stack_rows(rows, k, length):
    """Stack the recorded rows; pad runs that all diverged early with their last row
    (inf losses, nan iterates) so arrays keep ``length`` rows."""
    out = np.stack(rows[: k + 1])
    if length > out.shape[0]:
        pad = np.broadcast_to(out[-1:], (length - out.shape[0],) + out.shape[1:])
        out = np.concatenate([out, pad])
    return out


