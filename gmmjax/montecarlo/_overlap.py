"""Jensen–Shannon by importance sampling on the overlap of ``p`` and ``q`` (private).

The ``"cv"`` method of :func:`gmmjax.js_estimate` for two `GaussianMixture`. With
``m = ½(p + q)``, ``s = p / (p + q)`` and ``H_b`` the binary entropy in nats,

    JS = log 2 - I,    I = E_m[H_b(s)] = ∫ m(x) H_b(s(x)) dx.

Where ``p`` and ``q`` barely overlap, ``H_b(s)`` is 0 except on the rare points of the
overlap, so sampling ``m`` wastes almost every point. ``I`` is estimated instead with
a proposal ``r`` concentrated on the overlap. Two bounds give it:

* ``H_b(s) ≤ 2 log 2 · √(s(1 - s))`` (Lin 1991, Theorem 8 in bits), so
  ``m H_b(s) ≤ log 2 · √(pq)``;
* ``√(pq) ≤ Σ_ab √(w_a v_b N_a N_b)`` (``√`` is subadditive), and
  ``√(N_a(x) N_b(x)) = BC_ab G_ab(x)``: ``G_ab`` is the Gaussian with precision
  ``Π_ab = ½(Λ_a + Λ_b)`` and mean ``Π_ab⁻¹ · ½(Λ_a μ_a + Λ_b μ_b)``, and ``BC_ab`` the
  Bhattacharyya coefficient of the pair.

So with pair weights ``π_ab ∝ √(w_a v_b) BC_ab`` (normalizer ``Z``) the density
``g = Σ_ab π_ab G_ab = Σ_a √(w_a N_a) · Σ_b √(v_b N_b) / Z`` dominates the integrand,
``m H_b(s) ≤ log 2 · Z · g``. Its density costs almost nothing extra: it is read from
the kernel matrices that ``log p`` and ``log q`` need anyway, as
``Σ_ab kept_ab √(w_a N_a(x)) √(v_b N_b(x)) / Z``, one small matrix product. The
proposal is the defensive mixture ``r = (1 - α) g + α m`` (``α = 0.1``), sampled with
one stratum per component (pairs first, then the components of ``p`` and ``q``) and
proportional allocation; the estimate of ``I`` is ``Σ_c ω_c · mean_j[m H_b(s) / r]``
over strata ``c`` of weight ``ω_c``. Every importance ratio is at most
``log 2 · min(Z / (1 - α), 1 / α)``: bounded, so the stratified standard error is
calibrated. ``r`` equals the density the points are drawn from up to the float
rounding of ``log BC_ab`` and of the pair Gaussians' factors (relative ~1e-6 · |log N|
in float32), a bias far below the stderr at the sample sizes measured.

When ``K_p K_q`` exceeds ``2 (K_p + K_q)`` (or the points available), only the pairs
with the largest ``π_ab`` are kept (``kept_ab = 1``), ``g`` is their normalized sum,
and the ratio is bounded by ``log 2 / α``.

Gradients: the proposal, its points and ``r`` carry no gradient; the numerator
``m H_b(s)`` does, through ``log p`` and ``log q`` at fixed points, so the estimate is
exactly differentiable in the weights and means and factors of both mixtures (an
importance-weighted gradient, unbiased for the gradient of ``I``). The value is
clipped to ``[0, log 2]`` (the estimate of ``I`` can exceed ``log 2`` by noise when
``p ≈ q``; the clip only acts within a few stderr of 0).

Measured in ``benchmarks/RESULTS.md`` ("Control variates").

References:
  J. Lin, *Divergence measures based on the Shannon entropy*, IEEE Trans. Inf. Theory
  37 (1991), Theorem 8 (``H ≤ 2√(s(1-s))`` in bits); A. Bhattacharyya, Bull. Calcutta
  Math. Soc. 35 (1943) (the coefficient); T. Hesterberg, *Weighted average importance
  sampling and defensive mixture distributions*, Technometrics 37 (1995) (defensive
  mixtures); Owen, *Monte Carlo theory, methods and examples* (2013), §9.11.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gmmjax._linalg import cholesky_factors
from gmmjax.gaussian import log_gaussian_kernel
from gmmjax.mixture import GaussianMixture
from gmmjax.montecarlo._estimators import _safe_logsumexp, expectation
from gmmjax.montecarlo._surrogates import dense

_LOG2 = math.log(2.0)
_LOG_2PI = math.log(2.0 * math.pi)
ALPHA = 0.1  # defensive fraction of m in the proposal


class Proposal(NamedTuple):
    """The overlap proposal ``r`` (no gradient) and what its log-density needs."""

    mixture: GaussianMixture  # pairs (a, b), then p's and q's components
    kept: jax.Array  # (K_p, K_q) 1.0 for the pairs (a, b) in the mixture, else 0.0
    log_z: jax.Array  # () log Σ_kept √(w_a v_b) BC_ab


def num_pairs(kp: int, kq: int, num_points: int) -> int:
    """Static number of pairs kept: ``min(K_p K_q, 2 (K_p + K_q))``, fewer for few points.

    The strata (pairs and the components of ``p`` and ``q``) are kept to at most a
    quarter of the points, so that some hold two antithetic pairs or more and the
    stderr has a (pooled) variance to use.
    """
    return max(1, min(kp * kq, 2 * (kp + kq), num_points // 4 - kp - kq))


def overlap_proposal(p: GaussianMixture, q: GaussianMixture, num_pairs: int) -> Proposal:
    """The defensive proposal ``(1 - α) Σ_ab π_ab G_ab + α m`` (module docstring).

    Args:
      p, q: unbatched mixtures of the same dimension (any covariance types).
      num_pairs: static number of pairs ``(a, b)`` kept, those of largest ``π_ab``.

    Returns:
      `Proposal`; its mixture has ``num_pairs + K_p + K_q`` full (or univariate)
      components.
    """
    sg = jax.lax.stop_gradient
    dp, dq = (jax.tree_util.tree_map(sg, dense(m)) for m in (p, q))
    kp, kq, d = dp.loc.shape[0], dq.loc.shape[0], dp.loc.shape[-1]
    lam_p = dp.prec @ jnp.swapaxes(dp.prec, -1, -2)
    lam_q = dq.prec @ jnp.swapaxes(dq.prec, -1, -2)
    pi_prec = 0.5 * (lam_p[:, None] + lam_q[None])  # (K_p, K_q, D, D)
    lin = 0.5 * (
        jnp.einsum("ade,ae->ad", lam_p, dp.loc)[:, None] + jnp.einsum("bde,be->bd", lam_q, dq.loc)
    )
    lo, lo_inv = cholesky_factors(pi_prec)  # Π = lo loᵀ, Π⁻¹ = lo⁻ᵀ lo⁻¹
    centre = jnp.einsum("abji,abj->abi", lo_inv, jnp.einsum("abij,abj->abi", lo_inv, lin))
    centre = centre.reshape(kp * kq, d)
    # log BC_ab = ½ ℓ_a(c) + ½ ℓ_b(c) - log G_ab(c) at the centre c of G_ab
    ell_a = log_gaussian_kernel(centre, dp.loc, dp.prec, "full")  # (K_p K_q, K_p)
    ell_b = log_gaussian_kernel(centre, dq.loc, dq.prec, "full")
    rows = jnp.arange(kp * kq)
    ia, ib = rows // kq, rows % kq
    log_g = jnp.sum(jnp.log(jnp.diagonal(lo, axis1=-2, axis2=-1)), -1).reshape(-1)
    log_g = log_g - 0.5 * d * _LOG_2PI
    log_bc = 0.5 * (ell_a[rows, ia] + ell_b[rows, ib]) - log_g
    log_pi = 0.5 * (dp.logw[ia] + dq.logw[ib]) + log_bc
    keep = jnp.argsort(-log_pi)[:num_pairs] if num_pairs < kp * kq else rows
    log_pi, ia, ib = log_pi[keep], ia[keep], ib[keep]
    log_z = jax.nn.logsumexp(log_pi)
    # the factor of G_ab's covariance Π⁻¹ = lo⁻ᵀ lo⁻¹ (LAPACK-free Cholesky, no eigh)
    cov = jnp.swapaxes(lo_inv, -1, -2) @ lo_inv
    tril, _ = cholesky_factors(cov.reshape(kp * kq, d, d)[keep])
    logits = jnp.concatenate(
        [
            math.log1p(-ALPHA) + log_pi - log_z,
            math.log(0.5 * ALPHA) + dp.logw,
            math.log(0.5 * ALPHA) + dq.logw,
        ]
    )
    locs = jnp.concatenate([centre[keep], dp.loc, dq.loc])
    trils = jnp.concatenate([tril, dp.tril, dq.tril])
    if p.covariance_type == "univariate":
        mix = GaussianMixture.from_params(logits, locs[:, 0], trils[:, 0, 0], "univariate")
    else:
        mix = GaussianMixture.from_params(logits, locs, trils, "full")
    kept = jnp.zeros((kp, kq), log_z.dtype).at[ia, ib].set(1.0)
    return Proposal(mix, kept, log_z)


def _half_exp(t):
    """``(exp(½(t - m)), m)`` with ``m`` the row maximum of ``t`` (0 where it is -inf)."""
    m = jnp.max(t, axis=-1)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return jnp.exp(0.5 * (t - m[:, None])), m


def _hi_matmul(a, b):
    # float32 accuracy on GPUs too (JAX's default there is TF32): r must be the exact
    # density of the points, or the estimate is biased
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def binary_entropy(delta: jax.Array) -> jax.Array:
    """``H_b(sigmoid Δ)`` in nats, even in ``Δ``; ``0`` (zero gradient) at ``Δ = ±inf``.

    With ``a = |Δ|``, ``H_b = softplus(-a) + a·sigmoid(-a)``; ``a`` is capped at 100
    (``H_b(100) < 4e-42``) so that ``Δ = ±inf`` gives 0, not ``0·inf = NaN``.
    """
    a = jnp.minimum(jnp.abs(delta), 100.0)
    return jax.nn.softplus(-a) + a * jax.nn.sigmoid(-a)


def js_overlap(p: GaussianMixture, q: GaussianMixture, key, num_samples: int, *, chunk: int):
    """JS by the overlap proposal, with ``2 · num_samples`` points (module docstring).

    Args:
      p, q: unbatched `GaussianMixture` of the same event shape.
      key: PRNG key.
      num_samples: static points per side (the other methods draw this many from
        each of ``p`` and ``q``; this one draws twice as many from ``r``).
      chunk: static points per chunk.

    Returns:
      ``(value, stderr, num_samples)``.
    """
    total = 2 * num_samples
    kp, kq = p.n_components, q.n_components
    prop = overlap_proposal(p, q, num_pairs(kp, kq, total))
    sg = jax.lax.stop_gradient
    log_a = jnp.log1p(-ALPHA)

    pc_p, pc_q = p.precisions_cholesky, q.precisions_cholesky  # once, not per chunk

    def ratio(x):
        ker_p = log_gaussian_kernel(x, p.locs, pc_p, p.covariance_type)
        ker_q = log_gaussian_kernel(x, q.locs, pc_q, q.covariance_type)
        tp, tq = ker_p + p.logits, ker_q + q.logits
        lp, lq = _safe_logsumexp(tp), _safe_logsumexp(tq)
        # both densities underflowed (a point far from every component): no mass there
        dead = sg((lp == -jnp.inf) & (lq == -jnp.inf))
        lp, lq = jnp.where(dead, 0.0, lp), jnp.where(dead, 0.0, lq)
        lm = jnp.logaddexp(lp, lq) - _LOG2
        # g ∝ Σ_ab kept_ab √(w_a N_a v_b N_b): one (C, K_p) x (K_p, K_q) product
        (ep, mp), (eq, mq) = _half_exp(sg(tp)), _half_exp(sg(tq))
        log_g = 0.5 * (mp + mq) + jnp.log(jnp.sum(_hi_matmul(ep, prop.kept) * eq, -1)) - prop.log_z
        log_r = jnp.logaddexp(log_a + log_g, math.log(ALPHA) + sg(lm))
        return jnp.where(dead, 0.0, jnp.exp(lm - log_r) * binary_entropy(lp - lq))

    method = "antithetic" if prop.mixture.n_components <= num_samples else "stratified"
    value, se, _ = expectation(prop.mixture, key, total, method, ratio, chunk=chunk)
    return jnp.clip(_LOG2 - value, 0.0, _LOG2), se, num_samples
