"""Private helpers shared by the deterministic divergences (bounds, closed forms, quadrature).

* :func:`check_pair` and :func:`map_pairs`: argument checks with clear messages, and
  broadcasting of two (possibly batched) mixtures, so that every public function is
  written for one unbatched pair and ``vmap`` does the batching.
* :func:`dense`: one mixture as dense arrays ``(log w, μ, L, Σ)`` of shapes
  ``(K,), (K, D), (K, D, D), (K, D, D)``; a univariate mixture becomes ``D = 1``.
* :func:`pairwise_kl`, :func:`pairwise_log_overlap`, :func:`pairwise_log_bc`: the
  ``(K_a, K_b)`` matrices of closed forms between the components of two mixtures.
  These are small batched Choleskys / triangular solves (``K_a·K_b`` of size ``D``),
  never per-sample solves.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gmmjax._validate import describe
from gmmjax.gaussian import cholesky_factors, gaussian_kl, log_gaussian_overlap
from gmmjax.mixture import GaussianMixture


class Dense(NamedTuple):
    """A mixture as dense arrays (``D = 1`` for a univariate mixture)."""

    logw: jax.Array  # (K,)
    loc: jax.Array  # (K, D)
    tril: jax.Array  # (K, D, D) lower Cholesky factors
    cov: jax.Array  # (K, D, D)


def check_pair(p, q, name: str) -> tuple[int, ...]:
    """Check two mixtures for a divergence and return their broadcast batch shape.

    Raises:
      TypeError: ``p`` or ``q`` is not a :class:`gmmjax.GaussianMixture`.
      ValueError: the event shapes differ, or the batch shapes do not broadcast.
    """
    for label, m in (("p", p), ("q", q)):
        if not isinstance(m, GaussianMixture):
            raise TypeError(
                f"{name}: `{label}` must be a gmmjax.GaussianMixture (or a fitted scikit-learn "
                f"mixture), got {describe(m)}; build one with GaussianMixture(weights, locs, "
                "covariance_matrix=...)"
            )
    if p.event_shape != q.event_shape:
        raise ValueError(
            f"{name}: p and q must live in the same space, got p.event_shape={p.event_shape} "
            f"and q.event_shape={q.event_shape} (a univariate mixture has event_shape (), a "
            "D-dimensional one (D,)); compare mixtures of the same dimension"
        )
    try:
        return tuple(jnp.broadcast_shapes(p.batch_shape, q.batch_shape))
    except ValueError:
        raise ValueError(
            f"{name}: the batch shapes of p {p.batch_shape} and q {q.batch_shape} do not "
            "broadcast; give them equal (or broadcastable) batch shapes"
        ) from None


@functools.lru_cache(maxsize=256)
def _compiled(fn, n_batch: int, static: tuple):
    """One jitted, ``n_batch``-times vmapped version of ``fn`` per static configuration."""
    kw = dict(static)

    def run(p, q, *arrays):
        f = lambda pp, qq: fn(pp, qq, *arrays, **kw)  # noqa: E731
        for _ in range(n_batch):
            f = jax.vmap(f)
        return f(p, q)

    return jax.jit(run)


def map_pairs(fn, p, q, name: str, *arrays, **static):
    """Apply ``fn(p, q, *arrays, **static)`` (written for one unbatched pair) over the batch.

    ``arrays`` are traced and shared by every pair of the batch; ``static`` values must
    be hashable (they select a compiled version). The whole computation is one ``jit``,
    so eager calls compile once per shape instead of dispatching op by op.
    """
    batch = check_pair(p, q, name)
    if batch and p.batch_shape != batch:
        p = p.expand(batch)
    if batch and q.batch_shape != batch:
        q = q.expand(batch)
    run = _compiled(fn, len(batch), tuple(sorted(static.items())))
    return run(p, q, *arrays)


def dense(m: GaussianMixture) -> Dense:
    """Dense ``(log w, μ, L, Σ)`` of one unbatched mixture; univariate becomes ``D = 1``."""
    if m.covariance_type == "univariate":
        loc = m.locs[:, None]
        tril = m.component_scale_tril[:, None, None]
    else:
        loc = m.locs
        tril = m.component_scale_tril
    cov = tril @ jnp.swapaxes(tril, -1, -2)
    return Dense(m.log_weights, loc, tril, cov)


def entropies(a: Dense) -> jax.Array:
    """``(K,)`` component entropies ``½ D (1 + log 2π) + log|L|``."""
    d = a.loc.shape[-1]
    log_det = jnp.sum(jnp.log(jnp.diagonal(a.tril, axis1=-2, axis2=-1)), axis=-1)
    return 0.5 * d * (1.0 + math.log(2.0 * math.pi)) + log_det


def pairwise_kl(a: Dense, b: Dense) -> jax.Array:
    """``(K_a, K_b)`` matrix ``KL(N_a ‖ N_b)``."""
    return gaussian_kl(a.loc[:, None], a.tril[:, None], b.loc[None], b.tril[None], univariate=False)


def pairwise_log_overlap(a: Dense, b: Dense, extra_var: float | jax.Array = 0.0) -> jax.Array:
    """``(K_a, K_b)`` matrix ``log ∫ N_a N_b = log N(μ_a; μ_b, Σ_a + Σ_b + extra_var·I)``."""
    cov_b = b.cov
    if not (isinstance(extra_var, float) and extra_var == 0.0):
        d = b.loc.shape[-1]
        cov_b = cov_b + extra_var * jnp.eye(d, dtype=cov_b.dtype)
    return log_gaussian_overlap(
        a.loc[:, None], a.cov[:, None], b.loc[None], cov_b[None], univariate=False
    )


def pairwise_log_bc(a: Dense, b: Dense) -> jax.Array:
    """``(K_a, K_b)`` log Bhattacharyya coefficients ``log ∫ √(N_a N_b)``.

    ``-log BC = ⅛ δᵀ S⁻¹ δ + ½ log|S| - ¼ log|Σ_a| - ¼ log|Σ_b|`` with
    ``S = (Σ_a + Σ_b)/2`` and ``δ = μ_a - μ_b`` (Bhattacharyya 1943).
    """
    s = 0.5 * (a.cov[:, None] + b.cov[None])
    chol, chol_inv = cholesky_factors(s)
    delta = a.loc[:, None] - b.loc[None]
    z = (chol_inv @ delta[..., None])[..., 0]
    logdet_s = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    logdet_a = 2.0 * jnp.sum(jnp.log(jnp.diagonal(a.tril, axis1=-2, axis2=-1)), axis=-1)
    logdet_b = 2.0 * jnp.sum(jnp.log(jnp.diagonal(b.tril, axis1=-2, axis2=-1)), axis=-1)
    dist = (
        0.125 * jnp.sum(z * z, axis=-1)
        + 0.5 * logdet_s
        - 0.25 * logdet_a[:, None]
        - 0.25 * logdet_b[None, :]
    )
    return -dist


def weighted_logsumexp(logw: jax.Array, log_terms: jax.Array) -> jax.Array:
    """``log Σ_b w_b exp(t_ab)`` over the last axis: ``(K_a,)``."""
    return jax.scipy.special.logsumexp(logw[None, :] + log_terms, axis=-1)
