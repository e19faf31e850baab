"""``jax.value_and_grad`` of the default KL against its value alone (issue 12: at most 3×).

For each (D, K), two random full-covariance mixtures (``_common.random_pair``); the value
is ``kl_divergence(p, q, key, N)`` with the default method, the gradient is over every
parameter of both mixtures. Both functions are jitted, warmed up once, then timed in turn
(interleaved, so load from other processes hits them alike); medians are reported.

Run: ``python benchmarks/bench_vag.py [--n 100000] [--reps 5] [--dims 16x32,64x64]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from _common import random_pair

import gmmjax as g
from gmmjax.montecarlo.control_variates import auto_method

CASES = ((1, 3), (2, 5), (16, 32), (64, 64))


def time_pair(d: int, k: int, n: int, reps: int) -> tuple[float, float]:
    """Median seconds of the value and of value_and_grad, timed interleaved."""
    p, q = random_pair(d, k, seed=0)
    key = jax.random.key(0)

    def kl(pq):
        return g.kl_divergence(pq[0], pq[1], key, n)

    fns = (jax.jit(kl), jax.jit(jax.value_and_grad(kl)))
    for f in fns:
        jax.block_until_ready(f((p, q)))
    ts = ([], [])
    for _ in range(reps):
        for f, t in zip(fns, ts, strict=True):
            t0 = time.perf_counter()
            jax.block_until_ready(f((p, q)))
            t.append(time.perf_counter() - t0)
    return float(np.median(ts[0])), float(np.median(ts[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dims", default=",".join(f"{d}x{k}" for d, k in CASES))
    args = ap.parse_args()
    cases = [tuple(int(v) for v in c.split("x")) for c in args.dims.split(",")]
    print(f"N = {args.n}, medians of {args.reps} interleaved warm calls")
    print("| D | K | default method | value | value_and_grad | ratio |")
    print("|---|---|---|---|---|---|")
    for d, k in cases:
        value, vag = time_pair(d, k, args.n, args.reps)
        method = auto_method(d)
        print(
            f"| {d} | {k} | {method} | {value * 1e3:.1f} ms | {vag * 1e3:.1f} ms | "
            f"{vag / value:.2f}× |",
            flush=True,
        )


if __name__ == "__main__":
    main()
