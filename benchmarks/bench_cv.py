"""Control variates at D = 8 to 64: samples saved against iid, calibration, cost per sample.

For each pair (random mixtures, and class-conditional fits to scikit-learn's bundled
data sets) and each quantity (KL, JS), every method is run at N = 2¹⁴ over ``--keys``
keys, vmapped inside one jit. The truth is a float64 run of qmc in 1-D and 2-D, cv
above (the KL default; for JS cv is on request) with ``--ref-n`` points (its own
stderr is printed; at 2²⁰ points its RMSE is 1/8 of the N = 2¹⁴ runs', so it
inflates their MSE by about 1.5%).
Columns:

* "saved" = (RMSE_iid / RMSE_method)²: how many times more iid samples the same
  error would take (RMSE ∝ N^-1/2 for iid);
* "cover" = fraction of keys with |estimate − truth| ≤ 3·stderr;
* "cost" = time per call of the method / time per call of iid, at equal N (one key,
  jitted; medians of 11 calls after warm-up, the methods' calls interleaved so that
  load from other processes hits them alike).

usage: python benchmarks/bench_cv.py [--keys 200] [--n 16384] [--ref-n 1048576]
       [--only random8,wine,...] [--quantities KL,JS]
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)  # for the references; the runs stay float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _common import median_times as _times  # noqa: E402

import gmmjax as g  # noqa: E402
from gmmjax.montecarlo.control_variates import auto_method  # noqa: E402

METHODS = ("iid", "qmc", "cv")


def _random_pair(d, k, seed, dtype, spread=1.5):
    rng = np.random.default_rng(seed)

    def one():
        w = rng.dirichlet(np.ones(k) * 2)
        mu = spread * rng.normal(size=(k, d))
        a = rng.normal(size=(k, d, d)) * 0.3 / np.sqrt(d)
        tril = np.tril(a, -1) + np.eye(d) * np.exp(0.3 * rng.normal(size=(k, 1, 1)))
        return w, mu, tril

    return one(), one()


def _fit_pair(name, k):
    """Class-conditional sklearn fits (full covariances) on standardized data."""
    from sklearn import datasets
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture as SkGMM
    from sklearn.preprocessing import StandardScaler

    if name == "wine":
        x, y = datasets.load_wine(return_X_y=True)
        a, b = 0, 1
    elif name == "cancer":
        x, y = datasets.load_breast_cancer(return_X_y=True)
        a, b = 0, 1
    else:  # digits-<dim>: PCA of all digits, then classes 3 and 8
        x, y = datasets.load_digits(return_X_y=True)
        x = PCA(int(name.split("-")[1]), random_state=0).fit_transform(x)
        a, b = 3, 8
    x = StandardScaler().fit_transform(x)
    out = []
    for c in (a, b):
        m = SkGMM(k, covariance_type="full", reg_covar=1e-2, random_state=0).fit(x[y == c])
        out.append((m.weights_, m.means_, np.linalg.cholesky(m.covariances_)))
    return tuple(out)


PAIRS = {
    "random1": lambda dt: _random_pair(1, 3, 1, dt),
    "random2": lambda dt: _random_pair(2, 5, 2, dt),
    "random8": lambda dt: _random_pair(8, 8, 8, dt),
    "random16": lambda dt: _random_pair(16, 8, 16, dt),
    "random16k32": lambda dt: _random_pair(16, 32, 16, dt),
    "random32": lambda dt: _random_pair(32, 8, 32, dt),
    "random64": lambda dt: _random_pair(64, 8, 64, dt),
    # means 0.3 apart per axis: p and q overlap (JS 0.38 and 0.59, not log 2 to float32)
    "random32-s0.3": lambda dt: _random_pair(32, 8, 32, dt, 0.3),
    "random64-s0.3": lambda dt: _random_pair(64, 8, 64, dt, 0.3),
    "random64k4-s0.3": lambda dt: _random_pair(64, 4, 64, dt, 0.3),  # tests/test_cv_high_dim
    "wine": lambda dt: _fit_pair("wine", 2),
    "cancer": lambda dt: _fit_pair("cancer", 2),
    "digits-16": lambda dt: _fit_pair("digits-16", 3),
    "digits-32": lambda dt: _fit_pair("digits-32", 3),
    "digits-64": lambda dt: _fit_pair("digits-64", 3),
}


def _mix(params, dtype):
    w, mu, tril = params
    if mu.shape[1] == 1:  # a univariate mixture
        loc, scale = jnp.asarray(mu[:, 0], dtype), jnp.asarray(tril[:, 0, 0], dtype)
        return g.GaussianMixture(jnp.asarray(w, dtype), loc, scale=scale)
    return g.GaussianMixture(
        jnp.asarray(w, dtype), jnp.asarray(mu, dtype), scale_tril=jnp.asarray(tril, dtype)
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--n", type=int, default=2**14)
    ap.add_argument("--ref-n", type=int, default=2**20)
    ap.add_argument("--only", default=",".join(PAIRS))
    ap.add_argument("--quantities", default="KL,JS")
    a = ap.parse_args()
    print(f"N = {a.n}, {a.keys} keys, truth: float64 default method with {a.ref_n} points\n")
    print(
        "| pair | D | K | quantity | default | truth ± se | "
        + " | ".join(f"RMSE {m}" for m in METHODS)
        + " | saved qmc / cv | cover iid / qmc / cv | cost qmc / cv |"
    )
    print("|---|---|---|---|---|---|" + "---|" * len(METHODS) + "---|---|---|")
    keys = jax.random.split(jax.random.key(0), a.keys)
    for name in a.only.split(","):
        pp, qp = PAIRS[name](None)
        p, q = _mix(pp, jnp.float32), _mix(qp, jnp.float32)
        p64, q64 = _mix(pp, jnp.float64), _mix(qp, jnp.float64)
        d, k = pp[1].shape[1], pp[1].shape[0]
        default = auto_method(d)
        for qname, fn in (("KL", g.kl_estimate), ("JS", g.js_estimate)):
            if qname not in a.quantities.split(","):
                continue
            ref = jax.jit(
                lambda p, q, fn=fn: fn(p, q, jax.random.key(99), a.ref_n, method=default)
            )(p64, q64)
            truth = float(ref.value)
            rmse, cover, ones = {}, {}, {}
            for m in METHODS:
                run = jax.jit(jax.vmap(lambda kk, fn=fn, m=m: fn(p, q, kk, a.n, method=m)))
                est = run(keys)
                v = np.asarray(est.value, np.float64)
                se = np.asarray(est.stderr, np.float64)
                rmse[m] = float(np.sqrt(np.mean((v - truth) ** 2)))
                cover[m] = float(np.mean(np.abs(v - truth) <= 3 * se))
                one = jax.jit(lambda kk, fn=fn, m=m: fn(p, q, kk, a.n, method=m).value)
                ones[m] = one
            cost = _times(ones, keys[0])
            saved = {m: (rmse["iid"] / rmse[m]) ** 2 for m in METHODS}
            print(
                f"| {name} | {d} | {k} | {qname} | {auto_method(d, qname.lower())} "
                f"| {truth:.6g} ± {float(ref.stderr):.1e} | "
                + " | ".join(f"{rmse[m]:.2e}" for m in METHODS)
                + f" | {saved['qmc']:.1f}x / {saved['cv']:.1f}x"
                + f" | {cover['iid']:.3f} / {cover['qmc']:.3f} / {cover['cv']:.3f}"
                + f" | {cost['qmc'] / cost['iid']:.2f} / {cost['cv'] / cost['iid']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
