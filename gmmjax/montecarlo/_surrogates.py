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
        loc, tril, prec = m.locs[:, None], m.component_scale_tril[:, None, None], pc[:, None, None]
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


class Switch(NamedTuple):
    """Where a stratum's points switch between components of an evaluated mixture.

    For stratum ``a`` and the ``S`` rivals ``c_j`` of its most responsible component
    ``c_0``: ``δ_j = t_{c_0} - t_{c_j}``, ``t_c = log v_c + ℓ_c``, standardized to
    ``u_j = (δ_j - E_a δ_j) / sd_a δ_j``. No gradient. A rival of zero weight gets no
    feature (``sel`` 0, ``u_j = 0``, expectations 0).
    """

    sel: jax.Array  # (K_s, K_e, S) +1 at c_0, -1 at c_j: δ = t @ sel
    centre: jax.Array  # (K_s, S) E_a[δ_j]
    scale: jax.Array  # (K_s, S) sd_a[δ_j] (1 where δ_j is constant)
    mean: jax.Array  # (K_s, F) exact E_a of the features of `switch_features`


def switch(s: GaussianMixture, e: GaussianMixture, sur: Surrogate, rivals: int) -> Switch:
    """Exact moments of the switching features of ``e`` in each stratum of ``s``.

    ``log e`` follows the most responsible component until a rival takes over; where the
    points of one stratum split between two components, ``log e ≈ t_{c_0} -
    softplus(-δ)`` is far from any fixed quadratic. Each ``δ_j`` is a quadratic in the
    stratum's ``ε`` (``x = μ_a + L_a ε``): ``δ = εᵀAε + bᵀε + const`` with
    ``A = -½ L_aᵀ(Λ_0 - Λ_j)L_a``, ``b = -L_aᵀ(Λ_0 d_0 - Λ_j d_j)``, ``d_c = μ_a - m_c``,
    so its mean is ``E_a[t_{c_0}] - E_a[t_{c_j}]`` and ``Cov(δ_i, δ_j) = 2 tr(A_iA_j) +
    b_iᵀb_j`` (Mathai & Provost 1992, §3.2b). The features (`switch_features`) are
    ``u_j``, ``u_j²`` and ``u_i u_j``, whose expectations are 0, 1 and the correlations:
    a regression on them bends the surrogate into a smooth switch. (Adding ``u_0³`` and
    ``u_0⁴``, whose moments are closed-form too, made the estimate worse on the digits
    pair at D = 64: heavy-tailed features, noisy coefficients.)

    Args:
      s: unbatched sampled mixture; e: unbatched evaluated mixture with ``K_e ≥ 2``.
      sur: ``surrogate(s, e)``.
      rivals: static ``S`` with ``1 ≤ S < K_e``.

    References:
      A. M. Mathai & S. B. Provost, *Quadratic forms in random variables* (1992),
      §3.2b (cumulants of a quadratic form in normal variables).
    """
    sg = jax.lax.stop_gradient
    a, c = (jax.tree_util.tree_map(sg, dense(m)) for m in (s, e))
    t_mean = sg(sur.expected + e.logits[None])  # (K_s, K_e) E_a[t_c]
    idx = jnp.argsort(-sur.resp, axis=-1)[:, : rivals + 1]
    lam = _precision(c)  # (K_e, D, D)
    d = a.loc[:, None, :] - c.loc[None]  # (K_s, K_e, D)
    lam_d = jnp.einsum("cij,acj->aci", lam, d)
    lam_sel = lam[idx]  # (K_s, S + 1, D, D)
    lam_d_sel = jnp.take_along_axis(lam_d, idx[:, :, None], axis=1)
    big_a = -0.5 * jnp.einsum(
        "aji,asjk,akl->asil", a.tril, lam_sel[:, :1] - lam_sel[:, 1:], a.tril
    )  # (K_s, S, D, D)
    b = -jnp.einsum("aji,asj->asi", a.tril, lam_d_sel[:, :1] - lam_d_sel[:, 1:])
    t_sel = jnp.take_along_axis(t_mean, idx, axis=1)
    ok = jnp.isfinite(t_sel[:, :1]) & jnp.isfinite(t_sel[:, 1:])  # (K_s, S)
    centre = jnp.where(ok, t_sel[:, :1] - t_sel[:, 1:], 0.0)
    cov = 2.0 * jnp.einsum("asij,atij->ast", big_a, big_a) + jnp.einsum("asi,ati->ast", b, b)
    cov = jnp.where(ok[:, :, None] & ok[:, None, :], cov, 0.0)
    var = jnp.diagonal(cov, axis1=-2, axis2=-1)
    tiny = jnp.finfo(var.dtype).tiny
    scale = jnp.where(var > tiny, jnp.sqrt(jnp.maximum(var, tiny)), 1.0)
    corr = cov / (scale[:, :, None] * scale[:, None, :])
    rows, cols = jnp.triu_indices(rivals, 1)
    mean = jnp.concatenate(
        [jnp.zeros_like(centre), jnp.diagonal(corr, axis1=-2, axis2=-1), corr[:, rows, cols]],
        axis=-1,
    )
    k_e = lam.shape[0]
    one_hot = jax.nn.one_hot(idx, k_e, dtype=centre.dtype)  # (K_s, S + 1, K_e)
    sel = jnp.where(ok[:, :, None], one_hot[:, :1] - one_hot[:, 1:], 0.0)
    return Switch(jnp.swapaxes(sel, 1, 2), centre, scale, mean)


def switch_features(t: jax.Array, sw: Switch, comp: jax.Array) -> jax.Array:
    """``(B, R, F)`` features ``u_j, u_j², u_i u_j (i < j)`` at blocks of ``R`` points of
    strata ``comp`` ``(B,)``, from ``t = log v + ℓ`` of the evaluated mixture,
    ``(B, R, K_e)``."""
    t = jnp.where(jnp.isfinite(t), t, 0.0)  # zero-weight components: their `sel` is 0
    delta = jnp.einsum("brk,bks->brs", t, sw.sel[comp])
    u = (delta - sw.centre[comp][:, None]) / sw.scale[comp][:, None]
    rows, cols = jnp.triu_indices(u.shape[-1], 1)
    return jnp.concatenate([u, u * u, u[..., rows] * u[..., cols]], axis=-1)
