"""The rounding probe: run bnlib and the chapters with every product perturbed at the rounding level.

Another CPU or BLAS computes every dot product, matrix product, reduction and elementary
function (exp, log, ...) with another summation order or other SIMD code, so it rounds them
differently in the last bits, and every step of an iteration starts from slightly different
numbers. A value on a ragged or chaotic curve amplifies that by many orders of magnitude. The
probe imitates it on any machine: it rewrites the code of ``bnlib`` (at import, from outside
the package: nothing in ``bnlib`` knows about it) and of every notebook cell (an IPython AST
transformer) so that

* each product or sum (``a @ b``, ``np.dot``, ``np.vecdot``, ``np.einsum``, ``np.sum``,
  ``x.mean()``, ...) moves by ``delta * xi * m``, where ``m`` is the same operation on the
  absolute values of its operands: a different summation order errs in proportion to the
  terms, not to the result (which cancellation can make far smaller);
* each factorisation and elementary function (``np.linalg.*``, ``np.exp``, ``np.log``, ...)
  moves by ``delta * xi`` relative to its result;

with ``xi`` in [-1, 1). ``xi`` is a hash of the probe seed and the mantissa bits of the result,
not a draw from a stream, so the probe is a *deterministic* other rounding, as a real machine:

* the same computation done twice gives bitwise the same result (two runs that a chapter
  compares bitwise stay identical, and threads do not matter);
* ``x`` and ``2**k x`` get the same relative move, so exact power-of-two scaling laws still
  hold bitwise, as they do on every machine;
* what no machine rounds differently is left alone: values whose last 16 mantissa bits are
  zero (integers, 0.5, exact results), non-finite values, sums of integers or booleans,
  "sums" of a single term, elementwise arithmetic (``+ - * /``, sqrt: correctly rounded by
  IEEE 754 everywhere) and random generators (a seeded generator draws the same numbers).

``delta`` (``DEFAULT_DELTA``) was chosen by the catch rate on the output that failed on a CPU
with AVX-512 (chapter 06, code cell 20, as stored at commit 7c38c1f), see the README's output
policy; it is a few hundred units of rounding, which the comparison's one unit in the last
printed digit still absorbs for every robust output.

Used through ``pytest --probe-seed=S [--probe-delta=D]`` (``conftest.py``): the library tests
run with the probe installed in the pytest process, and every notebook kernel installs it
from an IPython start-up file that the option writes (kernels find it through ``IPYTHONDIR``).
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import sys
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_DELTA", "unit_roundoff", "install", "uninstall", "perturb", "ProbeTransformer",
           "startup_source"]

DEFAULT_DELTA = 3e-14
HELPER = "_bnprobe_"   # prefix of the names the rewritten code calls (one underscore: no
#                        name mangling inside classes); injected into each namespace

# Calls whose float result is perturbed, matched by the called attribute's name (``np.sum``,
# ``x.sum()``, ``np.linalg.norm``, ...). A *sum-like* operation (a product or a sum) rounds each
# partial sum, so another summation order moves its result by a multiple of the rounding unit
# of the terms' magnitudes, not of the result (which may be far smaller after cancellation):
# its result moves by delta * xi * (the same operation on the absolute values of its
# operands). Every other listed operation (factorisations, elementary functions) moves by
# delta * xi relative to its own result. ``a @ b`` is sum-like.
SUM_LIKE = frozenset("""
    matmul dot vdot inner vecdot matvec vecmat einsum tensordot multi_dot
    sum nansum mean nanmean average cumsum trace
""".split())
RELATIVE = frozenset("""
    std var nanstd nanvar cumprod prod nanprod
    norm solve lstsq inv pinv eigh eigvalsh eig eigvals svd svdvals qr cholesky det slogdet
    matrix_power polyfit polyval
    exp expm1 exp2 log log2 log10 log1p power float_power logaddexp logaddexp2
    sin cos tan arcsin arccos arctan arctan2 sinh cosh tanh arcsinh arccosh arctanh hypot cbrt
""".split())

_MANT = np.uint64((1 << 52) - 1)
_LOW = np.uint64((1 << 16) - 1)
_EXP = np.uint64(0x7FF << 52)
_C1 = np.uint64(0x9E3779B97F4A7C15)
_C2 = np.uint64(0xBF58476D1CE4E5B9)
_C3 = np.uint64(0x94D049BB133111EB)


class _State:
    key = np.uint64(0)
    delta = 0.0
    installed = False
    finder = None
    shell = None


def _key(seed: int) -> np.uint64:
    """A 64-bit key from the probe seed (splitmix64 of the seed)."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return np.uint64(z ^ (z >> 31))


def _factors(x: np.ndarray) -> np.ndarray:
    """delta * xi for each element of the float64 array x (0 where x is left alone).

    The reference implementation of the hash: :func:`_move` computes the same factors by the
    faster paths below (tests/test_probe.py checks that they agree bitwise)."""
    bits = np.ascontiguousarray(x).reshape(-1).view(np.uint64)
    m = bits & _MANT
    h = m ^ _State.key
    h *= _C1
    h ^= h >> np.uint64(31)
    h *= _C2
    h ^= h >> np.uint64(29)
    h *= _C3
    h ^= h >> np.uint64(32)
    f = (h >> np.uint64(11)).astype(np.float64)
    f *= 2.0 ** -52 * _State.delta
    f -= _State.delta                                  # uniform in [-delta, delta)
    f[((m & _LOW) == 0) | ((bits & _EXP) == _EXP)] = 0.0
    return f.reshape(x.shape)


def _ready(x) -> bool:
    return _State.delta != 0.0 and (
        (isinstance(x, np.ndarray) and x.dtype == np.float64 and x.size > 0)
        or type(x) is np.float64)


def _move_reference(r, scale=None, inplace=False):
    """:func:`_move` written plainly (the definition; used for the unusual cases)."""
    with np.errstate(all="ignore"):
        a = np.array([r]) if type(r) is np.float64 else r
        f = _factors(a)
        if scale is not None:
            s = np.broadcast_to(np.abs(scale), a.shape)
            f = np.where(np.isfinite(s), f * s, 0.0)
        else:
            f = np.where(f != 0.0, f * a, 0.0)
        if type(r) is np.float64:
            return np.float64((a + f)[0])
        if inplace and r.flags.writeable:
            r += f
            return r
        return r + f


# The probe's cost is the number of calls it wraps (hundreds of thousands of products of
# small arrays per chapter), so _move has two fast paths that compute bitwise the same
# numbers as _move_reference: Python integer arithmetic for scalars and arrays of up to
# _SMALL entries (a numpy call costs as much as hashing a few entries in Python), and for
# larger arrays the same numpy operations with full-size constant operands (a ufunc call
# with a scalar operand costs several times one without) and no temporary masks.
_SMALL = 24
_M64 = (1 << 64) - 1
_IMANT, _ILOW, _IEXP = int(_MANT), int(_LOW), int(_EXP)
_IC1, _IC2, _IC3 = int(_C1), int(_C2), int(_C3)
_CONSTS: dict = {}


def _py_moved(xs, bs, ss):
    """The moved values of the Python floats ``xs`` with bit patterns ``bs`` (``ss``: the
    scales, or None for relative moves), in Python arithmetic (IEEE double, as numpy's)."""
    key, delta = int(_State.key), _State.delta
    c = 2.0 ** -52 * delta
    out = []
    for i, b in enumerate(bs):
        x = xs[i]
        m = b & _IMANT
        if m & _ILOW and b & _IEXP != _IEXP:
            h = ((m ^ key) * _IC1) & _M64
            h = ((h ^ (h >> 31)) * _IC2) & _M64
            h = ((h ^ (h >> 29)) * _IC3) & _M64
            f = ((h ^ (h >> 32)) >> 11) * c - delta
        else:
            f = 0.0
        if ss is None:
            out.append(x + (f * x if f != 0.0 else 0.0))
        else:
            s = abs(ss[i])
            out.append(x + (f * s if s - s == 0.0 else 0.0))     # s - s == 0: s finite
    return out


def _consts(n: int):
    """Full-size uint64 operands of the hash for arrays of n entries (cached per size up to
    4096 entries; larger arrays take scalars, whose overhead their own work hides)."""
    if n > 4096:
        return tuple(np.uint64(v) for v in (_MANT, _State.key, _C1, 31, _C2, 29, _C3, 32, 11,
                                            _LOW, 0))
    got = _CONSTS.get(n)
    if got is None or got[0] != _State.key:
        if len(_CONSTS) > 64:
            _CONSTS.clear()
        full = [np.full(n, v, dtype=np.uint64) for v in
                (_MANT, _State.key, _C1, 31, _C2, 29, _C3, 32, 11, _LOW, 0)]
        got = _CONSTS[n] = (_State.key, *full)
    return got[1:]


def _np_moved(x, s):
    """The moved values of the C-contiguous 1-D float64 array x (s: |scale| or None)."""
    mant, key, c1, s31, c2, s29, c3, s32, s11, low, zero = _consts(x.size)
    bits = x.view(np.uint64)
    m = np.bitwise_and(bits, mant)
    h = np.bitwise_xor(m, key)
    t = np.empty_like(h)
    np.multiply(h, c1, out=h)
    np.bitwise_xor(h, np.right_shift(h, s31, out=t), out=h)
    np.multiply(h, c2, out=h)
    np.bitwise_xor(h, np.right_shift(h, s29, out=t), out=h)
    np.multiply(h, c3, out=h)
    np.bitwise_xor(h, np.right_shift(h, s32, out=t), out=h)
    np.right_shift(h, s11, out=h)
    f = h.astype(np.float64)
    f *= 2.0 ** -52 * _State.delta
    f -= _State.delta
    keep = np.not_equal(np.bitwise_and(m, low, out=m), zero)
    keep &= np.isfinite(x)
    if s is None:
        f *= x
    else:
        f *= s
        keep &= np.isfinite(s)
    return np.where(keep, f, 0.0)


def _move(r, scale=None, inplace=False):
    """``r + delta * xi * scale`` (``scale`` defaults to ``|r|``), for a float64 array or scalar.

    Bitwise the same as :func:`_move_reference`, faster."""
    if type(r) is np.float64:
        if scale is None or type(scale) is np.float64 or type(scale) is float:
            x = float(r)
            bits = int(r.view(np.uint64))
            ss = None if scale is None else [float(scale)]
            return np.float64(_py_moved([x], [bits], ss)[0])
        return _move_reference(r, scale, inplace)
    inplace = inplace and r.flags.writeable
    if type(r) is not np.ndarray or not (inplace or r.flags.c_contiguous) or (
            scale is not None and not (type(scale) is np.ndarray and scale.dtype == np.float64
                                       and scale.shape == r.shape)):
        # (a new array from a non-contiguous r: the reference decides its memory layout)
        return _move_reference(r, scale, inplace)
    x = np.ascontiguousarray(r).reshape(-1)        # elementwise: any layout gives the same values
    if x.size <= _SMALL:
        ss = None if scale is None else scale.reshape(-1).tolist()
        moved = np.array(_py_moved(x.tolist(), x.view(np.uint64).tolist(), ss),
                         dtype=np.float64).reshape(r.shape)
        if inplace:
            r[...] = moved
            return r
        return moved
    with np.errstate(all="ignore"):
        s = None if scale is None else np.abs(scale.reshape(-1))
        f = _np_moved(x, s).reshape(r.shape)
        if inplace:
            r += f
            return r
        return r + f


def perturb(x, inplace=False):
    """``x`` with each float64 entry multiplied by ``1 + delta * xi`` (see the module doc).

    Anything that is not a float64 array or scalar (ints, bools, sympy objects, Python floats)
    is returned unchanged; tuples and named tuples are perturbed entrywise. With ``inplace``
    a writable array is changed in place (the ``out=`` of a call).
    """
    if isinstance(x, tuple):
        items = [perturb(i) for i in x]
        return type(x)(*items) if hasattr(x, "_fields") else type(x)(items)
    return _move(x, inplace=inplace) if _ready(x) else x


def _abs(x):
    """The absolute values of an operand (strings, None, bools and axes pass through)."""
    if isinstance(x, np.ndarray):
        return np.abs(x) if x.dtype.kind in "fc" else x
    if isinstance(x, (float, complex)):
        return abs(x)
    if isinstance(x, (list, tuple)) and any(isinstance(i, (np.ndarray, float)) for i in x):
        return type(x)(_abs(i) for i in x)
    return x


def _is_numpy(obj) -> bool:
    return isinstance(obj, np.ndarray) or getattr(obj, "__name__", "").split(".")[0] == "numpy"


_CONTRACT_LAST = frozenset("matmul dot vdot inner vecdot matvec".split())
_REDUCE = frozenset("sum nansum mean nanmean average trace".split())


def _has_float(x) -> bool:
    if isinstance(x, np.ndarray):
        return x.dtype.kind in "fc"
    if isinstance(x, (list, tuple)):
        return any(_has_float(i) for i in x)
    return isinstance(x, (float, complex))


def _terms(name, operands, r) -> int:
    """How many terms each result entry sums (1 or 2 meaning "one" or "more than one"): a
    "sum" of one term has no rounding to differ in, on any machine."""
    first = np.asarray(operands[0]) if operands else None
    if first is None or first.dtype == object:
        return 2
    if name in _CONTRACT_LAST:
        return first.shape[-1] if first.ndim else 1
    if name in _REDUCE:
        return max(first.size // max(np.size(r), 1), 1)
    return 2


def _einsum_terms(spec, operands) -> int:
    """The number of terms summed per result entry of an explicit einsum (2 if unsure)."""
    try:
        inputs, out = spec.replace(" ", "").split("->")
        sizes = {}
        for sub, op in zip(inputs.split(","), operands, strict=True):
            shape = np.shape(op)
            pre, _, post = sub.partition("...")
            for c, n in zip(pre, shape, strict=False):
                sizes[c] = n
            for c, n in zip(post[::-1], shape[::-1], strict=False):
                sizes[c] = n
        return int(np.prod([sizes[c] for c in set(inputs) - set(out) - {",", "."}]))
    except (ValueError, KeyError, TypeError):
        return 2


_EINSUM_TERMS: dict = {}


def _einsum_terms_of(spec, operands) -> int:
    """:func:`_einsum_terms` for ndarray operands, remembered per spec and shapes."""
    key = (spec, *(op.shape for op in operands))
    terms = _EINSUM_TERMS.get(key)
    if terms is None:
        if len(_EINSUM_TERMS) > 1024:
            _EINSUM_TERMS.clear()
        terms = _EINSUM_TERMS[key] = _einsum_terms(spec, operands)
    return terms


def _numpy_sum_like(name, args, kwargs, r):
    """The usual case of :func:`_sum_like`, faster: ``np.name(*args, **kwargs)`` with float
    arrays (and an einsum spec) and no keywords but ``out``, ``axis`` and ``keepdims`` (which
    the magnitude call takes unchanged, as ``_abs`` leaves them). None where the general code
    must decide."""
    ops = args[1:] if name == "einsum" and args and type(args[0]) is str else args
    if not ops:
        return None
    for op in ops:
        if type(op) is not np.ndarray or op.dtype.kind not in "fc":
            return None
    kw = kwargs
    if kwargs:
        kw = {}
        for k, v in kwargs.items():
            if k == "out":
                continue
            if k not in ("axis", "keepdims") or not (v is None or type(v) in (int, bool) or (
                    type(v) is tuple and all(type(i) is int for i in v))):
                return None
            kw[k] = v
    first = ops[0]
    if ops is not args:
        terms = _einsum_terms_of(args[0], ops)
    elif name in _CONTRACT_LAST:
        terms = first.shape[-1] if first.ndim else 1
    elif name in _REDUCE:
        terms = max(first.size // max(np.size(r), 1), 1)
    else:
        terms = 2
    if terms < 2:
        return r
    mag = getattr(np, name)(*(np.abs(a) if type(a) is np.ndarray else a for a in args), **kw)
    return _move(r, mag, inplace="out" in kwargs)


def _sum_like(obj, name, *args, **kwargs):
    """``obj.name(*args, **kwargs)`` for a sum-like numpy function or array method, its float
    result moved by delta * xi * (the same call on the absolute values of the operands).

    Left alone: results of integer or boolean operands only (exact, or one correctly rounded
    division, everywhere) and "sums" of a single term."""
    r = getattr(obj, name)(*args, **kwargs)
    if not _ready(r):
        return r
    if obj is np:
        moved = _numpy_sum_like(name, args, kwargs, r)
        if moved is not None:
            return moved
    if not _is_numpy(obj):
        return r
    operands = ([obj] if isinstance(obj, np.ndarray) else []) + [
        a for a in args if not isinstance(a, str)]
    terms = (_einsum_terms(args[0], args[1:]) if name == "einsum" and args and isinstance(args[0], str)
             else _terms(name, operands, r))
    if not _has_float(operands) or terms < 2:
        return r
    kw = {k: _abs(v) for k, v in kwargs.items() if k != "out"}
    mag = getattr(_abs(obj), name)(*(_abs(a) for a in args), **kw)
    return _move(r, mag, inplace="out" in kwargs)


def _matmul(a, b):
    r = a @ b
    if not _ready(r):
        return r
    if type(a) is np.ndarray and type(b) is np.ndarray:      # the usual case, faster
        if (a.shape[-1] if a.ndim else 1) < 2:
            return r
        return _move(r, (np.abs(a) if a.dtype.kind in "fc" else a)
                     @ (np.abs(b) if b.dtype.kind in "fc" else b))
    if _terms("matmul", [a], r) < 2:
        return r
    return _move(r, _abs(np.asarray(a)) @ _abs(np.asarray(b)))


_HELPERS = {HELPER: perturb, HELPER + "sum": _sum_like, HELPER + "mm": _matmul}


class ProbeTransformer(ast.NodeTransformer):
    """Rewrite ``a @ b``, sum-like calls and the calls named in ``RELATIVE`` into probe calls:
    ``a @ b`` -> ``_bnprobe_mm(a, b)``, ``x.f(args)`` -> ``_bnprobe_sum(x, "f", args)``
    (f in ``SUM_LIKE``), ``x.f(args)`` -> ``_bnprobe_(x.f(args))`` (f in ``RELATIVE``)."""

    @staticmethod
    def _call(name, args, keywords, node):
        call = ast.Call(func=ast.Name(name, ast.Load()), args=args, keywords=keywords)
        return ast.copy_location(call, node)

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.MatMult):
            return self._call(HELPER + "mm", [node.left, node.right], [], node)
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        func = node.func
        if not isinstance(func, ast.Attribute):
            return node
        if func.attr in SUM_LIKE:
            return self._call(HELPER + "sum", [func.value, ast.Constant(func.attr), *node.args],
                              node.keywords, node)
        if func.attr in RELATIVE:
            inplace = any(k.arg == "out" for k in node.keywords)
            kw = [ast.keyword("inplace", ast.Constant(True))] if inplace else []
            return self._call(HELPER, [node], kw, node)
        return node


def _rewrite(tree):
    return ast.fix_missing_locations(ProbeTransformer().visit(tree))


class _Loader(importlib.machinery.SourceFileLoader):
    """Compiles a bnlib module from its rewritten source (never cached as bytecode)."""

    def get_code(self, fullname):
        path = self.get_filename(fullname)
        tree = ast.parse(self.get_data(path), path)
        return compile(_rewrite(tree), path, "exec", dont_inherit=True)

    def exec_module(self, module):
        module.__dict__.update(_HELPERS)
        super().exec_module(module)


class _Finder(importlib.abc.MetaPathFinder):
    """Hands ``bnlib`` and its submodules to :class:`_Loader`; every other import is untouched."""

    def __init__(self, package="bnlib"):
        self.package = package

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.package and not fullname.startswith(self.package + "."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if isinstance(spec.loader, importlib.machinery.SourceFileLoader):
                spec.loader = _Loader(fullname, spec.origin)
            return spec
        return None


def unit_roundoff() -> float:
    """The relative rounding error of one operation in this process: 2**-53 (IEEE double), or
    the probe's delta when the probe is installed with a larger one. Tests derive their
    rounding-level tolerances from it."""
    return max(2.0**-53, _State.delta)


def install(seed: int, delta: float = DEFAULT_DELTA, shell=None, package: str = "bnlib"):
    """Perturb ``package`` (imported after this call) and, given an IPython ``shell``, its cells.

    Raises
    ------
    RuntimeError
        If ``package`` is already imported (its code would run unperturbed).
    ValueError
        If ``delta`` is negative or not below 1e-6 (the probe is about rounding, not noise).
    """
    if not 0.0 <= float(delta) < 1e-6:
        raise ValueError(f"delta must be in [0, 1e-6), got {delta!r}")
    if package in sys.modules and not _State.installed:
        raise RuntimeError(f"{package} is already imported; install the probe before importing it")
    _State.key, _State.delta = _key(seed), float(delta)
    if not _State.installed:
        _State.finder = _Finder(package)
        sys.meta_path.insert(0, _State.finder)
        _State.installed = True
    if shell is not None and _State.shell is None:
        shell.user_ns.update(_HELPERS)
        shell.ast_transformers.append(ProbeTransformer())
        _State.shell = shell


def uninstall():
    """Stop perturbing (modules already imported keep their rewritten code, at delta 0)."""
    _State.delta = 0.0
    if _State.finder in sys.meta_path:
        sys.meta_path.remove(_State.finder)
    _State.installed = False


def startup_source(seed: int, delta: float) -> str:
    """An IPython start-up file that installs the probe in a kernel (see ``conftest.py``)."""
    here = Path(__file__).resolve()
    return (
        "# written by the rounding probe (pytest --probe-seed); installs it in this kernel\n"
        "import importlib.util as _u, sys as _s\n"
        f"_spec = _u.spec_from_file_location('_bnprobe', {str(here)!r})\n"
        "_m = _u.module_from_spec(_spec); _s.modules['_bnprobe'] = _m; _spec.loader.exec_module(_m)\n"
        f"_m.install({int(seed)}, {float(delta)!r}, shell=get_ipython())\n"
        "del _u, _s, _spec, _m\n"
    )
