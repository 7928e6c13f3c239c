"""Seeded mutation testing of bnlib's arithmetic: the share of small arithmetic mutants the tests kill.

Usage::

    nice python tools/mutate.py --n 160 --seed 0 [--jobs 2] [--modules ols theory] [--min-rate 0.95]

Every ``bnlib/**/*.py`` is parsed with :mod:`ast`. A *site* is one place where one arithmetic
mutation applies; there is exactly one mutant per site:

* binary operators ``+`` ↔ ``-``, ``*`` ↔ ``/``, ``**`` → ``*``, also in augmented assignment
  (``+=`` ↔ ``-=``, ...). Not ``@`` (``@`` → ``*`` mostly raises a shape error, which any call
  kills, so it measures coverage, not the tests' strength), nor ``//`` and ``%`` (index
  arithmetic). Skipped: ``x * 1`` and ``x / 1`` (equivalent by construction) and operations with
  a string, f-string, list or tuple literal operand (concatenation and repetition);
* comparisons ``<`` ↔ ``<=`` and ``>`` ↔ ``>=`` (not ``==``, ``!=``, ``is``, ``in``);
* unary minus on an expression, removed (``-x`` → ``x``);
* numeric literals that are an operand of one of the operators above or of a comparison,
  possibly signed (``2 * x``, ``x ** -1``, ``a < 0.5``): an int ``c`` → ``c + 1``; a float
  ``0.0`` → ``1.0``, ``|c| >= 1`` → ``1.5 c`` (``2.0`` → ``3.0``), ``|c| < 1`` → ``c / 2``
  (``0.5`` → ``0.25``). Floats with ``|c| < 1e-6`` or ``|c| >= 1e6`` are skipped: they are
  tolerances and overflow guards, whose mutants are equivalent in all but rounding-level
  cases. Literals elsewhere (call arguments, assignments, keyword values) are settings, not
  arithmetic. Bools and complex numbers never count.

Never mutated (whole subtrees): docstrings and other strings, f-strings, ``raise`` and
``assert`` statements, argument validation (the test and body of an ``if`` whose body raises
at its top level; its ``else`` is ordinary code), ``__repr__``/``__str__``/``__format__``,
type annotations, default-argument values and index expressions (inside ``[...]``).

Sampling: the sites are sorted by module, line and column; ``--n`` of them are allocated to
the modules in proportion to each module's number of sites (largest remainder, ties by
name) and drawn within each module with ``random.Random(seed)``. The tests are never run on
the real files: the repository (without ``.git``, ``_build`` and caches) is copied once per
worker to a temporary directory, which comes first on ``PYTHONPATH``; a mutant is written to
the copy and the original restored after its run.

Each mutant runs ``pytest tests/test_<module>.py -x -q -p no:cacheprovider`` when that file
exists (for ``bnlib/pkg/mod.py``: ``test_mod.py`` and ``test_pkg.py``), then, only if that
passes, the whole ``pytest tests bnlib -x -q -p no:cacheprovider`` (tests and doctests; the
test files that never import bnlib, those of the tools and of the stored outputs, are
ignored: they cannot see a mutant of bnlib), with
``--hypothesis-seed=SEED`` and no example database, so a verdict is reproducible. It is
*killed* if a run fails or errors or takes more than ``--timeout-factor`` times the unmutated
full run. Equivalent mutants are not detected: every survivor is listed with its diff for a
human to judge. The exit code is 0 (a measurement), or 1 if ``--min-rate`` is given and the
kill rate is below it.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import importlib.util
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tokenize
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "bnlib"
PYTEST_FLAGS = ["-x", "-q", "-p", "no:cacheprovider"]
COPY_IGNORE = shutil.ignore_patterns(".git", "_build", "__pycache__", ".pytest_cache", ".ruff_cache",
                                     ".hypothesis", ".ipynb_checkpoints", ".venv", "venv", "*.egg-info")

BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult}
SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
COMPARE_SWAP = {ast.Lt: "<=", ast.LtE: "<", ast.Gt: ">=", ast.GtE: ">"}
COMPARE_SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
SKIPPED_FUNCTIONS = {"__repr__", "__str__", "__format__"}
ARITHMETIC_PARENTS = (ast.BinOp, ast.Compare, ast.AugAssign)


@dataclasses.dataclass(frozen=True)
class Site:
    """One mutation: replace columns ``col0:col1`` of ``line`` in ``path`` by ``new``.

    Columns count characters (not bytes) of the 1-based ``line``; ``old`` is the replaced text.
    """

    module: str
    path: str
    line: int
    col0: int
    col1: int
    old: str
    new: str

    def apply(self, source: str) -> str:
        """Return ``source`` with this mutation applied."""
        lines = source.splitlines(keepends=True)
        text = lines[self.line - 1]
        assert text[self.col0:self.col1] == self.old, (self, text)
        lines[self.line - 1] = text[:self.col0] + self.new + text[self.col1:]
        return "".join(lines)

    def diff(self, source: str) -> str:
        """Return the original and the mutated line, as ``-``/``+`` lines."""
        before = source.splitlines()[self.line - 1].strip()
        after = self.apply(source).splitlines()[self.line - 1].strip()
        return f"      - {before}\n      + {after}"

    def label(self) -> str:
        """Return ``path:line:col  'old' -> 'new'``."""
        return f"{self.path}:{self.line}:{self.col0 + 1}  {self.old!r} -> {self.new!r}"


# ---------------------------------------------------------------------------- finding the sites


def _skipped(parent: ast.AST, field: str, child: ast.AST) -> bool:
    """Whether ``child`` (in ``parent.field``) starts a subtree that is never mutated."""
    if isinstance(child, ast.Raise | ast.Assert | ast.JoinedStr):
        return True
    if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and child.name in SKIPPED_FUNCTIONS:
        return True
    if field in ("annotation", "returns") or (isinstance(parent, ast.arguments)
                                              and field in ("defaults", "kw_defaults")):
        return True
    if isinstance(parent, ast.Subscript) and field == "slice":
        return True
    return (isinstance(parent, ast.If) and field in ("test", "body")
            and any(isinstance(s, ast.Raise) for s in parent.body))


def _arithmetic_nodes(node: ast.AST):
    """Yield ``(node, parent)`` for every node outside the skipped subtrees."""
    for field, value in ast.iter_fields(node):
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, ast.AST) and not _skipped(node, field, child):
                yield child, node
                yield from _arithmetic_nodes(child)


def _mutated_number(value) -> int | float | None:
    """Return the literal's mutant value, or None if it does not count (see the module docstring)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return value + 1
    if value == 0.0:
        return 1.0
    if not 1e-6 <= abs(value) < 1e6:
        return None
    return 1.5 * value if abs(value) >= 1 else value / 2


def _is_literal_collection(node: ast.AST) -> bool:
    if isinstance(node, ast.BinOp):
        return _is_literal_collection(node.left) or _is_literal_collection(node.right)
    text = isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)
    return text or isinstance(node, ast.JoinedStr | ast.List | ast.Tuple | ast.ListComp)


class _Source:
    """A module's text with position helpers: AST byte columns to characters, operator tokens."""

    def __init__(self, text: str):
        self.lines = text.splitlines(keepends=True)
        tokens = tokenize.generate_tokens(iter(self.lines).__next__)
        self.ops = [(t.start, t.end, t.string) for t in tokens if t.type == tokenize.OP]

    def char(self, line: int, byte_col: int) -> tuple[int, int]:
        """Return ``(line, character column)`` for an AST position."""
        return line, len(self.lines[line - 1].encode()[:byte_col].decode())

    def start(self, node: ast.AST) -> tuple[int, int]:
        """Return the start of ``node`` in characters."""
        return self.char(node.lineno, node.col_offset)

    def end(self, node: ast.AST) -> tuple[int, int]:
        """Return the end of ``node`` in characters."""
        return self.char(node.end_lineno, node.end_col_offset)

    def operator(self, left: ast.AST, right: ast.AST, symbol: str) -> tuple[int, int, int]:
        """Return ``(line, col0, col1)`` of the operator token ``symbol`` between two operands."""
        lo, hi = self.end(left), self.start(right)
        for start, end, string in self.ops:
            if lo <= start and end <= hi and string == symbol:
                return start[0], start[1], end[1]
        raise LookupError(f"no {symbol!r} between {lo} and {hi}")


def _node_sites(node: ast.AST, parent: ast.AST, grand: ast.AST | None, src: _Source):
    """Yield ``(line, col0, col1, old, new)`` for the mutations at one node."""
    if isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in BINOP_SWAP:
        left, right = (node.target, node.value) if isinstance(node, ast.AugAssign) else (node.left,
                                                                                        node.right)
        trivial = (isinstance(node.op, ast.Mult | ast.Div) and isinstance(right, ast.Constant)
                   and right.value == 1)
        if not (trivial or _is_literal_collection(left) or _is_literal_collection(right)):
            eq = "=" if isinstance(node, ast.AugAssign) else ""
            old, new = SYMBOL[type(node.op)] + eq, SYMBOL[BINOP_SWAP[type(node.op)]] + eq
            yield *src.operator(left, right, old), old, new
    elif isinstance(node, ast.Compare):
        for left, op, right in zip([node.left, *node.comparators], node.ops, node.comparators,
                                   strict=False):
            if type(op) in COMPARE_SWAP:
                old = COMPARE_SYMBOL[type(op)]
                yield *src.operator(left, right, old), old, COMPARE_SWAP[type(op)]
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        if not isinstance(node.operand, ast.Constant):
            line, col = src.start(node)
            yield line, col, col + 1, "-", ""
    elif isinstance(node, ast.Constant):
        signed = isinstance(parent, ast.UnaryOp) and isinstance(parent.op, ast.USub | ast.UAdd)
        new = _mutated_number(node.value)
        host = grand if signed else parent
        ordered = not isinstance(host, ast.Compare) or all(type(op) in COMPARE_SWAP for op in host.ops)
        if new is not None and isinstance(host, ARITHMETIC_PARENTS) and ordered:
            (line, col0), (_, col1) = src.start(node), src.end(node)
            yield line, col0, col1, src.lines[line - 1][col0:col1], repr(new)


def find_sites(path: Path, module: str) -> list[Site]:
    """Return every mutation site of one module, in source order.

    Parameters
    ----------
    path : Path
        The module's file.
    module : str
        Its name inside the package (``"ols"``, ``"nn.mlp"``), stored on each site.

    Returns
    -------
    list of Site
        Sorted by line and column.
    """
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    src = _Source(text)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    rel = path.relative_to(ROOT).as_posix()
    sites = []
    for node, parent in _arithmetic_nodes(tree):
        for spec in _node_sites(node, parent, parents.get(parent), src):
            sites.append(Site(module, rel, *spec))
    return sorted(sites, key=lambda s: (s.line, s.col0))


def check(site: Site) -> None:
    """Raise ``AssertionError`` unless the mutant parses and changes the module's AST."""
    text = (ROOT / site.path).read_text(encoding="utf-8")
    if ast.dump(ast.parse(site.apply(text))) == ast.dump(ast.parse(text)):
        raise AssertionError(f"mutant does not change the code: {site.label()}")


def package_modules(package: Path) -> dict[str, Path]:
    """Return ``{module name: file}`` for every ``.py`` file under ``package``, sorted by name."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


# ---------------------------------------------------------------------------- sampling


def allocate(counts: dict[str, int], n: int) -> dict[str, int]:
    """Split ``n`` draws over modules in proportion to their site counts (largest remainder).

    Parameters
    ----------
    counts : dict of str to int
        Sites per module.
    n : int
        Draws in total; capped at the total number of sites.

    Returns
    -------
    dict of str to int
        Draws per module, summing to ``min(n, sum(counts))``, never above a module's count.
    """
    total = sum(counts.values())
    n = min(n, total)
    quota = {m: n * c / total for m, c in counts.items()}
    share = {m: int(q) for m, q in quota.items()}
    rest = n - sum(share.values())
    for m in sorted(counts, key=lambda m: (share[m] - quota[m], m))[:rest]:
        share[m] += 1
    return share


def sample(sites: dict[str, list[Site]], n: int, seed: int) -> list[Site]:
    """Draw ``n`` sites, stratified by module (:func:`allocate`), with ``random.Random(seed)``."""
    rng = random.Random(seed)
    share = allocate({m: len(s) for m, s in sites.items()}, n)
    return [site for m in sorted(sites) for site in sorted(rng.sample(sites[m], share[m]),
                                                            key=lambda s: (s.line, s.col0))]


# ---------------------------------------------------------------------------- running the tests


@dataclasses.dataclass
class Outcome:
    """The verdict on one mutant: ``killed``, the stage that decided it, its failing test."""

    site: Site
    killed: bool
    stage: str
    seconds: float
    detail: str = ""


class Runner:
    """Runs pytest in private copies of the repository.

    Parameters
    ----------
    workdir : Path
        An empty temporary directory that receives one copy of the repository per worker.
    jobs : int
        Number of copies (parallel workers).
    seed : int
        Passed to hypothesis, so that property tests draw the same examples for every mutant.
    """

    def __init__(self, workdir: Path, jobs: int, seed: int):
        self.copies: queue.Queue[Path] = queue.Queue()
        for k in range(jobs):
            copy = workdir / f"w{k}"
            shutil.copytree(ROOT, copy, ignore=COPY_IGNORE)
            self.copies.put(copy)
        self.flags = list(PYTEST_FLAGS)
        if importlib.util.find_spec("hypothesis") is not None:
            self.flags.append(f"--hypothesis-seed={seed}")
        self.timeout = None

    @staticmethod
    def env(copy: Path) -> dict[str, str]:
        """Return the environment of a run in ``copy``.

        The copy comes first on PYTHONPATH, and no bytecode is written: a mutant of the same
        size, written in the same second, would otherwise run the stale cached original.
        """
        path = os.pathsep.join(p for p in (str(copy), os.environ.get("PYTHONPATH")) if p)
        return dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=path)

    def pytest(self, copy: Path, targets: list[str]) -> tuple[int | None, str]:
        """Run pytest on ``targets`` in ``copy``; return its exit code (None on timeout) and output."""
        proc = subprocess.Popen([sys.executable, "-m", "pytest", *targets, *self.flags], cwd=copy,
                                env=self.env(copy), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # pytest and any kernel it started
            proc.communicate()
            return None, ""
        finally:
            shutil.rmtree(copy / ".hypothesis", ignore_errors=True)
        if proc.returncode in (4, 5):  # usage error, no tests collected: a bug here, not a kill
            raise RuntimeError(f"pytest {targets} exited {proc.returncode}:\n{out[-3000:]}")
        return proc.returncode, out

    def baseline(self) -> float:
        """Check that the unmutated copy imports itself and passes; set the timeout; return seconds."""
        copy = self.copies.get()
        where = subprocess.run([sys.executable, "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"],
                               cwd=copy, env=self.env(copy), capture_output=True, text=True).stdout
        if not where.startswith(str(copy)):
            raise SystemExit(f"{PACKAGE} is not imported from the copy {copy}: {where}")
        start = time.perf_counter()
        code, out = self.pytest(copy, full_suite(copy))
        seconds = time.perf_counter() - start
        self.copies.put(copy)
        if code != 0:
            raise SystemExit(f"the unmutated tests fail, nothing to measure:\n{out[-3000:]}")
        return seconds

    def run(self, site: Site) -> Outcome:
        """Apply ``site`` in a free copy, run the module's tests then the full suite, restore."""
        copy = self.copies.get()
        target = copy / site.path
        original = target.read_text(encoding="utf-8")
        start = time.perf_counter()
        try:
            target.write_text(site.apply(original), encoding="utf-8")
            for stage, targets in (("module", module_tests(copy, site.module)),
                                   ("full", full_suite(copy))):
                if not targets:
                    continue
                code, out = self.pytest(copy, targets)
                if code != 0:
                    detail = "timeout" if code is None else _first_failure(out)
                    return Outcome(site, True, stage, time.perf_counter() - start, detail)
            # the diff from the copy's text: the real file may have changed during the run
            return Outcome(site, False, "full", time.perf_counter() - start, site.diff(original))
        finally:
            target.write_text(original, encoding="utf-8")
            self.copies.put(copy)


def full_suite(copy: Path) -> list[str]:
    """Return pytest's targets for the full run: bnlib's doctests and every test file that imports bnlib."""
    tests = sorted(p for p in (copy / "tests").glob("test_*.py") if PACKAGE in p.read_text(encoding="utf-8"))
    return [str(p.relative_to(copy)) for p in tests] + [PACKAGE]


def module_tests(root: Path, module: str) -> list[str]:
    """Return the module's test files that exist: ``tests/test_<last part>.py``, ``test_<first part>.py``."""
    parts = module.split(".")
    names = dict.fromkeys(f"tests/test_{p}.py" for p in (parts[-1], parts[0]))
    return [name for name in names if (root / name).is_file()]


def _first_failure(out: str) -> str:
    for line in out.splitlines():
        if line.startswith(("FAILED", "ERROR")):
            return line.split(" - ")[0]
    return out.strip().splitlines()[-1] if out.strip() else ""


# ---------------------------------------------------------------------------- report


def report(sites: dict[str, list[Site]], outcomes: list[Outcome], args, times: tuple[float, float]) -> float:
    """Print the per-module table, the survivors with their diffs and the kill rate; return the rate."""
    sampled = Counter(o.site.module for o in outcomes)
    killed = Counter(o.site.module for o in outcomes if o.killed)
    print(f"{'module':<24}{'sites':>7}{'sampled':>9}{'killed':>8}{'survived':>10}")
    for m in sorted(sites):
        print(f"{m:<24}{len(sites[m]):>7}{sampled[m]:>9}{killed[m]:>8}{sampled[m] - killed[m]:>10}")
    n, k = len(outcomes), sum(killed.values())
    total = sum(len(s) for s in sites.values())
    print(f"{'total':<24}{total:>7}{n:>9}{k:>8}{n - k:>10}")
    survivors = [o for o in outcomes if not o.killed]
    print(f"\nsurvivors ({len(survivors)}):")
    for o in survivors:
        print(f"  {o.site.label()}\n{o.detail}")
    stages = Counter(o.stage for o in outcomes if o.killed)
    rate = k / n if n else float("nan")
    baseline, wall = times
    print(f"\nkill rate {k}/{n} = {rate:.1%}  (seed {args.seed}, N {args.n}, modules: "
          f"{' '.join(args.modules) if args.modules else 'all'})")
    print(f"killed by the module's tests {stages['module']}, by the full run {stages['full']}, "
          f"by timeout {sum(o.detail == 'timeout' for o in outcomes)}")
    mean = sum(o.seconds for o in outcomes) / max(n, 1)
    print(f"unmutated full run {baseline:.1f} s; {mean:.1f} s per mutant (killed "
          f"{_mean(o.seconds for o in outcomes if o.killed):.1f} s, survived "
          f"{_mean(o.seconds for o in survivors):.1f} s); wall {wall:.0f} s with {args.jobs} job(s)")
    return rate


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, enumerate and sample sites, run the mutants, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=160, help="number of mutants (default 160)")
    parser.add_argument("--seed", type=int, default=0, help="sampling and hypothesis seed")
    parser.add_argument("--jobs", type=int, default=1, help="parallel workers (default 1)")
    parser.add_argument("--modules", nargs="*", help="only these modules (default: every module)")
    parser.add_argument("--timeout-factor", type=float, default=3.0,
                        help="a run longer than this times the unmutated full run is killed (default 5)")
    parser.add_argument("--min-rate", type=float, help="exit 1 if the kill rate is below this")
    parser.add_argument("--list", action="store_true", help="print the site counts and sample, run nothing")
    args = parser.parse_args(argv)
    modules = package_modules(ROOT / PACKAGE)
    unknown = set(args.modules or ()) - set(modules)
    if unknown:
        parser.error(f"--modules: no such module {sorted(unknown)}; have {sorted(modules)}")
    sites = {m: find_sites(p, m) for m, p in modules.items() if not args.modules or m in args.modules}
    chosen = sample(sites, args.n, args.seed)
    for site in chosen:
        check(site)
    if args.list:
        for site in chosen:
            print(site.label())
        print(allocate({m: len(s) for m, s in sites.items()}, args.n))
        return 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        runner = Runner(Path(tmp), args.jobs, args.seed)
        baseline = runner.baseline()
        runner.timeout = args.timeout_factor * baseline
        outcomes = _run_all(runner, chosen, args.jobs)
    rate = report(sites, outcomes, args, (baseline, time.perf_counter() - start))
    return int(args.min_rate is not None and not rate >= args.min_rate)


def _run_all(runner: Runner, chosen: list[Site], jobs: int) -> list[Outcome]:
    lock, done = threading.Lock(), []

    def one(site: Site) -> Outcome:
        outcome = runner.run(site)
        with lock:
            done.append(outcome)
            verdict = "killed " if outcome.killed else "SURVIVED"
            print(f"[{len(done):>3}/{len(chosen)}] {verdict} {outcome.stage:<6} {outcome.seconds:5.1f} s  "
                  f"{site.label()}  {outcome.detail if outcome.killed else ''}", file=sys.stderr,
                  flush=True)
        return outcome

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, chosen))


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
