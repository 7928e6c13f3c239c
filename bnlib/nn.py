"""Small numpy multilayer perceptrons with optional batch normalization, trained by SGD.

This module carries the book's OLS findings over to networks, as in the experiments of
Cai, Li & Shen (2019): a dense network whose every dense layer is followed by BN (before the
activation: ReLU in hidden layers, softmax at the output), trained by plain mini-batch SGD
with a constant step ε for the weights and biases and a separate step ε_a for BN's γ and β.

Many networks train at once. Every parameter array carries a leading *model* shape P (for
example ``(seeds, step sizes)``); all models see the same mini-batches of their seed and
advance in lockstep, so a grid of 30 step sizes costs one batched run, not 30.

Conventions
-----------
- ``sizes = (d_in, h_1, ..., h_L, n_classes)``; layer l maps ``sizes[l]`` to ``sizes[l+1]``.
- Parameters are a dict of arrays: ``"W{l}"`` of shape (P..., sizes[l], sizes[l+1]); without
  BN a bias ``"b{l}"`` of shape (P..., 1, sizes[l+1]); with BN ``"gamma{l}"``, ``"beta{l}"`` and
  the running averages ``"mean{l}"``, ``"var{l}"`` of shape (P..., 1, sizes[l+1]) instead
  (a bias in front of BN would be removed by the centring, so it is left out).
- A mini-batch ``X`` has shape (B, d_in) (shared by all models) or (Q..., B, d_in) with Q
  broadcasting to P; labels ``y`` are integers in [0, n_classes), shape (B,) or (Q..., B).
- Losses: ``"cross_entropy"`` (mean over the batch of −log softmax) and ``"quadratic"``,
  mean over the batch *and* the classes of (onehot − softmax)², the loss of the paper's code.


The module gathers the network experiments' names from the modules that hold them:
:mod:`bnlib.digits` (the data), :mod:`bnlib.mlp` (the model) and :mod:`bnlib.training`
(SGD and the sweep); e.g. ``bnlib.nn.MLP`` is ``bnlib.mlp.MLP``.
"""

from .digits import Digits, load_digits_split
from .mlp import MLP
from .training import SGDRun, decades_above, sgd, sweep

__all__ = ["Digits", "load_digits_split", "MLP", "SGDRun", "sgd", "sweep", "decades_above"]
