"""The benchmark suite: gmmjax against its peers, each contender in its own process.

Workloads (full covariances, float32, mixtures from ``_params``):

* ``log_prob``: ``log p(x)`` of N = 10⁵ points (kernel throughput; FLOPs counted as
  ``2·N·K·D²``, reported as a fraction of the same machine's GEMM rate);
* ``kl``: Monte Carlo KL(p‖q) at N = 10⁵ (gmmjax: the plain call, default method);
* ``vag``: ``value_and_grad`` of that KL over the parameters of p and q;
* ``em``: one EM iteration on 10⁵ points from given parameters;
* ``compile``: seconds from a cold process to the first KL result.

Contenders: ``gmmjax``; ``handjax`` (a hand-written JAX precision-Cholesky kernel with
iid sampling, the "write it yourself" baseline); ``numpyro`` (``MixtureSameFamily`` of
``MultivariateNormal``); ``tfp`` (TFP-JAX ``MixtureSameFamily`` via ``tfp-nightly``,
``pip install 'gmmjax[bench]'``); ``sklearn`` (the seed recipe: ``sample`` then
``score_samples`` twice; one ``fit`` iteration for EM); ``torch`` (CPU,
``torch.distributions.MixtureSameFamily`` of ``MultivariateNormal``, eager; its
mixture has no ``rsample``, so ``vag`` differentiates the log-densities at detached
samples). Every timing is the median over warm runs after a first call that compiles;
every row's ratios come from the same run. ``--cap`` bounds single cells (TFP's
``value_and_grad`` runs for minutes).

Usage (from the repository root):
  PYTHONPATH=. python benchmarks/run.py --quick            # a few minutes on 2 cores
  PYTHONPATH=. python benchmarks/run.py                    # the whole grid (long)
  PYTHONPATH=. python benchmarks/run.py --gpu              # on a GPU machine, < 10 min
  PYTHONPATH=. python benchmarks/run.py --quick --write    # also update RESULTS.md
  PYTHONPATH=. python benchmarks/run.py --worker gmmjax --workload kl --size 16,32
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZES = [(1, 3), (2, 5), (16, 32), (64, 64)]
WORKLOADS = ["log_prob", "kl", "vag", "em", "compile"]
CONTENDERS = ["gmmjax", "handjax", "numpyro", "tfp", "torch", "sklearn"]
SUPPORTS = {
    "gmmjax": set(WORKLOADS),
    "handjax": {"log_prob", "kl", "vag", "compile"},
    "numpyro": {"log_prob", "kl", "vag", "compile"},
    "tfp": {"log_prob", "kl", "vag", "compile"},
    "torch": {"log_prob", "kl", "vag", "compile"},
    "sklearn": {"log_prob", "kl", "em"},
}
PEERS = ("numpyro", "tfp", "torch", "sklearn")  # the "best peer" column
# NumPyro's and TFP's mixtures meet jax 0.10.2's CPU triangular-solve deadlock without it
BASELINE_FLAGS = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
SECTION = "performance"
WARM_CALLS = 3  # untimed calls of a JAX contender before its timed ones


def _params(d, k, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(k))
    mu = 2.0 * rng.normal(size=(k, d))
    a = rng.normal(size=(k, d, d)) * 0.3 / np.sqrt(d)
    tril = np.tril(a, -1) + np.eye(d) * np.exp(0.2 * rng.normal(size=(k, 1, 1)))
    return w.astype("float32"), mu.astype("float32"), tril.astype("float32")


def _median(fn, repeats):
    ts = []
    for r in range(repeats):
        t = time.perf_counter()
        fn(r + 1)
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


# ----------------------------------------------------------------- contenders
def _jax_contender(name, d, k, n):
    """``(log_prob_fn(x), kl_fn(key), vag_fn(key), em_fn(x) | None)`` for a JAX contender."""
    import jax
    import jax.numpy as jnp

    pw, pm, pl = (jnp.asarray(a) for a in _params(d, k, 0))
    qw, qm, ql = (jnp.asarray(a) for a in _params(d, k, 1))
    if name == "gmmjax":
        import gmmjax as g

        p = g.GaussianMixture(pw, pm, scale_tril=pl)
        q = g.GaussianMixture(qw, qm, scale_tril=ql)
        lp = jax.jit(lambda p, x: p.log_prob(x))
        vag = jax.jit(jax.value_and_grad(lambda pq, key: g.kl_divergence(*pq, key, n), argnums=0))

        def em(x):
            cov = g.GaussianMixture(pw, pm, scale_tril=pl).component_covariance_matrix
            prec = jnp.linalg.inv(cov)
            return g.fit_em(x, k, key=jax.random.key(0), max_iter=1, weights_init=pw,
                            means_init=pm, precisions_init=prec).log_likelihood  # fmt: skip

        return (
            lambda x: lp(p, x),
            lambda key: g.kl_estimate(p, q, key, n).value,  # the plain call: compiled by default
            lambda key: vag((p, q), key),
            em,
        )
    if name == "handjax":

        def log_prob(w, m, l, x):
            # precision Cholesky by triangular solve, then one GEMM per component batch
            prec = jax.scipy.linalg.solve_triangular(l, jnp.broadcast_to(jnp.eye(d), l.shape),
                                                     lower=True)  # fmt: skip
            y = jnp.einsum("nd,ked->nke", x, prec) - jnp.einsum("kd,ked->ke", m, prec)
            logdet = -jnp.sum(jnp.log(jnp.diagonal(l, axis1=-2, axis2=-1)), -1)
            comp = -0.5 * jnp.sum(y * y, -1) + logdet - 0.5 * d * jnp.log(2 * jnp.pi)
            return jax.nn.logsumexp(comp + jnp.log(w), -1)

        def sample(w, m, l, key):
            k1, k2 = jax.random.split(key)
            c = jax.random.categorical(k1, jnp.log(w), shape=(n,))
            z = jax.random.normal(k2, (n, d))
            return m[c] + jnp.einsum("nde,ne->nd", l[c], z)

        def kl(params, key):
            (pw_, pm_, pl_), (qw_, qm_, ql_) = params
            x = sample(pw_, pm_, pl_, key)
            return jnp.mean(log_prob(pw_, pm_, pl_, x) - log_prob(qw_, qm_, ql_, x))

        params = ((pw, pm, pl), (qw, qm, ql))
        lp = jax.jit(lambda x: log_prob(pw, pm, pl, x))
        klj = jax.jit(kl)
        vag = jax.jit(jax.value_and_grad(kl))
        return lp, lambda key: klj(params, key), lambda key: vag(params, key), None
    if name in ("numpyro", "tfp"):
        if name == "numpyro":
            import numpyro.distributions as dist

            def mk(w, m, l):
                return dist.MixtureSameFamily(
                    dist.Categorical(probs=w), dist.MultivariateNormal(m, scale_tril=l)
                )

            draw = lambda p, key: p.sample(key, (n,))  # noqa: E731
        else:
            from tensorflow_probability.substrates import jax as tfp

            tfd = tfp.distributions

            def mk(w, m, l):
                return tfd.MixtureSameFamily(
                    tfd.Categorical(probs=w), tfd.MultivariateNormalTriL(m, l)
                )

            draw = lambda p, key: p.sample(n, seed=key)  # noqa: E731

        def kl(params, key):
            p, q = mk(*params[0]), mk(*params[1])
            x = draw(p, key)
            return jnp.mean(p.log_prob(x) - q.log_prob(x))

        params = ((pw, pm, pl), (qw, qm, ql))
        lp = jax.jit(lambda x: mk(pw, pm, pl).log_prob(x))
        klj = jax.jit(kl)
        vag = jax.jit(jax.value_and_grad(kl))
        return lp, lambda key: klj(params, key), lambda key: vag(params, key), None
    raise ValueError(name)


def _points(d, n, seed=5):
    import numpy as np

    w, m, l = _params(d, 3 if d > 0 else 1, seed)
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * 2.0).astype("float32")


def worker(name, workload, d, k, n, repeats):
    """One cell in this process; returns seconds (median) or the first-result time."""
    t_start = time.perf_counter()
    if name == "sklearn":
        return _sklearn(workload, d, k, n, repeats)
    if name == "torch":
        return _torch(workload, d, k, n, repeats, t_start)
    if name == "gemm":
        return _gemm(repeats)
    import jax

    lp, kl, vag, em = _jax_contender(name, d, k, n)
    if workload == "compile":
        jax.block_until_ready(kl(jax.random.key(0)))
        return time.perf_counter() - t_start
    if workload == "log_prob":
        import jax.numpy as jnp

        x = jnp.asarray(_points(d, n))
        for _ in range(WARM_CALLS):
            jax.block_until_ready(lp(x))
        return _median(lambda r: jax.block_until_ready(lp(x)), repeats)
    if workload == "em":
        import jax.numpy as jnp

        x = jnp.asarray(_points(d, n))
        jax.block_until_ready(em(x))
        return _median(lambda r: jax.block_until_ready(em(x)), repeats)
    fn = kl if workload == "kl" else vag
    # the compiling call, then two more: the first two warm calls of a JAX program took
    # about twice the later ones on the 2-core box (7.1, 8.0, then 3.3-3.9 ms at D = 2),
    # which a median of 3 would report
    for w in range(WARM_CALLS):
        jax.block_until_ready(fn(jax.random.key(10_000 + w)))
    return _median(lambda r: jax.block_until_ready(fn(jax.random.key(r))), repeats)


def _sklearn(workload, d, k, n, repeats):
    import numpy as np
    from sklearn.mixture import GaussianMixture

    def mk(w, m, l):
        gm = GaussianMixture(k, covariance_type="full", random_state=0)
        cov = l.astype(np.float64) @ np.swapaxes(l, -1, -2).astype(np.float64)
        gm.weights_, gm.means_, gm.covariances_ = w.astype(np.float64), m.astype(np.float64), cov
        gm.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(cov))
        return gm

    p, q = mk(*_params(d, k, 0)), mk(*_params(d, k, 1))
    if workload == "log_prob":
        x = _points(d, n).astype(np.float64)
        return _median(lambda r: p.score_samples(x), repeats)
    if workload == "kl":

        def f(r):
            p.random_state = r
            x = p.sample(n)[0]
            return np.mean(p.score_samples(x) - q.score_samples(x))

        return _median(f, repeats)
    if workload == "em":
        x = _points(d, n).astype(np.float64)
        w, m, _ = _params(d, k, 0)
        prec = np.linalg.inv(p.covariances_)
        w = w.astype(np.float64) / w.astype(np.float64).sum()
        gm = GaussianMixture(k, max_iter=1, tol=0.0, weights_init=w,
                             means_init=m.astype(np.float64), precisions_init=prec)  # fmt: skip
        import warnings

        warnings.simplefilter("ignore")  # ConvergenceWarning after one iteration
        return _median(lambda r: gm.fit(x), repeats)
    raise ValueError(workload)


def _torch(workload, d, k, n, repeats, t_start):
    import torch

    td = torch.distributions

    def mk(w, m, l):
        return td.MixtureSameFamily(
            td.Categorical(probs=w), td.MultivariateNormal(m, scale_tril=l), validate_args=False
        )

    pp = [torch.tensor(a, requires_grad=workload == "vag") for a in _params(d, k, 0)]
    qp = [torch.tensor(a, requires_grad=workload == "vag") for a in _params(d, k, 1)]
    if workload == "log_prob":
        x = torch.from_numpy(_points(d, n))
        with torch.no_grad():
            p = mk(*pp)
            p.log_prob(x)
            return _median(lambda r: p.log_prob(x), repeats)

    def kl(r):
        torch.manual_seed(r)
        p, q = mk(*pp), mk(*qp)
        x = p.sample((n,))  # no rsample for a mixture: detached points
        return torch.mean(p.log_prob(x) - q.log_prob(x))

    if workload in ("kl", "compile"):
        with torch.no_grad():
            kl(0)
            if workload == "compile":
                return time.perf_counter() - t_start
            return _median(kl, repeats)
    if workload == "vag":

        def vag(r):
            for a in pp + qp:
                a.grad = None
            v = kl(r)
            v.backward()
            return v.item(), [a.grad for a in pp + qp]

        vag(0)
        return _median(vag, repeats)
    raise ValueError(workload)


def _gemm(repeats, size=2048):
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    f = jax.jit(lambda a: jnp.dot(a, a, precision="highest"))
    jax.block_until_ready(f(a))
    t = _median(lambda r: jax.block_until_ready(f(a)), repeats)
    return 2.0 * size**3 / t  # FLOP/s


# ------------------------------------------------------------------ driver
def run_cell(name, workload, d, k, n, repeats, timeout):
    """``(seconds, note)`` of one cell, run in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if name in ("numpyro", "tfp"):
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + BASELINE_FLAGS).strip()
    cmd = [sys.executable, __file__, "--worker", name, "--workload", workload,
           "--size", f"{d},{k}", "--n", str(n), "--repeats", str(repeats)]  # fmt: skip
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
        return None, last[:60]
    return json.loads(out.stdout.strip().splitlines()[-1])["value"], ""


def _machine():
    import jax

    dev = jax.devices()[0]
    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, {dev.platform}: {dev.device_kind}; "
        f"python {platform.python_version()}, jax {jax.__version__}"
    )


def _load():
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker")
    ap.add_argument("--workload", default="kl")
    ap.add_argument("--size", default="2,5")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="a subset that runs in minutes")
    ap.add_argument("--gpu", action="store_true", help="the GPU run (one command, < 10 min)")
    ap.add_argument("--sizes", nargs="*", help="D,K pairs, e.g. 2,5 16,32")
    ap.add_argument("--contenders", help="comma-separated subset of " + ",".join(CONTENDERS))
    ap.add_argument("--workloads", help="comma-separated subset of " + ",".join(WORKLOADS))
    ap.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    ap.add_argument("--cap", nargs="*", default=["tfp:vag:120"],
                    help="CONTENDER:WORKLOAD:SECONDS timeouts for single cells")  # fmt: skip
    ap.add_argument("--write", action="store_true", help="replace the section in RESULTS.md")
    a = ap.parse_args(argv)
    if a.worker:
        d, k = map(int, a.size.split(","))
        value = worker(a.worker, a.workload, d, k, a.n, a.repeats)
        print(json.dumps({"value": value}))
        return
    sizes, contenders, workloads, n, repeats = SIZES, CONTENDERS, WORKLOADS, a.n, a.repeats
    if a.quick:
        sizes, n, repeats = [(2, 5), (16, 32)], 100_000, 3
        contenders = list(CONTENDERS)
    if a.gpu:
        contenders = ["gmmjax", "numpyro", "tfp"]
        workloads = ["log_prob", "kl", "vag", "compile"]
        a.timeout, repeats = min(a.timeout, 120), 3
    if a.sizes:
        sizes = [tuple(map(int, s.split(","))) for s in a.sizes]
    if a.contenders:
        contenders = a.contenders.split(",")
    if a.workloads:
        workloads = a.workloads.split(",")
    caps = {tuple(c.split(":")[:2]): int(c.split(":")[2]) for c in a.cap or ()}
    lines = [f"Machine: {_machine()}; load average {_load()} at the start.", ""]
    gemm, note = run_cell("gemm", "gemm", 1, 1, n, repeats, a.timeout)
    lines.append(
        "float32 GEMM rate (2048³ `jnp.dot`, precision highest): "
        + (f"{gemm / 1e9:.1f} GFLOP/s" if gemm else f"n/a ({note})")
    )
    lines += ["", f"N = {n:,}; medians of {repeats} warm runs; seconds.", ""]
    head = "| workload | D | K | " + " | ".join(contenders)
    head += " | best peer / gmmjax | kernel % GEMM | load (1 min) |"
    lines += [head, "|---|---|---|" + "---|" * (len(contenders) + 3)]
    print("\n".join(lines), flush=True)
    for w in workloads:
        for d, k in sizes:
            res = {}
            for c in contenders:
                if w not in SUPPORTS.get(c, ()):
                    res[c] = (None, "-")
                    continue
                reps = repeats if d < 64 else max(2, repeats // 2)
                res[c] = run_cell(c, w, d, k, n, reps, caps.get((c, w), a.timeout))
            g = res.get("gmmjax", (None, ""))[0]
            peers = [v for c, (v, _) in res.items() if c in PEERS and v]
            ratio = f"{min(peers) / g:.1f}×" if g and peers else "-"
            frac = "-"
            if w == "log_prob" and g and gemm:
                frac = f"{100 * 2 * n * k * d * d / g / gemm:.1f}%"
            row = []
            for c in contenders:
                v, v_note = res[c]
                row.append(f"{v:.4g}" if v else ("—" if v_note == "-" else f"n/a: {v_note}"))
            line = f"| {w} | {d} | {k} | " + " | ".join(row)
            line += f" | {ratio} | {frac} | {_load().split()[0]} |"
            lines.append(line)
            print(line, flush=True)
            if a.write:  # after every row, so a run cut short still leaves its rows
                _write(lines, a)
    if a.gpu:  # throughput at scale: one KL estimate of 10⁷ samples at D = K = 64
        big = 10_000_000
        t, note = run_cell("gmmjax", "kl", 64, 64, big, 3, 300)
        line = (
            f"\nKL at N = {big:,}, D = K = 64 (gmmjax, default method): "
            + (f"{t:.3f} s, {big / t / 1e6:.1f} M samples/s" if t else f"n/a ({note})")
            + (
                f"; {100 * 4 * big * 64**3 / t / gemm:.0f}% of GEMM (4·N·K·D², p and q)"
                if t and gemm
                else ""
            )
        )
        lines.append(line)
        print(line, flush=True)
        if a.write:
            _write(lines, a)


def _write(lines, a):
    path = ROOT / "benchmarks" / "RESULTS.md"
    tag = SECTION + ("-gpu" if a.gpu else "")
    cmd = "PYTHONPATH=. python benchmarks/run.py " + " ".join(
        s for s in sys.argv[1:] if s != "--write"
    )
    body = "\n".join(
        [f"<!-- section:{tag} -->", f"## Performance suite ({'GPU' if a.gpu else 'CPU'})", "",
         f"Command: `{cmd.strip()}`.", ""] + lines + ["", f"<!-- /section:{tag} -->"]
    )  # fmt: skip
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pat = re.compile(rf"<!-- section:{tag} -->.*?<!-- /section:{tag} -->", re.S)
    text = pat.sub(body, text) if pat.search(text) else text.rstrip() + "\n\n" + body + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
