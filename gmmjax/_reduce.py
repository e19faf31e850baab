"""Reductions over a short last axis, written term by term (private).

XLA's CPU reduction over a short minor axis is slow: summing an ``(N, 2)`` array over
its last axis took 3.6x the time of the one elementwise add, and ``logsumexp`` over
K = 2 to 16 components 1.6-2.1x the unrolled form (benchmarks/RESULTS.md, "Short reductions").
Up to ``_UNROLL_SUM`` (``_UNROLL_LSE``) terms the reductions are written term by term,
which XLA fuses into one loop. The sums run in index order, as numpy's do for so few
terms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_UNROLL_SUM = 8
_UNROLL_LSE = 16


def sum_last(a: jax.Array) -> jax.Array:
    """``a.sum(-1)``, term by term when the last axis is short (see the module docstring)."""
    n = a.shape[-1]
    if n > _UNROLL_SUM:
        return jnp.sum(a, axis=-1)
    out = a[..., 0]
    for i in range(1, n):
        out = out + a[..., i]
    return out


def logsumexp_last(a: jax.Array) -> jax.Array:
    """``logsumexp`` over the last axis; ``-inf`` with gradient 0 (not NaN) where every
    term is ``-inf``.

    A point 1e20 standard deviations from every component has ``log p(x) = -inf`` in
    float32; the divergences handle that value (JS gets its exact ``log 2``), and this
    keeps its gradient finite. Up to ``_UNROLL_LSE`` components the maximum and the sum
    are written term by term (faster on CPU, see the module docstring).

    Example:
      >>> import jax.numpy as jnp
      >>> logsumexp_last(jnp.array([[0.0, 0.0], [-jnp.inf, -jnp.inf]])).tolist()
      [0.6931471824645996, -inf]
    """
    k = a.shape[-1]
    if k > _UNROLL_LSE:
        dead = jnp.all(a == -jnp.inf, axis=-1)
        out = jax.nn.logsumexp(jnp.where(dead[..., None], 0.0, a), axis=-1)
        return jnp.where(dead, -jnp.inf, out)
    cols = [a[..., i] for i in range(k)]
    top = cols[0]
    for c in cols[1:]:
        top = jnp.maximum(top, c)
    dead = top == -jnp.inf
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))
    s = jnp.exp(cols[0] - top)
    for c in cols[1:]:
        s = s + jnp.exp(c - top)
    return jnp.where(dead, -jnp.inf, top + jnp.log(jnp.where(dead, 1.0, s)))
