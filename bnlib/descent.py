"""Gradient descent (GD) on J0 and batch-normalized gradient descent (BNGD) on J.

Both run many step sizes at once: ``lr`` may be an array, and the runs advance together
as one batched computation (one ``W @ H`` product per step for all of them). A run whose
loss blows up is flagged in ``diverged``; from then on its recorded loss is ``inf`` and its
recorded iterates are ``nan``, and no floating-point warning escapes.

Shapes: the *batch shape* B of a call is the broadcast of the shapes of ``lr`` (and, for
BNGD, ``lr_a``, ``a0`` and ``w0.shape[:-1]``). A scalar ``lr`` with ``w0`` of shape (d,)
gives B = (); a 1-D ``lr`` of M step sizes gives B = (M,).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate as v
from .ols import OLS

__all__ = ["GDRun", "BNGDRun", "gd", "bngd"]

_RECORDS = ("all", "loss")


@dataclass(frozen=True)
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

        Returns
        -------
        numpy.ndarray of float, shape B
        """
        return _steps_to(self.excess, tol)


@dataclass(frozen=True)
class BNGDRun(GDRun):
    """The result of :func:`~bnlib.descent.bngd`: the fields of :class:`~bnlib.descent.GDRun`
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

    a: np.ndarray | None = None
    lr_eff: np.ndarray | None = None
    w_norm: np.ndarray | None = None
    lr_a: np.ndarray | None = None
    a_final: np.ndarray | None = None


def _steps_to(excess, tol) -> np.ndarray:
    tol = v.positive_scalar(tol, "tol")
    hit = excess <= tol
    first = np.where(np.any(hit, axis=0), np.argmax(hit, axis=0), np.inf)
    return first if first.ndim else float(first)


def _common(problem, lr, steps, tol, record, blowup):
    if not isinstance(problem, OLS):
        raise TypeError(f"problem must be a bnlib.OLS, got {type(problem).__name__}")
    lr = v.positive_array(lr, "lr")
    steps = v.count(steps, "steps", minimum=0)
    if tol is not None:
        tol = v.positive_scalar(tol, "tol")
    if record not in _RECORDS:
        raise ValueError(f"record must be one of {_RECORDS}, got {record!r}")
    blowup = v.positive_scalar(blowup, "blowup")
    if blowup <= 1:
        raise ValueError(f"blowup must be > 1, got {blowup}")
    return lr, steps, tol, blowup


def _scalarise(x):
    return x[()] if isinstance(x, np.ndarray) and x.ndim == 0 else x


def _finish(rows, k, length):
    """Stack the recorded rows; pad runs that all diverged early with their last row
    (inf losses, nan iterates) so arrays keep ``length`` rows."""
    out = np.stack(rows[: k + 1])
    if length > out.shape[0]:
        pad = np.broadcast_to(out[-1:], (length - out.shape[0],) + out.shape[1:])
        out = np.concatenate([out, pad])
    return out


def gd(problem, lr, steps, w0=None, *, tol=None, record="all", blowup=1e10):
    """Gradient descent on J0: w_{k+1} = w_k + ε (g − H w_k).

    Parameters
    ----------
    problem : bnlib.ols.OLS
    lr : float or array_like
        Step size(s) ε > 0; an array of shape B runs one GD per entry, all at once.
    steps : int
        Number of steps K ≥ 0.
    w0 : array_like, shape (d,) or (B..., d), optional
        Start; zeros by default.
    tol : float, optional
        If given, stop as soon as every run has ``excess <= tol`` or has diverged.
    record : {"all", "loss"}
        ``"loss"`` keeps only the per-step losses and the final iterate (bounded memory).
    blowup : float
        A run is diverged once its state is not finite or its loss exceeds
        ``blowup * max(J0(w0), c/2)``.

    Returns
    -------
    GDRun

    Raises
    ------
    TypeError
        If ``problem`` is not an :class:`~bnlib.ols.OLS` or an argument is not numeric.
    ValueError
        If ``lr <= 0`` or not finite, ``steps < 0``, ``w0`` has the wrong shape or is not
        finite, ``tol <= 0``, or ``record`` is unknown.
    """
    lr, steps, tol, blowup = _common(problem, lr, steps, tol, record, blowup)
    d = problem.d
    w0 = np.zeros(d) if w0 is None else v.vector_batch(w0, "w0", d)
    try:
        B = np.broadcast_shapes(lr.shape, w0.shape[:-1])
    except ValueError:
        raise ValueError(f"lr of shape {lr.shape} does not broadcast with w0 of shape "
                         f"{w0.shape}") from None
    H, g, c, u = problem.H, problem.g, problem.c, problem.u_star
    W = np.array(np.broadcast_to(w0, B + (d,)), dtype=float)
    eps = np.broadcast_to(lr, B)[..., None]
    alive = np.ones(B, dtype=bool)
    ws, losses, excesses = [], [], []
    limit = None
    k = 0
    with np.errstate(all="ignore"):
        while True:
            HW = W @ H
            exc = 0.5 * np.einsum("...i,...i->...", W - u, HW - g)
            loss = problem.min_loss + exc
            if limit is None:
                limit = blowup * np.maximum(loss, 0.5 * c)
            bad = alive & ~(np.isfinite(loss) & (loss <= limit) & np.all(np.isfinite(W), -1))
            alive &= ~bad
            loss = np.where(alive, loss, np.inf)
            exc = np.where(alive, exc, np.inf)
            losses.append(loss)
            excesses.append(exc)
            if record == "all":
                ws.append(np.where(alive[..., None], W, np.nan))
            if k == steps or not alive.any():
                length = steps + 1
                break
            if tol is not None and np.all(exc[alive] <= tol):
                length = k + 1
                break
            W = np.where(alive[..., None], W - eps * (HW - g), W)
            k += 1
    return GDRun(
        w=_finish(ws, k, length) if record == "all" else None,
        loss=_finish(losses, k, length),
        excess=_finish(excesses, k, length),
        diverged=_scalarise(~alive),
        lr=_scalarise(np.broadcast_to(lr, B).copy()),
        w_final=np.where(alive[..., None], W, np.nan),
        steps=steps,
    )


def bngd(problem, lr, steps, a0, w0, lr_a=1.0, *, tol=None, record="all", blowup=1e10):
    """Batch-normalized gradient descent on J(a, w).

    a_{k+1} = a_k − ε_a ∂_a J(a_k, w_k),   w_{k+1} = w_k − ε ∇_w J(a_k, w_k).

    Parameters
    ----------
    problem : bnlib.ols.OLS
    lr : float or array_like
        Weight step(s) ε > 0; an array runs one BNGD per entry, all at once.
    steps : int
        Number of steps K ≥ 0.
    a0 : float or array_like
        Start of the scale a (broadcast with the batch shape).
    w0 : array_like, shape (d,) or (B..., d)
        Start of the weights; must be nonzero (‖w0‖_H > 0).
    lr_a : float or array_like
        Step(s) ε_a > 0 for a, broadcast with ``lr``.
    tol, record, blowup
        As in :func:`~bnlib.descent.gd` (``blowup`` relative to ``max(J(a0, w0), c/2)``).

    Returns
    -------
    BNGDRun

    Raises
    ------
    TypeError
        If ``problem`` is not an :class:`~bnlib.ols.OLS` or an argument is not numeric.
    ValueError
        If ``lr`` or ``lr_a`` is ≤ 0 or not finite, ``steps < 0``, ``a0`` is not finite,
        ``w0`` has the wrong shape, is not finite or is zero, or shapes do not broadcast.
    """
    lr, steps, tol, blowup = _common(problem, lr, steps, tol, record, blowup)
    lr_a = v.positive_array(lr_a, "lr_a")
    a0 = v.finite_array(a0, "a0")
    d = problem.d
    w0 = v.vector_batch(w0, "w0", d)
    try:
        B = np.broadcast_shapes(lr.shape, lr_a.shape, a0.shape, w0.shape[:-1])
    except ValueError:
        raise ValueError(f"shapes do not broadcast: lr {lr.shape}, lr_a {lr_a.shape}, "
                         f"a0 {a0.shape}, w0 {w0.shape}") from None
    H, g, c, u = problem.H, problem.g, problem.c, problem.u_star
    if np.any(np.einsum("...i,...i->...", w0 @ H, w0) <= 0):
        raise ValueError("w0 must be nonzero: BN is undefined at w = 0")
    W = np.array(np.broadcast_to(w0, B + (d,)), dtype=float)
    A = np.array(np.broadcast_to(a0, B), dtype=float)
    eps = np.broadcast_to(lr, B)
    eps_a = np.broadcast_to(lr_a, B)
    alive = np.ones(B, dtype=bool)
    ws, as_, losses, excesses, lr_effs, norms = [], [], [], [], [], []
    limit = None
    k = 0
    with np.errstate(all="ignore"):
        while True:
            HW = W @ H
            n2 = np.einsum("...i,...i->...", HW, W)
            n = np.sqrt(n2)
            wg = W @ g
            s = A / n                       # u_k = s w_k
            exc = 0.5 * np.einsum("...i,...i->...", s[..., None] * W - u, s[..., None] * HW - g)
            loss = problem.min_loss + exc
            if limit is None:
                limit = blowup * np.maximum(loss, 0.5 * c)
            ok = (np.isfinite(loss) & (loss <= limit) & np.isfinite(A) & (n2 > 0)
                  & np.all(np.isfinite(W), -1))
            alive &= ok
            losses.append(np.where(alive, loss, np.inf))
            excesses.append(np.where(alive, exc, np.inf))
            lr_effs.append(np.where(alive, eps * A * A / n2, np.nan))
            norms.append(np.where(alive, np.linalg.norm(W, axis=-1), np.nan))
            if record == "all":
                ws.append(np.where(alive[..., None], W, np.nan))
                as_.append(np.where(alive, A, np.nan))
            if k == steps or not alive.any():
                length = steps + 1
                break
            if tol is not None and np.all(exc[alive] <= tol):
                length = k + 1
                break
            dA = A - wg / n
            dW = -s[..., None] * (g - (wg / n2)[..., None] * HW)
            A = np.where(alive, A - eps_a * dA, A)
            W = np.where(alive[..., None], W - eps[..., None] * dW, W)
            k += 1
    return BNGDRun(
        w=_finish(ws, k, length) if record == "all" else None,
        loss=_finish(losses, k, length),
        excess=_finish(excesses, k, length),
        diverged=_scalarise(~alive),
        lr=_scalarise(eps.copy()),
        w_final=np.where(alive[..., None], W, np.nan),
        steps=steps,
        a=_finish(as_, k, length) if record == "all" else None,
        lr_eff=_finish(lr_effs, k, length),
        w_norm=_finish(norms, k, length),
        lr_a=_scalarise(eps_a.copy()),
        a_final=np.where(alive, A, np.nan),
    )
