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
