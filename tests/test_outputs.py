"""Guard for the output policy (README, "Refreshing stored outputs"): the stored outputs of
every notebook must reproduce on other machines up to the last printed digit.

It scans the committed notebooks, not fresh runs: a float printed or glued with more digits
than a claim can need (at most 4 significant), a rounding-level value printed as a value
instead of a bound, a stored warning, or a cell excluded from comparison fails here before
it fails on a reader's machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.nbcompare import NUMBER

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
MAX_DIGITS = 4
NOISE = 1e-9          # below this, a nonzero float is rounding noise unless shown as a bound
TEXT_MIMES = ("text/plain", "text/latex", "text/markdown", "application/papermill.record/text/plain")
EXCLUDING_TAGS = {"nbval-skip", "nbval-ignore-output", "skip-execution", "raises-exception"}
# The one output that may be excluded: the environment's versions on the status page.
ALLOWED_EXCLUSIONS = {("status.ipynb", "nbval-ignore-output")}


def significant_digits(token: str) -> int:
    """Digits a printed float carries beyond zeros: '0.00420' -> 2, '1.4e-07' -> 2,
    '19000000.0' -> 2, '0.8181818181818173' -> 16. Zeros at either end carry no noise."""
    mantissa = token.lower().partition("e")[0].lstrip("+-").replace(".", "")
    return len(mantissa.strip("0")) or 1


def is_float(token: str) -> bool:
    return "." in token or "e" in token.lower()


def policy_violations(text: str) -> list[str]:
    """Why ``text`` breaks the output policy (empty if it does not)."""
    found = []
    for match in NUMBER.finditer(text):
        token = match.group()
        if not is_float(token):
            continue
        if significant_digits(token) > MAX_DIGITS:
            found.append(f"{token!r} has more than {MAX_DIGITS} significant digits")
        value = abs(float(token))
        mantissa = token.lower().partition("e")[0].lstrip("+-").replace(".", "").strip("0")
        if 0 < value < NOISE and mantissa != "1":
            found.append(f"{token!r} is a rounding-level value printed as a value, not a bound")
    return found


def _texts(output: dict):
    if output.get("output_type") == "stream":
        yield f"stream {output.get('name')}", "".join(output.get("text", ""))
    for mime, value in output.get("data", {}).items():
        if mime in TEXT_MIMES:
            yield mime, "".join(value) if isinstance(value, list) else str(value)


@pytest.mark.parametrize("text, bad", [
    ("rate 0.8182", False), ("excess < 1e-12", False), ("tol 1e-10", False), ("20.0", False),
    ("19000000.0", False), ("1000.25", True),
    ("19.999999999999975", True), ("0.004234243", True), ("final excess 3.7e-32", True),
    ("8.9e-16", True), ("112 steps", False), ("Python 3.11.7", False),
])
def test_policy_check_itself(text, bad):
    assert bool(policy_violations(text)) is bad


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_follow_the_policy(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        for tag in EXCLUDING_TAGS.intersection(cell.get("metadata", {}).get("tags", [])):
            if (path.name, tag) not in ALLOWED_EXCLUSIONS:
                problems.append(f"cell {index}: tag {tag!r} excludes it from the comparison")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                problems.append(f"cell {index}: stored stderr output (a warning?)")
            if output.get("output_type") == "error":
                problems.append(f"cell {index}: stored error")
            for where, text in _texts(output):
                problems += [f"cell {index} {where}: {p}" for p in policy_violations(text)]
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
