"""EM building blocks: chunked E-step statistics and the M-step, per covariance type.

The E-step evaluates the one kernel :func:`gmmjax.gaussian.log_gaussian_kernel` with
scikit-learn's ``precisions_cholesky_`` parametrization and accumulates, chunk by
chunk with ``lax.scan`` (bounded memory for any N), the sufficient statistics

    n_k = Σ_n w_n r_nk,   s_k = Σ_n w_n r_nk x_n,   S_k = Σ_n w_n r_nk (x_n - c_k)(x_n - c_k)ᵀ

(``S_k`` only for ``full``, with ``c_k = 0`` on data centred once by the caller;
``diag``/``spherical`` use ``Σ w r x²`` and ``tied`` uses ``Σ w x xᵀ``, which does not
depend on the responsibilities). The covariances are then ``S_k/n_k - μ_k μ_kᵀ``,
as scikit-learn's diag and tied updates (its full update centres per component; the
difference is rounding, ~1e-13 in float64). The M-step follows scikit-learn
(``sklearn/mixture/_gaussian_mixture.py``): counts guarded with ``+ 10·eps``,
``reg_covar`` added to the diagonal, one Cholesky per component covariance.

Internal parameters are a tuple ``(weights (K,), means (K, D), prec, scale)`` where
``prec`` is the kernel's precision Cholesky and ``scale`` the stored factor of
`GaussianMixture` (lower Cholesky of the covariance, or standard deviations).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gmmjax._reduce import logsumexp_last
from gmmjax.gaussian import cholesky, cholesky_factors, log_gaussian_kernel, tril_inverse


def _eps(dtype) -> float:
    return float(jnp.finfo(dtype).eps)


def chunk_stats(xc, wc, r, covariance_type):
    """Sufficient statistics of one chunk: ``(n_k, s_k, S_k)`` (``S_k`` per type)."""
    rw = r * wc[:, None]
    nk = jnp.sum(rw, axis=0)
    sx = rw.T @ xc
    if covariance_type == "full":
        # one GEMM (D, C) @ (C, K·D) for all K scatter matrices Σ_n r_nk x_n x_nᵀ; the
        # data were centred once, and the means are subtracted in the M-step (the
        # per-component centred form is a batched product that XLA's CPU backend runs
        # 4-6x slower, measured)
        c, d = xc.shape
        k = rw.shape[1]
        xr = (rw[:, :, None] * xc[:, None, :]).reshape(c, k * d)
        sxx = jnp.transpose((xc.T @ xr).reshape(d, k, d), (1, 0, 2))
    elif covariance_type in ("diag", "spherical"):
        sxx = rw.T @ (xc * xc)
    else:  # tied: the scatter Σ w x xᵀ is computed once, outside the loop
        sxx = jnp.zeros((), xc.dtype)
    return nk, sx, sxx


def estep_stats(xs, ws, params, covariance_type):
    """One pass over the chunked data with the current parameters.

    Args:
      xs: ``(n_chunks, C, D)`` points; ``ws``: ``(n_chunks, C)`` sample weights
        (zero for padding).
      params: ``(weights, means, prec, scale)``.
      covariance_type: ``full``, ``tied``, ``diag`` or ``spherical``.

    Returns:
      ``(loglik_sum, (n_k, s_k, S_k))`` where ``loglik_sum = Σ_n w_n log p(x_n)``.
    """
    weights, means, prec, _ = params
    log_w = jnp.log(weights)

    def body(acc, chunk):
        xc, wc = chunk
        logp = log_gaussian_kernel(xc, means, prec, covariance_type) + log_w
        lse = logsumexp_last(logp)
        r = jnp.exp(logp - lse[:, None])
        stats = chunk_stats(xc, wc, r, covariance_type)
        ll = jnp.sum(jnp.where(wc > 0, wc * lse, 0.0))
        return jax.tree.map(jnp.add, acc, (ll, stats)), None

    init = _zero_acc(xs, means, covariance_type)
    acc, _ = jax.lax.scan(body, init, (xs, ws))
    return acc


def loglik(xs, ws, params, covariance_type):
    """``Σ_n w_n log p(x_n)`` only (no statistics)."""
    weights, means, prec, _ = params
    log_w = jnp.log(weights)

    def body(acc, chunk):
        xc, wc = chunk
        lse = logsumexp_last(log_gaussian_kernel(xc, means, prec, covariance_type) + log_w)
        return acc + jnp.sum(jnp.where(wc > 0, wc * lse, 0.0)), None

    acc, _ = jax.lax.scan(body, jnp.zeros((), xs.dtype), (xs, ws))
    return acc


def resp_stats(xs, ws, rs, covariance_type, k):
    """Statistics from given responsibilities ``rs`` ``(n_chunks, C, K)``, or from hard
    labels ``rs`` ``(n_chunks, C)`` ints (one-hot per chunk, never ``(N, K)`` at once)."""
    labels = jnp.issubdtype(rs.dtype, jnp.integer)

    def body(acc, chunk):
        xc, wc, rc = chunk
        if labels:
            rc = jax.nn.one_hot(rc, k, dtype=xc.dtype)
        return jax.tree.map(jnp.add, acc, chunk_stats(xc, wc, rc, covariance_type)), None

    template = jnp.zeros((k, xs.shape[-1]), xs.dtype)
    init = _zero_acc(xs, template, covariance_type)[1]
    acc, _ = jax.lax.scan(body, init, (xs, ws, rs))
    return acc


def _zero_acc(xs, means, covariance_type):
    k, d = means.shape
    dt = xs.dtype
    if covariance_type == "full":
        sxx = jnp.zeros((k, d, d), dt)
    elif covariance_type in ("diag", "spherical"):
        sxx = jnp.zeros((k, d), dt)
    else:
        sxx = jnp.zeros((), dt)
    return jnp.zeros((), dt), (jnp.zeros((k,), dt), jnp.zeros((k, d), dt), sxx)


def scatter(xs, ws):
    """``Σ_n w_n x_n x_nᵀ`` over all chunks (for ``tied``)."""
    d = xs.shape[-1]

    def body(acc, chunk):
        xc, wc = chunk
        return acc + xc.T @ (xc * wc[:, None]), None

    acc, _ = jax.lax.scan(body, jnp.zeros((d, d), xs.dtype), (xs, ws))
    return acc


def mstep(stats, tied_scatter, reg_covar, covariance_type):
    """New ``(weights, means, prec, scale)`` from the statistics (scikit-learn's M-step).

    Returns:
      ``(params, ok)`` where ``ok`` is False when a covariance was not positive
      definite (its Cholesky factor has non-finite entries).
    """
    nk_raw, sx, sxx = stats
    dt = sx.dtype
    nk = nk_raw + 10.0 * _eps(dt)
    means = sx / nk[:, None]
    d = means.shape[-1]
    eye = jnp.eye(d, dtype=dt)
    if covariance_type == "full":
        cov = sxx / nk[:, None, None] - means[:, :, None] * means[:, None, :]
        cov = cov + reg_covar * eye
        scale, scale_inv = cholesky_factors(cov)  # no LAPACK call (see cholesky_factors)
        prec = jnp.swapaxes(scale_inv, -1, -2)
    elif covariance_type == "tied":
        cov = (tied_scatter - jnp.einsum("k,kd,ke->de", nk, means, means)) / jnp.sum(nk)
        cov = cov + reg_covar * eye
        scale, scale_inv = cholesky_factors(cov)  # no LAPACK call (see cholesky_factors)
        prec = jnp.swapaxes(scale_inv, -1, -2)
    else:
        var = sxx / nk[:, None] - means * means + reg_covar
        if covariance_type == "spherical":
            var = jnp.mean(var, axis=1)
        ok_var = jnp.all(var > 0)
        scale = jnp.sqrt(jnp.where(var > 0, var, jnp.nan))
        prec = 1.0 / scale
        weights = nk / jnp.sum(nk)
        return (weights, means, prec, scale), ok_var & jnp.all(jnp.isfinite(scale))
    weights = nk / jnp.sum(nk)
    ok = jnp.all(jnp.isfinite(scale)) & jnp.all(jnp.isfinite(prec))
    return (weights, means, prec, scale), ok


def params_from_precisions(precisions, covariance_type):
    """``(prec, scale)`` from user precisions (scikit-learn's ``precisions_init``).

    ``prec`` follows scikit-learn's flipped Cholesky ``P = J chol(JΛJ) J`` so the
    first E-step sees the very same factor.
    """
    p = jnp.asarray(precisions)
    if covariance_type in ("full", "tied"):
        flipped = jnp.flip(p, axis=(-1, -2))
        prec = jnp.flip(cholesky(flipped), axis=(-1, -2))
        # scale = P⁻ᵀ = (Pᵀ)⁻¹, Pᵀ lower triangular: one triangular inversion per component
        scale = tril_inverse(jnp.swapaxes(prec, -1, -2))
        return prec, scale
    prec = jnp.sqrt(p)
    return prec, 1.0 / prec


def first_best(bounds: jax.Array) -> jax.Array:
    """Index of the first restart with the highest bound (scikit-learn's strict ``>``).

    Restarts that reach one optimum (up to a relabelling) differ only by rounding, whose
    sign depends on the order of the sums (XLA's, the device's): bounds within 8 eps of
    the highest are a tie, kept by the first, as scikit-learn keeps the first of exactly
    equal bounds.

    Example:
      >>> import jax.numpy as jnp
      >>> int(first_best(jnp.array([-2.0, -1.0, -1.0 + 1e-7, -jnp.inf])))
      1
    """
    top = jnp.max(bounds)
    return jnp.argmax(bounds >= top - 8 * jnp.finfo(bounds.dtype).eps * jnp.abs(top))
