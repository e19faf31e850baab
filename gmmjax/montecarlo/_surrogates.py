"""Quadratic surrogates of mixture log-densities and their exact Gaussian expectations (private).

Used by :mod:`gmmjax.montecarlo.control_variates`. For a sampled component
``N(μ_a, L_a L_aᵀ)`` and an evaluated mixture ``e = Σ_c v_c N(m_c, Λ_c⁻¹)``
(``Λ_c = P_c P_cᵀ``, ``P_c`` the precision Cholesky):

* :func:`expected_log_components`: ``E_a[ℓ_c]`` with ``ℓ_c = log N(·; m_c, Λ_c⁻¹)``,
  ``= -½ (tr(Λ_c Σ_a) + (μ_a - m_c)ᵀ Λ_c (μ_a - m_c)) + log|P_c| - (D/2) log 2π``;
* :func:`surrogate`: responsibilities ``R_a = softmax(log v + E_a[ℓ])`` and the
  surrogate ``log e ≈ Σ_c R_ac ℓ_c + κ_a``, ``κ_a = Σ_c R_ac (log v_c - log R_ac)``
  (the bound ``logsumexp t ≥ Σ R t + H(R)``, tight where ``R = softmax(t)``);
* :func:`bump_expectation`: ``E_a[B(Δ(x))]`` for ``Δ = surrogate(log p) -
  surrogate(log q)``, a quadratic ``c + bᵀε + εᵀAε`` in ``ε``, and the Jensen–Shannon
  "bump" ``B(Δ) = H_b(sigmoid Δ)`` (binary entropy, nats). By Fourier inversion,

      E[B(Q)] = (1/π) ∫_0^∞ B̂(ω) Re φ_Q(ω) dω,
      B̂(ω) = -S'(ω)/ω,  S(ω) = πω / sinh(πω)  (the transform of sigmoid'),
      φ_Q(ω) = exp(iωc) Π_i (1 - 2iωλ_i)^{-1/2} exp(-ω² b̃_i² / (2(1 - 2iωλ_i))),

  with ``A = U diag(λ) Uᵀ``, ``b̃ = Uᵀb`` (Imhof 1961). ``B'(Δ) = -Δ sigmoid'(Δ)`` gives
  ``B̂``. The integral is a trapezoid sum on ``n`` nodes of ``[0, Ω]``: ``B̂`` decays
  as ``e^{-πω}`` (truncation below 1e-11 at ``Ω = 10``), and the trapezoid rule's only
  other error is aliasing, ``Σ_{k≠0} E[B(Q + kT)]`` with period ``T = 2πn/Ω``
  (``n = 512``: ``T ≈ 322``), which is below 1e-15 when ``|E Q| + 12 sd(Q) < T - 40``;
  strata that fail this get no bump feature (``ok = False``).

References:
  Hershey & Olsen, ICASSP 2007, eq. 18 (variational responsibilities); J. P. Imhof,
  *Computing the distribution of quadratic forms in normal variables*, Biometrika 48
  (1961), eq. 3.2 (characteristic function of a Gaussian quadratic form).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gmmjax.mixture import GaussianMixture

_LOG_2PI = math.log(2.0 * math.pi)
_NODES = 512
_OMEGA = 10.0


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


@functools.lru_cache(maxsize=4)
def _nodes(n: int, omega: float):
    """Trapezoid nodes ``ω_j`` and weights ``(h/π) B̂(ω_j)`` (float64 on the host)."""
    h = omega / n
    w = np.arange(n) * h
    pw = np.pi * w[1:]
    s_prime = np.pi / np.sinh(pw) - np.pi**2 * w[1:] * np.cosh(pw) / np.sinh(pw) ** 2
    bhat = np.concatenate([[np.pi**2 / 3.0], -s_prime / w[1:]])
    # small ω: -S'(ω)/ω = π²/3 - 7π⁴ω²/90 + O(ω⁴) (cancellation-free)
    small = w < 1e-3
    bhat[small] = np.pi**2 / 3.0 - 7.0 * np.pi**4 * w[small] ** 2 / 90.0
    weight = h / np.pi * bhat
    weight[0] *= 0.5
    return w, weight, 2.0 * np.pi / h


def bump(delta: jax.Array) -> jax.Array:
    """``B(Δ) = H_b(sigmoid Δ)`` in nats, in ``[0, log 2]``."""
    s = jax.nn.sigmoid(delta)
    return s * jax.nn.softplus(-delta) + (1.0 - s) * jax.nn.softplus(delta)


class Bump(NamedTuple):
    """Stratum quadratics ``Q_a(ε) = c_a + b_aᵀε + εᵀA_aε`` and ``E_a[B(Q_a)]`` (no gradient)."""

    mean: jax.Array  # (K_s,) E_a[B(Q_a)] (0 where not ok)
    ok: jax.Array  # (K_s,) bool: the trapezoid rule is exact to 1e-11
    ev: jax.Array  # (K_s, D) eigenvalues of A_a
    u: jax.Array  # (K_s, D, D) eigenvectors of A_a
    b: jax.Array  # (K_s, D)
    mean_q: jax.Array  # (K_s,) E_a[Q_a]


def bump_expectation(s: GaussianMixture, p: GaussianMixture, q: GaussianMixture, sp, sq) -> Bump:
    """`Bump` per stratum ``a`` of ``s``: ``E_a[B(Δ_a(x))]`` (module docstring); no gradient.

    ``Δ_a(x) = Σ_c R^p_ac ℓ^p_c(x) + κ^p_a - Σ_b R^q_ab ℓ^q_b(x) - κ^q_a`` with the
    responsibilities of :func:`surrogate` (``sp``, ``sq``).
    """
    sg = jax.lax.stop_gradient
    a, dp, dq = (jax.tree_util.tree_map(sg, dense(m)) for m in (s, p, q))
    rho = jnp.concatenate([sp.resp, -sq.resp], axis=-1)  # (K_s, K_c)
    loc = jnp.concatenate([dp.loc, dq.loc])
    lam = jnp.concatenate([_precision(dp), _precision(dq)])  # (K_c, D, D)
    d = loc.shape[-1]
    const = jnp.concatenate([dp.log_det_prec, dq.log_det_prec]) - 0.5 * d * _LOG_2PI
    delta = a.loc[:, None, :] - loc[None]  # (K_s, K_c, D)
    lam_delta = jnp.einsum("cde,ace->acd", lam, delta)
    quad = jnp.sum(delta * lam_delta, axis=-1)
    c = sg(sp.kappa - sq.kappa) + jnp.sum(rho * (const[None] - 0.5 * quad), axis=-1)
    w_mat = jnp.einsum("ac,cde->ade", rho, lam)
    lt = jnp.swapaxes(a.tril, -1, -2)
    amat = -0.5 * lt @ w_mat @ a.tril
    bvec = -jnp.einsum("ade,ae->ad", lt, jnp.sum(rho[..., None] * lam_delta, axis=1))
    ev, u = jnp.linalg.eigh(0.5 * (amat + jnp.swapaxes(amat, -1, -2)))
    bt2 = jnp.einsum("adi,ad->ai", u, bvec) ** 2  # (K_s, D)
    omega, weight, period = _nodes(_NODES, _OMEGA)
    dt = ev.dtype
    om = jnp.asarray(omega, dt)[None, :, None]  # (1, n, 1)
    # log φ in real arithmetic, t = 2ωλ: log(1 - it) = ½ log(1 + t²) - i atan t, and
    # 1/(1 - it) = (1 + it)/(1 + t²)
    t = 2.0 * om * ev[:, None, :]  # (K_s, n, D)
    r = 1.0 + t * t
    ob = om**2 * bt2[:, None, :] / (2.0 * r)
    re = jnp.sum(-0.25 * jnp.log(r) - ob, axis=-1)
    im = om[..., 0] * c[:, None] + jnp.sum(0.5 * jnp.arctan(t) - ob * t, axis=-1)
    e_b = jnp.sum(jnp.asarray(weight, dt)[None] * jnp.exp(re) * jnp.cos(im), axis=-1)
    mean_q = c + jnp.sum(ev, axis=-1)
    sd_q = jnp.sqrt(jnp.sum(bt2, axis=-1) + 2.0 * jnp.sum(ev * ev, axis=-1))
    ok = jnp.abs(mean_q) + 12.0 * sd_q < period - 40.0
    e_b = jnp.where(ok, jnp.clip(e_b, 0.0, math.log(2.0)), 0.0)
    return Bump(e_b, ok, ev, u, bvec, mean_q)
