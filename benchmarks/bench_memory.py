"""10⁸ samples in bounded memory, at the throughput of one unchunked call (issue 12).

Each case runs in its own process, so its peak resident set (``ru_maxrss``) is its own:

* ``unchunked``: ``kl_estimate(p, q, key, N0, chunk_size=N0)``: the N0 points in one
  chunk (no ``lax.map`` over chunks; the kernel still uses its cache-sized row blocks);
* ``default``: the same N0 with the default chunks;
* ``big``: ``kl_estimate(p, q, key, N)`` with the default chunks (N = 10⁸ by default).

Each process compiles with one call, then times ``--reps`` calls with new keys (median).
Throughput is points per second; the goal is ``big`` within ±15% of ``unchunked`` with a
peak resident set under 2 GiB.

Run: ``python benchmarks/bench_memory.py [--d 16 --k 32 --n 100000000 --n0 1048576 --reps 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def worker(d: int, k: int, n: int, chunk: int | None, reps: int) -> dict:
    import jax
    from _common import random_pair

    import gmmjax as g

    p, q = random_pair(d, k, seed=0)
    t0 = time.perf_counter()
    est = g.kl_estimate(p, q, jax.random.key(0), n, chunk_size=chunk)
    jax.block_until_ready(est)
    first = time.perf_counter() - t0
    ts = []
    for r in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(g.kl_estimate(p, q, jax.random.key(r + 1), n, chunk_size=chunk))
        ts.append(time.perf_counter() - t0)
    ts.sort()
    med = ts[len(ts) // 2]
    return {
        "seconds": med,
        "first_call": first,
        "points_per_s": n / med,
        "value": float(est.value),
        "stderr": float(est.stderr),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--n", type=int, default=100_000_000)
    ap.add_argument("--n0", type=int, default=2**20)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--worker", nargs=3, metavar=("N", "CHUNK", "REPS"))
    a = ap.parse_args(argv)
    if a.worker:
        n, chunk, reps = (int(v) for v in a.worker)
        print(json.dumps(worker(a.d, a.k, n, chunk or None, reps)))
        return
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(here), here]))
    cases = [
        ("unchunked", a.n0, a.n0, max(3, a.reps)),
        ("default", a.n0, 0, max(3, a.reps)),
        ("big", a.n, 0, a.reps),
    ]
    rows = {}
    for name, n, chunk, reps in cases:
        cmd = [sys.executable, __file__, "--d", str(a.d), "--k", str(a.k),
               "--worker", str(n), str(chunk), str(reps)]  # fmt: skip
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        r = rows[name]
        print(
            f"| {name} | {n:,} | {r['seconds']:.3f} s | {r['points_per_s'] / 1e6:.2f} M/s "
            f"| {r['max_rss_mib']:.0f} MiB | {r['first_call']:.1f} s "
            f"| {r['value']:.5f} ± {r['stderr']:.1e} |",
            flush=True,
        )
    ratio = rows["big"]["points_per_s"] / rows["unchunked"]["points_per_s"]
    print(f"D = {a.d}, K = {a.k}: throughput big / unchunked = {ratio:.3f}")


if __name__ == "__main__":
    main()
