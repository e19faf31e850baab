"""Compiled by default: a plain call against the user-jitted one, and the eager path.

Measures, on 1,000 batched pairs (1-D, K = 3 by default) and ``num_samples=1000``:

* ``plain``: ``gmmjax.kl_estimate(p, q, key, 1000)`` as a user writes it;
* ``user-jit``: ``jax.jit(kl_estimate, static_argnames=...)``, the hand-compiled call;
* ``eager``: the undecorated function (``kl_estimate.__wrapped__``), i.e. the
  behaviour before compilation by default.

Each is timed on repeat calls with a fresh key (median of ``--repeats`` after one
warm-up call that compiles). Also counts XLA compilations for each path's first call.

Usage:
  PYTHONPATH=. python benchmarks/bench_compiled.py [--pairs 1000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.monitoring
import jax.numpy as jnp

import gmmjax

_COMPILES = {"n": 0}


def _listener(event, duration, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES["n"] += 1


def _pairs(n_pairs, k, d, seed=0):
    keys = jax.random.split(jax.random.key(seed), 6)
    logits = jax.random.normal(keys[0], (n_pairs, k))
    if d == 1:
        p = gmmjax.GaussianMixture(
            logits=logits,
            locs=jax.random.normal(keys[1], (n_pairs, k)),
            scale=jnp.exp(0.3 * jax.random.normal(keys[2], (n_pairs, k))),
        )
        q = gmmjax.GaussianMixture(
            logits=jax.random.normal(keys[3], (n_pairs, k)),
            locs=jax.random.normal(keys[4], (n_pairs, k)),
            scale=jnp.exp(0.3 * jax.random.normal(keys[5], (n_pairs, k))),
        )
        return p, q
    eye = jnp.broadcast_to(jnp.eye(d), (n_pairs, k, d, d))
    p = gmmjax.GaussianMixture(
        logits=logits, locs=jax.random.normal(keys[1], (n_pairs, k, d)), scale_tril=eye
    )
    q = gmmjax.GaussianMixture(
        logits=jax.random.normal(keys[3], (n_pairs, k)),
        locs=jax.random.normal(keys[4], (n_pairs, k, d)),
        scale_tril=eye,
    )
    return p, q


def _time(fn, repeats):
    before = _COMPILES["n"]
    t0 = time.perf_counter()
    jax.block_until_ready(fn(jax.random.key(100)))
    first = time.perf_counter() - t0
    compiles = _COMPILES["n"] - before
    ts = []
    for r in range(repeats):
        key = jax.random.key(r)
        t0 = time.perf_counter()
        jax.block_until_ready(fn(key))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), first, compiles


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--d", type=int, default=1)
    ap.add_argument("--num-samples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--skip-eager", action="store_true")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args(argv)
    jax.monitoring.register_event_duration_secs_listener(_listener)
    p, q = _pairs(args.pairs, args.k, args.d)
    n = args.num_samples
    user = jax.jit(gmmjax.kl_estimate, static_argnames=("num_samples",))
    paths = {
        "plain": lambda key: gmmjax.kl_estimate(p, q, key, n),
        "user-jit": lambda key: user(p, q, key, num_samples=n),
    }
    if not args.skip_eager:
        paths["eager"] = lambda key: gmmjax.kl_estimate.__wrapped__(p, q, key, n)
    out = {}
    for name, fn in paths.items():
        med, first, compiles = _time(fn, args.repeats)
        out[name] = {"median_s": med, "first_call_s": first, "compiles": compiles}
    out["plain/user-jit"] = out["plain"]["median_s"] / out["user-jit"]["median_s"]
    if "eager" in out:
        out["eager/user-jit"] = out["eager"]["median_s"] / out["user-jit"]["median_s"]
    if args.json:
        print(json.dumps(out))
        return out
    print(f"{args.pairs} pairs, D={args.d}, K={args.k}, num_samples={n}, {jax.devices()[0]}")
    for name in paths:
        r = out[name]
        print(
            f"  {name:9s} median {r['median_s'] * 1e3:8.1f} ms   first call "
            f"{r['first_call_s']:6.2f} s   compilations {r['compiles']}"
        )
    print(f"  plain / user-jit = {out['plain/user-jit']:.2f}")
    if "eager" in out:
        print(f"  eager / user-jit = {out['eager/user-jit']:.2f}")
    return out


if __name__ == "__main__":
    main()
