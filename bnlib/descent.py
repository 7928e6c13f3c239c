"""Gradient descent on J0 (GD), with batch normalization on J (BNGD) or weight normalization (WNGD).

Every method runs many step sizes at once, with no Python loop over runs: the *batch shape*
B of a call is the broadcast of the shapes of ``lr`` (and ``lr_a``, ``a0``,
``w0.shape[:-1]``). The ``_stack`` variants run S problems of dimension d at once, batch
shape (S, B...) with the problem axis first, trailing axes aligned: M step sizes for every
problem are ``lr[None, :]``, one start per problem is ``w0`` of shape (S, 1, d).

One driver (``drive``) runs every loop of bnlib, also those of :mod:`~bnlib.minibatch` and
:mod:`~bnlib.nn`: each method supplies its step; the driver records, masks diverged runs
(``inf`` losses, ``nan`` states, no floating-point warning) and stops at ``tol``.
WNGD is u = a w/‖w‖ with the Euclidean norm, J_WN(a, w) = J0(a w/‖w‖).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from . import PUBLIC
from . import checks as v
from .ols import OLS, check_problem, normalized_excess, normalized_grad

__all__ = list(PUBLIC["descent"])


@dataclass(frozen=True, kw_only=True)
class GDRun:
    """The result of :func:`~bnlib.descent.gd`.

    Attributes
    ----------
    w : numpy.ndarray or None
        Iterates, shape (K+1, B..., d), K the steps taken; ``None`` with ``record="loss"``.
    loss : numpy.ndarray, shape (K+1, B...)
        J0(w_k); ``inf`` from the step at which a run diverged.
    excess : numpy.ndarray, shape (K+1, B...)
        J0(w_k) − J*, computed as ½ (w_k − u*)ᵀ(H w_k − g) so that it stays accurate far
        below the rounding error of ``loss`` itself.
    diverged, lr : bool or float or numpy.ndarray, shape B
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

        ``tol`` > 0 may be an array broadcast against the batch shape B (e.g. one scale per
        problem of a stack); the result has shape B (a float when both are scalars).
        ValueError if ``tol`` is not > 0 and finite or does not broadcast.
        """
        return steps_to(self.excess, tol)


@dataclass(frozen=True, kw_only=True)
class BNGDRun(GDRun):
    """The result of :func:`~bnlib.descent.bngd`.

    The fields of :class:`~bnlib.descent.GDRun` (with ``loss`` = J(a_k, w_k) and ``excess`` =
    J − J* computed as ½ (u_k − u*)ᵀ(H u_k − g), u_k = a_k w_k/‖w_k‖_H), plus the following.

    Attributes
    ----------
    a : numpy.ndarray or None, shape (K+1, B...)
        The BN scale a_k; ``None`` with ``record="loss"``.
    lr_eff, w_norm : numpy.ndarray, shape (K+1, B...)
        The effective step ε a_k² / ‖w_k‖²_H and the Euclidean norm ‖w_k‖.
    lr_a, a_final : float or numpy.ndarray, shape B
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
    """Return the loss above which a run counts as diverged, ``blowup · max(J(start), c/2)``."""
    return blowup * np.maximum(loss0, 0.5 * c)


def masked(alive, x, fill, vec=False):
    """Return ``x`` where the run is alive and ``fill`` where it diverged, as a fresh array.

    With ``vec`` the last axis of ``x`` holds coordinates.
    """
    return np.where(alive[..., None] if vec else alive, x, fill)


def _scatter(x, cols, N, fill, vec):
    """Put the active columns ``x`` (…, n) or, with ``vec``, (…, n, d) back into N columns."""
    if cols is None:
        return x
    out = np.full(x.shape[:-2] + (N, x.shape[-1]) if vec else x.shape[:-1] + (N,), fill)
    out[(..., cols, slice(None)) if vec else (..., cols)] = x
    return out


@dataclass(frozen=True, kw_only=True)
class Options:
    """The validated run options of :func:`~bnlib.descent.gd`, shared by every loop of ``drive``.

    ``weight_decay`` and ``momentum`` are arrays that broadcast with the batch shape, or
    ``None`` where zero everywhere (the plain step bit for bit).
    """

    steps: int
    tol: float | None = None
    record: str = "all"
    blowup: float = 1e10
    weight_decay: np.ndarray | None = None
    momentum: np.ndarray | None = None


def options(steps, tol=None, record="all", blowup=1e10, weight_decay=0.0, momentum=0.0):
    """Validate the run options into an :class:`Options` (ValueError/TypeError naming one)."""
    return Options(**v.run_options(steps, tol, record, blowup, weight_decay, momentum))


class _Records:
    """The records of one kind (measured or stepped), row k of every name written in place.

    The arrays are allocated at the first row: at full length when the loop cannot stop
    early (no ``tol``), else grown by doubling. Diverged runs and dropped columns get the
    name's fill.
    """

    def __init__(self, fills, length, N, grow):
        self.fills, self.length, self.N, self.rows, self.arrays = fills, length, N, 0, None
        self.size = min(length, 64) if grow else length

    def put(self, values, alive, dead, cols):
        """Write one row per name; ``dead`` is ``~alive`` or None when every run is alive."""
        k = self.rows
        if self.arrays is None:
            self.arrays = [np.empty((self.size,) + alive.shape[:-1] + (self.N,) + x.shape[alive.ndim:])
                           for x in values]
        elif k == self.size:
            self.size = min(2 * self.size, self.length)
            self.arrays = [np.concatenate([a, np.empty_like(a[:self.size - k])]) for a in self.arrays]
        for a, fill, x in zip(self.arrays, self.fills, values, strict=True):
            if cols is None:
                a[k] = x
                if dead is not None:
                    a[k][dead] = fill
            else:                                  # dropped columns show the fill
                a[k] = fill
                x = x if dead is None else masked(alive, x, fill, x.ndim > alive.ndim)
                a[k][(..., cols) + (slice(None),) * (x.ndim - alive.ndim)] = x
        self.rows = k + 1

    def stacked(self, length, shape):
        """Return the arrays cut, or padded with the fills, to ``length`` rows."""
        if self.arrays is None:
            return [np.full((length,) + shape, fill) for fill in self.fills]
        out = []
        for a, fill in zip(self.arrays, self.fills, strict=True):
            a = a[:min(self.rows, length)]
            if length > a.shape[0]:
                a = np.concatenate([a, np.full((length - a.shape[0],) + a.shape[1:], fill)])
            out.append(a)
        return out


def drive(stepper, opt, c):
    """Run the N runs of ``stepper`` together: the one loop behind every descent of bnlib.

    Parameters
    ----------
    stepper : object
        N runs of one method, on the last axis of ``stepper.shape`` ((N,) or (S, N)). It
        supplies ``names``/``fills`` and ``step_names`` (the records beyond loss and excess,
        and what a diverged run shows), ``measure()`` → ``(loss, excess, ok, rows)`` (``ok``
        False where the state is not finite, or None), ``step()`` → the rows of ``step_names``,
        ``keep(live)`` (drop columns; only if ``prunable``) and ``finals()`` (a dict). The
        driver copies every row it is given, so a stepper may return its state arrays.
    opt : Options
    c : float or numpy.ndarray
        The loss at u = 0 (twice the divergence floor), per problem.

    Returns
    -------
    dict
        Every record stacked to (L, shape...) (a state: (L, shape..., d)), ``"alive"`` and the
        final states (diverged runs ``nan``).

    Notes
    -----
    One meaning of divergence for every method: a run is *diverged* from the first step at
    which its (measured) loss is not finite or exceeds ``blowup · max(loss_0, c/2)``, or its
    state is not finite. From then on its records are masked (``inf`` losses and excesses,
    ``nan`` else) and no floating-point warning escapes. Columns without a live run are
    dropped once they are 1/8 of all (put back in the records). The loop stops after
    ``steps`` steps, once no run is alive (records padded to K+1 rows), or once every live
    run has ``excess <= tol`` (L = k+1). Records are written into preallocated arrays;
    masking costs nothing until a run has diverged.
    """
    alive = np.ones(stepper.shape, dtype=bool)
    N, cols, limit, length, dead = alive.shape[-1], None, None, opt.steps + 1, None
    measured = _Records((np.inf, np.inf) + stepper.fills, length, N, opt.tol is not None)
    stepped = _Records((np.nan,) * len(stepper.step_names), opt.steps, N, opt.tol is not None)
    with np.errstate(all="ignore"):
        for k in range(opt.steps + 1):
            loss, exc, ok, values = stepper.measure()
            if limit is None:
                limit = divergence_limit(loss, c, opt.blowup)
            fine = loss <= limit                   # False for nan and inf
            if ok is not None:
                fine &= ok
            if dead is not None or np.count_nonzero(fine) < fine.size:
                alive &= fine
                dead = ~alive
            measured.put((loss, exc) + values, alive, dead, cols)
            if k == opt.steps or (dead is not None and not np.count_nonzero(alive)):
                break
            if opt.tol is not None and _converged(exc, alive, dead, opt.tol):
                length = k + 1
                break
            if dead is not None and stepper.prunable:
                cols, alive, limit = _prune(stepper, alive, limit, cols, N)
                dead = ~alive if np.count_nonzero(alive) < alive.size else None
            rows = stepper.step()
            if rows:
                stepped.put(rows, alive, dead, cols)
        finals = stepper.finals()
    shape = alive.shape[:-1] + (N,)
    out = dict(zip(("loss", "excess") + stepper.names, measured.stacked(length, shape), strict=True))
    out.update(zip(stepper.step_names, stepped.stacked(length - 1, shape), strict=True))
    out["alive"] = _scatter(alive, cols, N, False, False)
    for nm, x in finals.items():
        vec = x.ndim > alive.ndim
        out[nm] = _scatter(masked(alive, x, np.nan, vec), cols, N, np.nan, vec)
    return out


def _converged(exc, alive, dead, tol):
    """Whether every live run has ``excess <= tol`` (False for nan)."""
    if dead is None:
        return np.count_nonzero(exc <= tol) == exc.size
    return bool(np.all(exc[alive] <= tol))


PRUNE_SHARE = 0.125   # drive drops the columns without a live run once they are this share


def _prune(stepper, alive, limit, cols, N):
    """Drop the columns without a live run once they are at least ``PRUNE_SHARE`` of them."""
    live = alive.any(axis=0) if alive.ndim == 2 else alive
    if np.mean(~live) < PRUNE_SHARE:
        return cols, alive, limit
    stepper.keep(live)
    return (np.arange(N) if cols is None else cols)[live], alive[..., live], limit[..., live]


class _Data:
    """Problem arrays laid out for the steppers.

    One problem: H (d, d), g, u (d,), jstar and c floats; the state is W (N, d).
    S stacked problems: H (S, d, d), g and u (S, 1, d), jstar and c (S, 1); the state is
    W (S, N, d). ``hdiag`` is the diagonal of H, shaped like g, when every H is diagonal (a
    problem written in its eigenbasis, as :meth:`eigen` writes any: H w is then an elementwise
    product, O(d) instead of O(d²) per run and step), else None.
    """

    def __init__(self, problems, stacked):
        p = problems[0]
        self.d, self.problems = p.d, problems
        diagonal = all(v.is_diagonal(q.H) for q in problems)
        if not stacked:
            self.S = None
            self.H, self.g, self.u = p.H, p.g, p.u_star
            self.jstar, self.c = np.float64(p.min_loss), p.c
            self.hdiag = np.ascontiguousarray(np.diagonal(p.H)) if diagonal else None
            return
        self.S = len(problems)
        self.H = None if diagonal else np.stack([q.H for q in problems])   # no dense stack
        self.hdiag = np.stack([np.diagonal(q.H) for q in problems])[:, None, :] if diagonal else None
        g, u = np.stack([q.g for q in problems]), np.stack([q.u_star for q in problems])
        self.g, self.u = g[:, None, :], u[:, None, :]
        self.jstar = np.array([q.min_loss for q in problems])[:, None]
        self.c = np.array([q.c for q in problems])[:, None]

    def eigen(self, W):
        """Return this layout and the states W in H's eigenbasis (H = Q diag(λ) Qᵀ, w → Qᵀw), and Q."""
        bases = [q.eigenbasis() for q in self.problems]
        Q, lam = bases[0] if self.S is None else (np.stack(x) for x in zip(*bases, strict=True))
        e = copy.copy(self)
        e.H, e.g, e.u, e.hdiag = None, self.g @ Q, self.u @ Q, lam if self.S is None else lam[:, None, :]
        return e, W @ Q, Q

    def hw(self, W, out):
        """Write H w for the states W into ``out`` and return it."""
        if self.hdiag is None:
            return np.matmul(W, self.H, out=out)
        return np.multiply(W, self.hdiag, out=out)

    def h_norm2(self, w):
        """Return wᵀ H w for w of shape (B..., d) (one problem) or (S, B..., d) (stacked)."""
        ws = w if self.S is None else w.reshape(self.S, -1, self.d)
        Hw = ws * self.hdiag if self.hdiag is not None else np.matmul(ws, self.H)
        return np.vecdot(Hw, ws).reshape(w.shape[:-1])


def _problems(problems):
    """Lay out a sequence of OLS problems of equal dimension (the ``_stack`` functions)."""
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
    """Return the batch shape, with axis 0 the problem axis for S stacked problems."""
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


class Runs:
    """Per-run arrays of a stepper, cut together when :func:`drive` drops columns.

    ``per_run`` names arrays with the runs on the last axis, ``per_vec`` arrays with them on
    the second last (states (…, N, d)); ``None`` entries stay None. With weight decay or
    momentum (``heavy``) the step is heavy ball as in :func:`~bnlib.descent.gd`, the same
    for a scale a with ε_a and without decay.
    """

    per_run = ("eps", "eps_a", "A", "wd", "mom", "SA", "dev", "q")
    prunable = True
    per_vec = ("W", "SW")

    def heavy_ball(self, opt, flat, scale):
        """Set up momentum state from ``opt`` (per-run arrays via ``flat``), if any."""
        self.heavy = opt.weight_decay is not None or opt.momentum is not None
        self.wd = self.mom = self.SW = self.SA = None
        if self.heavy:
            zero = np.zeros_like(self.eps)
            self.wd = zero if opt.weight_decay is None else flat(opt.weight_decay)
            self.mom = zero if opt.momentum is None else flat(opt.momentum)
            self.SW = np.zeros_like(self.W)
            self.SA = np.zeros_like(self.eps) if scale else None

    def keep(self, live):
        """Keep only the columns ``live`` of every per-run array."""
        for names, idx in ((self.per_run, (..., live)), (self.per_vec, (..., live, slice(None)))):
            for nm in names:
                x = getattr(self, nm, None)
                if x is not None:
                    setattr(self, nm, x[idx])

    def momentum_w(self, step):
        """Take a heavy-ball step of w from the plain step ``step`` (−ε ∇_w)."""
        self.SW = self.mom[..., None] * self.SW + (step - (self.eps * self.wd)[..., None] * self.W)
        self.W += self.SW


class _GD(Runs):
    """GD's step w ← w − ε (H w − g) on laid-out problems."""

    step_names = ()
    per_vec = ("W", "SW", "G")                     # G carries the step over a drop

    def __init__(self, data, W, eps, opt, flat):
        self.data, self.W, self.eps, self.A = data, W, eps, None
        self.names = ("w",) if opt.record == "all" else ()
        self.fills = (np.nan,) * len(self.names)
        self.shape = W.shape[:-1]
        self.G = np.empty_like(W)
        self._work()
        self.heavy_ball(opt, flat, scale=False)

    def _work(self):
        # buffers for H w and w − u*; g broadcast to W's shape once (a faster subtraction)
        self.HW, self.R = np.empty_like(self.W), np.empty_like(self.W)
        self.gfull = np.ascontiguousarray(np.broadcast_to(self.data.g, self.W.shape))

    def keep(self, live):
        """Drop columns and renew the work arrays."""
        super().keep(live)
        self._work()

    def measure(self):
        """Return J0, J0 − J* = ½ (w − u*)ᵀ(H w − g), no state check, and the iterate."""
        d, W = self.data, self.W
        np.subtract(d.hw(W, self.HW), self.gfull, out=self.G)
        np.subtract(W, d.u, out=self.R)
        exc = 0.5 * np.vecdot(self.R, self.G)
        return d.jstar + exc, exc, None, (W,) if self.names else ()

    def step(self):
        """Move every run one step."""
        if self.heavy:
            self.momentum_w(-self.eps[..., None] * self.G)
        else:
            np.multiply(self.G, self.eps[..., None], out=self.G)
            self.W -= self.G
        return ()

    def finals(self):
        """Return the last iterate."""
        return {"w_final": self.W}


class _Normalized(Runs):
    """BNGD's (``euclid=False``) or WNGD's step on (a, w), laid-out problems.

    The state W lives in one array Z = [u*, W, H W, g] (each row of W's shape), so that one
    call gives ‖w‖², ‖w‖²_H and wᵀg, and one more u*ᵀG and wᵀG; BN's G overwrites H W, WN's
    needs its own G and D (:func:`~bnlib.ols.normalized_grad`).
    """

    step_names = ()

    def __init__(self, data, W, A, eps, eps_a, opt, flat, euclid):
        self.data, self.A, self.eps, self.eps_a, self.euclid = data, A, eps, eps_a, euclid
        self.all = opt.record == "all"
        self.names = ("lr_eff", "w_norm") + (("w", "a") if self.all else ())
        self.fills = (np.nan,) * len(self.names)
        self.shape = W.shape[:-1]
        self._work(W)
        self.heavy_ball(opt, flat, scale=True)

    def _work(self, W, R=None):
        self.Z = np.empty((4,) + W.shape)
        self.Z[0], self.Z[1], self.Z[3] = self.data.u, W, self.data.g
        self.W, self.HW = self.Z[1], self.Z[2]
        self.G, self.R = (self.HW, self.HW) if not self.euclid else (np.empty_like(W), np.empty_like(W))
        if R is not None:
            self.R[...] = R

    def keep(self, live):
        """Drop columns; the step direction R moves into new work arrays."""
        R = self.R[..., live, :]
        super().keep(live)
        self._work(self.W, R)

    def measure(self):
        """Return J, J − J*, whether ‖w‖_H is finite, and lr_eff, ‖w‖ (and w, a)."""
        d, W, Z = self.data, self.W, self.Z
        d.hw(W, self.HW)
        w2, n2, wg = np.vecdot(Z[1:], W)           # ‖w‖², ‖w‖²_H, wᵀg
        self.dev, rm, t, G, self.R = normalized_grad(self.A, W, self.HW, wg, w2, n2, Z[3],
                                                     euclidean=self.euclid, out=self.G, d_out=self.R)
        uG, wG = np.vecdot(Z[:2], G)               # rᵀ H r = u*ᵀG − t wᵀG (see bngd's Notes)
        exc = normalized_excess(self.dev, t, uG, wG, *((w2, n2) if self.euclid else ()))
        arm = self.A * rm
        self.q = self.eps * arm                    # w_{k+1} = w_k + q D
        values = (self.q * arm, np.sqrt(w2))       # ε a² / ‖w‖²_M, ‖w‖
        return d.jstar + exc, exc, np.isfinite(n2), values + ((W, self.A) if self.all else ())

    def step(self):
        """Move every run one step: w − ε ∇_w J with ∇_w J = −(a/‖w‖_M) D, a − ε_a ∂_a J."""
        if self.heavy:
            self.momentum_w(self.q[..., None] * self.R)
            self.SA = self.mom * self.SA - self.eps_a * self.dev
            self.A = self.A + self.SA
        else:
            np.multiply(self.R, self.q[..., None], out=self.R)
            self.W += self.R
            self.A = self.A - self.eps_a * self.dev
        return ()

    def finals(self):
        """Return the last (a, w)."""
        return {"w_final": self.W, "a_final": self.A}


def _launch(data, B, opt, lr, w0, scale=None):
    """Broadcast the per-run arguments to the batch shape B, flatten, drive, reshape.

    ``scale`` is None for GD, else (method, lr_a, a0, result class) for BNGD and WNGD.
    """
    d = data.d
    flat_shape = ((data.S,) if data.S is not None else ()) + (-1,)

    def flat(x):
        return np.array(np.broadcast_to(x, B), dtype=float).reshape(flat_shape)

    W = np.array(np.broadcast_to(w0, B + (d,)), dtype=float).reshape(flat_shape + (d,))
    # without iterates to record, a dense problem runs in H's eigenbasis
    data, W, Q = data.eigen(W) if opt.record != "all" and data.hdiag is None else (data, W, None)
    stepper = (_GD(data, W, flat(lr), opt, flat) if scale is None else  # scale: method, lr_a, a0
               _Normalized(data, W, flat(scale[2]), flat(lr), flat(scale[1]), opt, flat, scale[0] == "wn"))
    res = drive(stepper, opt, data.c)
    if Q is not None:
        res["w_final"] = res["w_final"] @ np.swapaxes(Q, -1, -2)

    def shaped(x, tail=()):
        return x.reshape(x.shape[:1] + B + tail)

    out = dict(w=shaped(res["w"], (d,)) if "w" in res else None, loss=shaped(res["loss"]),
               excess=shaped(res["excess"]),
               diverged=v.scalar_or_array(~res["alive"].reshape(B), to=None),
               lr=v.scalar_or_array(np.broadcast_to(lr, B).copy(), to=None),
               w_final=res["w_final"].reshape(B + (d,)), steps=opt.steps)
    if scale is None:
        return GDRun(**out)
    return scale[3](**out, a=shaped(res["a"]) if "a" in res else None,
                    lr_eff=shaped(res["lr_eff"]), w_norm=shaped(res["w_norm"]),
                    lr_a=v.scalar_or_array(np.broadcast_to(scale[1], B).copy(), to=None),
                    a_final=v.scalar_or_array(res["a_final"].reshape(B), to=None))


def _normalized(method, data, lr, steps, a0, w0, lr_a, **kw):
    """Validate and run BNGD (``"bn"``) or WNGD (``"wn"``) on laid-out problems."""
    lr = v.positive_array(lr, "lr")
    opt = options(steps, **kw)
    lr_a = v.positive_array(lr_a, "lr_a")
    a0 = v.finite_array(a0, "a0")
    w0 = v.vector_batch(w0, "w0", data.d)
    B = _batch_shape(data, lr=lr.shape, lr_a=lr_a.shape, a0=a0.shape,
                     **{"w0[..., 0]": w0.shape[:-1]}, **option_shapes(opt))
    if method == "wn" and np.any(np.vecdot(w0, w0) <= 0):
        raise ValueError("w0 must be nonzero: weight normalization is undefined at w = 0")
    if method == "bn" and data.S is not None:   # only the problem axis needs broadcasting
        w0 = np.broadcast_to(w0, np.broadcast_shapes(w0.shape, (data.S,) + (1,) * (len(B) - 1) + (data.d,)))
    if method == "bn" and np.any(data.h_norm2(w0) <= 0):
        raise ValueError("w0 must be nonzero: BN is undefined at w = 0")
    return _launch(data, B, opt, lr, w0, (method, lr_a, a0, BNGDRun if method == "bn" else WNGDRun))


def option_shapes(opt):
    """Return the shapes of the options that broadcast with the batch (weight decay, momentum)."""
    return {nm: x.shape for nm, x in (("weight_decay", opt.weight_decay),
                                       ("momentum", opt.momentum)) if x is not None}


def gd(problem, lr, steps, w0=None, *, tol=None, record="all", blowup=1e10, weight_decay=0.0,
       momentum=0.0):
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
        Without iterates the runs are computed in H's eigenbasis
        (:meth:`~bnlib.ols.OLS.eigenbasis`), O(d) instead of O(d²) per run and step, and
        agree with ``"all"`` to rounding, not bit for bit.
    blowup : float
        A run is diverged once its state is not finite or its loss exceeds
        ``blowup * max(J0(w0), c/2)``.
    weight_decay, momentum : float or array_like
        Coupled weight decay υ ≥ 0 (the steps are taken on J0 + υ‖w‖²/2; ``loss`` and
        ``excess`` stay those of J0) and heavy-ball momentum ς ∈ [0, 1), broadcast with the
        batch shape: Δw_k = ς Δw_{k−1} − ε (∇J0(w_k) + υ w_k), w_{k+1} = w_k + Δw_k,
        Δw_{−1} = 0, as frameworks write SGD with momentum. With υ = ς = 0 (the default) the
        runs are the plain ones bit for bit.

    Returns
    -------
    GDRun
    """
    check_problem(problem)
    return _gd(_Data([problem], stacked=False), lr, steps, w0, tol=tol, record=record,
               blowup=blowup, weight_decay=weight_decay, momentum=momentum)


def gd_stack(problems, lr, steps, w0=None, *, tol=None, record="all", blowup=1e10,
             weight_decay=0.0, momentum=0.0):
    """:func:`~bnlib.descent.gd` on S problems of equal dimension at once.

    Parameters as :func:`~bnlib.descent.gd`, with ``problems`` a sequence of S ≥ 1
    :class:`~bnlib.ols.OLS` of dimension d in place of ``problem``; the arrays broadcast
    against the batch shape (S, B...), problem axis first (see :mod:`bnlib.descent`), and
    ``tol`` waits for every run of every problem.

    Returns
    -------
    GDRun
        With batch shape (S, B...): ``loss[k, s, ...]`` is run ``(s, ...)`` on ``problems[s]``,
        the same numbers as S separate :func:`~bnlib.descent.gd` calls up to rounding.
    """
    return _gd(_problems(problems), lr, steps, w0, tol=tol, record=record, blowup=blowup,
               weight_decay=weight_decay, momentum=momentum)


def _gd(data, lr, steps, w0, **kw):
    lr = v.positive_array(lr, "lr")
    opt = options(steps, **kw)
    w0 = np.zeros(data.d) if w0 is None else v.vector_batch(w0, "w0", data.d)
    B = _batch_shape(data, lr=lr.shape, **{"w0[..., 0]": w0.shape[:-1]}, **option_shapes(opt))
    return _launch(data, B, opt, lr, w0)


def bngd(problem, lr, steps, a0, w0, lr_a=1.0, *, tol=None, record="all", blowup=1e10,
         weight_decay=0.0, momentum=0.0):
    """Batch-normalized gradient descent on J(a, w).

    a_{k+1} = a_k − ε_a ∂_a J(a_k, w_k),   w_{k+1} = w_k − ε ∇_w J(a_k, w_k).

    Parameters
    ----------
    problem, lr, steps
        As in :func:`~bnlib.descent.gd`, ``lr`` the weight step(s) ε.
    a0 : float or array_like
        Start of the scale a (broadcast with the batch shape).
    w0 : array_like, shape (d,) or (B..., d)
        Start of the weights; must be nonzero (‖w0‖_H > 0).
    lr_a : float or array_like
        Step(s) ε_a > 0 for a, broadcast with ``lr``.
    tol, record, blowup
        As in :func:`~bnlib.descent.gd` (``blowup`` relative to ``max(J(a0, w0), c/2)``;
        ``record="loss"`` runs in H's eigenbasis and agrees with ``"all"`` to rounding).
    weight_decay, momentum : float or array_like
        As in :func:`~bnlib.descent.gd`, the decay on w only (``loss`` and ``excess`` stay
        those of J), the momentum on both a (with ε_a and ∂_a J) and w.

    Returns
    -------
    BNGDRun

    Notes
    -----
    The excess is computed as J − J* = ½ (a − p)² + ½ rᵀH r with p = wᵀg/‖w‖_H and
    r = u* − t w, t = wᵀg/‖w‖²_H (r is the part of u* H-orthogonal to w). The second term
    is evaluated as u*ᵀG − t wᵀG with G = g − t H w = H r, the vector the update uses
    anyway; its rounding error is of the order of ε_mach ‖u*‖ ‖G‖, the same as that of
    forming r itself, so it vanishes with G at the minimum and the excess keeps its
    relative accuracy far below the rounding error of ``loss`` = J* + excess.
    """
    check_problem(problem)
    return _normalized("bn", _Data([problem], stacked=False), lr, steps, a0, w0, lr_a, tol=tol,
                       record=record, blowup=blowup, weight_decay=weight_decay, momentum=momentum)


def bngd_stack(problems, lr, steps, a0, w0, lr_a=1.0, *, tol=None, record="all", blowup=1e10,
               weight_decay=0.0, momentum=0.0):
    """:func:`~bnlib.descent.bngd` on S problems of equal dimension at once.

    Parameters, result layout (a :class:`~bnlib.descent.BNGDRun` of batch shape (S, B...))
    and errors as :func:`~bnlib.descent.gd_stack`, with the arguments of
    :func:`~bnlib.descent.bngd` (every start nonzero).
    """
    return _normalized("bn", _problems(problems), lr, steps, a0, w0, lr_a, tol=tol, record=record,
                       blowup=blowup, weight_decay=weight_decay, momentum=momentum)


@dataclass(frozen=True, kw_only=True)
class WNGDRun(BNGDRun):
    """The result of :func:`~bnlib.descent.wngd`.

    The fields of :class:`~bnlib.descent.BNGDRun`, with ``loss`` = J_WN(a_k, w_k), ``excess`` =
    J_WN − J* computed as ½ (u_k − u*)ᵀH(u_k − u*), u_k = a_k w_k/‖w_k‖, and ``lr_eff`` the
    effective step ε a_k²/‖w_k‖² with the **Euclidean** norm (BN's uses ‖w_k‖_H).
    """


def _aw(problem, a, w):
    check_problem(problem)
    a, w = v.scale_weights(a, w, problem.d)
    n2 = np.einsum("...i,...i->...", w, w)
    if np.any(n2 <= 0):
        raise ValueError("w must be nonzero: w/||w|| is undefined at w = 0")
    return a, w, np.sqrt(n2)


def wn_loss(problem, a, w) -> np.ndarray:
    """J_WN(a, w) = J0(a w/‖w‖).

    Parameters
    ----------
    problem : bnlib.ols.OLS
    a : array_like, shape broadcastable with ``w.shape[:-1]``
    w : array_like, shape (..., d), nonzero

    Returns
    -------
    numpy.ndarray, shape ``broadcast(a.shape, w.shape[:-1])``
    """
    a, w, n = _aw(problem, a, w)
    return problem.loss((a / n)[..., None] * w)


def wn_grad(problem, a, w):
    """Gradients of :func:`~bnlib.descent.wn_loss`.

    Returns
    -------
    dJ_da : numpy.ndarray, shape ``broadcast(a.shape, w.shape[:-1])``
        ŵᵀ (H u − g).
    dJ_dw : numpy.ndarray, shape ``dJ_da.shape + (d,)``
        (a/‖w‖) (I − ŵŵᵀ)(H u − g).
    """
    a, w, n = _aw(problem, a, w)
    what = w / n[..., None]
    r = problem.grad(a[..., None] * what)
    da = np.einsum("...i,...i->...", what, r)
    dw = (a / n)[..., None] * (r - da[..., None] * what)
    return da, dw


def wngd(problem, lr, steps, a0, w0, lr_a=1.0, *, tol=None, record="all", blowup=1e10):
    """Gradient descent on the weight-normalized loss J_WN(a, w) (WNGD).

    a_{k+1} = a_k − ε_a ∂_a J_WN(a_k, w_k),   w_{k+1} = w_k − ε ∇_w J_WN(a_k, w_k).

    Parameters, shapes, divergence (relative to J_WN(a0, w0)) and errors as
    :func:`~bnlib.descent.bngd` (``record="loss"`` in H's eigenbasis, equal to ``"all"`` to
    rounding), without weight decay and momentum; returns a :class:`~bnlib.descent.WNGDRun`.
    Unlike BN's, the curvature of J_WN in a is ŵᵀHŵ, not 1, so ``lr_a`` ≤ 1 is not a safe
    default for every problem.
    """
    check_problem(problem)
    return _normalized("wn", _Data([problem], stacked=False), lr, steps, a0, w0, lr_a, tol=tol,
                       record=record, blowup=blowup)


def wngd_stack(problems, lr, steps, a0, w0, lr_a=1.0, *, tol=None, record="all", blowup=1e10):
    """:func:`~bnlib.descent.wngd` on S problems at once, laid out as :func:`~bnlib.descent.bngd_stack`."""
    return _normalized("wn", _problems(problems), lr, steps, a0, w0, lr_a, tol=tol, record=record,
                       blowup=blowup)
