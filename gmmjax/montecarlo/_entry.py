"""The public entry of every Monte Carlo divergence (private): checks, the one conversion.

:func:`_check_common` validates the arguments and converts each input to a
`GaussianMixture` **once** (``as_gaussian_mixture``); :func:`_batched` broadcasts batch
shapes and maps the per-pair estimator over them; the layers below take mixtures only.
"""

from __future__ import annotations

import math
import operator
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from gmmjax._params import factor
from gmmjax._runtime.keys import as_key
from gmmjax._validate import describe
from gmmjax.mixture import GaussianMixture
from gmmjax.montecarlo._estimators import (
    Estimate,
    auto_chunk,
    expectation,
    kernel_cost,
    log_density,
)
from gmmjax.montecarlo.control_variates import auto_method
from gmmjax.montecarlo.sampling import METHODS, as_gaussian_mixture, min_samples


def _check_common(dists, num_samples, method, chunk_size):
    if method not in METHODS + ("auto",):
        raise ValueError(f"method must be 'auto' or one of {METHODS}, got {method!r}")
    try:
        num_samples = operator.index(num_samples)
    except TypeError:
        raise TypeError(
            f"num_samples must be a Python int (a static shape), got {type(num_samples).__name__}"
        ) from None
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    if chunk_size is not None and (operator.index(chunk_size) < 1):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size}")
    conv = []
    for d in dists:
        m = as_gaussian_mixture(d)  # the one conversion: the layers below take mixtures
        if m is None and not (hasattr(d, "sample") and hasattr(d, "log_prob")):
            raise TypeError(
                "expected a gmmjax.GaussianMixture, a fitted scikit-learn mixture or a "
                f"NumPyro distribution with sample and log_prob, got {describe(d)}"
            )
        if m is not None:
            # log-weights normalized inside the differentiated function, as the batched
            # path (_flatten) and NumPyro's Categorical do: the gradient in ``logits``
            # is then the same for one pair and for a batch, and sums to zero; the
            # factor made canonical (``_params.factor``) here, once, not in every chunk
            m = type(m).from_params(
                m.logits,
                m.locs,
                factor(m.scale_param, m.covariance_type),
                m.covariance_type,
                validate_args=m._validate_args,
            )
        conv.append(d if m is None else m)
    if method == "auto":
        method = auto_method(max(1, math.prod(conv[0].event_shape)))
    for m in conv:
        if isinstance(m, GaussianMixture) and num_samples < min_samples(m.n_components, method):
            raise ValueError(
                f"method={method!r} needs num_samples >= {min_samples(m.n_components, method)} "
                f"for a mixture of {m.n_components} components (at least one point, or pair, "
                f"per component); got {num_samples}. Increase num_samples or use method='iid'"
            )
    shapes = {tuple(d.event_shape) for d in conv}
    if len(shapes) > 1:
        raise ValueError(
            "p and q must have the same event shape (the same dimension), got "
            + " and ".join(str(tuple(d.event_shape)) for d in conv)
            + "; a univariate mixture has event_shape (), a D-dimensional one (D,)"
        )
    return conv, num_samples, method


def _flatten(m, batch, nb):
    m = m.expand(batch)
    lead = lambda a: a.reshape((nb,) + a.shape[len(batch) :])  # noqa: E731
    return type(m).from_params(lead(m.logits), lead(m.locs), lead(m.scale_param), m.covariance_type)


def _batched(fn, dists, key, num_samples, method, chunk_size):
    """Run ``fn(*unbatched, key, n, method, chunk) -> Estimate`` over the broadcast batch."""
    conv, n, method = _check_common(dists, num_samples, method, chunk_size)
    key = as_key(key)  # an integer seed is accepted too (issue 14, item 8)
    chunk = chunk_size or auto_chunk(sum(kernel_cost(d) for d in conv))
    gauss = [isinstance(d, GaussianMixture) for d in conv]
    for d, g in zip(conv, gauss, strict=True):
        if not g and tuple(d.batch_shape):
            raise ValueError(
                f"a non-Gaussian distribution must have batch_shape (), got {d.batch_shape}; "
                "vmap over the batch instead"
            )
    try:
        batch = jnp.broadcast_shapes(*[tuple(d.batch_shape) for d in conv])
    except ValueError:
        raise ValueError(
            "the batch shapes of p and q do not broadcast: "
            + " and ".join(str(tuple(d.batch_shape)) for d in conv)
        ) from None
    if not batch:
        return _warn_overflow(fn(*conv, key, n, method, chunk))
    nb = math.prod(batch)
    if chunk_size is None:
        # the chunk is per pair and vmap evaluates every pair's chunk at once: share the
        # memory budget among the pairs (at least 256 points each), so 10⁴ pairs fit
        chunk = max(256, chunk // nb)
    flat = [_flatten(d, batch, nb) if g else d for d, g in zip(conv, gauss, strict=True)]
    axes = tuple(0 if g else None for g in gauss) + (0,)
    out = jax.vmap(lambda *a: fn(*a[:-1], a[-1], n, method, chunk), in_axes=axes)(
        *flat, jax.random.split(key, nb)
    )
    return _warn_overflow(jax.tree_util.tree_map(lambda a: a.reshape(batch), out))


def _estimate(value, se, used):
    # an infinite value (float overflow, see _warn_overflow) has an infinite, not NaN, stderr
    se = jnp.where(jnp.isinf(value), jnp.inf, se)
    return Estimate(value, se, jnp.asarray(used, dtype=jnp.int32))


def _warn_overflow(out):
    """Outside ``jit``: say why a divergence came out infinite (it is finite for Gaussians)."""
    v = out.value
    if isinstance(v, jax.core.Tracer):
        return out
    # on the host (no compiled program per output shape) unless the value spans processes
    if v.is_fully_addressable:
        overflow = bool(np.isinf(np.asarray(v)).any())
    else:
        overflow = bool(jnp.any(jnp.isinf(v)))
    if not overflow:
        return out
    hint = (
        "enable float64 with jax.config.update('jax_enable_x64', True) (float32 overflows "
        "past 3.4e38)"
        if v.dtype == jnp.float32
        else "rescale the data: float64 overflows past 1.8e308"
    )
    warnings.warn(
        f"the estimate is infinite in {v.dtype}: a log-density ratio overflowed (components "
        f"so far apart or so narrow that the divergence exceeds the float range); {hint}",
        RuntimeWarning,
        stacklevel=3,
    )
    return out


def _one_side(d, key, n, method, chunk, h_fn, *, log_mode=False):
    return expectation(d, key, n, method, h_fn, chunk=chunk, log_mode=log_mode)


def _two_sides(p, q, key, n, method, chunk, h_p, h_q, wp, wq):
    """``wp E_p[h_p] + wq E_q[h_q]`` with independent draws from both sides."""
    kp, kq = jax.random.split(key)
    vp, sp, used = expectation(p, kp, n, method, h_p, chunk=chunk)
    vq, sq, _ = expectation(q, kq, n, method, h_q, chunk=chunk)
    return wp * vp + wq * vq, jnp.sqrt((wp * sp) ** 2 + (wq * sq) ** 2), used


def _log_ratio(p, q, *, stop_p=False, stop_q=False):
    lp, lq = log_density(p, stop=stop_p), log_density(q, stop=stop_q)
    return lambda x: lp(x) - lq(x)
