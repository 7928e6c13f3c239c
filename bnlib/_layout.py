"""Problem arrays laid out for the GD/BNGD engine of :mod:`bnlib.descent`: one problem or S
stacked ones, a diagonal H kept as its diagonal, and the batch shape of a call."""

from __future__ import annotations

import numpy as np

from . import _validate as v
from .ols import OLS


class _Data:
    """Problem arrays laid out for the engine.

    One problem: H (d, d), g, gcol, u, ucol (d,), jstar and c floats; the state is W (N, d).
    S stacked problems: H (S, d, d), g and u (S, 1, d), gcol and ucol (S, d, 1), jstar and
    c (S, 1); the state is W (S, N, d). ``hdiag`` is the diagonal of H, shaped like g, when
    every H is diagonal, else None.
    """

    __slots__ = ("H", "hdiag", "g", "gcol", "u", "ucol", "jstar", "c", "d", "S")

    def __init__(self, problems, stacked):
        d = problems[0].d
        self.d = d
        # A diagonal H (a problem written in its eigenbasis) needs no matrix product:
        # H w is an elementwise product, O(d) instead of O(d²) per run and step.
        diagonal = all(v.is_diagonal(p.H) for p in problems)
        if not stacked:
            p = problems[0]
            self.S = None
            self.H, self.g, self.gcol, self.u, self.ucol = p.H, p.g, p.g, p.u_star, p.u_star
            self.jstar, self.c = p.min_loss, p.c
            self.hdiag = np.ascontiguousarray(np.diagonal(p.H)) if diagonal else None
        else:
            self.S = len(problems)
            if diagonal:                           # no dense (S, d, d) stack
                self.H = None
                self.hdiag = np.stack([np.diagonal(p.H) for p in problems])[:, None, :]
            else:
                self.H = np.stack([p.H for p in problems])
                self.hdiag = None
            g = np.stack([p.g for p in problems])
            self.g = g[:, None, :]
            self.gcol = np.ascontiguousarray(g[:, :, None])
            u = np.stack([p.u_star for p in problems])
            self.u = u[:, None, :]
            self.ucol = np.ascontiguousarray(u[:, :, None])
            self.jstar = np.array([p.min_loss for p in problems])[:, None]
            self.c = np.array([p.c for p in problems])[:, None]

    def h_norm2(self, w):
        """wᵀ H w for w of shape (d,), (B..., d) (one problem) or (S, B..., d) (stacked)."""
        if self.S is None:
            Hw = w * self.hdiag if self.hdiag is not None else w @ self.H
            return np.vecdot(Hw, w)
        ws = w.reshape(self.S, -1, self.d)
        Hw = ws * self.hdiag if self.hdiag is not None else np.matmul(ws, self.H)
        return np.vecdot(Hw, ws).reshape(w.shape[:-1])


def _stack(problems):
    if isinstance(problems, OLS):
        raise TypeError("problems must be a sequence of bnlib.OLS; for a single problem use gd/bngd")
    try:
        problems = list(problems)
    except TypeError:
        raise TypeError(f"problems must be a sequence of bnlib.OLS, got "
                        f"{type(problems).__name__}") from None
    if not problems:
        raise ValueError("problems must hold at least one bnlib.OLS, got an empty sequence")
    for i, p in enumerate(problems):
        if not isinstance(p, OLS):
            raise TypeError(f"problems[{i}] must be a bnlib.OLS, got {type(p).__name__}")
        if p.d != problems[0].d:
            raise ValueError(f"problems must share one dimension: problems[0] has d = "
                             f"{problems[0].d}, problems[{i}] has d = {p.d}")
    return _Data(problems, stacked=True)


def _batch_shape(data, **shapes):
    """The batch shape: the broadcast of ``shapes`` for one problem; for S stacked problems
    the broadcast of ``shapes`` with (S, 1, ..., 1), whose axis 0 must stay S."""
    if data.S is None:
        return v.broadcast(**shapes)
    n = max(1, *(len(s) for s in shapes.values()))
    try:
        B = np.broadcast_shapes((data.S,) + (1,) * (n - 1), *shapes.values())
        if B[0] != data.S:
            raise ValueError
        return B
    except ValueError:
        listed = ", ".join(f"{nm} {s}" for nm, s in shapes.items())
        raise ValueError(
            f"shapes do not broadcast with {data.S} problems on axis 0: {listed}. Axis 0 of "
            f"the batch is the problem axis; give arrays shared by all problems a leading "
            f"length-1 axis (e.g. lr[None, :])") from None


