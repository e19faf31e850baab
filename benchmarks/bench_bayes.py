"""Variational Bayes wall-clock: gmmjax.sklearn.BayesianGaussianMixture vs scikit-learn's.

Both estimators get the same data, the same ``random_state`` and
``init_params="random_from_data"`` (hence the same initial responsibilities, and a
cheap initialization, so the variational iterations dominate), and ``tol=0`` so both
run exactly ``iters`` iterations. We time the whole ``fit`` call: the median over
``repeats`` after one warm-up call (which compiles gmmjax's loop), and report the time
per iteration and the ratio. gmmjax runs in float32 by default, in float64 under
``JAX_ENABLE_X64=1``; scikit-learn on float64 data.

Usage::

    python benchmarks/bench_bayes.py --quick                  # small grid, a few minutes
    python benchmarks/bench_bayes.py --n 100000 --iters 10    # one size, the whole grid
    JAX_ENABLE_X64=1 python benchmarks/bench_bayes.py --quick # gmmjax in float64

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time
import warnings

import jax
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as SkBGMM
from threadpoolctl import threadpool_limits

from gmmjax.sklearn.bayesian_mixture import BayesianGaussianMixture


def _data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 4.0
    return centers[rng.integers(0, k, n)] + rng.normal(size=(n, d))


def _median_fit(cls, x, kw, repeats):
    ts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cls(**kw).fit(x)  # warm-up (compiles gmmjax's loop)
        for _ in range(repeats):
            t0 = time.perf_counter()
            est = cls(**kw).fit(x)
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts), est


def run_case(n, d, k, cov, prior, iters, repeats, sk_threads):
    x = _data(n, d, k)
    kw = dict(
        n_components=k,
        covariance_type=cov,
        weight_concentration_prior_type=prior,
        init_params="random_from_data",
        random_state=0,
        max_iter=iters,
        tol=0.0,
    )
    t_j, ours = _median_fit(BayesianGaussianMixture, x, kw, repeats)
    with threadpool_limits(sk_threads):
        t_s, ref = _median_fit(SkBGMM, x, kw, repeats)
    lb_ref = float(np.ravel(ref.lower_bound_)[0])
    lb_gap = abs(ours.lower_bound_ - lb_ref) / abs(lb_ref)
    return t_j / iters, t_s / iters, lb_gap


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[100_000])
    ap.add_argument("--d", type=int, nargs="+", default=[2, 16])
    ap.add_argument("--k", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--cov", nargs="+", default=["full", "diag"])
    ap.add_argument("--prior", nargs="+", default=["dirichlet_process"])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sk-threads", type=int, default=1, help="BLAS threads for sklearn")
    ap.add_argument("--quick", action="store_true", help="N=2e4, D in (2, 16), K=16")
    a = ap.parse_args()
    if a.quick:
        a.n, a.d, a.k = [20_000], [2, 16], [16]
    dt = "float64" if jax.config.jax_enable_x64 else "float32"
    print(
        f"machine: {platform.processor() or platform.machine()}, jax {jax.__version__} "
        f"({jax.default_backend()}), gmmjax in {dt}, sklearn BLAS threads {a.sk_threads}"
    )
    print(
        "| N | D | K | cov | prior | iters | gmmjax s/iter | sklearn s/iter | speed-up "
        "| lower bound rel. gap |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, d, k, cov, prior in itertools.product(a.n, a.d, a.k, a.cov, a.prior):
        tj, ts, gap = run_case(n, d, k, cov, prior, a.iters, a.repeats, a.sk_threads)
        short = "DP" if prior == "dirichlet_process" else "Dir"
        print(
            f"| {n:.0e} | {d} | {k} | {cov} | {short} | {a.iters} | {tj:.4f} | {ts:.4f} "
            f"| {ts / tj:.1f}× | {gap:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
