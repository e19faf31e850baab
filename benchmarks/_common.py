"""Helpers shared by the divergence benchmarks (run as scripts, so this is on sys.path)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

import gmmjax as g


def random_pair(d: int, k: int, seed: int, spread: float = 1.5):
    """Two random K-component full-covariance float32 mixtures in D dimensions: means
    ``spread`` per axis, near-identity covariances (log-scales of sd 0.3)."""
    rng = np.random.default_rng(seed)

    def one():
        w = rng.dirichlet(np.ones(k) * 2)
        mu = spread * rng.normal(size=(k, d))
        a = rng.normal(size=(k, d, d)) * 0.3 / np.sqrt(d)
        tril = np.tril(a, -1) + np.eye(d) * np.exp(0.3 * rng.normal(size=(k, 1, 1)))
        return g.GaussianMixture(
            jnp.asarray(w, jnp.float32),
            jnp.asarray(mu, jnp.float32),
            scale_tril=jnp.asarray(tril, jnp.float32),
        )

    return one(), one()


def median_times(fns: dict, arg, reps: int = 11) -> dict:
    """Median seconds per call of each jitted function after a warm-up call, the
    functions' calls interleaved so that load from other processes hits them alike."""
    for f in fns.values():
        jax.block_until_ready(f(arg))
    ts = {m: [] for m in fns}
    for _ in range(reps):
        for m, f in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(f(arg))
            ts[m].append(time.perf_counter() - t)
    return {m: float(np.median(v)) for m, v in ts.items()}
