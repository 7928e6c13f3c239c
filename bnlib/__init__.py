"""bnlib: batch normalization on ordinary least squares, the library behind the book.

The modules, each one idea, every import pointing down this list:

- :mod:`~bnlib.checks` — argument checks (internal: no public names).
- :mod:`~bnlib.report` — rounding for every number the book prints or glues.
- :mod:`~bnlib.bn` — the batch-normalization layer (forward and backward).
- :mod:`~bnlib.symbolic` — sympy helpers for the derivations.
- :mod:`~bnlib.ols` — the OLS problem (H, g, c), with J0, the BN loss J and its gradients.
- :mod:`~bnlib.theory` — every closed form: GD, BNGD, WN, mini-batch BN, weight decay.
- :mod:`~bnlib.descent` — GD, BNGD and WNGD runs over arrays of step sizes.
- :mod:`~bnlib.flow` — the gradient flow of J, integrated with RK4.
- :mod:`~bnlib.linearize` — BNGD near a minimiser, and measured contraction rates.
- :mod:`~bnlib.windows` — every width of a set of good step sizes.
- :mod:`~bnlib.minibatch` — BN with mini-batch statistics: SGD runs on a training set.
- :mod:`~bnlib.decay` — weight decay on BN's weight: the floor and the windows it costs.
- :mod:`~bnlib.nn` — numpy MLPs with BN on the digits, trained by SGD in lockstep.
- :mod:`~bnlib.studies` — the book's study settings, shared by several chapters.

Bad input to a public function raises ``TypeError`` (not a number, not an OLS, ...) or
``ValueError`` (out of range, wrong shape, ...) with a message that names the argument;
docstrings list only the errors beyond that.

``PUBLIC`` below is the one list of public names: each module's ``__all__``, the names
``bnlib.X`` and the API page (``book/api.md``, checked by ``tests/test_api.py``) follow it.
Every module and name is loaded on first use, so ``import bnlib`` costs almost nothing.
"""

import importlib

PUBLIC = {
    "checks": (),
    "report": ("sig", "fixed", "fmt", "bound", "glue"),
    "bn": ("BNCache", "batchnorm_forward", "batchnorm_backward", "batch_std_mean"),
    "symbolic": ("symmetric_matrix", "vector", "moment_symbols", "expect_quadratic",
                 "BNOLSCalculus", "bn_ols_calculus", "book_latex"),
    "ols": ("OLS", "eigen_problem", "random_rotation"),
    "theory": ("gd_lr_max", "gd_lr_opt", "gd_rate", "gd_excess", "gd_steps_to", "gd_best_step",
               "kappa", "effective_hessian", "effective_eigvals", "kappa_star", "bngd_rate",
               "asymptotic_speedup", "wn_effective_hessian", "wn_effective_eigvals",
               "wn_kappa", "wn_rate", "wn_kappa_eff", "grad_noise", "norm_growth",
               "scale_floor", "sgd_floor", "floor_leading", "angular_equilibrium"),
    "descent": ("GDRun", "BNGDRun", "WNGDRun", "gd", "bngd", "wngd", "gd_stack", "bngd_stack",
                "wngd_stack", "wn_loss", "wn_grad"),
    "flow": ("FlowRun", "bn_flow"),
    "linearize": ("effective_step", "h_projector", "linear_map", "step_jacobian",
                  "mode_coordinates", "saddle_multipliers", "kappa_star_eigenbasis",
                  "wn_jacobian", "Acceleration", "compare_acceleration", "Contraction",
                  "contraction"),
    "windows": ("log_width", "crossing_width", "Windows", "lr_windows", "gd_window",
                "bngd_window", "good_window", "level_window", "window_decades",
                "window_margin"),
    "minibatch": ("MiniBatchRun", "BNMiniBatchRun", "train_problem", "bn_batch_grad", "bn_sgd", "sgd"),
    "decay": ("angular_update", "FloorSweep", "floor_sweep", "DecayWindows", "decay_windows"),
    "nn": ("Digits", "load_digits_split", "MLP", "SGDRun", "HeavySGDRun", "train", "train_variants",
           "effective_steps", "top_bn_hessian", "top_bn_sharpness"),
    "studies": ("STANDARD", "lr_study", "standard_windows", "standard_decay", "SOFTMAX_LR",
                "SOFTMAX_SEEDS", "SOFTMAX_EPOCHS", "LONG_EPOCHS", "softmax_quadratic",
                "split_runs", "WIDTH_LR", "WIDTH_GD_LR", "hidden_widths"),
}
_WHERE = {name: module for module, names in PUBLIC.items() for name in names}


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module("." + _WHERE[name], __name__), name)
    elif name in PUBLIC:
        value = importlib.import_module("." + name, __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE) | set(PUBLIC))


__all__ = [m for m in PUBLIC if m != "checks"] + list(_WHERE)
__version__ = "0.1.0"
