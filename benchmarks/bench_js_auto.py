"""Which method should ``method="auto"`` run for Jensen–Shannon from D = 3 on?

The candidates are ``antithetic`` (the JS default up to 0.2.0) and ``cv`` (importance
sampling on the overlap of p and q, :mod:`gmmjax.montecarlo._overlap`). The overlap
proposal is built for pairs that barely overlap (JS near log 2), so the question is
what it does where p and q overlap heavily (small JS). For random pairs of K-component
mixtures (means spread ``s`` per axis, near-identity covariances, as in
``bench_cv.py``) from nearly equal (s = 0.1) to barely overlapping (s = 1.5), each
method runs at N points over ``--keys`` keys, vmapped inside one jit, and the table
gives the variance over keys against iid's ("saved" = var_iid / var_method: how many
times more iid samples the same error takes) and the time per call against iid's at
equal N (medians of 11 interleaved calls after warm-up).

usage: python benchmarks/bench_js_auto.py [--keys 64] [--n 8192] [--k 4]
       [--dims 3,8,16] [--spreads 0.1,0.3,0.6,1.0,1.5]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
from _common import median_times, random_pair

import gmmjax as g

METHODS = ("iid", "antithetic", "cv")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=64)
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--dims", default="3,8,16")
    ap.add_argument("--spreads", default="0.1,0.3,0.6,1.0,1.5")
    args = ap.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, {args.keys} keys, "
          f"N = {args.n}, K = {args.k} per side")  # fmt: skip
    print("| D | s | JS | saved antithetic / cv | cost antithetic / cv |")
    print("|---|---|---|---|---|")
    keys = jax.random.split(jax.random.key(0), args.keys)
    for d in map(int, args.dims.split(",")):
        for s in map(float, args.spreads.split(",")):
            p, q = random_pair(d, args.k, 1000 * d + int(100 * s), spread=s)
            runs = {
                m: jax.jit(
                    jax.vmap(lambda key, m=m: g.js_estimate(p, q, key, args.n, method=m).value)
                )
                for m in METHODS
            }
            var = {m: float(np.var(np.asarray(f(keys), np.float64))) for m, f in runs.items()}
            js = float(np.mean(np.asarray(runs["cv"](keys))))
            one = {m: jax.jit(lambda key, f=f: f(key[None])) for m, f in runs.items()}
            t = median_times(one, keys[0])
            saved = [var["iid"] / max(var[m], 1e-30) for m in METHODS[1:]]
            cost = [t[m] / t["iid"] for m in METHODS[1:]]
            print(f"| {d} | {s} | {js:.4f} | {saved[0]:.1f}x / {saved[1]:.1f}x | "
                  f"{cost[0]:.2f} / {cost[1]:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
