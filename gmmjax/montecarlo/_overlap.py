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
proportional allocation (at least two antithetic pairs each). Every importance ratio
``m H_b(s) / r`` is at most ``log 2 · min(Z / (1 - α), 1 / α)``: bounded, so the
stratified standard error is calibrated. ``r`` equals the density the points are
drawn from up to the float rounding of ``log BC_ab`` and of the pair Gaussians'
factors (relative ~1e-6 · |log N| in float32), a bias far below the stderr at the
sample sizes measured.

The ratios ``p / r`` and ``q / r`` have ``E_r = 1`` exactly, and they follow
``m / r``, the part of the integrand that ``H_b`` does not flatten; they serve as
control variates (the mixture importance sampling regression of Owen & Zhou 2000),
with coefficients shared by the strata, fitted to minimize the stratified variance and
cross-fitted over two folds of each stratum's pairs, so the estimate stays unbiased
(:func:`_regression_expectation`). Measured where ``p`` and ``q`` overlap moderately
(JS 0.2-0.6, D = 2 to 64), together with keeping every pair up to 64: 1.25-3.9× fewer
samples than before (``benchmarks/RESULTS.md``).

All ``K_p K_q`` pairs are kept up to 64 of them, else the ``2 (K_p + K_q)`` with the
largest ``π_ab``, ranked by a closed form that needs no factorization
(:func:`_rank_pairs`); ``g`` is then the normalized sum of the kept pairs
(``kept_ab = 1``), whose weights are exact, and the ratio is bounded by ``log 2 / α``.

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
  mixtures); Owen, *Monte Carlo theory, methods and examples* (2013), §9.11; A. Owen and
  Y. Zhou, *Safe and effective importance sampling*, JASA 95 (2000) (mixture
  components as control variates); Chernozhukov et al., *Double/debiased machine
  learning*, Econometrics J. 21 (2018) (cross-fitting).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gmmjax._linalg import cholesky_factors
from gmmjax._reduce import logsumexp_last
from gmmjax.gaussian import kernel_function
from gmmjax.mixture import GaussianMixture
from gmmjax.montecarlo._estimators import (
    expectation,
    fold_sums,
    sum_over_chunks,
)
from gmmjax.montecarlo._surrogates import _precision, dense
from gmmjax.montecarlo.sampling import (
    block_info,
    block_size,
    chunk_plan,
    dtype_of,
    make_layout,
    standard_normals,
    transform,
)

_LOG2 = math.log(2.0)
ALPHA = 0.1  # defensive fraction of m in the proposal


class Proposal(NamedTuple):
    """The overlap proposal ``r`` (no gradient) and what its log-density needs."""

    mixture: GaussianMixture  # pairs (a, b), then p's and q's components
    kept: jax.Array  # (K_p, K_q) 1.0 for the pairs (a, b) in the mixture, else 0.0
    log_z: jax.Array  # () log Σ_kept √(w_a v_b) BC_ab


def num_pairs(kp: int, kq: int, num_points: int) -> int:
    """Static number of pairs kept: ``min(K_p K_q, max(2 (K_p + K_q), 64))``, fewer for few points.

    Every pair up to 64 (all of them for K = 8 per side: at D = 32 to 64, where the
    components of each side overlap, dropping half of them doubled the variance,
    ``benchmarks/RESULTS.md``), else the ``2 (K_p + K_q)`` largest. The strata (pairs
    and the components of ``p`` and ``q``) are kept to at most a quarter of the points,
    so that each can hold two antithetic pairs, one per fold of the regression.
    """
    return max(1, min(kp * kq, max(2 * (kp + kq), 64), num_points // 4 - kp - kq))


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
    kp, kq = dp.loc.shape[0], dq.loc.shape[0]
    if num_pairs < kp * kq:
        ia, ib = _rank_pairs(dp, dq, num_pairs)
    else:
        rows = jnp.arange(kp * kq)
        ia, ib = rows // kq, rows % kq
    # the kept pairs' Gaussians G_ab, exactly: precision Π = ½(Λ_a + Λ_b)
    # Λ and Λμ once per component (K D³), gathered per pair
    lam_p, lam_q = _precision(dp), _precision(dq)
    lin_p = jnp.einsum("ade,ae->ad", lam_p, dp.loc)
    lin_q = jnp.einsum("bde,be->bd", lam_q, dq.loc)
    pa, pb = dp.prec[ia], dq.prec[ib]
    loc_a, loc_b = dp.loc[ia], dq.loc[ib]
    lin = 0.5 * (lin_p[ia] + lin_q[ib])
    # one Cholesky per pair gives both |Π| and a lower factor of Π⁻¹: with J the
    # reversal, J Π J = M Mᵀ makes L = J M⁻ᵀ J lower triangular with L Lᵀ = Π⁻¹
    lo, lo_inv = cholesky_factors(jnp.flip(0.5 * (lam_p[ia] + lam_q[ib]), (-2, -1)))
    tril = jnp.flip(jnp.swapaxes(lo_inv, -1, -2), (-2, -1))
    centre = jnp.einsum("nij,nj->ni", tril, jnp.einsum("nji,nj->ni", tril, lin))
    # log BC_ab = ½ ℓ_a(c) + ½ ℓ_b(c) - log G_ab(c) at the centre c of G_ab
    ell_a = -0.5 * jnp.sum(jnp.einsum("nd,nde->ne", centre - loc_a, pa) ** 2, -1)
    ell_b = -0.5 * jnp.sum(jnp.einsum("nd,nde->ne", centre - loc_b, pb) ** 2, -1)
    log_g = jnp.sum(jnp.log(jnp.diagonal(lo, axis1=-2, axis2=-1)), -1)
    log_bc = 0.5 * (ell_a + ell_b + dp.log_det_prec[ia] + dq.log_det_prec[ib]) - log_g
    log_pi = 0.5 * (dp.logw[ia] + dq.logw[ib]) + log_bc
    log_z = jax.nn.logsumexp(log_pi)
    logits = jnp.concatenate(
        [
            math.log1p(-ALPHA) + log_pi - log_z,
            math.log(0.5 * ALPHA) + dp.logw,
            math.log(0.5 * ALPHA) + dq.logw,
        ]
    )
    locs = jnp.concatenate([centre, dp.loc, dq.loc])
    trils = jnp.concatenate([tril, dp.tril, dq.tril])
    if p.covariance_type == "univariate":
        mix = GaussianMixture.from_params(logits, locs[:, 0], trils[:, 0, 0], "univariate")
    else:
        mix = GaussianMixture.from_params(logits, locs, trils, "full")
    kept = jnp.zeros((kp, kq), log_z.dtype).at[ia, ib].set(1.0)
    return Proposal(mix, kept, log_z)


def _rank_pairs(dp, dq, num_pairs: int):
    """The ``num_pairs`` pairs ``(a, b)`` of largest approximate ``π_ab``, in ``O(K_p K_q D²)``.

    ``log BC_ab`` is approximated by its value for equal covariances, ``-⅛ Δμᵀ Λ̄ Δμ``
    with ``Δμᵀ Λ̄ Δμ`` the mean of the two Mahalanobis distances, plus its
    covariance term ``-½ log(|Σ̄| / √(|Σ_a| |Σ_b|))`` from the marginal variances
    alone: no factorization of the ``K_p K_q`` pair precisions (the exact weights,
    which ``r`` needs, are computed for the kept pairs only). Exact for equal diagonal
    covariances; otherwise only which pairs are kept changes, not ``r``'s exactness.
    """
    kq = dq.loc.shape[0]
    diff = dq.loc[None] - dp.loc[:, None]  # (K_p, K_q, D)
    maha = jnp.sum(jnp.einsum("abd,ade->abe", diff, dp.prec) ** 2, -1) + jnp.sum(
        jnp.einsum("abd,bde->abe", diff, dq.prec) ** 2, -1
    )
    var_p, var_q = jnp.sum(dp.tril**2, -1), jnp.sum(dq.tril**2, -1)  # (K, D) diag of Σ
    vp, vq = var_p[:, None], var_q[None]
    cov_term = -0.5 * jnp.sum(jnp.log(0.5 * (vp + vq)) - 0.5 * jnp.log(vp * vq), -1)
    score = 0.5 * (dp.logw[:, None] + dq.logw[None]) - maha / 16.0 + cov_term
    keep = jnp.argsort(-score.reshape(-1))[:num_pairs]
    return keep // kq, keep % kq


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

    # the factors (and the full type's precision matrices) once, not per chunk
    kern_p = kernel_function(p.locs, p.precisions_cholesky, p.covariance_type)
    kern_q = kernel_function(q.locs, q.precisions_cholesky, q.covariance_type)

    def ratio(x):
        ker_p, ker_q = kern_p(x), kern_q(x)
        tp, tq = ker_p + p.logits, ker_q + q.logits
        lp, lq = logsumexp_last(tp), logsumexp_last(tq)
        # both densities underflowed (a point far from every component): no mass there
        dead = sg((lp == -jnp.inf) & (lq == -jnp.inf))
        lp, lq = jnp.where(dead, 0.0, lp), jnp.where(dead, 0.0, lq)
        lm = jnp.logaddexp(lp, lq) - _LOG2
        # g ∝ Σ_ab kept_ab √(w_a N_a v_b N_b): one (C, K_p) x (K_p, K_q) product
        (ep, mp), (eq, mq) = _half_exp(sg(tp)), _half_exp(sg(tq))
        log_g = 0.5 * (mp + mq) + jnp.log(jnp.sum(_hi_matmul(ep, prop.kept) * eq, -1)) - prop.log_z
        log_r = jnp.logaddexp(log_a + log_g, math.log(ALPHA) + sg(lm))
        h = jnp.where(dead, 0.0, jnp.exp(lm - log_r) * binary_entropy(lp - lq))
        # the control variates p / r and q / r: E_r = 1 each (no gradient)
        f = jnp.exp(sg(jnp.stack([lp, lq], axis=-1) - log_r[:, None]))
        return h, jnp.where(dead[:, None], 0.0, f)

    strata = prop.mixture.n_components
    if 4 * strata <= total:  # two antithetic pairs per stratum: one for each fold
        value, se = _regression_expectation(prop.mixture, key, total, ratio, chunk=chunk)
    else:  # too few points for the regression: the importance sampling estimate alone
        method = "antithetic" if strata <= num_samples else "stratified"
        value, se, _ = expectation(
            prop.mixture, key, total, method, lambda x: ratio(x)[0], chunk=chunk
        )
    return jnp.clip(_LOG2 - value, 0.0, _LOG2), se, num_samples


def _regression_expectation(r: GaussianMixture, key, total: int, fn, *, chunk: int):
    """``E_r[h]`` with control variates ``f`` of known mean ``E_r[f] = 1`` (Owen & Zhou 2000).

    ``fn(x) -> (h (C,), f (C, F))``. Antithetic pairs, one stratum per component of
    ``r`` with at least two pairs each; the pairs of a stratum alternate between two
    folds. For fold ``φ`` and coefficients ``β`` that do not depend on its points,

        est_φ = Σ_c ω_c (mean_cφ(h) - βᵀ mean_cφ(f)) + βᵀ 1

    is unbiased, because ``Σ_c ω_c E_c[f] = E_r[f] = 1``. ``β`` is fitted on the other
    fold (cross-fitting), by minimizing the stratified variance
    ``Σ_c ω_c² Var_c(h - βᵀf) / n_c`` (within-stratum covariances pooled with those
    weights); the estimate is ``½ (est_0 + est_1)`` and its variance
    ``¼ (Var est_0 + Var est_1)``, from each stratum's out-of-fold residuals.
    """
    sg = jax.lax.stop_gradient
    k_layout, k_eps = jax.random.split(key)
    s = r.n_components
    bsz = block_size(r, "antithetic")
    while bsz > 8 and bsz * s > total // 8:  # blocks a stratum may leave unfilled: ≤ 1/8
        bsz //= 2
    layout = make_layout(r, k_layout, total, "antithetic", minimum=2, block=bsz)
    per_chunk, n_chunks = chunk_plan(layout.num_blocks, chunk, bsz)
    univariate = r.covariance_type == "univariate"
    # a per-stratum shift (the values at the component means) keeps the float32 sums
    # of squares accurate
    h_ref, f_ref = fn(r.locs)
    v_ref = sg(jnp.concatenate([f_ref, h_ref[:, None]], axis=-1))  # (S, F + 1)
    nv = v_ref.shape[-1]

    def one_chunk(c):
        ids = c * per_chunk + jnp.arange(per_chunk)
        rep, comp, first, valid = block_info(layout, ids)
        ke = jax.random.fold_in(k_eps, c)
        eps = standard_normals(ke, "antithetic", layout, rep, comp, first, r.dim, dtype_of(r))
        x = transform(r, comp, eps)
        x = x.reshape((per_chunk * bsz,) + (() if univariate else (r.dim,)))
        h, f = fn(x)
        v = jnp.mean(jnp.concatenate([f, h[:, None]], axis=-1).reshape(-1, 2, nv), axis=1)
        mask = (jnp.arange(bsz)[None, :] < valid[:, None]).reshape(-1)[::2]
        v = jnp.where(mask[:, None], v - v_ref[jnp.repeat(comp, bsz // 2)], 0.0)
        return fold_sums(v, mask, comp, first // 2, bsz // 2, s)

    n, sv, svv = sum_over_chunks(one_chunk, n_chunks)
    return _fold_combine(n, sv, svv, jax.nn.softmax(sg(r.logits)), v_ref)


def _fold_combine(n, sv, svv, omega, v_ref):
    """Cross-fitted estimate and stderr from per-(stratum, fold) sums (rows ``2c + φ``)."""
    nf = v_ref.shape[-1] - 1
    s = omega.shape[0]
    nn = jnp.maximum(n, 1.0)
    svs = jax.lax.stop_gradient(sv)
    cov = svv - svs[:, :, None] * svs[:, None, :] / nn[:, None, None]  # within-group SSD
    w2 = jnp.repeat(omega * omega, 2)
    # Σ_c ω_c² Var_c / n_c per fold, with Var_c = SSD / (n - 1)
    a = jnp.where(n >= 2, w2 / (nn * jnp.maximum(n - 1.0, 1.0)), 0.0)
    pooled = jnp.sum((a[:, None, None] * cov).reshape(s, 2, nf + 1, nf + 1), axis=0)
    aff, afy = pooled[:, :nf, :nf], pooled[:, :nf, nf]
    mean = sv / nn[:, None] + jnp.repeat(v_ref, 2, axis=0)
    # a relative ridge of 1e-4: the features can be collinear (p / r and q / r are, with
    # the constant, where g / r is constant); any β keeps the estimate unbiased, but a
    # huge one along a null direction would cost the float32 residual variance its digits.
    # And a floor: a feature whose spread within the strata is below 1e-6 of its size
    # (p = q with one component each: p / r = 1 up to rounding) is rounding noise, and a
    # coefficient fitted to it would only add noise
    size = (a * jnp.maximum(n - 1.0, 0.0))[:, None] * mean[:, :nf] ** 2  # ω² f̄² / n
    size = jnp.sum(size.reshape(s, 2, nf), axis=0)
    ridge = 1e-4 * jnp.trace(aff, axis1=-2, axis2=-1)[:, None] / nf + 1e-12 * size + 1e-30
    ridge = ridge[:, :, None] * jnp.eye(nf, dtype=aff.dtype)
    _, linv = cholesky_factors(aff + ridge)
    beta = jnp.einsum("gji,gj->gi", linv, jnp.einsum("gij,gj->gi", linv, afy))
    beta = jnp.where(jnp.all(jnp.isfinite(beta), axis=-1, keepdims=True), beta, 0.0)
    other = jnp.tile(beta[::-1], (s, 1))  # row 2c + φ uses fold 1 - φ's coefficients
    res = mean[:, nf] - jnp.sum(other * mean[:, :nf], axis=-1)  # (2S,)
    res = jnp.where(n > 0, res, 0.0)  # a dead stratum (ω_c = 0) has no points
    est = jnp.sum((jnp.repeat(omega, 2) * res).reshape(s, 2), axis=0) + jnp.sum(beta[::-1], -1)
    m2 = cov[:, nf, nf] - 2.0 * jnp.sum(other * cov[:, :nf, nf], -1)
    m2 = jnp.maximum(m2 + jnp.einsum("gi,gij,gj->g", other, cov[:, :nf, :nf], other), 0.0)
    # each stratum's residual variance from both folds (Chan's merge of the two folds'
    # means; a fold holds a single pair in the smallest strata). The gap between the
    # folds' means is taken for one residual function, with the mean of the two folds'
    # coefficients: with each fold's own, the gap would carry (β_0 - β_1)ᵀ mean(f)
    mean2 = jax.lax.stop_gradient(mean).reshape(s, 2, nf + 1)
    dm = mean2[:, 0] - mean2[:, 1]
    dres = dm[:, nf] - dm[:, :nf] @ (0.5 * (beta[0] + beta[1]))
    m2, n2 = (jax.lax.stop_gradient(a).reshape(s, 2) for a in (m2, n))
    n_c = jnp.sum(n2, axis=-1)
    gap = jnp.where(jnp.all(n2 > 0, -1), n2[:, 0] * n2[:, 1] / jnp.maximum(n_c, 1.0) * dres**2, 0.0)
    var = (jnp.sum(m2, axis=-1) + gap) / jnp.maximum(n_c - 1.0, 1.0)  # (S,)
    var_est = jnp.sum(omega[:, None] ** 2 * var[:, None] / jnp.maximum(n2, 1.0), axis=0)
    return 0.5 * jnp.sum(est), 0.5 * jnp.sqrt(jnp.sum(var_est))
