"""bnlib: batch normalization on ordinary least squares, the library behind the book.

Public API (a contract: chapters and outside code call these names)

- :class:`OLS` — an immutable OLS problem (H, g, c) with J0, the BN loss J and its gradients.
- :func:`gd`, :func:`bngd` — vectorised GD and BNGD runs over arrays of step sizes.
- :mod:`bnlib.theory` — closed-form rates and step-size limits.
- :mod:`bnlib.flow` — the gradient flow of J(a, w), integrated with RK4 from many starts.
- :mod:`bnlib.rates` — measured asymptotic contraction factors of runs.
- :mod:`bnlib.bn` — the batch-normalization layer (forward and backward).
- :mod:`bnlib.nn` — numpy MLPs with BN, trained by SGD over grids of step sizes in lockstep.
- :mod:`bnlib.symbolic` — sympy helpers for the derivations (moment expectations).
"""

from . import bn, flow, nn, rates, symbolic, theory
from .descent import BNGDRun, GDRun, bngd, gd
from .ols import OLS

__all__ = ["OLS", "gd", "bngd", "GDRun", "BNGDRun", "theory", "bn", "nn", "flow", "rates", "symbolic"]
__version__ = "0.1.0"
