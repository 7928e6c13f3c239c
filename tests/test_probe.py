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
    """A notebook of the two cells in a real ``pytest --nbval`` run, with and without the probe
    (one notebook: two kernel starts in all, the slow part of this test)."""
    pytest.importorskip("nbval")
    monkeypatch.delenv("IPYTHONDIR", raising=False)     # an outer probed run must not leak in
    shutil.copy(ROOT / "conftest.py", pytester.path / "conftest.py")
    shutil.copytree(ROOT / "tools", pytester.path / "tools",
                    ignore=shutil.ignore_patterns("__pycache__"))
    nb = one_cell_notebook(CHAOTIC, _run_here(CHAOTIC))
    robust = one_cell_notebook(ROBUST, _run_here(ROBUST))["cells"][0]
    nb["cells"].append({**robust, "id": "c2", "execution_count": 2})
    (pytester.path / "cells.ipynb").write_text(json.dumps(nb))
    args = ["--nbval", "-p", "no:cacheprovider", "cells.ipynb"]
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=2)
    probed = pytester.runpytest_subprocess(*args, "--probe-seed=1")
    probed.stdout.fnmatch_lines(["rounding probe: seed 1, delta *", "FAILED cells.ipynb::Cell 0*"])
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
    assert "_bnprobe_sum_einsum(np, 'ij,j->i', A, b)" in text
    assert "_bnprobe_sum_sum(x, axis=1)" in text
    assert "_bnprobe_(np.exp(x, out=x), inplace=True)" in text


def test_delta_is_checked():
    with pytest.raises(ValueError, match="delta"):
        probe.install(1, 1e-3)


def test_fast_paths_agree_bitwise_with_the_reference(unprobed):
    """``_move``'s Python and numpy paths give bitwise the reference's numbers (the catch rates
    in the README were measured with them), for every size, layout and special value."""
    special = np.array([0.0, -0.0, 1.0, -3.0, 0.5, np.inf, -np.inf, np.nan, 5e-324, 1e308,
                        -1e308, 2.2250738585072014e-308])
    rng = np.random.default_rng(5)

    def bits(a):
        return type(a), np.shape(a), np.asarray(a).view(np.uint64).tobytes()

    for seed, delta in ((1, probe.DEFAULT_DELTA), (2, 4e-16)):
        probe._State.key, probe._State.delta = probe._key(seed), delta
        for n in (1, 3, probe._SMALL, probe._SMALL + 1, 300, probe._BLOCK, probe._CHUNK + 3):
            x = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
            x = np.where(rng.random(n) < 0.2, rng.choice(special, n), x)
            # C order, Fortran order and a strided view (the out= of a call may be any)
            for r in (x.reshape(n, 1), np.tile(x, (3, 1)).T, np.tile(x, (2, 2))[::2, ::2]):
                for scale in (None, np.abs(rng.standard_normal(r.shape)),
                              rng.choice(special, r.shape), -0.5 * r.T.copy().T):
                    for inplace in (False, True):
                        ref, new = r.copy(order="K"), r.copy(order="K")
                        if r.base is not None and not r.flags.forc:        # keep the view
                            ref, new = (np.tile(x, (2, 2))[::2, ::2] for _ in range(2))
                        args = (None if scale is None else scale.copy(order="K"), inplace)
                        out_ref, out_new = probe._move_reference(ref, *args), probe._move(new, *args)
                        assert bits(out_new) == bits(out_ref) and bits(new) == bits(ref)
                        assert (out_new is new) == (out_ref is ref)
                        assert out_new.flags.c_contiguous == out_ref.flags.c_contiguous
            for v, s in zip(x[:8], np.abs(rng.standard_normal(8)), strict=False):
                for scale in (None, np.float64(s), np.float64(np.inf)):
                    assert bits(probe._move(np.float64(v), scale)) == bits(
                        probe._move_reference(np.float64(v), scale))


def test_perturbation_is_pinned(unprobed):
    """The perturbed values of exactly representable inputs (integer hash and IEEE arithmetic:
    the same on every platform), pinned to those of the probe as calibrated (commit 7279cb9)."""
    import hashlib

    probe._State.key, probe._State.delta = probe._key(1), probe.DEFAULT_DELTA
    x = np.arange(1, 61) / 7.0 * 2.0 ** np.arange(-30, 30)
    x[::7] *= -1
    s = np.arange(60, 0, -1) / 3.0

    def digest(a):
        return hashlib.sha256(np.asarray(a, dtype="<f8").tobytes()).hexdigest()[:16]

    assert digest(probe.perturb(x)) == "3c98334a8dda1e0e"
    assert digest(probe._move(x, s)) == "24d1bf3f51734207"
    assert digest(probe.perturb(x[:5])) == "a0e7d8464a1eb0e7"
    assert digest(probe._move(x[:5], s[:5])) == "cecda608d9b6c0e7"
    assert digest([probe.perturb(np.float64(v)) for v in x[:5]]) == "a0e7d8464a1eb0e7"


def test_fast_dispatch_agrees_bitwise_with_the_general_path(unprobed):
    """The specialised helpers (np.f of float arrays, x.f() of a float array, ndarray @ ndarray)
    give bitwise the general path's numbers, including exact and non-finite entries."""
    probe._State.key, probe._State.delta = probe._key(4), probe.DEFAULT_DELTA
    rng = np.random.default_rng(6)

    def bits(a):
        return type(a), np.shape(a), np.asarray(a).view(np.uint64).tobytes()

    A = rng.standard_normal((3, 5, 7))
    A[0, 0, :3] = [0.0, np.inf, 2.0]
    B = rng.standard_normal((7, 4))
    w = rng.standard_normal((5, 7))
    cases = [("vecdot", np, (A, w), {}), ("matmul", np, (A, B), {}), ("dot", np, (w[0], w[1]), {}),
             ("sum", np, (A,), {"axis": -1}), ("mean", np, (A,), {"axis": (0, 2), "keepdims": True}),
             ("einsum", np, ("...i,...i->...", A, w), {}), ("sum", A, (), {}),
             ("mean", A, (1,), {}), ("sum", A, (), {"axis": -2, "keepdims": True}),
             ("dot", w, (B,), {}), ("cumsum", A, (), {"axis": 0}), ("sum", np, (A[..., :1],), {"axis": -1})]
    for name, obj, args, kwargs in cases:
        with np.errstate(invalid="ignore"):                # inf - inf in a product of A
            r = getattr(obj, name)(*args, **kwargs)
            fast = probe._HELPERS[f"_bnprobe_sum_{name}"](obj, *args, **kwargs)
            general = probe._sum_general(obj, name, args, kwargs, r.copy() if np.ndim(r) else r)
        assert bits(fast) == bits(general), name
    with np.errstate(invalid="ignore"):
        out = np.empty((3, 5, 4))
        probe._HELPERS["_bnprobe_sum_matmul"](np, A, B, out=out)
        assert bits(out) == bits(probe._sum_general(np, "matmul", (A, B), {"out": out}, A @ B))
        for a, b in ((A, B), (w[0], w[1]), (A, B.astype(int)), (w, w.T[:, :1].T.T)):
            assert bits(probe._matmul(a, b)) == bits(
                probe._sum_general(np, "matmul", (a, b), {}, a @ b))


def test_the_probes_own_arithmetic_never_warns_or_raises(unprobed):
    """Overflow, inf - inf and 0 * inf inside the move are the probe's, not the caller's: they
    neither raise nor warn under any error state, and give the reference's numbers."""
    probe._State.key, probe._State.delta = probe._key(1), 1e-13
    x = np.full(40, 1.7976931348623157e308) * np.where(np.arange(40) % 2, 1.0, -1.0)
    x[::5] = np.inf
    s = np.full(40, np.inf)
    s[::3] = 1e308
    with np.errstate(all="raise"):
        for scale in (None, s):
            for n in (3, 40):
                got = probe._move(x[:n].copy(), None if scale is None else scale[:n])
                ref = probe._move_reference(x[:n].copy(), None if scale is None else scale[:n])
                assert np.array_equal(got.view(np.uint64), ref.view(np.uint64))
