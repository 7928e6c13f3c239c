"""bnlib: batch normalization on ordinary least squares, the library behind the book.

Public API (a contract: chapters and outside code call these names)

- :class:`OLS` — an immutable OLS problem (H, g, c) with J0, the BN loss J and its gradients.
- :func:`gd`, :func:`bngd` — vectorised GD and BNGD runs over arrays of step sizes;
  :func:`gd_stack`, :func:`bngd_stack` — the same for several problems of equal dimension.
- :mod:`bnlib.theory` — closed-form rates and step-size limits.
- :mod:`bnlib.flow` — the gradient flow of J(a, w), integrated with RK4 from many starts.
- :mod:`bnlib.rates` — measured asymptotic contraction factors of runs.
- :mod:`bnlib.linearize` — BNGD linearised near a minimiser; GD's best step; acceleration.
- :mod:`bnlib.bn` — the batch-normalization layer (forward and backward).
- :mod:`bnlib.nn` — numpy MLPs with BN, trained by SGD over grids of step sizes in lockstep.
- :mod:`bnlib.symbolic` — sympy helpers for the derivations (BN-loss calculus, moment
  expectations); loaded on first use, so ``import bnlib`` does not import sympy.
- :mod:`bnlib.sweeps` — problems in H's eigenbasis and widths of step-size sets, for sweeps.
"""

import importlib

from . import bn, flow, linearize, nn, rates, sweeps, theory
from .descent import BNGDRun, GDRun, bngd, bngd_stack, gd, gd_stack
from .ols import OLS


def __getattr__(name):
    # bnlib.symbolic imports sympy (about half a second), so it is loaded on first use.
    if name == "symbolic":
        return importlib.import_module(".symbolic", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["OLS", "gd", "bngd", "gd_stack", "bngd_stack", "GDRun", "BNGDRun", "theory", "bn", "nn",
           "flow", "linearize", "rates", "symbolic", "sweeps"]
__version__ = "0.1.0"
