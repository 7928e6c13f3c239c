"""bnlib.report: rounding for printed and glued numbers, checked against decimal arithmetic."""

from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnlib import bound, fixed, fmt, glue, sig

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)


@given(x=finite.filter(lambda v: v != 0), digits=st.integers(1, 8))
def test_sig_is_correct_decimal_rounding(x, digits):
    d = Decimal(x)                                       # the exact binary value
    q = Decimal(1).scaleb(d.adjusted() - digits + 1)
    expect = float(d.quantize(q, rounding=ROUND_HALF_EVEN))
    assert sig(x, digits) == expect


@given(x=st.floats(-1e12, 1e12), decimals=st.integers(0, 6))
def test_fixed_is_correct_decimal_rounding(x, decimals):
    expect = float(Decimal(x).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN))
    assert fixed(x, decimals) == expect


def test_values_from_the_portability_report():
    assert sig(19.999999999999975, 3) == sig(20.00000000000002, 3) == 20.0
    assert sig(0.8181818181818173, 3) == sig(0.8181818181818195, 3) == 0.818
    assert fmt(0.004234243, 2) == fmt(0.004234418, 2) == "0.0042"
    assert sig(np.float64(2.5625000000000004), 2) == 2.6
    assert sig(np.array(3.14159), 3) == 3.14


def test_integers_nonfinite_and_zero_pass_through():
    assert sig(5757, 2) == 5757 and isinstance(sig(np.int64(12), 1), int)
    assert fixed(7, 0) == 7 and fmt(112) == "112"
    assert np.isinf(sig(float("inf"))) and np.isnan(sig(float("nan")))
    assert sig(0.0) == 0.0 and fmt(0.0) == "0" and fmt(float("inf")) == "inf"


@pytest.mark.parametrize("x, digits, text", [
    (0.9675, 3, "0.968"), (0.96749, 3, "0.967"), (1.35e-7, 2, "1.4e-07"), (5757.0, 4, "5757"),
    (123456789.0, 3, "1.23e+08"), (-0.00012, 2, "-0.00012"), (2.0, 3, "2.00"), (0.5, 1, "0.5"),
    (99.96, 3, "100"), (1234.5, 2, "1200"),
    # the ends of plain notation, 1e-4 <= |x| < 1e6 (after rounding: 999999.7 rounds to 1e6)
    (1e-4, 3, "0.000100"), (999_999.0, 6, "999999"), (1e6, 3, "1.00e+06"), (999_999.7, 6, "1.00000e+06"),
])
def test_fmt(x, digits, text):
    assert fmt(x, digits) == text


def test_bound_checks_and_prints():
    assert bound(6.7e-16, 1e-12) == "< 1e-12"
    assert bound(-3e-9, 1e-8) == "< 1e-08"
    with pytest.raises(ValueError, match="not below"):
        bound(2e-12, 1e-12)
    with pytest.raises(ValueError, match="not below"):
        bound(float("nan"), 1e-12)
    with pytest.raises(ValueError, match="limit"):
        bound(1e-20, 0.0)


@pytest.mark.parametrize("call, err, word", [
    (lambda: sig("0.5"), TypeError, "x"), (lambda: sig(True), TypeError, "x"),
    (lambda: sig(np.ones(2)), TypeError, "x"), (lambda: sig(0.5, 0), ValueError, "digits"),
    (lambda: sig(0.5, 2.0), ValueError, "digits"), (lambda: fixed(0.5, -1), ValueError, "decimals"),
    (lambda: fmt(None), TypeError, "x"), (lambda: glue("", 1.0), TypeError, "name"),
    (lambda: glue("k", 1.0, None), ValueError, "digits"),
])
def test_bad_input_names_the_argument(call, err, word):
    with pytest.raises(err, match=word):
        call()


def test_glue_rounds_before_gluing(monkeypatch):
    myst_nb = pytest.importorskip("myst_nb")
    seen = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: seen.update({name: value}))
    assert glue("rate", 0.8181818181818173, 3) == 0.818
    assert glue("width", 2.5625000000000004, decimals=1) == 2.6
    assert glue("steps", np.int64(112)) == 112
    assert seen == {"rate": 0.818, "width": 2.6, "steps": 112}
    assert isinstance(seen["steps"], int)
