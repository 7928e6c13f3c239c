"""The book's study settings: the grids, seeds and budgets its chapters share.

A number the book states in two chapters is measured once, here: the learning-rate study of
chapters 06, 07 and 12 (:func:`lr_study`, :func:`standard_windows`), the weight-decay
study of chapters 10 and 12 (:func:`standard_decay`), and the network study of chapters 11
and 12 (:func:`softmax_quadratic`, :func:`split_runs`, :func:`hidden_widths`; each takes a
sequence of budgets in epochs and then trains once, reading the runs at every budget).
"""

from __future__ import annotations

import numpy as np

from . import PUBLIC
from . import checks as v
from .decay import decay_windows, floor_sweep
from .nn import MLP, train, train_variants
from .ols import eigen_problem
from .windows import Windows, lr_windows

__all__ = list(PUBLIC["studies"])


def lr_study(kappa, d=100, n_seeds=5, seed=2024):
    """Build the problems and starts of the book's learning-rate study (chapter 6).

    Problem ``s`` (s = 0, …, n_seeds − 1) is :func:`bnlib.ols.eigen_problem` with
    H = diag(logspace(0, log10 κ, d)) and seed ``s``; BNGD's starts are unit vectors, row ``s``
    of ``default_rng(seed).standard_normal((n_seeds, d))`` normalised.

    Parameters
    ----------
    kappa : float
        Condition number ≥ 1.
    d, n_seeds, seed : int
        Dimension ≥ 1, number of problems ≥ 1, seed ≥ 0 of the starts.

    Returns
    -------
    problems : list of bnlib.ols.OLS
    w0 : numpy.ndarray, shape (n_seeds, d)
    """
    kappa = v.positive_scalar(kappa, "kappa")
    if kappa < 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    d = v.count(d, "d", minimum=1)
    n_seeds = v.count(n_seeds, "n_seeds", minimum=1)
    seed = v.count(seed, "seed", minimum=0)
    lam = np.logspace(0, np.log10(kappa), d)
    problems = [eigen_problem(lam, seed=s) for s in range(n_seeds)]
    w0 = np.random.default_rng(seed).standard_normal((n_seeds, d))
    return problems, w0 / np.linalg.norm(w0, axis=1, keepdims=True)


#: The book's standard window measurement (the budget K and the relative tolerance).
STANDARD = {"steps": 10_000, "tol": 1e-6}


def standard_windows(kappa=100.0, *, d=100, n_seeds=5, per_decade=4) -> Windows:
    """GD's and BNGD's windows in the book's standard setting, per seed.

    :func:`~bnlib.windows.lr_windows` on :func:`lr_study` ``(kappa, d, n_seeds)`` with a budget of 10⁴
    steps, relative tolerance 10⁻⁶, BNGD from a0 = 1 with ε_a = 1, and the grid
    10^-4.5 … 10^3.5 with ``per_decade`` points per decade (every window of the study lies
    inside it for κ = 10 … 1000, d = 100). Chapter 6 states these numbers and the summary
    chapter reuses this call; about 1 s of computation per κ at the defaults.

    Parameters
    ----------
    kappa : float
    d, n_seeds, per_decade : int
        ``per_decade`` ≥ 1.

    Returns
    -------
    bnlib.windows.Windows
        ``gd`` and ``bngd`` of shape (n_seeds,).

    Raises
    ------
    TypeError
        As :func:`lr_study`.
    ValueError
        As :func:`lr_study`, or if ``per_decade`` < 1.
    RuntimeError
        If a window reaches an end of the grid (its width would be cut off).
    """
    per_decade = v.count(per_decade, "per_decade", minimum=1)
    problems, w0 = lr_study(kappa, d, n_seeds)
    lr = np.logspace(-4.5, 3.5, 8 * per_decade + 1)
    out = lr_windows(problems, lr, STANDARD["steps"], STANDARD["tol"], w0)
    edges = np.concatenate([out.rel_bngd[:, [0, -1]], out.rel_gd[:, [0, -1]]])
    if np.any(edges <= out.tol):
        raise RuntimeError("a window reaches the end of the grid: widen the grid")
    return out


def standard_decay():
    """Run the weight-decay chapter's two measurements at its settings (the summary's row).

    The problem: d = 20, eigenvalues log-spaced in [1, 100] (κ = 100), u* from seed 0
    (:func:`~bnlib.ols.eigen_problem`), a unit random start (seed 1), a0 = 1, ε_a = 1.

    Returns
    -------
    problem : bnlib.ols.OLS
    sweep : FloorSweep
        ε ∈ {0.1, 1, 10}, ευ at 7 points from 1e-4 to 1e-1, 10⁴ steps, the last 1000 averaged.
    windows : DecayWindows
        101 steps ε from 1e-4 to 1e6, υ ∈ {0, 1e-4, 1e-3, 1e-2}, 4000 steps, tolerance
        10⁻³ (J0(0) − J*).
    """
    problem = eigen_problem(np.logspace(0, 2, 20), seed=0)
    w0 = np.random.default_rng(1).standard_normal(20)
    w0 /= np.linalg.norm(w0)
    sweep = floor_sweep(problem, np.array([0.1, 1.0, 10.0]), np.logspace(-4, -1, 7), 10_000,
                        1.0, w0)
    win = decay_windows(problem, np.logspace(-4, 6, 101), np.array([0.0, 1e-4, 1e-3, 1e-2]),
                        4000, 1.0, w0, 1e-3 * problem.excess_at_zero)
    return problem, sweep, win


#: The grid of ε of the study, 10^-2 to 10^6 with four points per decade.
SOFTMAX_LR = np.logspace(-2, 6, 33)


#: Repetitions (seeds) and epochs (13 SGD steps of batch 100 each on the digits).
SOFTMAX_SEEDS = (0, 1, 2)


SOFTMAX_EPOCHS = 3


#: The study's main budget, 30 epochs = 390 SGD steps (3 epochs are the short contrast).
LONG_EPOCHS = 30


def softmax_quadratic(data, lr_a=(0.1,), *, epochs=SOFTMAX_EPOCHS, seeds=SOFTMAX_SEEDS, lr=None):
    """Run the study's main experiment: softmax regression 64 → 10 with the quadratic loss.

    The three variants of :func:`bnlib.nn.train_variants` (``"gd"``, ``"bn"``, ``"bn_split"``) on the
    grid :data:`SOFTMAX_LR` (or ``lr``), with the study's seeds and epochs.

    Parameters
    ----------
    data : bnlib.nn.Digits
    lr_a : array_like, shape (A,)
        The values of ε_a for ``"bn_split"``.
    epochs : int or sequence of int
        As in :func:`bnlib.nn.train` (a sequence: one run read at each budget).
    seeds : sequence of int
    lr : array_like, shape (n,), or None
        Grid of ε; ``None`` for :data:`SOFTMAX_LR`.

    Returns
    -------
    dict of bnlib.nn.SGDRun
        As :func:`bnlib.nn.train_variants` (for a sequence of ``epochs``,
        ``{epochs: that dict}``).
    """
    grid = SOFTMAX_LR if lr is None else lr
    return train_variants((data.X_train.shape[1], 10), "quadratic", data, grid, lr_a, epochs=epochs,
                 seeds=seeds)


def split_runs(data, lr_a, *, epochs=LONG_EPOCHS, seeds=SOFTMAX_SEEDS, lr=None):
    """Run the ``"bn_split"`` variant of :func:`~bnlib.studies.softmax_quadratic` alone, keeping parameters.

    Seed by seed the same starts and mini-batches as :func:`softmax_quadratic`, so for an
    ε_a that both ran the numbers agree; the kept parameters feed
    :func:`~bnlib.nn.top_bn_sharpness`.

    Parameters
    ----------
    data, lr_a, epochs, seeds, lr
        As in :func:`softmax_quadratic` (here ``epochs`` defaults to :data:`LONG_EPOCHS`).

    Returns
    -------
    bnlib.nn.SGDRun
        Model shape (S, A, n), with ``params`` (for a sequence of ``epochs``, a dict
        ``{epochs: SGDRun}``, each with the parameters at that budget).
    """
    grid = v.positive_array(SOFTMAX_LR if lr is None else lr, "lr")
    lr_a = v.positive_array(lr_a, "lr_a")
    if grid.ndim != 1 or lr_a.ndim != 1:
        raise ValueError(f"lr and lr_a must be 1-D, got shapes {grid.shape} and {lr_a.shape}")
    net = MLP((data.X_train.shape[1], 10), bn=True, loss="quadratic")
    return train(net, data, grid[None, :], lr_a[:, None], epochs=epochs, seeds=seeds,
               keep_params=True)


#: Every other point of SOFTMAX_LR, two per decade (the grid of the width study).
WIDTH_LR = SOFTMAX_LR[::2]


#: The width study's grid for plain SGD, WIDTH_LR up to 10^2.5, a decade beyond 10^1.5,
#: the last step at which plain SGD trains (it is at chance from 10^2 on, in chapter 11).
WIDTH_GD_LR = WIDTH_LR[:10]


def hidden_widths(data, widths=(10, 100), *, epochs=LONG_EPOCHS, seeds=SOFTMAX_SEEDS, lr=None,
                  gd_lr=None):
    """Train the width study: one hidden layer 64 → h → 10, quadratic loss, gd and bn_split.

    For each width h, ``"gd"`` (no BN, biases) over the grid :data:`WIDTH_GD_LR` (or
    ``gd_lr``) and ``"bn_split"`` (BN after both dense layers, ε_a = 0.1) over
    :data:`WIDTH_LR` (or ``lr``), with the study's seeds and, by default, its main budget of
    :data:`LONG_EPOCHS`. The grids have two points per decade because a width-100 network
    costs several times as much per step as a width-10 one, and plain SGD's stops at
    10^2.5 because above 10^1.5 it no longer trains; their points are points of
    :data:`SOFTMAX_LR`, and the models of a grid train independently, so a model here is
    the model of the same ε, seed and width on the finer grid.

    Parameters
    ----------
    data : bnlib.nn.Digits
    widths : sequence of int
        Hidden widths h ≥ 1.
    epochs : int or sequence of int
        As in :func:`bnlib.nn.train` (a sequence: ``{epochs: {h: ...}}``).
    seeds : sequence of int
    lr, gd_lr : array_like or None
        1-D grids of ε for bn_split and gd; ``None`` for :data:`WIDTH_LR` and
        :data:`WIDTH_GD_LR`.

    Returns
    -------
    dict
        ``{h: {"gd": SGDRun, "bn_split": SGDRun}}``; model shapes (S, n_gd) and (S, 1, n).
    """
    grid = v.positive_array(WIDTH_LR if lr is None else lr, "lr")
    gd_grid = v.positive_array(WIDTH_GD_LR if gd_lr is None else gd_lr, "gd_lr")
    if grid.ndim != 1 or gd_grid.ndim != 1:
        raise ValueError(f"lr and gd_lr must be 1-D, got shapes {grid.shape} and {gd_grid.shape}")
    d_in = data.X_train.shape[1]
    out = {}
    for h in widths:
        h = v.count(h, "widths", minimum=1)
        nets = {bn: MLP((d_in, h, 10), bn=bn, loss="quadratic") for bn in (False, True)}
        kw = {"epochs": epochs, "seeds": seeds}
        out[h] = {"gd": train(nets[False], data, gd_grid, **kw),
                  "bn_split": train(nets[True], data, grid[None, :], np.array([[0.1]]), **kw)}
    if np.ndim(epochs) == 0:
        return out
    return {e: {h: {k: r[e] for k, r in runs.items()} for h, runs in out.items()} for e in epochs}
