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
import struct
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
# small arrays per chapter), so _move has fast paths that compute bitwise the same numbers as
# _move_reference: Python integer arithmetic for scalars and arrays of up to _SMALL entries (a
# numpy call costs as much as hashing a few entries in Python), and for larger arrays the hash
# in numpy with full-size constant operands (a ufunc call with a scalar operand costs half as
# much again as one without), written into two work arrays, and the exceptions (exact values,
# non-finite values or scales) looked for afterwards, by counting, and only then masked.
_SMALL = 6
_BLOCK = 8192              # arrays up to this size get cached full-size constants
_CHUNK = 16384             # larger ones are moved this many entries at a time
_ND, _F64, _U64 = np.ndarray, np.dtype(np.float64), np.dtype(np.uint64)
_M64 = (1 << 64) - 1
_IMANT, _ILOW, _IEXP = int(_MANT), int(_LOW), int(_EXP)
_IC1, _IC2, _IC3 = int(_C1), int(_C2), int(_C3)
_DBL, _QWORD = struct.Struct("<d"), struct.Struct("<Q")
_CONSTS: dict = {}          # shape -> (key, delta, the hash's operands shaped like it)
_BASES: dict = {}           # size -> the same, flat
_and, _xor, _shr, _mul = np.bitwise_and, np.bitwise_xor, np.right_shift, np.multiply
_add, _sub, _cnz, _isfinite, _where = np.add, np.subtract, np.count_nonzero, np.isfinite, np.where

# The probe's own arithmetic never warns or raises, whatever np.seterr or np.errstate says
# (the reference runs under np.errstate(all="ignore")); np.errstate costs about a microsecond
# per use, so the fast path sets numpy's error-state context variable directly where this
# numpy has one (numpy >= 2, the pinned one does) and falls back to np.errstate otherwise.
try:
    from numpy._core._ufunc_config import _extobj_contextvar as _FP_STATE
    from numpy._core._ufunc_config import _make_extobj

    _FP_IGNORE = _make_extobj(all="ignore")

    def _quiet():
        return _FP_STATE.set(_FP_IGNORE)

    def _loud(token):
        _FP_STATE.reset(token)
except (ImportError, AttributeError, TypeError):       # pragma: no cover (older numpy)
    def _quiet():
        state = np.errstate(all="ignore")
        state.__enter__()
        return state

    def _loud(token):
        token.__exit__(None, None, None)


def _bits(x: float) -> int:
    return _QWORD.unpack(_DBL.pack(x))[0]


def _py_move1(x: float, b: int, s, key: int, delta: float) -> float:
    """The moved value of the Python float ``x`` with bit pattern ``b`` (``s``: the scale, or
    None for a relative move), in Python arithmetic (IEEE double, as numpy's)."""
    m = b & _IMANT
    if m & _ILOW and b & _IEXP != _IEXP:
        h = ((m ^ key) * _IC1) & _M64
        h = ((h ^ (h >> 31)) * _IC2) & _M64
        h = ((h ^ (h >> 29)) * _IC3) & _M64
        f = ((h ^ (h >> 32)) >> 11) * (2.0 ** -52 * delta) - delta
    else:
        f = 0.0
    if s is None:
        return x + (f * x if f != 0.0 else 0.0)
    s = abs(s)
    return x + (f * s if s - s == 0.0 else 0.0)      # s - s == 0: s finite


def _py_moved(xs, bs, ss):
    """The moved values of the Python floats ``xs`` with bit patterns ``bs`` (``ss``: the
    scales, or None for relative moves)."""
    key, delta = int(_State.key), _State.delta
    if ss is None:
        return [_py_move1(x, b, None, key, delta) for x, b in zip(xs, bs, strict=True)]
    return [_py_move1(x, b, s, key, delta) for x, b, s in zip(xs, bs, ss, strict=True)]


def _consts(shape, n: int):
    """The hash's operands for arrays of ``shape`` (``n`` <= _BLOCK entries): full-size
    arrays, cached."""
    key, delta = _State.key, _State.delta
    base = _BASES.get(n)
    if base is None or base[0] is not key or base[1] != delta:
        if len(_BASES) >= 32:
            _BASES.clear()
            _CONSTS.clear()
        ints = (_MANT, key, _C1, 31, _C2, 29, _C3, 32, 11, _LOW)
        base = _BASES[n] = (key, delta, *(np.full(n, v, dtype=np.uint64) for v in ints),
                            np.full(n, 2.0 ** -52 * delta), np.full(n, delta))
    if len(_CONSTS) >= 256:
        _CONSTS.clear()
    got = _CONSTS[shape] = (key, delta, *(a.reshape(shape) for a in base[2:]))
    return got


def _np_block(x, s, out, c):
    """The moved values of the C-contiguous float64 array ``x`` by the non-negative scale
    ``s`` of its shape (None: relatively), written into ``out`` (None: a new array); ``c``:
    the hash's operands, shaped like ``x`` (:func:`_consts`) or scalars."""
    _, _, mant, key, c1, s31, c2, s29, c3, s32, s11, low, scale, delta = c
    n = x.size
    bits = x.view(_U64)
    h = _and(bits, mant)
    t = _and(h, low)
    exact = _cnz(t) != n                     # an entry with its last 16 mantissa bits zero
    _xor(h, key, out=h)
    _mul(h, c1, out=h)
    _xor(h, _shr(h, s31, out=t), out=h)
    _mul(h, c2, out=h)
    _xor(h, _shr(h, s29, out=t), out=h)
    _mul(h, c3, out=h)
    _xor(h, _shr(h, s32, out=t), out=h)
    _shr(h, s11, out=h)
    f = h.astype(_F64)
    _mul(f, scale, out=f)
    _sub(f, delta, out=f)                    # uniform in [-delta, delta)
    token = _quiet()
    try:
        _mul(f, x if s is None else s, out=f)
        out = _add(x, f, out=out)
        if exact or _cnz(_isfinite(out)) != n:
            # the unusual case: leave exact and non-finite values (and infinite scales) alone
            keep = _and(bits, low, out=t).astype(bool)
            keep &= _isfinite(x)
            if s is not None:
                keep &= _isfinite(s)
            _add(x, _where(keep, f, 0.0), out=out)
    finally:
        _loud(token)
    return out


def _np_move(r, s, inplace):
    """:func:`_move` of the float64 array ``r`` (more than _SMALL entries, C-contiguous unless
    ``inplace``) by the non-negative float64 scale ``s`` of its shape, or relatively (None).
    Arrays of more than _BLOCK entries are moved _CHUNK entries at a time with scalar
    operands (the hash's dozen passes over a chunk stay in the CPU's cache: 3 times faster
    than whole passes over 320000 entries)."""
    x = r if r.flags.c_contiguous else np.ascontiguousarray(r)
    shape, n = x.shape, x.size
    if n <= _BLOCK:
        c = _CONSTS.get(shape)
        if c is None or c[0] is not _State.key or c[1] != _State.delta:
            c = _consts(shape, n)
        out = _np_block(x, s, None, c)
    else:
        key, delta = _State.key, _State.delta
        c = (key, delta, *(np.uint64(v) for v in (_MANT, key, _C1, 31, _C2, 29, _C3, 32, 11, _LOW)),
             2.0 ** -52 * delta, delta)
        xs, ss = x.reshape(-1), None if s is None else s.reshape(-1)
        out = np.empty(shape)
        flat = out.reshape(-1)
        for i in range(0, n, _CHUNK):
            j = i + _CHUNK
            _np_block(xs[i:j], None if ss is None else ss[i:j], flat[i:j], c)
    if inplace:
        r[...] = out
        return r
    return out


def _move(r, scale=None, inplace=False, nonneg=False):
    """``r + delta * xi * scale`` (``scale`` defaults to ``|r|``), for a float64 array or scalar.

    Bitwise the same as :func:`_move_reference`, faster. ``nonneg``: the caller knows that
    ``scale`` has no negative entry but possibly -0.0 or NaN (a magnitude), so its absolute
    value need not be taken (neither changes a moved value)."""
    if type(r) is np.float64:
        ts = type(scale)
        if scale is None or ts is np.float64 or ts is float:
            x = float(r)
            return np.float64(_py_move1(x, _bits(x), None if scale is None else float(scale),
                                        int(_State.key), _State.delta))
        return _move_reference(r, scale, inplace)
    if type(r) is not _ND or not (
            scale is None or (type(scale) is _ND and scale.dtype == _F64
                              and scale.shape == r.shape)):
        return _move_reference(r, scale, inplace)
    inplace = inplace and r.flags.writeable
    if not (inplace or r.flags.c_contiguous):
        # (a new array from a non-contiguous r: the reference decides its memory layout)
        return _move_reference(r, scale, inplace)
    if r.size <= _SMALL:
        x = np.ascontiguousarray(r).reshape(-1)    # elementwise: any layout gives the same values
        ss = None if scale is None else scale.reshape(-1).tolist()
        moved = np.array(_py_moved(x.tolist(), x.view(np.uint64).tolist(), ss),
                         dtype=np.float64).reshape(r.shape)
        if inplace:
            r[...] = moved
            return r
        return moved
    if scale is not None and not nonneg:
        scale = np.abs(scale)
    return _np_move(r, scale, inplace)


def perturb(x, inplace=False):
    """``x`` with each float64 entry multiplied by ``1 + delta * xi`` (see the module doc).

    Anything that is not a float64 array or scalar (ints, bools, sympy objects, Python floats)
    is returned unchanged; tuples and named tuples are perturbed entrywise. With ``inplace``
    a writable array is changed in place (the ``out=`` of a call).
    """
    t = type(x)
    if t is _ND:                                       # the usual cases first, faster
        if x.dtype == _F64 and x.size and _State.delta != 0.0:
            return _move(x, inplace=inplace)
        return x
    if t is np.float64:
        return _move(x) if _State.delta != 0.0 else x
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


_LAST, _REDUCED, _EINSUM = 1, 2, 3        # how a sum-like call's terms are counted
_AXIS_TYPES = (int, bool, type(None))


def _plain_kwargs(kwargs):
    """``kwargs`` without ``out``, or None unless it holds only ``out``, ``axis`` and
    ``keepdims`` with plain values (which the magnitude call takes unchanged, as ``_abs``
    leaves them)."""
    kw = {}
    for k, v in kwargs.items():
        if k == "out":
            continue
        if k not in ("axis", "keepdims") or not (type(v) in _AXIS_TYPES or (
                type(v) is tuple and all(type(i) is int for i in v))):
            return None
        kw[k] = v
    return kw


def _numpy_sum_like(fn, rule, args, kwargs, r):
    """The usual case of a sum-like call, faster: ``np.name(*args, **kwargs)`` = ``r`` (a
    float64 array or scalar) of float arrays (and an einsum spec) and no keywords but
    ``out``, ``axis`` and ``keepdims``. None where the general code must decide."""
    if _State.delta == 0.0 or not r.size:
        return r
    ops = args
    if rule == _EINSUM:
        if not args or type(args[0]) is not str:
            return None
        ops = args[1:]
    if not ops:
        return None
    for op in ops:
        if type(op) is not _ND or op.dtype.kind not in "fc":
            return None
    kw = _plain_kwargs(kwargs) if kwargs else kwargs
    if kw is None:
        return None
    first = ops[0]
    if rule == _LAST:
        terms = first.shape[-1] if first.ndim else 1
    elif rule == _REDUCED:
        terms = max(first.size // max(r.size, 1), 1)
    elif rule == _EINSUM:
        terms = _einsum_terms_of(args[0], ops)
    else:
        terms = 2
    if terms < 2:
        return r
    if ops is not args:
        mag = fn(args[0], *(np.abs(a) for a in ops), **kw)
    elif len(ops) == 2:
        mag = fn(np.abs(ops[0]), np.abs(ops[1]), **kw)
    else:
        mag = fn(*(np.abs(a) for a in ops), **kw)
    return _move(r, mag, inplace="out" in kwargs, nonneg=True)


def _method_sum_like(obj, name, rule, args, kwargs, r):
    """The usual case of a sum-like method, faster: ``x.name(*args, **kwargs)`` = ``r`` for a
    float ndarray ``x``, plain axes and keywords (or float ndarray operands). None where the
    general code must decide."""
    if _State.delta == 0.0 or not r.size:
        return r
    if obj.dtype.kind not in "fc":
        return None
    mags = []
    for a in args:
        if type(a) is _ND:
            if a.dtype.kind not in "fc":
                return None
            mags.append(np.abs(a))
        elif type(a) in _AXIS_TYPES or (type(a) is tuple and all(type(i) is int for i in a)):
            mags.append(a)
        else:
            return None
    kw = _plain_kwargs(kwargs) if kwargs else kwargs
    if kw is None:
        return None
    if rule == _LAST:
        terms = obj.shape[-1] if obj.ndim else 1
    elif rule == _REDUCED:
        terms = max(obj.size // max(r.size, 1), 1)
    else:
        terms = 2
    if terms < 2:
        return r
    mag = getattr(np.abs(obj), name)(*mags, **kw)
    return _move(r, mag, inplace="out" in kwargs, nonneg=True)


def _sum_general(obj, name, args, kwargs, r):
    """The move of ``r = obj.name(*args, **kwargs)``, a sum-like numpy function or array
    method, by delta * xi * (the same call on the absolute values of the operands), for any
    arguments.

    Left alone: results of integer or boolean operands only (exact, or one correctly rounded
    division, everywhere) and "sums" of a single term."""
    if not _ready(r):
        return r
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


def _sum_like_of(name):
    """The probe's helper for the sum-like call ``obj.name(...)``: the rewritten code calls
    ``_bnprobe_sum_name(obj, ...)``, so the name is resolved once, here."""
    rule = (_LAST if name in _CONTRACT_LAST else _REDUCED if name in _REDUCE
            else _EINSUM if name == "einsum" else 0)
    fn = getattr(np, name, None)

    def sum_like(obj, *args, **kwargs):
        r = getattr(obj, name)(*args, **kwargs)
        tr = type(r)
        if tr is _ND:
            if r.dtype != _F64:
                return r
        elif tr is not np.float64:
            return _sum_general(obj, name, args, kwargs, r)
        if obj is np:
            if fn is not None:
                moved = _numpy_sum_like(fn, rule, args, kwargs, r)
                if moved is not None:
                    return moved
        elif type(obj) is _ND and rule != _EINSUM:
            moved = _method_sum_like(obj, name, rule, args, kwargs, r)
            if moved is not None:
                return moved
        return _sum_general(obj, name, args, kwargs, r)

    sum_like.__name__ = sum_like.__qualname__ = f"_sum_like_{name}"
    return sum_like


_SUM_LIKE = {name: _sum_like_of(name) for name in sorted(SUM_LIKE)}


def _sum_like(obj, name, *args, **kwargs):
    """``obj.name(*args, **kwargs)`` for a sum-like numpy function or array method, its float
    result moved by delta * xi * (the same call on the absolute values of the operands)."""
    return _SUM_LIKE[name](obj, *args, **kwargs)


def _matmul(a, b):
    """``a @ b``, moved by delta * xi * ``|a| @ |b|``."""
    r = a @ b
    if type(a) is _ND and type(b) is _ND:                # the usual case, faster
        tr = type(r)
        if tr is _ND:
            if r.dtype != _F64 or not r.size:
                return r
        elif tr is not np.float64:
            return r
        if _State.delta == 0.0 or (a.shape[-1] if a.ndim else 1) < 2:
            return r
        fa, fb = a.dtype.kind in "fc", b.dtype.kind in "fc"
        return _move(r, (np.abs(a) if fa else a) @ (np.abs(b) if fb else b), nonneg=fa and fb)
    if not _ready(r) or _terms("matmul", [a], r) < 2:
        return r
    return _move(r, _abs(np.asarray(a)) @ _abs(np.asarray(b)))


_HELPERS = {HELPER: perturb, HELPER + "mm": _matmul,
            **{f"{HELPER}sum_{name}": helper for name, helper in _SUM_LIKE.items()}}


class ProbeTransformer(ast.NodeTransformer):
    """Rewrite ``a @ b``, sum-like calls and the calls named in ``RELATIVE`` into probe calls:
    ``a @ b`` -> ``_bnprobe_mm(a, b)``, ``x.f(args)`` -> ``_bnprobe_sum_f(x, args)``
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
            return self._call(f"{HELPER}sum_{func.attr}", [func.value, *node.args],
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
