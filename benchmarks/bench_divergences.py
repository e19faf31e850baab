"""Speed of a Monte Carlo KL(p‖q) at N = 100,000 samples: gmmjax vs sklearn vs NumPyro (vs TFP).

Each contender runs in its own subprocess. The baselines get
``XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false`` (NumPyro's and
TFP's mixtures deadlock on jax 0.10.2 / 2 CPU cores without it, see
``../shared/notes/jax_cpu_trsm_deadlock.py``); gmmjax runs without it.

usage:
  python benchmarks/bench_divergences.py            # the table (markdown) on stdout
  python benchmarks/bench_divergences.py --sizes 1,3 2,5 --repeats 5
  python benchmarks/bench_divergences.py --worker gmmjax-iid --size 16,32   # one cell
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

SIZES = [(1, 3), (2, 5), (16, 32), (64, 64)]
N = 100_000
BASELINE_FLAGS = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
CONTENDERS = ["gmmjax-iid", "gmmjax-default", "gmmjax-grad", "numpyro", "tfp", "sklearn"]


def _params(d, k, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(k))
    mu = 2.0 * rng.normal(size=(k, d))
    a = rng.normal(size=(k, d, d)) * 0.3 / np.sqrt(d)
    tril = np.tril(a, -1) + np.eye(d) * np.exp(0.2 * rng.normal(size=(k, 1, 1)))
    return w.astype("float32"), mu.astype("float32"), tril.astype("float32")


def _time(fn, repeats):
    fn(0)  # warm-up: compiles
    ts = []
    for r in range(repeats):
        t = time.perf_counter()
        fn(r + 1)
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def worker(name, d, k, repeats):
    pw, pm, pl = _params(d, k, 0)
    qw, qm, ql = _params(d, k, 1)
    if name.startswith("gmmjax"):
        import jax
        import jax.numpy as jnp

        import gmmjax as g
        from gmmjax.montecarlo.divergences import DEFAULT_METHOD

        p = g.GaussianMixture(jnp.asarray(pw), jnp.asarray(pm), scale_tril=jnp.asarray(pl))
        q = g.GaussianMixture(jnp.asarray(qw), jnp.asarray(qm), scale_tril=jnp.asarray(ql))
        method = "iid" if name == "gmmjax-iid" else DEFAULT_METHOD
        f = jax.jit(lambda p, q, key: g.kl_divergence(p, q, key, N, method=method))
        if name == "gmmjax-grad":
            f = jax.jit(
                jax.value_and_grad(
                    lambda pq, key: g.kl_divergence(*pq, key, N, method=method), argnums=0
                )
            )
            return _time(lambda r: jax.block_until_ready(f((p, q), jax.random.key(r))), repeats)
        return _time(lambda r: jax.block_until_ready(f(p, q, jax.random.key(r))), repeats)
    if name == "numpyro":
        import jax
        import jax.numpy as jnp
        import numpyro.distributions as dist

        def mk(w, m, l):
            return dist.MixtureSameFamily(
                dist.Categorical(probs=jnp.asarray(w)),
                dist.MultivariateNormal(jnp.asarray(m), scale_tril=jnp.asarray(l)),
            )

        @jax.jit
        def f(key):
            p, q = mk(pw, pm, pl), mk(qw, qm, ql)
            x = p.sample(key, (N,))
            return jnp.mean(p.log_prob(x) - q.log_prob(x))

        return _time(lambda r: jax.block_until_ready(f(jax.random.key(r))), repeats)
    if name == "tfp":
        import jax
        import jax.numpy as jnp
        from tensorflow_probability.substrates import jax as tfp  # noqa: F401

        tfd = tfp.distributions

        def mk(w, m, l):
            return tfd.MixtureSameFamily(
                tfd.Categorical(probs=jnp.asarray(w)),
                tfd.MultivariateNormalTriL(jnp.asarray(m), jnp.asarray(l)),
            )

        @jax.jit
        def f(key):
            p, q = mk(pw, pm, pl), mk(qw, qm, ql)
            x = p.sample(N, seed=key)
            return jnp.mean(p.log_prob(x) - q.log_prob(x))

        return _time(lambda r: jax.block_until_ready(f(jax.random.key(r))), repeats)
    if name == "sklearn":
        import numpy as np
        from sklearn.mixture import GaussianMixture

        def mk(w, m, l):
            gm = GaussianMixture(k, covariance_type="full", random_state=0)
            cov = l.astype(np.float64) @ np.swapaxes(l, -1, -2).astype(np.float64)
            gm.weights_, gm.means_, gm.covariances_ = (
                w.astype(np.float64),
                m.astype(np.float64),
                cov,
            )
            gm.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(cov))
            return gm

        p, q = mk(pw, pm, pl), mk(qw, qm, ql)

        def f(r):
            p.random_state = r
            x = p.sample(N)[0]
            return np.mean(p.score_samples(x) - q.score_samples(x))

        return _time(f, repeats)
    raise ValueError(name)


def run_cell(name, d, k, repeats, timeout=600):
    env = dict(os.environ)
    if not name.startswith("gmmjax"):
        env["XLA_FLAGS"] = BASELINE_FLAGS
    else:
        env.pop("XLA_FLAGS", None)
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--size",
        f"{d},{k}",
        "--repeats",
        str(repeats),
    ]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1][:120] if out.stderr else "failed"
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"], ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--size")
    ap.add_argument("--sizes", nargs="*")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    a = ap.parse_args()
    if a.worker:
        d, k = map(int, a.size.split(","))
        print(json.dumps({"seconds": worker(a.worker, d, k, a.repeats)}))
        return
    sizes = [tuple(map(int, s.split(","))) for s in a.sizes] if a.sizes else SIZES
    names = a.contenders.split(",")
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}"
    )
    print(f"N = {N:,} samples of p; median of {a.repeats} runs after a compile/warm-up run\n")
    print("| D | K | " + " | ".join(names) + " | numpyro / iid | default / iid | grad / value |")
    print("|---|---|" + "---|" * (len(names) + 3))
    for d, k in sizes:
        res, notes = {}, {}
        for n in names:
            res[n], notes[n] = run_cell(n, d, k, a.repeats if d < 64 else max(3, a.repeats // 2))
        cell = lambda n: f"{res[n]:.4f} s" if res[n] else f"n/a ({notes[n][:40]})"  # noqa: E731
        ratio = lambda x, y: f"{res[x] / res[y]:.2f}" if res.get(x) and res.get(y) else "-"  # noqa: E731
        print(
            f"| {d} | {k} | "
            + " | ".join(cell(n) for n in names)
            + f" | {ratio('numpyro', 'gmmjax-iid')} | {ratio('gmmjax-default', 'gmmjax-iid')}"
            + f" | {ratio('gmmjax-grad', 'gmmjax-default')} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
