"""Study: deterministic KL approximations and bounds against long Monte Carlo runs.

A fixed suite of random mixture pairs (``--pairs`` per dimension, default 50) in
D = 1, 2, 8 and 32. For each pair the "truth" is

* D = 1: ``kl_reference_1d`` (composite Gauss–Legendre, ~1e-10 in float64), checked
  against the Monte Carlo run;
* D = 2: ``kl_quadrature`` with 64² Gauss–Hermite points per component (~1e-6);
* D = 8, 32: a long stratified Monte Carlo run (``--mc`` samples, equal allocation over
  p's components, estimator Σ_a π_a mean_j [log p - log q](x_aj), standard error
  √(Σ_a π_a² s_a² / n_a)).

For every approximation and bound it reports the mean and worst absolute error, how
often each bound holds (a bound "holds" when it is on the right side of the truth
within 3 standard errors of the truth: with MC truth the comparison has that
uncertainty), the bracket width, and the time per pair relative to a Monte Carlo
estimate of equal error (MC needs N = (σ/err)² samples, σ the per-sample standard
deviation; its time is modelled as t0 + N·t_s with the overhead t0 and the per-sample
time t_s both measured on the same machine, jitted, median of 5 after a warm-up).

Run: ``python benchmarks/study_bounds.py`` (float64; about 5 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

# jax 0.10.2 on a 2-core CPU can deadlock in jits with several batched triangular solves
# (shared/notes/jax_cpu_trsm_deadlock.py); one run of this study hung in kl_quadrature on
# D=32 pairs. The non-concurrent scheduler avoids it (set before jax starts).
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from gmmjax import (  # noqa: E402
    GaussianMixture,
    kl_bounds,
    kl_quadrature,
    kl_reference_1d,
)

APPROX = ("gaussian", "product", "matched", "variational", "unscented", "durrieu_mean")
BOUNDS_LO = ("durrieu_lower", "bhattacharyya_lower", "lower")
BOUNDS_UP = ("durrieu_upper", "variational_upper", "upper")
KP, KQ = 4, 3


def make_suite(d: int, n: int, seed: int):
    """``n`` pairs (p with KP, q with KQ full-covariance components) as batched mixtures."""
    rng = np.random.default_rng(seed)
    spreads = np.array([0.3, 1.0, 2.0])[np.arange(n) % 3]

    def draw(k):
        w = rng.dirichlet(np.full(k, 2.0), size=n)
        m = rng.normal(size=(n, k, d)) * spreads[:, None, None]
        a = rng.normal(size=(n, k, d, d))
        qm, _ = np.linalg.qr(a)
        ev = np.exp(rng.uniform(np.log(0.3), np.log(1.5), (n, k, d))) ** 2
        c = np.einsum("nkij,nkj,nklj->nkil", qm, ev, qm)
        if d == 1:
            m, c = m[..., 0], c[..., 0, 0]
        return GaussianMixture(jnp.asarray(w), jnp.asarray(m), jnp.asarray(c))

    return draw(KP), draw(KQ)


def _sample_comp(key, p, n_per):
    """``(K, n_per, D)`` draws from each component of one unbatched mixture."""
    if p.covariance_type == "univariate":
        z = jax.random.normal(key, (p.n_components, n_per))
        return p.locs[:, None] + p.scale_param[:, None] * z
    z = jax.random.normal(key, (p.n_components, n_per, p.dim))
    return p.locs[:, None, :] + jnp.einsum("kde,kne->knd", p.component_scale_tril, z)


def _mc_one(key, p, q, n_per: int, chunks: int):
    """Stratified MC of KL(p‖q): (estimate, stderr, per-sample sd equivalent)."""

    def body(carry, k):
        s1, s2 = carry
        x = _sample_comp(k, p, n_per)
        h = p.log_prob(x) - q.log_prob(x)  # (K, n_per)
        return (s1 + h.sum(-1), s2 + (h * h).sum(-1)), None

    zeros = jnp.zeros(p.n_components)
    (s1, s2), _ = jax.lax.scan(body, (zeros, zeros), jax.random.split(key, chunks))
    n = n_per * chunks
    mean_a = s1 / n
    var_a = jnp.maximum(s2 / n - mean_a**2, 0.0) * n / (n - 1)
    w = p.weights
    est = jnp.sum(w * mean_a)
    se = jnp.sqrt(jnp.sum(w**2 * var_a / n))
    # the sd σ with se = σ/√(total samples), to price MC runs of other lengths
    sigma = se * jnp.sqrt(n * p.n_components)
    return est, se, sigma


def mc_batch(p, q, key, n_total: int, n_per: int):
    chunks = max(1, n_total // (n_per * KP))
    fn = jax.jit(jax.vmap(lambda k, pp, qq: _mc_one(k, pp, qq, n_per, chunks)))
    keys = jax.random.split(key, p.batch_shape[0])
    return [np.asarray(a) for a in fn(keys, p, q)]


def _median_time(fn, *args, repeats=5):
    jax.block_until_ready(fn(*args))  # compile + warm up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _take(m, i):
    return jax.tree_util.tree_map(lambda a: a[i], m)


def study_dim(d, n_pairs, n_mc, seed):
    p, q = make_suite(d, n_pairs, seed)
    key = jax.random.key(seed)
    est, se, sigma = mc_batch(p, q, key, n_mc, n_per=4096 if d < 32 else 1024)
    b = jax.jit(kl_bounds)(p, q)
    quad = np.asarray(jax.jit(kl_quadrature)(p, q))
    if d == 1:
        truth = np.asarray(jax.jit(kl_reference_1d)(p, q))
        truth_se = np.zeros_like(truth)
        truth_name = "kl_reference_1d"
    elif d == 2:
        truth = np.asarray(jax.jit(lambda a, c: kl_quadrature(a, c, order=128))(p, q))
        truth_se = np.zeros_like(truth)
        truth_name = "Gauss–Hermite 128²"
    else:
        truth, truth_se, truth_name = est, se, f"MC {n_mc:.0e}"
    mc_z = np.abs(est - truth) / np.maximum(se, 1e-300)

    # timing: one unbatched pair, jitted, median after warm-up
    p0, q0 = _take(p, 0), _take(q, 0)
    t_bounds = _median_time(jax.jit(kl_bounds), p0, q0)
    t_quad = _median_time(jax.jit(kl_quadrature), p0, q0)
    # MC cost model t(N) = t0 + N·t_s: t0 from a run with one sample per component
    # (compiled, so it is the dispatch/launch overhead), t_s from a 2^16-sample run
    n_t = 2**16
    mc_fn = jax.jit(lambda k, a, c: _mc_one(k, a, c, n_t // KP, 1))
    mc_fn0 = jax.jit(lambda k, a, c: _mc_one(k, a, c, 2, 1))
    t_mc0 = _median_time(mc_fn0, key, p0, q0)
    t_mc_sample = max(_median_time(mc_fn, key, p0, q0) - t_mc0, 0.0) / n_t

    rows = {}
    margin = 3.0 * truth_se
    vals = {name: np.asarray(getattr(b, name)) for name in b._fields}
    vals["quadrature"] = quad
    for name in (*APPROX, "quadrature", *BOUNDS_LO, *BOUNDS_UP):
        v = vals[name]
        err = np.abs(v - truth)
        t = t_quad if name == "quadrature" else t_bounds
        # MC samples for the same mean abs error, and the time they take
        n_equal = (sigma / np.maximum(err, 1e-12)) ** 2
        ratio = t / (t_mc0 + n_equal * t_mc_sample)
        row = {
            "mean_abs_err": float(err.mean()),
            "worst_abs_err": float(err.max()),
            "mean_rel_err": float(np.mean(err / np.maximum(np.abs(truth), 1e-3))),
            "time_ratio_median": float(np.median(ratio)),
        }
        if name in BOUNDS_LO:
            row["holds"] = float(np.mean(v <= truth + margin))
        if name in BOUNDS_UP:
            row["holds"] = float(np.mean(v >= truth - margin))
        rows[name] = row
    width = vals["upper"] - vals["lower"]
    return {
        "D": d,
        "pairs": n_pairs,
        "truth": truth_name,
        "kl_median": float(np.median(truth)),
        "kl_range": [float(truth.min()), float(truth.max())],
        "mc_se_median": float(np.median(se)),
        "mc_vs_truth_max_z": float(mc_z.max()) if d <= 2 else None,
        "bracket_width_median": float(np.median(width)),
        "bracket_width_rel_median": float(np.median(width / np.maximum(truth, 1e-3))),
        "t_bounds_ms": 1e3 * t_bounds,
        "t_quad_ms": 1e3 * t_quad,
        "t_mc_per_sample_us": 1e6 * t_mc_sample,
        "t_mc_overhead_ms": 1e3 * t_mc0,
        "rows": rows,
    }


def to_markdown(results, args):
    out = []
    out.append(
        f"Machine: {platform.machine()} CPU ({jax.device_count()} device(s): "
        f"{jax.devices()[0].device_kind}), jax {jax.__version__}, float64. "
        f"Command: `python benchmarks/study_bounds.py --pairs {args.pairs} --mc {args.mc:.0e}`.\n"
    )
    out.append(
        "| D | truth | median KL [min, max] | bracket width (median, rel.) | MC se | "
        "kl_bounds ms/pair | kl_quadrature ms/pair | MC overhead ms | MC µs/sample |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        out.append(
            f"| {r['D']} | {r['truth']} | {r['kl_median']:.3g} [{r['kl_range'][0]:.2g}, "
            f"{r['kl_range'][1]:.3g}] | {r['bracket_width_median']:.3g} "
            f"({100 * r['bracket_width_rel_median']:.0f}%) | {r['mc_se_median']:.2g} | "
            f"{r['t_bounds_ms']:.2f} | {r['t_quad_ms']:.2f} | {r['t_mc_overhead_ms']:.2f} | "
            f"{r['t_mc_per_sample_us']:.3f} |"
        )
    out.append("")
    names = (*APPROX, "quadrature", *BOUNDS_LO, *BOUNDS_UP)
    hdr = "| quantity | " + " | ".join(f"D={r['D']}" for r in results) + " |"
    for title, key, fmt in (
        ("mean abs. error (nats)", "mean_abs_err", "{:.3g}"),
        ("worst abs. error (nats)", "worst_abs_err", "{:.3g}"),
        ("mean rel. error", "mean_rel_err", "{:.2%}"),
        ("time / time of MC with equal error (median over pairs)", "time_ratio_median", "{:.2g}"),
    ):
        out.append(f"**{title}**\n")
        out.append(hdr.replace("quantity", "approximation"))
        out.append("|---" * (len(results) + 1) + "|")
        for n in names:
            cells = [fmt.format(r["rows"][n][key]) for r in results]
            out.append(f"| `{n}` | " + " | ".join(cells) + " |")
        out.append("")
    out.append("**bound holds (fraction of pairs; margin 3·se of the truth)**\n")
    out.append(hdr.replace("quantity", "bound"))
    out.append("|---" * (len(results) + 1) + "|")
    for n in (*BOUNDS_LO, *BOUNDS_UP):
        out.append(
            f"| `{n}` | " + " | ".join(f"{r['rows'][n]['holds']:.0%}" for r in results) + " |"
        )
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--mc", type=float, default=2**21)
    ap.add_argument("--dims", type=int, nargs="+", default=[1, 2, 8, 32])
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    results = []
    for i, d in enumerate(args.dims):
        t0 = time.perf_counter()
        results.append(study_dim(d, args.pairs, int(args.mc), seed=1000 + i))
        print(f"D={d} done in {time.perf_counter() - t0:.0f}s", flush=True)
    md = to_markdown(results, args)
    print(md)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
