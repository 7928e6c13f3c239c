"""Rounding for what the book prints and glues: the book's output policy in one place.

A stored notebook output is compared on every reader's machine, whose CPU, BLAS and Python
differ from the machine that stored it. Floating-point results agree there only to rounding
error, so every number the book shows is rounded to the digits its claim needs
(:func:`sig`, :func:`fixed`, :func:`fmt`, :func:`glue`), and a quantity that is rounding
noise by nature (a difference of 1e-16, a final excess near machine precision) is shown as a
bound that it is checked against (:func:`bound`), never as a value. The test comparison
(``conftest.py``) then allows one unit in the last printed digit and nothing more.

Examples
--------
>>> sig(0.8181818181818173, 3)
0.818
>>> fixed(19.999999999999975, 2)
20.0
>>> fmt(0.004234243, 2)
'0.0042'
>>> fmt(12345.6, 3)
'12300'
>>> bound(6.7e-16, 1e-12)
'< 1e-12'
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import PUBLIC

__all__ = list(PUBLIC["report"])


def _scalar(x, name: str) -> float | int:
    """Return a real scalar (Python, numpy or 0-d array) as a Python int or float."""
    if isinstance(x, np.ndarray):
        if x.ndim != 0:
            raise TypeError(f"{name} must be a scalar, got an array of shape {x.shape}")
        x = x[()]
    if isinstance(x, bool | np.bool_):
        raise TypeError(f"{name} must be a real number, got a boolean")
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        return float(x)
    raise TypeError(f"{name} must be a real number, got {type(x).__name__}")


def _digits(digits, name: str, low: int) -> int:
    if isinstance(digits, bool) or not isinstance(digits, numbers.Integral) or digits < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {digits!r}")
    return int(digits)


def sig(x, digits: int = 3) -> float | int:
    """``x`` (a real scalar: float, int or 0-d array) rounded to ``digits`` >= 1 significant digits.

    Integers are returned unchanged (a count is exact); ``inf`` and ``nan`` pass through.
    Raises ``TypeError`` if ``x`` is not a real scalar and ``ValueError`` if ``digits`` is not
    an integer >= 1.
    """
    x = _scalar(x, "x")
    digits = _digits(digits, "digits", 1)
    if isinstance(x, int) or x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits - 1}e}")


def fixed(x, decimals: int = 2) -> float | int:
    """``x`` rounded to ``decimals`` >= 0 places after the decimal point, as a float.

    Integers are returned unchanged. Bad input raises as in :func:`sig` (``decimals`` is
    named in the ``ValueError``).
    """
    x = _scalar(x, "x")
    decimals = _digits(decimals, "decimals", 0)
    if isinstance(x, int) or not math.isfinite(x):
        return x
    return float(f"{x:.{decimals}f}")


def fmt(x, digits: int = 3) -> str:
    """``x`` as text with ``digits`` significant digits.

    Plain notation for ``1e-4 <= |x| < 1e6``, scientific (``1.2e-07``) outside that range;
    integers are printed in full. Arguments and errors as :func:`sig`.
    """
    x = _scalar(x, "x")
    digits = _digits(digits, "digits", 1)
    if isinstance(x, int) or not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    r = sig(x, digits)
    if 1e-4 <= abs(r) < 1e6:
        exponent = math.floor(math.log10(abs(r)))
        decimals = max(digits - 1 - exponent, 0)
        return f"{r:.{decimals}f}"
    return f"{r:.{digits - 1}e}"


def bound(x, limit: float) -> str:
    """Check ``|x| < limit`` and return the bound as text, e.g. ``'< 1e-12'``.

    For rounding-level quantities, whose value changes from machine to machine while the
    bound does not (see the module's description). ``ValueError`` if ``|x| >= limit``, ``x``
    is ``nan`` or ``limit`` is not positive.

    Parameters
    ----------
    x : float or 0-d numpy.ndarray
    limit : float, > 0
        Printed with one significant digit, so choose a round bound such as 1e-12.

    Returns
    -------
    str
    """
    x = _scalar(x, "x")
    limit = _scalar(limit, "limit")
    if not limit > 0 or not math.isfinite(limit):
        raise ValueError(f"limit must be a positive finite number, got {limit!r}")
    if not abs(x) < limit:
        raise ValueError(f"x = {x!r} is not below the bound limit = {limit!r}")
    return f"< {fmt(float(limit), 1)}"


def glue(name: str, value, digits: int | None = 3, *, decimals: int | None = None):
    """Round ``value`` and glue it into the book (``myst_nb.glue``, not displayed).

    Integers are glued as they are; floats are rounded to ``digits`` significant digits, or
    to ``decimals`` places after the point when ``decimals`` is given.

    Parameters
    ----------
    name : str
        The glue key, used in the text as ``{glue:text}`name```.
    value : float, int or 0-d numpy.ndarray
    digits : int or None
    decimals : int or None

    Returns
    -------
    float or int
        The value as glued (a float needs ``digits`` or ``decimals``, else ``ValueError``).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    value = _scalar(value, "value")
    if isinstance(value, float):
        if decimals is not None:
            value = fixed(value, decimals)
        elif digits is not None:
            value = sig(value, digits)
        else:
            raise ValueError("give digits or decimals to round a float before gluing it")
    from myst_nb import glue as _glue  # the book stack; bnlib itself does not need it

    _glue(name, value, display=False)
    return value
