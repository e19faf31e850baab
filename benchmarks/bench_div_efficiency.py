"""Sample efficiency: RMSE of each method against the truth at equal N, over many keys.

The truth is a float64 estimate from 4·10⁶ qmc points (its own stderr is printed and
is far below every RMSE). "samples saved" = (RMSE_iid / RMSE_method)², the factor by
which iid would need more samples for the same error (RMSE ∝ N^-1/2 for iid).

usage: python benchmarks/bench_div_efficiency.py [--keys 128] [--n 4096]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
from _common import random_pair as _pair

import gmmjax as g

METHODS = ("iid", "stratified", "antithetic", "qmc")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=128)
    ap.add_argument("--n", type=int, default=4096)
    a = ap.parse_args()
    print(f"N = {a.n} per estimate, {a.keys} keys; RMSE against a 4e6-point qmc reference\n")
    print(
        "| D | K | quantity | truth | "
        + " | ".join(f"RMSE {m}" for m in METHODS)
        + " | samples saved: "
        + " / ".join(METHODS[1:])
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(METHODS) + "---|")
    for d, k in ((1, 3), (2, 5), (16, 32)):
        p, q = _pair(d, k, d)
        keys = jax.random.split(jax.random.key(0), a.keys)
        for name, fn in (("KL", g.kl_estimate), ("JS", g.js_estimate)):
            ref = jax.jit(lambda p, q: fn(p, q, jax.random.key(99), 4_000_000, method="qmc"))(p, q)
            truth = float(ref.value)
            rmse = {}
            for m in METHODS:
                est = jax.jit(jax.vmap(lambda kk: fn(p, q, kk, a.n, method=m)))(keys)
                rmse[m] = float(np.sqrt(np.mean((np.asarray(est.value, np.float64) - truth) ** 2)))
            saved = " / ".join(f"{(rmse['iid'] / rmse[m]) ** 2:.1f}x" for m in METHODS[1:])
            print(
                f"| {d} | {k} | {name} | {truth:.5f} ± {float(ref.stderr):.1e} | "
                + " | ".join(f"{rmse[m]:.2e}" for m in METHODS)
                + f" | {saved} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
