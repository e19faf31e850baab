"""Closed forms for single Gaussians and the one log-density kernel.

Everything here works on Cholesky factors. A covariance ``Σ = L Lᵀ`` is stored as
its lower factor ``L``; the *precision Cholesky* ``P = L⁻ᵀ`` satisfies
``Σ⁻¹ = P Pᵀ`` and turns the Gaussian log-density into a matrix product:

    log N(x; μ, Σ) = -½ ‖(x - μ)ᵀ P‖² + log|P| - (D/2) log 2π,   log|P| = Σ_i log P_ii.

:func:`log_gaussian_kernel` evaluates that for N points against K components at
once (one GEMM plus a reduction, DESIGN.md §4). ``log_prob`` of
:class:`gmmjax.GaussianMixture`, the divergences, the EM E-step and the bounds all
call it; no code solves a triangular system per sample.

Covariance types (the ``prec`` argument of the kernel):

* ``"full"``: ``(K, D, D)`` upper-triangular precision Cholesky per component;
* ``"tied"``: ``(D, D)`` one precision Cholesky shared by all components;
* ``"diag"``: ``(K, D)`` inverse standard deviations;
* ``"spherical"``: ``(K,)`` inverse standard deviations;
* ``"univariate"``: ``(K,)`` inverse standard deviations, scalar events.

This is the parametrization of scikit-learn's ``precisions_cholesky_``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import jax
import jax.numpy as jnp

from gmmjax._kernel_full import (
    full_log_density,
    gemm_bound,
    in_blocks,
    log_det_triangular,
    named,
    precisions,
    row_chunk,
)
from gmmjax._linalg import (
    cholesky,
    cholesky_factors,
    precision_cholesky,
    scale_tril_from_precision,
    tril_inverse,
)
from gmmjax._runtime.sharding import constrain_points, mesh_active

__all__ = [
    "COVARIANCE_TYPES",
    "MATMUL_PRECISIONS",
    "get_matmul_precision",
    "matmul_precision",
    "log_gaussian_kernel",
    "precision_cholesky",
    "scale_tril_from_precision",
    "tril_inverse",
    "cholesky",
    "cholesky_factors",
    "gaussian_kl",
    "gaussian_entropy",
    "gaussian_overlap",
    "log_gaussian_overlap",
]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical", "univariate")
MATMUL_PRECISIONS = ("highest", "high", "default", "tensorfloat32", "bfloat16", "float32")
_PRECISION: contextvars.ContextVar[str] = contextvars.ContextVar(
    "gmmjax_matmul_precision", default="highest"
)


def get_matmul_precision() -> str:
    """The matrix-product precision the kernel uses now (default ``"highest"``)."""
    return _PRECISION.get()


@contextlib.contextmanager
def matmul_precision(precision: str):
    """Choose the precision of the kernel's matrix products inside a ``with`` block.

    The default, ``"highest"``, computes float32 products in full float32 on every
    backend, so log-densities are accurate to float32 level. On NVIDIA GPUs JAX's own
    default for float32 matmuls is TF32 (10-bit mantissa inputs): with it a
    Mahalanobis term of 10³ carries an absolute error of about 1 nat.
    ``"default"`` (or ``"tensorfloat32"``, ``"bfloat16"``) trades that accuracy for
    the tensor cores' speed; on CPU every choice computes the same float32 product.
    Compiled estimators are cached per precision, so switching never reuses a
    program compiled for another one.

    Args:
      precision: one of :data:`MATMUL_PRECISIONS` (names of
        ``jax.default_matmul_precision``).

    Raises:
      ValueError: an unknown name.

    Example:
      >>> import jax.numpy as jnp
      >>> with matmul_precision("default"):
      ...     out = log_gaussian_kernel(jnp.zeros((2, 1)), jnp.zeros((1, 1)),
      ...                               jnp.ones((1, 1)), "diag")
      >>> out.shape
      (2, 1)
    """
    if precision not in MATMUL_PRECISIONS:
        raise ValueError(
            f"matmul precision must be one of {MATMUL_PRECISIONS}, got {precision!r}; "
            "'highest' keeps float32 accuracy, 'default' lets GPUs use TF32"
        )
    token = _PRECISION.set(precision)
    try:
        yield
    finally:
        _PRECISION.reset(token)


_LOG_2PI = math.log(2.0 * math.pi)


def _log_det_prec(prec: jax.Array, covariance_type: str, d: int) -> jax.Array:
    """``log|P|`` per component: shape ``(K,)`` (``()`` for tied)."""
    if covariance_type in ("full", "tied"):
        return log_det_triangular(prec)
    if covariance_type == "diag":
        return jnp.sum(jnp.log(prec), axis=-1)
    return d * jnp.log(prec)  # spherical, univariate


def log_gaussian_kernel(
    x: jax.Array, locs: jax.Array, prec: jax.Array, covariance_type: str
) -> jax.Array:
    """Log-densities of N points under K Gaussian components: the one kernel.

    ``out[n, k] = log N(x_n; μ_k, Σ_k)``, computed as a matrix product against the
    precision Cholesky (module docstring). Points and means are first shifted by
    the mean of the component means, so float32 keeps its accuracy for mixtures
    far from the origin.

    Args:
      x: ``(N, D)`` points (``(N,)`` for ``"univariate"``).
      locs: ``(K, D)`` component means (``(K,)`` for ``"univariate"``).
      prec: precision Cholesky in the layout of ``covariance_type`` (module docstring).
      covariance_type: one of :data:`COVARIANCE_TYPES`.

    The matrix products run at :func:`matmul_precision` (``"highest"`` by default:
    float32 accuracy on GPUs too, where JAX's default is TF32).

    Returns:
      ``(N, K)`` log-densities.

    Example:
      >>> import jax.numpy as jnp
      >>> out = log_gaussian_kernel(jnp.zeros((4, 2)), jnp.zeros((3, 2)),
      ...                           jnp.ones((3, 2)), "diag")
      >>> out.shape
      (4, 3)
    """
    return kernel_function(locs, prec, covariance_type)(x)


def kernel_function(locs: jax.Array, prec: jax.Array, covariance_type: str):
    """``x -> log_gaussian_kernel(x, locs, prec, covariance_type)``, parameter work done once.

    Create it outside a loop over chunks of points and call it inside: the full type's
    precision matrices ``Λ_k = P_k P_kᵀ`` (its derivative's input,
    :mod:`gmmjax._kernel_full`) are then formed once, and under ``grad`` their
    ``K·D³`` products run once, not in every chunk's reverse pass. The output carries
    the checkpoint name :data:`gmmjax._kernel_full.KERNEL_NAME`.
    """
    precision = _PRECISION.get()
    # where the elementwise work dominates (D = 1, or K·D <= 32), plain autodiff of the
    # GEMM form is faster: its tiny products cost less than the rule's (value_and_grad
    # / value of KL at D = 2, K = 5: 3.2x against 4.5x with the rule)
    custom = covariance_type == "full" and gemm_bound(*locs.shape)
    if custom:
        with jax.default_matmul_precision(precision):
            lam = precisions(prec)

    def apply(x):
        # split over the devices of a ``mesh=`` call (gmmjax._runtime.sharding)
        x = constrain_points(x)
        rows = None if mesh_active() else row_chunk(locs.shape, covariance_type)
        if custom:
            return named(full_log_density(x, locs, prec, lam, rows, precision))
        with jax.default_matmul_precision(precision):
            if covariance_type == "full":
                return named(in_blocks(x, locs, prec, rows))
            return named(_kernel(x, locs, prec, covariance_type))

    return apply


def _kernel(x, locs, prec, covariance_type):
    if covariance_type == "univariate":
        z = (x[:, None] - locs[None, :]) * prec[None, :]
        return -0.5 * z * z + jnp.log(prec)[None, :] - 0.5 * _LOG_2PI
    d = x.shape[-1]
    center = jax.lax.stop_gradient(jnp.mean(locs, axis=0))
    xc = x - center
    mc = locs - center
    log_det = _log_det_prec(prec, covariance_type, d)
    if covariance_type == "tied":
        y = xc @ prec
        m = mc @ prec
        maha = jnp.sum(y * y, axis=-1)[:, None] - 2.0 * (y @ m.T) + jnp.sum(m * m, axis=-1)[None, :]
        maha = jnp.maximum(maha, 0.0)
    elif covariance_type == "diag":
        # rescale each coordinate by its largest precision so that x², p² stay in range
        # at variances near float32's limits (1e±38); exact, since (x c)²(p/c)² = x²p²
        c = jax.lax.stop_gradient(jnp.max(prec, axis=0))
        xc, mc, prec = xc * c, mc * c, prec / c
        p2 = prec * prec
        maha = (xc * xc) @ p2.T - 2.0 * (xc @ (mc * p2).T) + jnp.sum(mc * mc * p2, axis=-1)[None, :]
        maha = jnp.maximum(maha, 0.0)
    elif covariance_type == "spherical":
        c = jax.lax.stop_gradient(jnp.max(prec))  # as for diag
        xc, mc, prec = xc * c, mc * c, prec / c
        p2 = prec * prec
        maha = (
            jnp.sum(xc * xc, axis=-1)[:, None] * p2[None, :]
            - 2.0 * (xc @ mc.T) * p2[None, :]
            + (jnp.sum(mc * mc, axis=-1) * p2)[None, :]
        )
        maha = jnp.maximum(maha, 0.0)
    else:
        raise ValueError(
            f"unknown covariance_type {covariance_type!r}; expected one of {COVARIANCE_TYPES}"
        )
    return -0.5 * maha + log_det - 0.5 * d * _LOG_2PI


def _is_univariate(loc: jax.Array, scale: jax.Array, univariate: bool | None) -> bool:
    """Univariate unless the scale has one more dimension than the location."""
    if univariate is not None:
        return univariate
    return scale.ndim < 2 or scale.ndim == loc.ndim


def gaussian_kl(
    loc_p: jax.Array,
    scale_tril_p: jax.Array,
    loc_q: jax.Array,
    scale_tril_q: jax.Array,
    *,
    univariate: bool | None = None,
) -> jax.Array:
    """KL(N(μ_p, Σ_p) ‖ N(μ_q, Σ_q)) in closed form, batched.

    With ``Σ = L Lᵀ``:

        KL = Σ_i log (L_q)_ii - Σ_i log (L_p)_ii
             + ½ ‖L_q⁻¹ L_p‖_F² + ½ ‖L_q⁻¹ (μ_q - μ_p)‖² - D/2.

    In 1-D (pass scalars: ``loc`` shape ``(...)`` and ``scale_tril`` the standard
    deviations, shape ``(...)``) this is
    ``ln(σ_q/σ_p) + (σ_p² + (μ_p - μ_q)²)/(2σ_q²) - ½``.

    Args:
      loc_p: ``(..., D)`` or ``(...)`` in 1-D.
      scale_tril_p: ``(..., D, D)`` lower Cholesky factor, or ``(...)`` std devs in 1-D.
      loc_q: like ``loc_p``.
      scale_tril_q: like ``scale_tril_p``.
      univariate: force the 1-D reading; by default 1-D when the scale has as many
        dimensions as the location.

    Returns:
      ``(...)`` KL divergences in nats.

    Example:
      >>> import jax.numpy as jnp
      >>> float(gaussian_kl(0.0, 1.0, 1.0, 1.0))
      0.5

    References:
      Kullback & Leibler (1951); the Cholesky form as in Rasmussen & Williams,
      *Gaussian Processes for Machine Learning* (2006), eq. A.23.
    """
    loc_p, scale_tril_p = jnp.asarray(loc_p), jnp.asarray(scale_tril_p)
    loc_q, scale_tril_q = jnp.asarray(loc_q), jnp.asarray(scale_tril_q)
    if _is_univariate(loc_p, scale_tril_p, univariate):
        ratio = scale_tril_p / scale_tril_q
        diff = (loc_p - loc_q) / scale_tril_q
        return -jnp.log(ratio) + 0.5 * (ratio * ratio + diff * diff) - 0.5
    d = loc_p.shape[-1]
    batch = jnp.broadcast_shapes(
        scale_tril_p.shape[:-2], scale_tril_q.shape[:-2], loc_p.shape[:-1], loc_q.shape[:-1]
    )
    lq = jnp.broadcast_to(scale_tril_q, batch + (d, d))
    lp = jnp.broadcast_to(scale_tril_p, batch + (d, d))
    diff = jnp.broadcast_to(loc_q - loc_p, batch + (d,))
    # L_q⁻¹ applied to D+1 right-hand sides at once
    rhs = jnp.concatenate([lp, diff[..., None]], axis=-1)
    sol = tril_inverse(lq) @ rhs
    m = sol[..., :d]
    v = sol[..., d]
    log_det_q = jnp.sum(jnp.log(jnp.diagonal(lq, axis1=-2, axis2=-1)), axis=-1)
    log_det_p = jnp.sum(jnp.log(jnp.diagonal(lp, axis1=-2, axis2=-1)), axis=-1)
    trace = jnp.sum(m * m, axis=(-1, -2))
    maha = jnp.sum(v * v, axis=-1)
    return log_det_q - log_det_p + 0.5 * (trace + maha - d)


def gaussian_entropy(scale_tril: jax.Array, *, univariate: bool = False) -> jax.Array:
    """Differential entropy of a Gaussian, ``½ D (1 + log 2π) + log|L|``, in nats.

    Args:
      scale_tril: ``(..., D, D)`` lower Cholesky factor, or ``(...)`` std devs when
        ``univariate=True``.
      univariate: treat ``scale_tril`` as 1-D standard deviations.

    Returns:
      ``(...)`` entropies.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(gaussian_entropy(jnp.eye(1))), 6)
      1.418939
    """
    scale_tril = jnp.asarray(scale_tril)
    if univariate:
        return 0.5 * (1.0 + _LOG_2PI) + jnp.log(scale_tril)
    d = scale_tril.shape[-1]
    log_det = jnp.sum(jnp.log(jnp.diagonal(scale_tril, axis1=-2, axis2=-1)), axis=-1)
    return 0.5 * d * (1.0 + _LOG_2PI) + log_det


def log_gaussian_overlap(
    loc_a: jax.Array,
    cov_a: jax.Array,
    loc_b: jax.Array,
    cov_b: jax.Array,
    *,
    univariate: bool | None = None,
) -> jax.Array:
    """``log ∫ N(x; a, A) N(x; b, B) dx = log N(a; b, A + B)``, batched.

    One Cholesky of ``A + B`` per pair. In 1-D pass variances of shape ``(...)``
    and locations of shape ``(...)``.

    Args:
      loc_a: ``(..., D)`` (or ``(...)`` in 1-D).
      cov_a: ``(..., D, D)`` covariance (or ``(...)`` variances in 1-D).
      loc_b: like ``loc_a``.
      cov_b: like ``cov_a``.

    Returns:
      ``(...)`` log overlaps.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(jnp.exp(log_gaussian_overlap(0.0, 1.0, 0.0, 1.0))), 6)
      0.282095
    """
    loc_a, cov_a = jnp.asarray(loc_a), jnp.asarray(cov_a)
    loc_b, cov_b = jnp.asarray(loc_b), jnp.asarray(cov_b)
    if _is_univariate(loc_a, cov_a, univariate):
        var = cov_a + cov_b
        diff = loc_a - loc_b
        return -0.5 * (_LOG_2PI + jnp.log(var) + diff * diff / var)
    d = loc_a.shape[-1]
    chol, chol_inv = cholesky_factors(cov_a + cov_b)
    diff = loc_a - loc_b
    batch = jnp.broadcast_shapes(chol.shape[:-2], diff.shape[:-1])
    chol = jnp.broadcast_to(chol, batch + (d, d))
    diff = jnp.broadcast_to(diff, batch + (d,))
    z = (jnp.broadcast_to(chol_inv, batch + (d, d)) @ diff[..., None])[..., 0]
    log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    return -0.5 * jnp.sum(z * z, axis=-1) - log_det - 0.5 * d * _LOG_2PI


def gaussian_overlap(loc_a, cov_a, loc_b, cov_b, *, univariate=None) -> jax.Array:
    """``∫ N(x; a, A) N(x; b, B) dx``; see :func:`log_gaussian_overlap`."""
    return jnp.exp(log_gaussian_overlap(loc_a, cov_a, loc_b, cov_b, univariate=univariate))
