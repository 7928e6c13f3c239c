"""bnlib: batch normalization on ordinary least squares, the library behind the book.

Public API (a contract: chapters and outside code call these names)

- :class:`OLS` — an immutable OLS problem (H, g, c) with J0, the BN loss J and its gradients.
- :func:`gd`, :func:`bngd` — vectorised GD and BNGD runs over arrays of step sizes;
  :func:`gd_stack`, :func:`bngd_stack` — the same for several problems of equal dimension;
  their results :class:`GDRun`, :class:`BNGDRun` (:mod:`bnlib.runs`).
- :mod:`bnlib.theory` — closed-form rates and step-size limits.
- :mod:`bnlib.flow` — the gradient flow of J(a, w), integrated with RK4 from many starts.
- :mod:`bnlib.rates` — measured asymptotic contraction factors of runs.
- :mod:`bnlib.linearize` — BNGD linearised near a minimiser; GD's best step; acceleration.
- :mod:`bnlib.weightnorm` — weight normalization on OLS (WNGD) and its linearisation.
- :mod:`bnlib.minibatch` — BN with mini-batch statistics.
- :mod:`bnlib.decay` — weight decay on BN's weight: the equilibrium floor, angular update
  and windows (the runs take ``weight_decay=`` and ``momentum=``).
- :mod:`bnlib.bn` — the batch-normalization layer (forward and backward).
- :mod:`bnlib.nn` — numpy MLPs with BN, trained by SGD over grids of step sizes in lockstep
  (:mod:`bnlib.digits`, :mod:`bnlib.mlp`, :mod:`bnlib.training`).
- :mod:`bnlib.symbolic` — sympy helpers for the derivations (BN-loss calculus, moment
  expectations).
- :mod:`bnlib.sweeps` — problems in H's eigenbasis and widths of step-size sets, for sweeps.
- :mod:`bnlib.windows` — learning-rate windows (per seed, crossings interpolated), shared by
  the chapters on the learning rate, dimension and the summary.
- :mod:`bnlib.netstudies` — the network studies of the neural-network chapter.
- :mod:`bnlib.report` — rounding for every number the book prints or glues.

Every submodule and name is loaded on first use (a module ``__getattr__``), so
``import bnlib`` itself costs almost nothing; ``bnlib.theory``, ``from bnlib import OLS``
and ``import bnlib.flow`` work as usual.
"""

import importlib

_NAMES = {"OLS": "ols", "gd": "descent", "bngd": "descent", "gd_stack": "descent",
          "bngd_stack": "descent", "GDRun": "runs", "BNGDRun": "runs"}
_MODULES = ("bn", "decay", "descent", "digits", "flow", "linearize", "minibatch", "mlp", "netstudies",
            "nn", "ols", "rates", "report", "runs", "sweeps", "symbolic", "theory", "training",
            "weightnorm", "windows")


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module("." + _NAMES[name], __name__), name)
    elif name in _MODULES:
        value = importlib.import_module("." + name, __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES) | set(_MODULES))


__all__ = ["OLS", "gd", "bngd", "gd_stack", "bngd_stack", "GDRun", "BNGDRun", "theory", "bn", "nn",
           "flow", "linearize", "rates", "symbolic", "sweeps"]
__version__ = "0.1.0"
