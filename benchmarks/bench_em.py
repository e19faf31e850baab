"""EM wall-clock: gmmjax.fit_em against sklearn.mixture.GaussianMixture.fit.

Both start from the same initial parameters (the generating weights and means,
identity precisions) and run a fixed number of iterations (``tol=0`` so neither
stops early); we report the median over repeats of the whole ``fit`` call, after
one warm-up call that compiles, and the time per iteration.

Usage::

    python benchmarks/bench_em.py                 # the full grid (slow on 2 cores)
    python benchmarks/bench_em.py --quick         # a small grid
    python benchmarks/bench_em.py --no-sklearn    # gmmjax only (e.g. on a GPU)
    JAX_ENABLE_X64=1 python benchmarks/bench_em.py  # gmmjax in float64
    python benchmarks/bench_em.py --estimator     # the estimators: gmmjax.sklearn vs sklearn

``--estimator`` times ``gmmjax.sklearn.GaussianMixture(...).fit`` against
``sklearn.mixture.GaussianMixture(...).fit`` with the same arguments (N = 10⁶, D = 16,
K = 64, full by default; ``weights_init``/``means_init``/``precisions_init`` given, so
neither runs k-means, ``tol=0``, ``--iters`` iterations); each ``fit`` includes the
validation and the final E-step both estimators do.

Prints a Markdown table (and writes JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from gmmjax import fit_em


def _data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 4.0
    labels = rng.integers(0, k, n)
    x = centers[labels] + rng.normal(size=(n, d))
    return x, np.full(k, 1.0 / k), centers


def _time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), ts


def run_case(n, d, k, cov, iters, repeats, sklearn, sk_threads=(None, 1)):
    x, w0, m0 = _data(n, d, k)
    p0 = np.broadcast_to(np.eye(d), (k, d, d)).copy() if cov == "full" else np.ones((k, d))
    kw = dict(weights_init=w0, means_init=m0, precisions_init=p0, max_iter=iters, tol=0.0)
    xj = jnp.asarray(x)  # float32 unless JAX_ENABLE_X64

    def run_jax():
        r = fit_em(xj, k, key=jax.random.key(0), covariance_type=cov, **kw)
        r.log_likelihood.block_until_ready()
        return r

    t0 = time.perf_counter()
    r = run_jax()  # warm-up (compiles)
    first = time.perf_counter() - t0
    assert r.n_iter == iters, r.n_iter
    tj, _ = _time(run_jax, repeats)
    row = dict(
        n=n,
        d=d,
        k=k,
        cov=cov,
        iters=iters,
        jax_s=tj,
        jax_first_s=first,
        jax_dtype=str(xj.dtype),
        jax_ll=float(r.log_likelihood),
    )
    if sklearn:
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits

        def run_sk(threads):
            with warnings.catch_warnings(), threadpool_limits(threads):
                warnings.simplefilter("ignore")
                return GaussianMixture(k, covariance_type=cov, **kw).fit(x)

        # BLAS threads: on a loaded 2-core machine OpenBLAS with 2 threads can be
        # several times slower than with 1; time one fit each way, keep the faster
        once = {}
        for threads in sk_threads:
            t0 = time.perf_counter()
            sk = run_sk(threads)
            once[threads] = time.perf_counter() - t0
            assert sk.n_iter_ == iters
        threads = min(once, key=once.get)
        # a sklearn fit above 30 s is timed once (2-core budget); else median of 3
        if once[threads] > 30 or repeats == 1:
            ts_, reps = once[threads], 1
        else:
            more = _time(lambda: run_sk(threads), repeats - 1)[1]
            ts_, reps = statistics.median([once[threads], *more]), repeats
        row.update(
            sk_s=ts_, sk_repeats=reps, sk_threads=threads or "default", sk_ll=float(sk.score(x))
        )
    return row


def run_estimators(n, d, k, cov, iters, repeats, sklearn=True):
    """Whole ``fit`` calls of the two estimators (module docstring)."""
    from gmmjax.sklearn import GaussianMixture as JaxGM

    x, w0, m0 = _data(n, d, k)
    p0 = np.broadcast_to(np.eye(d), (k, d, d)).copy() if cov == "full" else np.ones((k, d))
    kw = dict(
        covariance_type=cov,
        weights_init=w0,
        means_init=m0,
        precisions_init=p0,
        max_iter=iters,
        tol=0.0,
    )

    def fit(cls):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: tol=0 never converges
            return cls(k, **kw).fit(x)

    t0 = time.perf_counter()
    ours = fit(JaxGM)  # warm-up (compiles)
    first = time.perf_counter() - t0
    tj, _ = _time(lambda: fit(JaxGM), repeats)
    row = dict(n=n, d=d, k=k, cov=cov, iters=iters, jax_s=tj, jax_first_s=first)
    row["jax_dtype"] = str(ours.means_.dtype)
    if sklearn:
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # one BLAS thread: faster on the loaded 2-core box
            ts_, _ = _time(lambda: fit(GaussianMixture), 1)
            sk = fit(GaussianMixture) if repeats > 1 else None
        row.update(sk_s=ts_, sk_threads=1)
        if sk is not None:
            row["max_abs_mean_diff"] = float(np.abs(sk.means_ - ours.means_).max())
    return row


def main_estimators(args):
    n = (args.n or [10**6])[0]
    iters = args.iters or 2
    print(
        f"# {platform.processor() or platform.machine()}, jax {jax.__version__}, "
        f"backend {jax.default_backend()}, devices {jax.devices()}"
    )
    print("| N | D | K | cov | iters | dtype | gmmjax.sklearn s/iter | sklearn s/iter | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    row = run_estimators(n, 16, 64, "full", iters, args.repeats, not args.no_sklearn)
    sk, tj = row.get("sk_s"), row["jax_s"]
    sk_txt = f"{sk / iters:.3f}" if sk else "–"
    up = f"{sk / tj:.1f}×" if sk else "–"
    print(
        f"| {n:.0e} | 16 | 64 | full | {iters} | {row['jax_dtype']} | "
        f"{tj / iters:.3f} | {sk_txt} | {up} |",
        flush=True,
    )
    print(f"# first (compiling) gmmjax call: {row['jax_first_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([row], f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-sklearn", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--n", type=int, nargs="*", default=None)
    ap.add_argument("--iters", type=int, default=None, help="EM iterations (default 10 / 3)")
    ap.add_argument(
        "--sk-one-thread", action="store_true", help="time sklearn with 1 BLAS thread only"
    )
    ap.add_argument(
        "--sk-max-work",
        type=float,
        default=float("inf"),
        help="skip sklearn where N·K·D² (full) or N·K·D (diag) exceeds this",
    )
    ap.add_argument("--estimator", action="store_true", help="the estimators' fit")
    args = ap.parse_args()
    if args.estimator:
        return main_estimators(args)
    if args.quick:
        grid = list(itertools.product([10**4], [2, 16], [8], ["full", "diag"]))
    else:
        ns = args.n or [10**5, 10**6]
        grid = list(itertools.product(ns, [2, 16, 64], [8, 64], ["full", "diag"]))
    print(
        f"# {platform.processor() or platform.machine()}, jax {jax.__version__}, "
        f"backend {jax.default_backend()}, devices {jax.devices()}"
    )
    print(
        "| N | D | K | cov | iters | gmmjax s (per iter) | sklearn s (per iter) "
        "| sklearn BLAS threads | speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for n, d, k, cov in grid:
        iters = args.iters or (10 if n <= 10**5 else 3)
        threads = (1,) if args.sk_one_thread else (None, 1)
        work = n * k * d * (d if cov == "full" else 1)
        use_sk = not args.no_sklearn and work <= args.sk_max_work
        row = run_case(n, d, k, cov, iters, args.repeats, use_sk, threads)
        rows.append(row)
        sk = row.get("sk_s")
        sk_txt = f"{sk:.3f} ({sk / iters:.4f})" if sk else "–"
        up = f"{sk / row['jax_s']:.1f}×" if sk else "–"
        print(
            f"| {n:.0e} | {d} | {k} | {cov} | {iters} | {row['jax_s']:.3f} "
            f"({row['jax_s'] / iters:.4f}) | {sk_txt} | {row.get('sk_threads', '–')} | {up} |",
            flush=True,
        )
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
