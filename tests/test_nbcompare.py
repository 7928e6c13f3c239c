"""The number-aware notebook comparison: one unit in the last printed digit, nothing more."""

import json
import shutil
from pathlib import Path

import pytest

from tools.nbcompare import numbers_match

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("ref, test", [
    ("slope 0.968", "slope 0.967"),
    ("slope 0.967", "slope 0.968"),
    ("rate 0.8182 vs 0.9980", "rate 0.8181 vs 0.9981"),
    ("excess 1.4e-07", "excess 1.3e-07"),
    ("1.0e-07", "9.9e-08"),                  # one unit, across a power of ten
    ("-0.000", "0.000"),
    ("width 2.5 decades\nratio 3.1\n", "width 2.4 decades\nratio 3.2\n"),
    ("[0.25 0.5 ]", "[0.25 0.5 ]"),
    ("no numbers at all", "no numbers at all"),
])
def test_accepts_one_unit_in_the_last_digit(ref, test):
    assert numbers_match(ref, test)


@pytest.mark.parametrize("ref, test", [
    ("slope 0.968", "slope 0.966"),          # two units
    ("0.875", "0.975"),                      # a real change in an early digit
    ("rate 0.818", "rate 0.82"),             # a changed number of digits
    ("rate 0.818", "rate 8.18e-01"),         # changed notation
    ("1.4e-07", "1.4e-08"),                  # changed exponent
    ("x 1.35e-07", "x 8.56e-08"),
    ("GD diverges", "GD converges"),         # changed words
    ("width 2.5 decades", "width 2.5 decade"),
    ("shape (3, 4)", "shape (3, 5)"),        # integers and shapes are exact
    ("112 steps", "113 steps"),
    ("a\nb\nc\n", "a\nc\n"),                 # a missing line
    ("0.5 0.25", "0.5"),                     # a missing number
    ("x2 = 0.5", "x3 = 0.5"),                # digits inside names are text
    ("0.5  0.25", "0.5 0.25"),               # spacing
])
def test_rejects_everything_else(ref, test):
    assert not numbers_match(ref, test)


@pytest.mark.parametrize("stored, fresh, ok", [
    ("slope 0.968", 0.967, True),            # one unit in the last digit
    ("slope 0.968", 0.966, False),           # two units: a real change
    ("slope 0.875", 0.975, False),
    ("slopes 0.967", 0.967, False),          # a changed word
])
def test_nbval_uses_it_and_stays_strict(pytester, stored, fresh, ok, one_cell_notebook):
    """The project's conftest.py in a real ``pytest --nbval`` run of a one-cell notebook."""
    pytest.importorskip("nbval")
    shutil.copy(ROOT / "conftest.py", pytester.path / "conftest.py")
    shutil.copytree(ROOT / "tools", pytester.path / "tools",
                    ignore=shutil.ignore_patterns("__pycache__"))
    nb = pytester.path / "one.ipynb"
    nb.write_text(json.dumps(one_cell_notebook(f"print(f'slope {{{fresh}:.3f}}')", stored + "\n")))
    result = pytester.runpytest_subprocess("--nbval", "-p", "no:cacheprovider", "one.ipynb")
    result.assert_outcomes(passed=1 if ok else 0, failed=0 if ok else 1)
