"""Argument checks shared by bnlib's modules.

Every public function validates its arguments here, so that bad input raises a
``TypeError`` or ``ValueError`` that names the argument and shows its value. The run options
shared by every descent (weight decay, momentum) are checked here too.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import PUBLIC

__all__ = list(PUBLIC["checks"])


def short(x) -> str:
    """Return a short printable form of ``x`` for error messages."""
    text = np.array2string(np.asarray(x), threshold=6, precision=4) if _is_array(x) else repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or isinstance(x, list | tuple)


def as_real_array(x, name: str) -> np.ndarray:
    """Convert ``x`` to a float64 array; ``TypeError`` if it is not real numbers."""
    if isinstance(x, str | bytes) or x is None:
        raise TypeError(f"{name} must be a real number or array of real numbers, got {short(x)}")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a real number or array, got {short(x)}") from exc
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}: {short(x)}")
    return arr.astype(np.float64)


def finite_array(x, name: str) -> np.ndarray:
    """Real float64 array with every entry finite, else ``ValueError``."""
    arr = as_real_array(x, name)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no inf or nan), got {short(arr)}")
    return arr


def positive_array(x, name: str) -> np.ndarray:
    """Finite array with every entry > 0, else ``ValueError``."""
    arr = finite_array(x, name)
    if not np.all(arr > 0):
        raise ValueError(f"{name} must be > 0, got {short(arr)}")
    return arr


def nonnegative_array(x, name: str) -> np.ndarray:
    """Finite array with every entry >= 0, else ``ValueError``."""
    arr = finite_array(x, name)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0, got {short(arr)}")
    return arr


def positive_scalar(x, name: str) -> float:
    """Return ``x`` as a finite real number > 0."""
    arr = positive_array(x, name)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    return float(arr)


def count(x, name: str, minimum: int = 0) -> int:
    """Return ``x`` as a Python/numpy integer >= ``minimum`` (bools rejected)."""
    if isinstance(x, bool | np.bool_) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {short(x)}")
    if x < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {x}")
    return int(x)


def batch_sizes(batch, minimum: int = 2) -> np.ndarray:
    """Check that ``batch`` holds integers >= ``minimum`` (batch sizes) and return it as an array."""
    b = np.asarray(batch)
    if b.dtype == bool or not np.issubdtype(b.dtype, np.integer):
        raise TypeError(f"batch must hold integers, got {b.dtype}")
    if np.any(b < minimum):
        raise ValueError(f"batch must be >= {minimum} everywhere, got minimum {int(b.min())}")
    return b


def vector_batch(x, name: str, d: int) -> np.ndarray:
    """Finite array of shape ``(..., d)``."""
    arr = finite_array(x, name)
    if arr.ndim == 0 or arr.shape[-1] != d:
        raise ValueError(f"{name} must have shape (..., {d}) for this problem, got shape {arr.shape}")
    return arr


def rng(seed, name: str = "seed") -> np.random.Generator:
    """Return a ``numpy.random.Generator``.

    ``seed`` itself if it is one, else ``default_rng(seed)`` for an integer seed ≥ 0.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(count(seed, name, minimum=0))


def scalar_or_array(x, to=float):
    """Unwrap a 0-d result: the one place where results of batch shape () are unwrapped.

    A 0-d ``x`` comes back as ``to(x)`` (``to=None`` keeps the numpy scalar ``x[()]``), any
    other array unchanged.
    """
    if np.ndim(x) != 0:
        return x
    x = x[()] if isinstance(x, np.ndarray) else x
    return x if to is None else to(x)


def broadcast(**shapes) -> tuple:
    """Return the broadcast of the named shapes, else raise ``ValueError`` listing them."""
    try:
        return np.broadcast_shapes(*shapes.values())
    except ValueError:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"shapes do not broadcast: {listed}") from None


def scale_weights(a, w, d: int):
    """Return a finite scale ``a`` and weights ``w`` of shape (..., d).

    ``a`` comes back broadcast to the batch shape ``w.shape[:-1]`` (a read-only view);
    ``ValueError`` naming both otherwise.
    """
    w = vector_batch(w, "w", d)
    a = finite_array(a, "a")
    try:
        shape = np.broadcast_shapes(a.shape, w.shape[:-1])
    except ValueError:
        raise ValueError(f"a of shape {a.shape} does not broadcast with w of shape "
                         f"{w.shape} (batch shape {w.shape[:-1]})") from None
    return np.broadcast_to(a, shape), w


def blowup(x, name: str = "blowup") -> float:
    """Return a divergence factor: a finite real number > 1."""
    x = positive_scalar(x, name)
    if x <= 1:
        raise ValueError(f"{name} must be > 1, got {x}")
    return x


def spd(H, name: str = "H", *, stack: bool = False):
    """Validate a symmetric positive definite matrix (or, with ``stack``, a stack of them).

    Return ``(H_sym, eigvals)``: the float64 copy of ``H`` (..., d, d) symmetrised exactly as
    ``(H + Hᵀ)/2`` and its ascending eigenvalues, shape (..., d). A diagonal H costs no
    eigendecomposition: its eigenvalues are its sorted diagonal.
    """
    H = finite_array(H, name)
    if H.ndim != 2 and not (stack and H.ndim > 2):
        raise ValueError(f"{name} must be a non-empty square matrix, got shape {H.shape}")
    if H.shape[-1] != H.shape[-2] or H.shape[-1] == 0 or H.size == 0:
        what = "a non-empty square matrix" if H.ndim == 2 else "a stack of non-empty square matrices"
        raise ValueError(f"{name} must be {what}, got shape {H.shape}")
    if is_diagonal(H):                                     # symmetric, eigenvalues known
        lam = np.sort(np.diagonal(H, axis1=-2, axis2=-1), axis=-1)
        H = H.copy()
    else:
        Ht = np.swapaxes(H, -1, -2)
        scale = np.maximum(np.max(np.abs(H), axis=(-2, -1)), np.finfo(float).tiny)
        asym = np.max(np.abs(H - Ht), axis=(-2, -1))
        if np.any(asym > 1e-10 * scale):
            raise ValueError(f"{name} must be symmetric; max |{name} - {name}.T| = {np.max(asym):.3g}")
        H = 0.5 * (H + Ht)
        lam = np.linalg.eigvalsh(H)
    lam_min = np.min(lam[..., 0])
    if not lam_min > 0:
        raise ValueError(f"{name} must be positive definite; its smallest eigenvalue is {lam_min:.3g}")
    return H, lam


def is_diagonal(H) -> bool:
    """Return whether every matrix of the stack ``H`` (..., d, d) is diagonal.

    E.g. a problem written in its eigenbasis, where H w is an elementwise product.
    """
    return np.count_nonzero(H) == np.count_nonzero(np.diagonal(H, axis1=-2, axis2=-1))


def var_offset(value) -> float:
    """Check BN's variance offset ``var_offset``: a finite real number >= 0, returned as a float."""
    return float(nonnegative_array(value, "var_offset"))


def momentum_factor(x) -> np.ndarray:
    """Momentum ς (scalar or array) with every entry in [0, 1), else ``ValueError``."""
    arr = finite_array(x, "momentum")
    if np.any(arr < 0) or np.any(arr >= 1):
        raise ValueError(f"momentum must be in [0, 1), got {short(arr)}")
    return arr


def heavy_options(weight_decay, momentum):
    """Validate weight decay υ ≥ 0 and momentum ς ∈ [0, 1) (scalars or arrays).

    Each comes back as an array, or None when it is zero everywhere (the plain step, bit for
    bit).
    """
    out = (nonnegative_array(weight_decay, "weight_decay"), momentum_factor(momentum))
    return [x if np.any(x != 0) else None for x in out]


RECORDS = ("all", "loss")


def run_options(steps, tol, record, blowup_, weight_decay, momentum) -> dict:
    """Validate the options every run takes (the fields of :class:`bnlib.descent.Options`).

    ``steps`` an integer ≥ 0, ``tol`` None or > 0, ``record`` one of :data:`RECORDS`,
    ``blowup_`` > 1, and weight decay and momentum as :func:`heavy_options`.
    """
    steps = count(steps, "steps", minimum=0)
    if tol is not None:
        tol = positive_scalar(tol, "tol")
    if record not in RECORDS:
        raise ValueError(f"record must be one of {RECORDS}, got {record!r}")
    wd, mom = heavy_options(weight_decay, momentum)
    return dict(steps=steps, tol=tol, record=record, blowup=blowup(blowup_),
                weight_decay=wd, momentum=mom)
