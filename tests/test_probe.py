"""The rounding probe (``tools/probe.py``, ``pytest --probe-seed``) catches chaos and spares the rest."""

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tools import probe

ROOT = Path(__file__).resolve().parent.parent

# A chaotic cell: the logistic map x -> 4x(1 - x), written with a sum so that the probe can
# reach it; a last-bit change doubles every step.
CHAOTIC = """\
import numpy as np
v = 0.3
for _ in range(200):
    v = float(np.sum(np.array([4.0 * v, -4.0 * v * v])))
print(f"x_200 = {v:.3f}")
"""

# A robust cell: well-conditioned sums and products printed with the digits they need, a
# bitwise power-of-two scaling law and a bitwise repeat of the same computation.
ROBUST = """\
import numpy as np
x = np.linspace(0.0, 1.0, 11)
y = np.exp(x) @ x
assert np.array_equal(np.exp(x) @ (4.0 * x), 4.0 * y)   # exact scaling, on every machine
assert np.exp(x) @ x == y                               # the same computation twice
print(f"sum of squares {np.sum(x * x):.6f}, e-weighted sum {y:.4f}, mean {x.mean():.3f}")
"""


def _run_here(source: str) -> str:
    """What the cell prints without the probe (this process is never probed while it runs)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "<cell>", "exec"), {})
    return out.getvalue()


@pytest.fixture
def unprobed():
    """The probe's state switched off for an in-process check, and restored afterwards."""
    saved = (probe._State.key, probe._State.delta)
    probe._State.delta = 0.0
    yield
    probe._State.key, probe._State.delta = saved


def test_chaotic_cell_fails_and_robust_cell_passes(pytester, monkeypatch, unprobed,
                                                   one_cell_notebook):
    """Two one-cell notebooks in a real ``pytest --nbval`` run, with and without the probe."""
    pytest.importorskip("nbval")
    monkeypatch.delenv("IPYTHONDIR", raising=False)     # an outer probed run must not leak in
    shutil.copy(ROOT / "conftest.py", pytester.path / "conftest.py")
    shutil.copytree(ROOT / "tools", pytester.path / "tools",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name, source in (("chaotic", CHAOTIC), ("robust", ROBUST)):
        nb = pytester.path / f"{name}.ipynb"
        nb.write_text(json.dumps(one_cell_notebook(source, _run_here(source))))
    args = ["--nbval", "-p", "no:cacheprovider", "chaotic.ipynb", "robust.ipynb"]
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=2)
    probed = pytester.runpytest_subprocess(*args, "--probe-seed=1")
    probed.stdout.fnmatch_lines(["rounding probe: seed 1, delta *", "FAILED chaotic.ipynb::Cell 0*"])
    probed.assert_outcomes(passed=1, failed=1)


def test_perturbation_is_deterministic_scale_free_and_spares_exact_values(unprobed):
    probe._State.key, probe._State.delta = probe._key(1), 1e-13
    x = np.random.default_rng(0).standard_normal(1000)
    once, again = probe.perturb(x), probe.perturb(x.copy())
    assert np.array_equal(once, again)                       # a function of the value
    assert np.array_equal(probe.perturb(8.0 * x), 8.0 * once)   # powers of two commute
    assert np.array_equal(probe.perturb(-x), -once)
    rel = np.abs(once / x - 1)
    assert 0 < rel.max() <= 1e-13 * (1 + 1e-3) and np.mean(rel > 0) > 0.9
    exact = np.array([0.0, 1.0, -3.0, 0.5, 1024.0, np.inf, np.nan])
    assert np.array_equal(probe.perturb(exact), exact, equal_nan=True)
    probe._State.key = probe._key(2)
    assert not np.array_equal(probe.perturb(x), once)        # another seed, another rounding


def test_sums_move_with_their_terms_and_integers_stay(unprobed):
    probe._State.key, probe._State.delta = probe._key(3), 1e-13
    a = np.array([1.0, -1.0 + 2.0**-30, 1e-3 / 3])
    exact = np.sum(a)
    moved = probe._sum_like(np, "sum", a)
    # the move follows the terms' magnitudes (about 2), not the tiny result
    assert 0 < abs(moved - exact) <= 1e-13 * np.sum(np.abs(a)) * (1 + 1e-3)
    assert probe._sum_like(np, "mean", np.array([True, False, True])) == 2 / 3
    assert probe._sum_like(np, "sum", np.arange(5)) == 10
    one = np.array([[0.3]])
    assert probe._matmul(one, one) == one @ one               # one term: nothing to round


def test_rewrite_covers_products_reductions_and_functions():
    src = "y = A @ B\nz = np.einsum('ij,j->i', A, b)\nq = x.sum(axis=1)\ne = np.exp(x, out=x)\n"
    text = ast.unparse(probe._rewrite(ast.parse(src)))
    assert "_bnprobe_mm(A, B)" in text
    assert "_bnprobe_sum(np, 'einsum', 'ij,j->i', A, b)" in text
    assert "_bnprobe_sum(x, 'sum', axis=1)" in text
    assert "_bnprobe_(np.exp(x, out=x), inplace=True)" in text


def test_delta_is_checked():
    with pytest.raises(ValueError, match="delta"):
        probe.install(1, 1e-3)
