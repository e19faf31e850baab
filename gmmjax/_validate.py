"""Argument checks for `GaussianMixture`: clear errors outside ``jit``.

Every check runs only when its arguments are concrete arrays; under a trace the
values are unknown and the checks are skipped (shape checks still run).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gmmjax.gaussian import COVARIANCE_TYPES, cholesky, scale_tril_from_precision

# number of trailing (non-batch) dimensions of the stored scale factor
SCALE_NDIM = {"full": 3, "tied": 2, "diag": 2, "spherical": 1, "univariate": 1}


def is_concrete(*arrays) -> bool:
    """True when no argument is a JAX tracer (so its values can be inspected)."""
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def _float(a):
    a = jnp.asarray(a)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.result_type(float))
    return a


def _check_finite(name: str, a) -> None:
    if is_concrete(a):
        arr = np.asarray(a)
        if not np.all(np.isfinite(arr)):
            bad = int(np.sum(~np.isfinite(arr)))
            raise ValueError(
                f"GaussianMixture: `{name}` contains {bad} NaN or infinite value(s); "
                "every parameter must be finite"
            )


def _weights_tolerance(dtype) -> float:
    # float32 sums of K weights carry ~K·eps rounding; 1e-4 leaves margin for K ≲ 1000,
    # and float64 users get the tighter 1e-8.
    return 1e-8 if dtype == jnp.float64 else 1e-4


def _check_simplex(weights) -> None:
    if not is_concrete(weights):
        return
    w = np.asarray(weights)
    if np.any(w < 0):
        raise ValueError(
            f"GaussianMixture: weights must be nonnegative, got min {w.min():.3g}; "
            "pass probabilities, or unnormalized log-weights as logits="
        )
    s = w.sum(-1)
    tol = _weights_tolerance(w.dtype)
    if np.any(np.abs(s - 1.0) > tol):
        worst = s.flat[int(np.argmax(np.abs(s - 1.0)))]
        raise ValueError(
            f"GaussianMixture: weights must sum to 1 over the last axis (tolerance {tol:g}), "
            f"got a sum of {worst:.8g}; normalize them with w / w.sum(-1, keepdims=True) "
            "or pass logits= instead"
        )


def _expected_cov_shape(covariance_type: str, k: int, d: int) -> tuple[int, ...]:
    return {
        "full": (k, d, d),
        "tied": (d, d),
        "diag": (k, d),
        "spherical": (k,),
        "univariate": (k,),
    }[covariance_type]


def _not_pd(name: str, covariance_type: str) -> ValueError:
    return ValueError(
        f"GaussianMixture: `{name}` is not positive definite "
        f"(covariance_type={covariance_type!r}); every component covariance must be "
        "symmetric positive definite: add a small multiple of the identity "
        "(as reg_covar does) or check the input"
    )


def _check_symmetric(name: str, m) -> None:
    if not is_concrete(m):
        return
    a = np.asarray(m)
    scale = max(float(np.max(np.abs(a))), 1e-30)
    tol = 1e-5 if a.dtype == np.float32 else 1e-10
    if np.max(np.abs(a - np.swapaxes(a, -1, -2))) > tol * scale:
        raise ValueError(
            f"GaussianMixture: `{name}` is not symmetric; pass (C + C.T) / 2 or a Cholesky "
            "factor as scale_tril="
        )


def _scale_from(covariance_type, covariance_matrix, precision_matrix, scale_tril, scale):
    """Convert the one given covariance argument to the stored factor."""
    dense = covariance_type in ("full", "tied")
    if covariance_matrix is not None:
        c = _float(covariance_matrix)
        _check_finite("covariance_matrix", c)
        if dense:
            _check_symmetric("covariance_matrix", c)
            return "covariance_matrix", cholesky(c)
        if is_concrete(c) and np.any(np.asarray(c) <= 0):
            raise _not_pd("covariance_matrix", covariance_type)
        return "covariance_matrix", jnp.sqrt(c)
    if precision_matrix is not None:
        c = _float(precision_matrix)
        _check_finite("precision_matrix", c)
        if dense:
            _check_symmetric("precision_matrix", c)
            return "precision_matrix", scale_tril_from_precision(c)
        if is_concrete(c) and np.any(np.asarray(c) <= 0):
            raise _not_pd("precision_matrix", covariance_type)
        return "precision_matrix", jax.lax.rsqrt(c)
    name = "scale_tril" if scale_tril is not None else "scale"
    s = _float(scale_tril if scale_tril is not None else scale)
    _check_finite(name, s)
    if dense:
        if name == "scale":
            raise TypeError(
                f"scale= is for diag, spherical and univariate mixtures; for "
                f"covariance_type={covariance_type!r} pass scale_tril= (a lower Cholesky factor)"
            )
        return name, jnp.tril(s)
    return name, s


def check_mixture_params(
    *,
    weights,
    logits,
    locs,
    covariance_matrix,
    precision_matrix,
    scale_tril,
    scale,
    covariance_type,
):
    """Validate and normalize the arguments of `GaussianMixture`.

    Returns:
      ``(logits, locs, scale_param, covariance_type)`` with normalized logits and
      every array broadcast to the common batch shape.
    """
    if (weights is None) == (logits is None):
        raise TypeError("GaussianMixture: pass exactly one of weights or logits=")
    if locs is None:
        raise TypeError("GaussianMixture: locs is required, shape (..., K, D) or (..., K)")
    given = [
        n
        for n, v in [
            ("covariance_matrix", covariance_matrix),
            ("precision_matrix", precision_matrix),
            ("scale_tril", scale_tril),
            ("scale", scale),
        ]
        if v is not None
    ]
    if len(given) != 1:
        raise TypeError(
            "GaussianMixture: pass exactly one of covariance_matrix=, precision_matrix=, "
            f"scale_tril= or scale=; got {given or 'none'}"
        )
    locs = _float(locs)
    _check_finite("locs", locs)
    if weights is not None:
        w = _float(weights)
        _check_finite("weights", w)
        _check_simplex(w)
        logits = jnp.log(w)
    else:
        logits = _float(logits)
        _check_finite("logits", logits)
        logits = jax.nn.log_softmax(logits, axis=-1)
    if logits.ndim == 0:
        raise ValueError("GaussianMixture: weights must have shape (..., K), got a scalar")
    k = logits.shape[-1]
    if covariance_type is None:
        covariance_type = "univariate" if locs.ndim == logits.ndim else "full"
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"GaussianMixture: covariance_type must be one of {COVARIANCE_TYPES}, "
            f"got {covariance_type!r}"
        )
    univariate = covariance_type == "univariate"
    ev = 0 if univariate else 1
    if locs.ndim < 1 + ev or locs.shape[locs.ndim - 1 - ev] != k:
        want = "(..., K)" if univariate else "(..., K, D)"
        raise ValueError(
            f"GaussianMixture: locs must have shape {want} with K={k} components "
            f"(from the weights), got {locs.shape}"
        )
    d = 1 if univariate else locs.shape[-1]
    name, scale_param = _scale_from(
        covariance_type, covariance_matrix, precision_matrix, scale_tril, scale
    )
    nsp = SCALE_NDIM[covariance_type]
    want = _expected_cov_shape(covariance_type, k, d)
    if scale_param.ndim < nsp or scale_param.shape[scale_param.ndim - nsp :] != want:
        raise ValueError(
            f"GaussianMixture: `{name}` must have shape (...,) + {want} for "
            f"covariance_type={covariance_type!r} with K={k}, D={d}; got {scale_param.shape}"
        )
    if is_concrete(scale_param):
        sp = np.asarray(scale_param)
        diag = np.diagonal(sp, axis1=-2, axis2=-1) if covariance_type in ("full", "tied") else sp
        if not np.all(np.isfinite(sp)) or np.any(diag <= 0):
            raise _not_pd(name, covariance_type)
    try:
        batch = jnp.broadcast_shapes(
            logits.shape[:-1],
            locs.shape[: locs.ndim - 1 - ev],
            scale_param.shape[: scale_param.ndim - nsp],
        )
    except ValueError:
        raise ValueError(
            "GaussianMixture: the batch shapes of weights "
            f"{logits.shape[:-1]}, locs {locs.shape[: locs.ndim - 1 - ev]} and "
            f"{name} {scale_param.shape[: scale_param.ndim - nsp]} do not broadcast"
        ) from None
    logits = jnp.broadcast_to(logits, batch + (k,))
    locs = jnp.broadcast_to(locs, batch + locs.shape[locs.ndim - 1 - ev :])
    scale_param = jnp.broadcast_to(scale_param, batch + want)
    return logits, locs, scale_param, covariance_type
