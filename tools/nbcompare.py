"""Number-aware comparison of stored and fresh notebook outputs (used by ``conftest.py``).

Two output texts match when they are identical except that a printed floating-point number
may differ from the stored one by at most one unit in its last printed digit. Every other
character must be identical: words, spacing, integers (counts, shapes, indices) and the
format of each number (its number of decimals, plain or scientific). This absorbs what
another CPU, BLAS or Python does to a value that sits on a rounding boundary (0.9675 printed
with three decimals), and nothing else: a real change of a result still fails.
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["numbers_match", "NUMBER"]

# A number: optional sign, digits with an optional fraction (or a bare fraction), optional
# exponent. Letters or digits glued to the front (x2, ch5) make the digits part of a word.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")


def _shape(token: str) -> tuple:
    """What must agree between two numbers besides their value: kind and printed digits."""
    mantissa, _, exponent = token.lower().partition("e")
    mantissa = mantissa.lstrip("+-")
    if "." not in mantissa and not exponent:
        return ("int",)
    decimals = len(mantissa.partition(".")[2])
    return ("sci" if exponent else "fixed", decimals, "." in mantissa)


def _unit(token: str) -> Decimal:
    """One unit in the last printed digit of a float token."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return Decimal(1).scaleb(-decimals + (int(exponent) if exponent else 0))


def _close(ref: str, test: str) -> bool:
    if ref == test:
        return True
    shape = _shape(ref)
    if shape[0] == "int" or shape != _shape(test):
        return False
    slack = max(_unit(ref), _unit(test))
    return abs(Decimal(ref) - Decimal(test)) <= slack


def numbers_match(ref: str, test: str) -> bool:
    """True if ``test`` equals ``ref`` up to one unit in the last digit of each float.

    >>> numbers_match("slope 0.968", "slope 0.967")
    True
    >>> numbers_match("slope 0.968", "slope 0.966")
    False
    >>> numbers_match("shape (3, 4)", "shape (3, 5)")
    False
    """
    if ref == test:
        return True
    if not isinstance(ref, str) or not isinstance(test, str):
        return False
    ref_numbers, test_numbers = NUMBER.findall(ref), NUMBER.findall(test)
    if len(ref_numbers) != len(test_numbers):
        return False
    if NUMBER.split(ref) != NUMBER.split(test):
        return False
    return all(_close(r, t) for r, t in zip(ref_numbers, test_numbers, strict=True))
