"""Monte Carlo divergences between Gaussian mixtures: KL, JS, Jeffreys, entropies.

Every estimator comes in two forms: ``*_estimate`` returns an
:class:`Estimate` ``(value, stderr, num_samples)``; the plain form returns only
the value, a differentiable scalar (or an array of the batch shape) to use as a
loss. ``jax.grad`` flows to every parameter of ``p`` and ``q``.

Conventions:

* Natural logarithms: results are in nats.
* ``num_samples`` counts the points drawn from *each* sampled distribution.
  ``kl(p, q)``, ``cross_entropy(p, q)``, ``entropy(p)`` and ``renyi(p, q)`` sample
  ``p`` only; ``js``, ``jeffreys``, ``total_variation``, ``squared_hellinger`` and
  ``f_divergence`` sample both ``p`` and ``q`` (``num_samples`` from each).
* ``JS(p, q) = ½ KL(p‖m) + ½ KL(q‖m)``, ``m = (p + q)/2``, within ``[0, log 2]``.
  TensorFlow Probability's ``jensen_shannon`` (with ``self_normalized=False``) is
  twice this.

Methods (``method=``; see :mod:`gmmjax.montecarlo.sampling`): ``"iid"``, ``"stratified"``,
``"antithetic"``, ``"qmc"``, ``"cv"`` (antithetic pairs plus control variates with exact
Gaussian expectations, :mod:`gmmjax.montecarlo.control_variates`; for JS importance
sampling on the overlap of ``p`` and ``q``) and ``"auto"`` (the
default: ``"qmc"`` in 1-D and 2-D, ``"cv"`` from D = 3, chosen by measurement: see the
``docs/guide/divergences.md`` and ``benchmarks/bench_div_efficiency.py``). A non-Gaussian
NumPyro distribution is always sampled iid with its own ``sample``; its parameters
get the pathwise gradient when it ``has_rsample`` and none through the draw
otherwise (only through ``log_prob``).

References:
  Kullback & Leibler (1951); Lin, *Divergence measures based on the Shannon
  entropy*, IEEE Trans. Inf. Theory 37 (1991), eq. 4.1 (JS); Roeder, Wu & Duvenaud,
  *Sticking the landing*, NeurIPS 2017, eq. 8.
"""

from __future__ import annotations

import math
import operator

import jax
import jax.numpy as jnp

from gmmjax._runtime.compile import compiled
from gmmjax.mixture import GaussianMixture
from gmmjax.montecarlo._entry import (
    _batched,
    _estimate,
    _log_ratio,
    _one_side,
    _two_sides,
    _warn_overflow,
)
from gmmjax.montecarlo._estimators import (
    Estimate,
    log_density,
)
from gmmjax.montecarlo._overlap import binary_entropy, js_overlap
from gmmjax.montecarlo.control_variates import cv_or_plain

__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_NUM_SAMPLES",
    "Estimate",
    "cross_entropy",
    "cross_entropy_estimate",
    "entropy",
    "entropy_estimate",
    "jeffreys_divergence",
    "jeffreys_estimate",
    "js_divergence",
    "js_estimate",
    "kl_divergence",
    "kl_estimate",
]

DEFAULT_METHOD = "auto"
DEFAULT_NUM_SAMPLES = 10_000
_LOG2 = math.log(2.0)


# -------------------------------------------------------------------- KL
@compiled(post=_warn_overflow)
def kl_estimate(
    p,
    q,
    key,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method: str = DEFAULT_METHOD,
    stl: bool = False,
    chunk_size: int | None = None,
    mesh=None,
) -> Estimate:
    """``KL(p‖q) = E_p[log p(x) - log q(x)]`` with a standard error.

    Samples come from ``p``. With ``stl=True`` ("sticking the landing") the
    parameters of ``p`` inside ``log p(x)`` are held constant: the value is
    unchanged and the gradient drops the zero-mean score term, which is what you
    want when ``p`` is the distribution being optimized (reverse KL in VI).

    Args:
      p: a `GaussianMixture`, NumPyro ``Normal``, ``MultivariateNormal``,
        ``MixtureSameFamily`` of those, or any NumPyro distribution (iid draws).
      q: as ``p``, with the same event shape; batch shapes broadcast.
      key: a JAX PRNG key, or an integer seed (``0`` means ``jax.random.key(0)``).
      num_samples: static number of points drawn from ``p``.
      method: ``"auto"`` (default: by dimension), ``"iid"``, ``"stratified"``,
        ``"antithetic"``, ``"qmc"`` or ``"cv"``.
      stl: stop the gradient of ``p``'s parameters inside ``log p``.
      chunk_size: points evaluated at once (default: sized from K and D so the
        kernel's intermediates stay about 16 MiB); bounds memory for large N.
      mesh: a ``jax.sharding.Mesh``: split the samples of the estimate (or, for a
        batch of pairs, the pairs) over its devices; the result equals the
        single-device one for the same key up to float rounding (``gmmjax._runtime.sharding``).

    Returns:
      `Estimate` of shape ``broadcast(p.batch_shape, q.batch_shape)``.

    Raises:
      ValueError: unknown method, dimensions that differ, too few samples for the
        method, batch shapes that do not broadcast.
      TypeError: ``num_samples`` not an int, ``p`` or ``q`` not a distribution.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gmmjax import GaussianMixture, kl_estimate, gaussian_kl
      >>> p = GaussianMixture(jnp.array([1.0]), jnp.array([0.0]), scale=jnp.array([1.0]))
      >>> q = GaussianMixture(jnp.array([1.0]), jnp.array([1.0]), scale=jnp.array([2.0]))
      >>> est = kl_estimate(p, q, jax.random.key(0), 20_000)
      >>> truth = gaussian_kl(0.0, 1.0, 1.0, 2.0)
      >>> bool(abs(est.value - truth) < 4 * est.stderr)
      True
    """

    def fn(p, q, key, n, method, chunk):
        if method == "cv":
            pe = jax.tree_util.tree_map(jax.lax.stop_gradient, p) if stl else p
            out = cv_or_plain(p, (pe, q), key, n, operator.sub, (1.0, -1.0), chunk=chunk, own=0)
            return _estimate(*out)
        h = _log_ratio(p, q, stop_p=stl)
        return _estimate(*_one_side(p, key, n, method, chunk, h))

    return _batched(fn, (p, q), key, num_samples, method, chunk_size)


def kl_divergence(p, q, key, num_samples: int = DEFAULT_NUM_SAMPLES, **kwargs) -> jax.Array:
    """``KL(p‖q)`` in nats, differentiable; :func:`kl_estimate` without the error bar.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gmmjax import GaussianMixture, kl_divergence
      >>> p = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([-1.0, 1.0]), scale=jnp.ones(2))
      >>> float(kl_divergence(p, p, jax.random.key(0), 1000))
      0.0
    """
    return kl_estimate(p, q, key, num_samples, **kwargs).value


# -------------------------------------------------------------------- JS
@compiled(post=_warn_overflow)
def js_estimate(
    p,
    q,
    key,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method: str = DEFAULT_METHOD,
    chunk_size: int | None = None,
    mesh=None,
) -> Estimate:
    """Jensen–Shannon divergence ``½ KL(p‖m) + ½ KL(q‖m)``, ``m = ½(p + q)``, in nats.

    ``num_samples`` points are drawn from *each* of ``p`` and ``q``; together they
    are a stratified draw from ``m``, and

        JS = E_m[log 2 - H_b(s(x))],   s = p / (p + q),

    with ``H_b`` the binary entropy in nats. Every term lies in ``[0, log 2]``, so the
    estimate does too. TFP's ``jensen_shannon`` is twice this (``2 JS``).

    ``method="cv"`` (two `GaussianMixture`; what ``"auto"`` runs from D = 3, measured
    in :func:`~gmmjax.montecarlo.control_variates.auto_method`) instead draws
    ``2 · num_samples`` points from a proposal concentrated on the overlap of ``p`` and
    ``q`` and estimates
    ``E_m[H_b(s)]`` by importance sampling with bounded weights; the value is clipped
    to ``[0, log 2]`` (:mod:`gmmjax.montecarlo._overlap`). Where ``p`` and ``q`` barely
    overlap it needs 100-1000× fewer samples than iid, and 6-22× where they overlap
    moderately (JS 0.38-0.63 at D = 8 to 64; ``benchmarks/RESULTS.md``).

    Args:
      p, q, key, num_samples, method, chunk_size: as :func:`kl_estimate`.

    Returns:
      `Estimate` with ``value`` in ``[0, log 2]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gmmjax import GaussianMixture, js_estimate
      >>> p = GaussianMixture(jnp.array([1.0]), jnp.array([0.0]), scale=jnp.array([1.0]))
      >>> q = GaussianMixture(jnp.array([1.0]), jnp.array([100.0]), scale=jnp.array([1.0]))
      >>> round(float(js_estimate(p, q, jax.random.key(0), 1000).value), 4)  # log 2
      0.6931
    """

    def fn(p, q, key, n, method, chunk):
        if method == "cv" and isinstance(p, GaussianMixture) and isinstance(q, GaussianMixture):
            v, se, used = js_overlap(p, q, key, n, chunk=chunk)
        else:
            # JS = log 2 - E_m[H_b(s)]: average H_b (near 0 where p and q barely overlap),
            # not log 2 - H_b (near log 2), whose float32 sum loses ~1e-5 to rounding.
            # binary_entropy caps |Δ|, so Δ = ±inf (a density underflowed) gives H_b = 0
            # with a zero gradient, and the value is exactly log 2.
            d = _log_ratio(p, q)
            h = lambda x: binary_entropy(d(x))  # noqa: E731
            i, se, used = _two_sides(p, q, key, n, method, chunk, h, h, 0.5, 0.5)
            v = jnp.clip(_LOG2 - i, 0.0, _LOG2)
        # the value's own rounding (log 2 is inexact in float32): no stderr below it
        se = jnp.maximum(se, jnp.finfo(v.dtype).eps * v)
        return _estimate(v, se, used)

    return _batched(fn, (p, q), key, num_samples, method, chunk_size)


def js_divergence(p, q, key, num_samples: int = DEFAULT_NUM_SAMPLES, **kwargs) -> jax.Array:
    """Jensen–Shannon divergence in nats (``[0, log 2]``); :func:`js_estimate`'s value."""
    return js_estimate(p, q, key, num_samples, **kwargs).value


# -------------------------------------------------------------- Jeffreys
@compiled(post=_warn_overflow)
def jeffreys_estimate(
    p,
    q,
    key,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method: str = DEFAULT_METHOD,
    stl: bool = False,
    chunk_size: int | None = None,
    mesh=None,
) -> Estimate:
    """Jeffreys divergence ``KL(p‖q) + KL(q‖p)`` (symmetric KL), samples from both sides.

    Args:
      p, q, key, num_samples, method, chunk_size: as :func:`kl_estimate`.
      stl: hold each side's own parameters constant inside its own log-density.

    Returns:
      `Estimate`.
    """

    def fn(p, q, key, n, method, chunk):
        if method == "cv":
            kp, kq = jax.random.split(key)
            sg = lambda d: jax.tree_util.tree_map(jax.lax.stop_gradient, d) if stl else d  # noqa: E731
            sub, b = operator.sub, (1.0, -1.0)
            vp, sp, used = cv_or_plain(p, (sg(p), q), kp, n, sub, b, chunk=chunk, own=0)
            vq, sq, _ = cv_or_plain(q, (sg(q), p), kq, n, sub, b, chunk=chunk, own=0)
            return _estimate(vp + vq, jnp.sqrt(sp**2 + sq**2), used)
        hp = _log_ratio(p, q, stop_p=stl)
        hq = _log_ratio(q, p, stop_p=stl)
        return _estimate(*_two_sides(p, q, key, n, method, chunk, hp, hq, 1.0, 1.0))

    return _batched(fn, (p, q), key, num_samples, method, chunk_size)


def jeffreys_divergence(p, q, key, num_samples: int = DEFAULT_NUM_SAMPLES, **kwargs) -> jax.Array:
    """``KL(p‖q) + KL(q‖p)``; :func:`jeffreys_estimate`'s value."""
    return jeffreys_estimate(p, q, key, num_samples, **kwargs).value


# ------------------------------------------------------- (cross-)entropy
@compiled(post=_warn_overflow)
def cross_entropy_estimate(
    p,
    q,
    key,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method: str = DEFAULT_METHOD,
    chunk_size: int | None = None,
    mesh=None,
) -> Estimate:
    """Cross-entropy ``H(p, q) = -E_p[log q(x)]`` in nats; samples from ``p``.

    Args:
      p, q, key, num_samples, method, chunk_size: as :func:`kl_estimate`.

    Returns:
      `Estimate`.
    """

    def fn(p, q, key, n, method, chunk):
        if method == "cv":
            return _estimate(*cv_or_plain(p, (q,), key, n, operator.neg, (-1.0,), chunk=chunk))
        lq = log_density(q)
        return _estimate(*_one_side(p, key, n, method, chunk, lambda x: -lq(x)))

    return _batched(fn, (p, q), key, num_samples, method, chunk_size)


def cross_entropy(p, q, key, num_samples: int = DEFAULT_NUM_SAMPLES, **kwargs) -> jax.Array:
    """``-E_p[log q]``; :func:`cross_entropy_estimate`'s value."""
    return cross_entropy_estimate(p, q, key, num_samples, **kwargs).value


@compiled(post=_warn_overflow)
def entropy_estimate(
    p,
    key,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method: str = DEFAULT_METHOD,
    stl: bool = False,
    chunk_size: int | None = None,
    mesh=None,
) -> Estimate:
    """Differential entropy ``H(p) = -E_p[log p(x)]`` in nats (no closed form for mixtures).

    Args:
      p, key, num_samples, method, chunk_size: as :func:`kl_estimate`.
      stl: hold ``p``'s parameters constant inside ``log p`` (value unchanged).

    Returns:
      `Estimate`.

    Example:
      >>> import jax, jax.numpy as jnp, math
      >>> from gmmjax import GaussianMixture, entropy_estimate
      >>> p = GaussianMixture(jnp.array([1.0]), jnp.array([0.0]), scale=jnp.array([1.0]))
      >>> est = entropy_estimate(p, jax.random.key(1), 20_000)
      >>> bool(abs(est.value - 0.5 * math.log(2 * math.pi * math.e)) < 4 * est.stderr)
      True
    """

    def fn(p, key, n, method, chunk):
        if method == "cv":
            pe = jax.tree_util.tree_map(jax.lax.stop_gradient, p) if stl else p
            return _estimate(
                *cv_or_plain(p, (pe,), key, n, operator.neg, (-1.0,), chunk=chunk, own=0)
            )
        lp = log_density(p, stop=stl)
        return _estimate(*_one_side(p, key, n, method, chunk, lambda x: -lp(x)))

    return _batched(fn, (p,), key, num_samples, method, chunk_size)


def entropy(p, key, num_samples: int = DEFAULT_NUM_SAMPLES, **kwargs) -> jax.Array:
    """``-E_p[log p]``; :func:`entropy_estimate`'s value."""
    return entropy_estimate(p, key, num_samples, **kwargs).value
