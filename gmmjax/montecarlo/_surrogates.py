"""Quadratic surrogates of mixture log-densities and their exact Gaussian expectations (private).

Used by :mod:`gmmjax.montecarlo.control_variates`. For a sampled component
``N(μ_a, L_a L_aᵀ)`` and an evaluated mixture ``e = Σ_c v_c N(m_c, Λ_c⁻¹)``
(``Λ_c = P_c P_cᵀ``, ``P_c`` the precision Cholesky):

* :func:`expected_log_components`: ``E_a[ℓ_c]`` with ``ℓ_c = log N(·; m_c, Λ_c⁻¹)``,
  ``= -½ (tr(Λ_c Σ_a) + (μ_a - m_c)ᵀ Λ_c (μ_a - m_c)) + log|P_c| - (D/2) log 2π``;
* :func:`surrogate`: responsibilities ``R_a = softmax(log v + E_a[ℓ])`` and the
  surrogate ``log e ≈ Σ_c R_ac ℓ_c + κ_a``, ``κ_a = Σ_c R_ac (log v_c - log R_ac)``
  (the bound ``logsumexp t ≥ Σ R t + H(R)``, tight where ``R = softmax(t)``).

References:
  Hershey & Olsen, ICASSP 2007, eq. 18 (variational responsibilities).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gmmjax.mixture import GaussianMixture

_LOG_2PI = math.log(2.0 * math.pi)


class Dense(NamedTuple):
    """One mixture as dense arrays (``D = 1`` for univariate)."""

    logw: jax.Array  # (K,)
    loc: jax.Array  # (K, D)
    tril: jax.Array  # (K, D, D) lower factor of the covariance
    prec: jax.Array  # (K, D, D) upper precision Cholesky
    log_det_prec: jax.Array  # (K,)


def dense(m: GaussianMixture) -> Dense:
    """Dense factors of an unbatched mixture of any covariance type."""
    t, k = m.covariance_type, m.n_components
    pc = m.precisions_cholesky
    if t == "univariate":
        loc, tril, prec = m.locs[:, None], m.scale_param[:, None, None], pc[:, None, None]
    else:
        loc, tril, d = m.locs, m.component_scale_tril, m.dim
        eye = jnp.eye(d, dtype=pc.dtype)
        prec = {
            "full": lambda: pc,
            "tied": lambda: jnp.broadcast_to(pc, (k, d, d)),
            "diag": lambda: pc[:, :, None] * eye,
            "spherical": lambda: pc[:, None, None] * eye,
        }[t]()
    log_det = jnp.sum(jnp.log(jnp.diagonal(prec, axis1=-2, axis2=-1)), axis=-1)
    return Dense(m.logits, loc, tril, prec, log_det)


def _precision(c: Dense) -> jax.Array:
    return c.prec @ jnp.swapaxes(c.prec, -1, -2)


def expected_log_components(s: GaussianMixture, e: GaussianMixture) -> jax.Array:
    """``(K_s, K_e)`` matrix ``E_{x ~ N_a^s}[log N(x; m_c, Σ^e_c)]`` in closed form.

    ``= -½ (tr(Λ_c Σ_a) + (μ_a - m_c)ᵀ Λ_c (μ_a - m_c)) + log|P_c| - (D/2) log 2π``:
    minus the cross-entropy ``H(N_a^s, N_c^e)``. ``O(K_s K_e D²)``.

    Args:
      s: unbatched `GaussianMixture` (the sampled side).
      e: unbatched `GaussianMixture` of the same dimension (the evaluated side).

    Returns:
      ``(K_s, K_e)`` expectations.

    Example:
      >>> import jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> m = GaussianMixture(jnp.ones(1), jnp.zeros(1), scale=jnp.ones(1))
      >>> round(float(expected_log_components(m, m)[0, 0]), 4)  # -entropy of N(0, 1)
      -1.4189
    """
    a, c = dense(s), dense(e)
    d = a.loc.shape[-1]
    cov = a.tril @ jnp.swapaxes(a.tril, -1, -2)
    tr = jnp.einsum("aij,cij->ac", cov, _precision(c))
    y = jnp.einsum("acf,cfe->ace", a.loc[:, None, :] - c.loc[None], c.prec)
    return -0.5 * (tr + jnp.sum(y * y, axis=-1)) + c.log_det_prec[None] - 0.5 * d * _LOG_2PI


class Surrogate(NamedTuple):
    resp: jax.Array  # (K_s, K_e) fixed responsibilities, no gradient
    mean: jax.Array  # (K_s,) E_a[Σ_c R_ac ℓ_c], differentiable
    kappa: jax.Array  # (K_s,) Σ_c R_ac (log v_c - log R_ac), no gradient
    expected: jax.Array  # (K_s, K_e) E_a[ℓ_c], differentiable


def surrogate(s: GaussianMixture, e: GaussianMixture) -> Surrogate:
    """Responsibilities, expectation and offset of the surrogate of ``log e`` per stratum."""
    el = expected_log_components(s, e)
    logr = jax.lax.stop_gradient(jax.nn.log_softmax(el + e.logits[None], axis=-1))
    resp = jnp.exp(logr)
    kappa = jnp.sum(resp * (jax.lax.stop_gradient(e.logits)[None] - logr), axis=-1)
    return Surrogate(resp, jnp.sum(resp * el, axis=-1), kappa, el)
