"""Small numpy multilayer perceptrons with optional batch normalization, trained by SGD.

This module carries the book's OLS findings over to networks, as in the experiments of
Cai, Li & Shen (2019): a dense network whose every dense layer is followed by BN (before the
activation: ReLU in hidden layers, softmax at the output), trained by plain mini-batch SGD
with a constant step ε for the weights and biases and a separate step ε_a for BN's γ and β.

See :mod:`bnlib.mlp` for the conventions (sizes, parameter names, shapes, losses).

The module gathers the network experiments' names from the modules that hold them:
:mod:`bnlib.digits` (the data), :mod:`bnlib.mlp` (the model) and :mod:`bnlib.training`
(SGD and the sweep); e.g. ``bnlib.nn.MLP`` is ``bnlib.mlp.MLP``.
"""

from .digits import Digits, load_digits_split
from .mlp import MLP
from .training import SGDRun, decades_above, sgd, sweep

__all__ = ["Digits", "load_digits_split", "MLP", "SGDRun", "sgd", "sweep", "decades_above"]
