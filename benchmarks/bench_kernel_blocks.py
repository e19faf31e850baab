"""The full-covariance kernel in one (N, K, D) pass against cache-sized row blocks.

``log_gaussian_kernel`` splits N points into blocks of ``_kernel_full.row_chunk`` rows
(about 1 MiB of (rows, K, D) intermediate); this compares that with one pass over all
points (``gaussian._kernel``), with fixed block sizes, and with the centring folded into
the product (a column of ones on the points, a row of ``-μ_kᵀP_k`` on the factor), in one
process, and prints each as a fraction of the same process's float32 GEMM rate (2048³,
FLOPs 2·N·K·D²).

On a shared machine the GEMM and every variant are timed in turn within each repeat and
the fastest repeat of each is reported (the least disturbed one), with the load average.

Usage:
  PYTHONPATH=. python benchmarks/bench_kernel_blocks.py 32 32   # D K [repeats]
  PYTHONPATH=. python benchmarks/bench_kernel_blocks.py 64 64 5 --no-one-pass
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from gmmjax._kernel_full import full_block, full_parts, row_chunk
from gmmjax.gaussian import log_gaussian_kernel, precision_cholesky


def _augmented(x, locs, prec):
    """The full kernel with the centring inside the GEMM: ``[x, 1] @ [[P], [-μᵀP]]``."""
    n, d = x.shape
    k = prec.shape[0]
    c = jnp.mean(locs, axis=0)
    pf = jnp.transpose(prec, (1, 0, 2)).reshape(d, k * d)
    m = jnp.einsum("kd,kde->ke", locs - c, prec).reshape(1, k * d)
    xa = jnp.concatenate([x - c, jnp.ones((n, 1), x.dtype)], axis=1)
    y = (xa @ jnp.concatenate([pf, -m])).reshape(n, k, d)
    log_det = jnp.sum(jnp.log(jnp.diagonal(prec, axis1=-2, axis2=-1)), axis=-1)
    return -0.5 * jnp.sum(y * y, axis=-1) + log_det - 0.5 * d * np.log(2 * np.pi)


def main(d=32, k=32, repeats=5, one_pass=True, n=100_000):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
    locs = jnp.asarray(rng.normal(size=(k, d)), jnp.float32)
    tril = jnp.asarray(np.tril(rng.normal(size=(k, d, d)) * 0.1) + np.eye(d), jnp.float32)
    prec = precision_cholesky(tril)

    def blocked(x, c, fn=lambda xc: full_block(xc, full_parts(locs, prec))):
        pad = -n % c
        xp = jnp.concatenate([x, jnp.zeros((pad, d), x.dtype)]).reshape(-1, c, d)
        return jax.lax.map(fn, xp).reshape(-1, k)[:n]

    c0 = row_chunk((k, d), "full")
    fs = {}
    if one_pass:
        fs["one pass"] = jax.jit(lambda x: full_block(x, full_parts(locs, prec)))
    fs[f"default ({c0} rows)"] = jax.jit(lambda x: log_gaussian_kernel(x, locs, prec, "full"))
    for c in sorted({max(64, c0 // 2), 2 * c0, 1024}):
        fs[f"{c} rows"] = jax.jit(lambda x, c=c: blocked(x, c))
    fs[f"folded centring, {c0} rows"] = jax.jit(
        lambda x: blocked(x, c0, lambda xc: _augmented(xc, locs, prec))
    )
    a = jnp.ones((2048, 2048))
    gemm_fn = jax.jit(lambda a: jnp.dot(a, a, precision="highest"))
    with jax.default_matmul_precision("highest"):
        ref = fs[f"default ({c0} rows)"](x)
        for name, f in fs.items():
            err = float(jnp.max(jnp.abs(f(x) - ref) / (1.0 + jnp.abs(ref))))
            assert err < 1e-4, (name, err)
    gemm_fn(a).block_until_ready()
    times = {name: [] for name in fs}
    g_times = []
    load0 = os.getloadavg()[0]
    for _ in range(repeats):
        t = time.perf_counter()
        gemm_fn(a).block_until_ready()
        g_times.append(time.perf_counter() - t)
        for name, f in fs.items():
            t = time.perf_counter()
            f(x).block_until_ready()
            times[name].append(time.perf_counter() - t)
    gemm = 2 * 2048**3 / min(g_times)
    print(
        f"D={d} K={k} N={n}: GEMM {gemm / 1e9:.1f} GFLOP/s (fastest of {repeats}); "
        f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    for name, ts in times.items():
        m = min(ts)
        print(f"  {name:28s} {m * 1e3:8.1f} ms  {100 * 2 * n * k * d * d / m / gemm:5.1f}% of GEMM")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(*map(int, args[:3]), one_pass="--no-one-pass" not in sys.argv)
