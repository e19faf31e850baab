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
    if a.shape[-1] > _UNROLL_SUM:
        return jnp.sum(a, axis=-1)
    return _sum_terms(a)


@jax.custom_jvp
def _sum_terms(a):
    out = a[..., 0]
    for i in range(1, a.shape[-1]):
        out = out + a[..., i]
    return out


@_sum_terms.defjvp
def _sum_terms_jvp(primals, tangents):
    # the tangent as one reduction: its transpose is a broadcast, where the transpose of
    # the term-by-term sum is one padded copy per term (value_and_grad of the 2-D KL
    # took 2x as long, benchmarks/RESULTS.md)
    return _sum_terms(primals[0]), jnp.sum(tangents[0], axis=-1)


def logsumexp_last(a: jax.Array) -> jax.Array:
    """``logsumexp`` over the last axis; ``-inf`` with gradient 0 (not NaN) where every
    term is ``-inf``.

    A point 1e20 standard deviations from every component has ``log p(x) = -inf`` in
    float32; the divergences handle that value (JS gets its exact ``log 2``), and this
    keeps its gradient finite. Up to ``_UNROLL_LSE`` components the maximum and the sum
    are written term by term (faster on CPU, see the module docstring); from 5 terms the
    derivative is the softmax, applied as one product and one reduction.

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
    return _lse_terms(a) if k > _AUTODIFF_LSE else _lse_columns(a, stop=True)


def _lse_columns(a, stop: bool):
    """The term-by-term logsumexp; ``stop``: the shift carries no gradient (autodiff)."""
    cols = [a[..., i] for i in range(a.shape[-1])]
    top = cols[0]
    for c in cols[1:]:
        top = jnp.maximum(top, c)
    dead = top == -jnp.inf
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    top = jax.lax.stop_gradient(top) if stop else top
    s = jnp.exp(cols[0] - top)
    for c in cols[1:]:
        s = s + jnp.exp(c - top)
    return jnp.where(dead, -jnp.inf, top + jnp.log(jnp.where(dead, 1.0, s)))


# Up to this many terms autodiff of the term-by-term logsumexp is fastest; from 5 terms on
# its gradient fell off a cliff (10^5 rows: 0.21, 0.35, 0.47 ms at K = 2-4, then 6.2 ms
# at K = 5 and 15.6 ms at K = 8), where the softmax rule of ``_lse_terms`` takes
# 1.2-1.5 ms (benchmarks/RESULTS.md, "Gradients of the short reductions")
_AUTODIFF_LSE = 4


@jax.custom_jvp
def _lse_terms(a):
    return _lse_columns(a, stop=False)


@_lse_terms.defjvp
def _lse_terms_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    out = _lse_terms(a)
    # softmax weights; where every term is -inf, exp(-inf - inf) = 0 (the gradient 0
    # promised above) with the mask on the (..., ) shift, not on every term (3x faster)
    w = jnp.exp(a - jnp.where(out == -jnp.inf, jnp.inf, out)[..., None])
    return out, jnp.sum(w * da, axis=-1)
