"""Benchmark of bnlib's vectorised BNGD sweep (not part of the tests).

For d in {10, 100, 1000} and M in {1, 64} step sizes it prints

- seconds per BNGD step of one vectorised call ``bngd(problem, lrs, K, ...)`` running all M
  step sizes as one batch (``record="loss"``, no early stop, so every call takes K steps);
- ``loop/sweep``: the time of a Python loop over the M step sizes, each a separate call of
  the same single-run code ``bngd(problem, lr, K, ...)``, divided by the sweep's time;
- ``sweep/floor``: the sweep's time divided by the time of K batched products ``W @ H``
  with W of shape (M, d) alone, the one operation a step on the dense H cannot avoid.
  Without recorded iterates bnlib runs in H's eigenbasis (rotating once per call, then
  H w is an elementwise product, O(d) instead of O(d²)), so the sweep no longer takes
  that product and sweep/floor < 1 is possible (at large d it is expected); the floor
  stays the dense product, the cost of the dense step that ``record="all"`` still takes.

The timings of a case are interleaved round by round and each keeps its best of
``--repeats`` rounds (the loop: the sum of its calls' best times), because the machine may
be shared: the minimum of short calls is the least disturbed measurement. On a machine
that other jobs keep busy, ``--clock cpu`` times the CPU seconds of this process
(``time.process_time``) instead of wall seconds: time spent descheduled does not count, so
tables taken at different loads compare. Use it with ``--blas-threads 1`` (with several
BLAS threads it adds up their CPU time, spinning included).

The table is printed twice: with BLAS threading as the environment sets it, and with BLAS
limited to one thread at run time (``threadpoolctl``, installed with scikit-learn; no
environment variable is touched). On a loaded machine a multi-threaded BLAS waits for
descheduled threads and small products slow down several-fold, which the one-thread table
is free of. Run from the repository root:

    python benchmarks/bench_sweep.py                    # both tables, 1-2 minutes
    python benchmarks/bench_sweep.py --blas-threads 1   # one table
    python benchmarks/bench_sweep.py --blas-threads 1 --clock cpu   # on a busy machine

Targets: loop/sweep >= 20 at d = 100, M = 64; sweep/floor <= 1.5 at d = 1000, M = 64.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import bnlib

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
    threadpool_limits = None

CASES = [(d, M) for d in (10, 100, 1000) for M in (1, 64)]
STEPS = {10: 200, 100: 100, 1000: 10}          # K per call: a few ms to a few tens of ms


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def _timed(fn):
    t0 = _clock()
    fn()
    return _clock() - t0


def case(d, M, repeats):
    """Seconds per sweep step, loop/sweep and sweep/floor for one (d, M).

    Each round times the sweep, the floor and every single-run call of the loop once; each
    timing keeps its best round, and the loop's time is the sum of its calls' best times.
    Short calls and per-call minima keep preemption by other processes out of the numbers
    (and, if anything, favour the loop).
    """
    problem = bnlib.OLS.random(d, 100.0, seed=0)
    w0 = np.random.default_rng(1).standard_normal(d)
    lrs = np.logspace(-2, 4, M) if M > 1 else np.array([1.0])
    K = STEPS[d]

    def sweep():
        return bnlib.bngd(problem, lrs, K, 1.0, w0, record="loss")

    def single(lr):
        return bnlib.bngd(problem, lr, K, 1.0, w0, record="loss")

    W = np.tile(w0, (M, 1))
    HW = np.empty_like(W)
    H = np.ascontiguousarray(problem.H)

    def floor():
        for _ in range(K):
            np.matmul(W, H, out=HW)

    # the sweep computes the same numbers as the loop (up to rounding, which BLAS orders
    # differently for a matrix and a vector and which transients near instability amplify)
    batch = sweep()
    for m, lr in enumerate(lrs):
        assert np.allclose(batch.loss[:, m], single(float(lr)).loss, rtol=1e-3)
    t_sweep = t_floor = np.inf
    t_single = np.full(M, np.inf)
    for _ in range(repeats):
        t_sweep = min(t_sweep, _timed(sweep))
        t_floor = min(t_floor, _timed(floor))
        for m, lr in enumerate(lrs):
            t_single[m] = min(t_single[m], _timed(lambda lr=float(lr): single(lr)))
    return t_sweep / K, t_single.sum() / t_sweep, t_sweep / t_floor


def table(repeats):
    print(f"{'d':>5} {'M':>4} {'s/step (sweep)':>15} {'loop/sweep':>11} {'sweep/floor':>12}")
    results = {}
    for d, M in CASES:
        per_step, vs_loop, vs_floor = case(d, M, repeats)
        results[d, M] = (vs_loop, vs_floor)
        print(f"{d:>5} {M:>4} {per_step:>15.2e} {vs_loop:>11.1f} {vs_floor:>12.2f}", flush=True)
    vs_loop, vs_floor = results[100, 64][0], results[1000, 64][1]
    print(f"target loop/sweep >= 20 at d=100, M=64:    {vs_loop:.1f}  "
          f"{'met' if vs_loop >= 20 else 'MISSED'}")
    print(f"target sweep/floor <= 1.5 at d=1000, M=64: {vs_floor:.2f}  "
          f"{'met' if vs_floor <= 1.5 else 'MISSED'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="rounds per timing (best is kept)")
    parser.add_argument("--blas-threads", choices=["both", "default", "1"], default="both",
                        help="BLAS threading: as the environment sets it, one thread, or both")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall seconds, or CPU seconds of this process (a busy machine)")
    args = parser.parse_args()
    global _clock
    _clock = CLOCKS[args.clock]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"bnlib {bnlib.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {load:.2f}; best of {args.repeats} interleaved rounds, {args.clock} clock")
    if args.blas_threads in ("both", "default"):
        print("\nBLAS threads as set by the environment")
        table(args.repeats)
    if args.blas_threads in ("both", "1"):
        if threadpool_limits is None:
            print("\nthreadpoolctl is not installed: no one-thread table")
            return
        print("\nBLAS limited to 1 thread (threadpoolctl)")
        with threadpool_limits(limits=1, user_api="blas"):
            table(args.repeats)


if __name__ == "__main__":
    main()
