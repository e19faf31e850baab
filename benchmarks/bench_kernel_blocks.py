"""The full-covariance kernel in one (N, K, D) pass against cache-sized row blocks.

``log_gaussian_kernel`` splits N points into blocks of ``gaussian._row_chunk`` rows
(about 1 MiB of (rows, K, D) intermediate); this compares that with one pass over all
points (``gaussian._kernel``) and with fixed block sizes, in one process, and prints
each as a fraction of the same process's float32 GEMM rate (2048³, FLOPs 2·N·K·D²).

Usage:
  PYTHONPATH=. python benchmarks/bench_kernel_blocks.py 32 32   # D K
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from gmmjax.gaussian import _kernel, _row_chunk, log_gaussian_kernel, precision_cholesky


def main(d=32, k=32, n=100_000, repeats=5):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
    locs = jnp.asarray(rng.normal(size=(k, d)), jnp.float32)
    tril = jnp.asarray(np.tril(rng.normal(size=(k, d, d)) * 0.1) + np.eye(d), jnp.float32)
    prec = precision_cholesky(tril)

    def blocked(x, c):
        pad = -n % c
        xp = jnp.concatenate([x, jnp.zeros((pad, d), x.dtype)]).reshape(-1, c, d)
        return jax.lax.map(lambda xc: _kernel(xc, locs, prec, "full"), xp).reshape(-1, k)[:n]

    fs = {
        "one pass": jax.jit(lambda x: _kernel(x, locs, prec, "full")),
        f"default ({_row_chunk((k, d), 'full')} rows)": jax.jit(
            lambda x: log_gaussian_kernel(x, locs, prec, "full")
        ),
    }
    for c in (256, 1024, 4096):
        fs[f"{c} rows"] = jax.jit(lambda x, c=c: blocked(x, c))
    a = jnp.ones((2048, 2048))
    g = jax.jit(lambda a: jnp.dot(a, a, precision="highest"))
    g(a).block_until_ready()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        g(a).block_until_ready()
        ts.append(time.perf_counter() - t)
    gemm = 2 * 2048**3 / sorted(ts)[repeats // 2]
    print(f"D={d} K={k} N={n}: GEMM {gemm / 1e9:.1f} GFLOP/s")
    for name, f in fs.items():
        f(x).block_until_ready()
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            f(x).block_until_ready()
            ts.append(time.perf_counter() - t)
        m = sorted(ts)[repeats // 2]
        print(f"  {name:20s} {m * 1e3:8.1f} ms  {100 * 2 * n * k * d * d / m / gemm:5.1f}% of GEMM")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3]))
