"""Variational Bayes building blocks: posterior state, expectations, M-step, lower bound.

The formulas are those of :mod:`gmmjax.fit.variational` (module docstring), in
scikit-learn's parametrization (``sklearn/mixture/_bayesian_mixture.py``): the
Wishart scale is stored normalized by the degrees of freedom (``covariances_``),
with its precision Cholesky in the layout of the one kernel
:func:`gmmjax.gaussian.log_gaussian_kernel`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import betaln, digamma, gammaln

from gmmjax.gaussian import _log_det_prec, cholesky, log_gaussian_kernel, precision_cholesky


class VBPriors(NamedTuple):
    """Prior hyperparameters (scikit-learn's trailing-underscore attributes).

    Attributes:
      weight_concentration: ``()`` α₀ of the Dirichlet (process).
      mean_precision: ``()`` β₀.
      mean: ``(D,)`` m₀.
      dof: ``()`` ν₀ (``> D - 1``).
      covariance: W₀⁻¹: ``(D, D)`` full/tied, ``(D,)`` diag, ``()`` spherical.
    """

    weight_concentration: jax.Array
    mean_precision: jax.Array
    mean: jax.Array
    dof: jax.Array
    covariance: jax.Array


class VBState(NamedTuple):
    """Variational posterior parameters (scikit-learn's fitted attributes).

    Attributes:
      conc_a: ``(K,)`` Dirichlet concentrations, or the first Beta parameters (DP).
      conc_b: ``(K,)`` the second Beta parameters (DP); zeros for the Dirichlet.
      mean_precision: ``(K,)`` β_k.
      means: ``(K, D)`` m_k.
      dof: ``(K,)`` ν_k (``()`` for tied).
      covariances: normalized Wishart scales ``Σ_k`` in scikit-learn's layout.
      prec_chol: precision Cholesky of ``Σ_k`` (the kernel's layout).
    """

    conc_a: jax.Array
    conc_b: jax.Array
    mean_precision: jax.Array
    means: jax.Array
    dof: jax.Array
    covariances: jax.Array
    prec_chol: jax.Array


class VBResult(NamedTuple):
    """The outcome of :func:`fit_variational`.

    Attributes:
      state: the kept restart's :class:`VBState`.
      lower_bound: its final lower bound (``-inf`` when ``max_iter=0``).
      n_iter: iterations it ran.
      converged: whether it met ``tol``.
      lower_bounds: ``(n_iter,)`` its lower bound after each iteration.
      labels: ``(N,)`` the most probable component of each point (final E-step).
    """

    state: VBState
    lower_bound: jax.Array
    n_iter: int
    converged: bool
    lower_bounds: jax.Array
    labels: jax.Array


# ------------------------------------------------------------------ expectations
def _log_weights(st: VBState, prior_type: str):
    """``E[log π_k]`` under ``q(π)`` ``(K,)``."""
    if prior_type == "dirichlet_process":
        d_sum = digamma(st.conc_a + st.conc_b)
        tail = jnp.cumsum(digamma(st.conc_b) - d_sum)[:-1]
        return digamma(st.conc_a) - d_sum + jnp.concatenate([jnp.zeros(1, tail.dtype), tail])
    return digamma(st.conc_a) - digamma(jnp.sum(st.conc_a))


def _dims(dof, d):
    return 0.5 * (dof[..., None] - jnp.arange(d, dtype=dof.dtype))


def weighted_log_prob(x, st: VBState, covariance_type: str, prior_type: str):
    """``E[log π_k] + E[log N(x_n | μ_k, Λ_k⁻¹)]`` ``(N, K)`` (module docstring)."""
    d = x.shape[-1]
    log_gauss = log_gaussian_kernel(x, st.means, st.prec_chol, covariance_type)
    log_lambda = d * math.log(2.0) + jnp.sum(digamma(_dims(st.dof, d)), axis=-1)
    log_gauss = log_gauss - 0.5 * d * jnp.log(st.dof)
    return log_gauss + 0.5 * (log_lambda - d / st.mean_precision) + _log_weights(st, prior_type)


def expected_weights(st: VBState, prior_type: str):
    """Posterior-mean weights ``(K,)`` (scikit-learn's ``weights_``)."""
    if prior_type == "dirichlet_process":
        total = st.conc_a + st.conc_b
        stick = jnp.cumprod(st.conc_b / total)[:-1]
        w = st.conc_a / total * jnp.concatenate([jnp.ones(1, stick.dtype), stick])
        return w / jnp.sum(w)
    return st.conc_a / jnp.sum(st.conc_a)


# ------------------------------------------------------------------ M-step
def _update(stats, tied_scatter, pri: VBPriors, reg, covariance_type, prior_type):
    """Posterior parameters from the statistics; ``(state, ok)``, ``ok`` False when a
    scale matrix is not positive definite."""
    nk_raw, sx, sxx = stats
    dt = sx.dtype
    k, d = sx.shape
    nk = nk_raw + 10.0 * float(jnp.finfo(dt).eps)
    xk = sx / nk[:, None]
    eye = jnp.eye(d, dtype=dt)
    if covariance_type == "full":
        sk = sxx / nk[:, None, None] - xk[:, :, None] * xk[:, None, :] + reg * eye
    elif covariance_type == "tied":
        sk = (tied_scatter - jnp.einsum("k,kd,ke->de", nk, xk, xk)) / jnp.sum(nk) + reg * eye
    else:
        sk = sxx / nk[:, None] - xk * xk + reg
        if covariance_type == "spherical":
            sk = jnp.mean(sk, axis=1)
    a0 = pri.weight_concentration
    if prior_type == "dirichlet_process":
        rev = jnp.cumsum(nk[::-1])  # Σ_{j>k} N_j summed in scikit-learn's order
        conc_a = 1.0 + nk
        conc_b = a0 + jnp.concatenate([rev[:-1][::-1], jnp.zeros(1, dt)])
    else:
        conc_a = a0 + nk
        conc_b = jnp.zeros_like(nk)
    b0 = pri.mean_precision
    beta = b0 + nk
    means = (b0 * pri.mean + nk[:, None] * xk) / beta[:, None]
    diff = xk - pri.mean
    if covariance_type == "full":
        dof = pri.dof + nk
        outer = diff[:, :, None] * diff[:, None, :]
        cov = pri.covariance + nk[:, None, None] * sk + (nk * b0 / beta)[:, None, None] * outer
        cov = cov / dof[:, None, None]
    elif covariance_type == "tied":
        n_mean = jnp.sum(nk) / k
        dof = pri.dof + n_mean
        cov = pri.covariance + sk * n_mean + b0 / k * (((nk / beta) * diff.T) @ diff)
        cov = cov / dof
    elif covariance_type == "diag":
        dof = pri.dof + nk
        cov = pri.covariance + nk[:, None] * (sk + (b0 / beta)[:, None] * diff * diff)
        cov = cov / dof[:, None]
    else:
        dof = pri.dof + nk
        cov = pri.covariance + nk * (sk + b0 / beta * jnp.mean(diff * diff, axis=1))
        cov = cov / dof
    if covariance_type in ("full", "tied"):
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))  # exactly symmetric (GEMM rounding)
        prec = precision_cholesky(cholesky(cov))
        ok = jnp.all(jnp.isfinite(prec))
    else:
        ok = jnp.all(cov > 0)
        prec = 1.0 / jnp.sqrt(jnp.where(cov > 0, cov, jnp.nan))
    return VBState(conc_a, conc_b, beta, means, dof, cov, prec), ok


def _lower_bound(st: VBState, r_log_r, covariance_type, prior_type):
    """scikit-learn's ``_compute_lower_bound`` (``r_log_r = Σ_nk r_nk log r_nk``)."""
    k, d = st.means.shape
    log_det = _log_det_prec(st.prec_chol, covariance_type, d) - 0.5 * d * jnp.log(st.dof)
    log_wishart = -(
        st.dof * log_det
        + st.dof * d * 0.5 * math.log(2.0)
        + jnp.sum(gammaln(_dims(st.dof, d)), axis=-1)
    )
    log_wishart = k * log_wishart if covariance_type == "tied" else jnp.sum(log_wishart)
    if prior_type == "dirichlet_process":
        a, b = st.conc_a, st.conc_b
        if a.dtype == jnp.float64:
            # jax's betaln is ~1e-9 off scipy's in float64; the gamma form is ~1e-14 there
            log_beta = gammaln(a) + gammaln(b) - gammaln(a + b)
        else:  # float32: the gamma form would cancel for large counts
            log_beta = betaln(a, b)
        log_norm_weight = -jnp.sum(log_beta)
    else:
        log_norm_weight = gammaln(jnp.sum(st.conc_a)) - jnp.sum(gammaln(st.conc_a))
    return -r_log_r - log_wishart - log_norm_weight - 0.5 * d * jnp.sum(jnp.log(st.mean_precision))
