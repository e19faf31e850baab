"""Shared test helpers.

``.ci/run`` runs the ``numerics``-marked tests twice: once in float32 (the default)
and once with ``JAX_ENABLE_X64=1``. Tolerances are picked per precision with
:func:`tol`.
"""

import jax
import numpy as np

X64 = bool(jax.config.jax_enable_x64)


def tol(f32: float, f64: float) -> float:
    """The tolerance for the active precision."""
    return f64 if X64 else f32


def random_spd(rng, k, d, jitter=0.5):
    """``(k, d, d)`` well-conditioned SPD matrices."""
    a = rng.normal(size=(k, d, d)) / np.sqrt(d)
    return a @ np.swapaxes(a, -1, -2) + jitter * np.eye(d)


def random_mixture_params(rng, k, d, spread=1.5):
    """``(weights, means, scale_trils)`` of a random full-covariance mixture: means
    ``spread`` per axis, near-identity factors (the pairs of ``benchmarks/bench_cv.py``)."""
    w = rng.dirichlet(np.ones(k) * 2)
    mu = spread * rng.normal(size=(k, d))
    a = rng.normal(size=(k, d, d)) * 0.3 / np.sqrt(d)
    tril = np.tril(a, -1) + np.eye(d) * np.exp(0.3 * rng.normal(size=(k, 1, 1)))
    return w, mu, tril
