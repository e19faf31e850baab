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
Gaussian expectations, :mod:`gmmjax.montecarlo.control_variates`) and ``"auto"`` (the
default: ``"qmc"`` in 1-D and 2-D, ``"cv"`` from D = 3, chosen by measurement: see the
README's ``divergences`` section and ``benchmarks/bench_div_efficiency.py``). A non-Gaussian
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

from gmmjax.mixture import GaussianMixture
from gmmjax.montecarlo._estimators import (
    Estimate,
    auto_chunk,
    expectation,
    kernel_cost,
    log_density,
)
from gmmjax.montecarlo.control_variates import auto_method, cv_or_plain
from gmmjax.montecarlo.sampling import METHODS, as_gaussian_mixture, min_samples

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


# ------------------------------------------------------------------ plumbing
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
        m = as_gaussian_mixture(d)
        if m is None and not (hasattr(d, "sample") and hasattr(d, "log_prob")):
            raise TypeError(
                "expected a GaussianMixture or a NumPyro distribution with sample and "
                f"log_prob, got {type(d).__name__}"
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
        return fn(*conv, key, n, method, chunk)
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
    return jax.tree_util.tree_map(lambda a: a.reshape(batch), out)


def _estimate(value, se, used):
    return Estimate(value, se, jnp.asarray(used, dtype=jnp.int32))


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


# -------------------------------------------------------------------- KL
def kl_estimate(
    p,
    q,
    key,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method: str = DEFAULT_METHOD,
    stl: bool = False,
    chunk_size: int | None = None,
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
      key: a JAX PRNG key.
      num_samples: static number of points drawn from ``p``.
      method: ``"auto"`` (default: by dimension), ``"iid"``, ``"stratified"``,
        ``"antithetic"``, ``"qmc"`` or ``"cv"``.
      stl: stop the gradient of ``p``'s parameters inside ``log p``.
      chunk_size: points evaluated at once (default: sized from K and D so the
        kernel's intermediates stay about 4 MiB); bounds memory for large N.

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
            out = cv_or_plain(p, (pe, q), key, n, operator.sub, (1.0, -1.0), chunk=chunk)
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
def _js_term(delta):
    """``log 2 - H_b(s)``, ``s = sigmoid(Δ)``: in ``[0, log 2]`` for every Δ."""
    s = jax.nn.sigmoid(delta)
    h_b = s * jax.nn.softplus(-delta) + (1.0 - s) * jax.nn.softplus(delta)
    return jnp.clip(_LOG2 - h_b, 0.0, _LOG2)


def js_estimate(
    p,
    q,
    key,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method: str = DEFAULT_METHOD,
    chunk_size: int | None = None,
) -> Estimate:
    """Jensen–Shannon divergence ``½ KL(p‖m) + ½ KL(q‖m)``, ``m = ½(p + q)``, in nats.

    ``num_samples`` points are drawn from *each* of ``p`` and ``q``; together they
    are a stratified draw from ``m``, and

        JS = E_m[log 2 - H_b(s(x))],   s = p / (p + q),

    with ``H_b`` the binary entropy in nats. Every term lies in ``[0, log 2]``, so the
    estimate does too. TFP's ``jensen_shannon`` is twice this (``2 JS``).

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
        if method == "cv":
            kp, kq = jax.random.split(key)
            t = lambda lp, lq: _js_term(lp - lq)  # noqa: E731
            kw = dict(chunk=chunk, js_bump=True)
            vp, sp, used = cv_or_plain(p, (p, q), kp, n, t, (0.0, 0.0), **kw)
            vq, sq, _ = cv_or_plain(q, (p, q), kq, n, t, (0.0, 0.0), **kw)
            return _estimate(0.5 * (vp + vq), 0.5 * jnp.sqrt(sp**2 + sq**2), used)
        d = _log_ratio(p, q)
        h = lambda x: _js_term(d(x))  # noqa: E731
        return _estimate(*_two_sides(p, q, key, n, method, chunk, h, h, 0.5, 0.5))

    return _batched(fn, (p, q), key, num_samples, method, chunk_size)


def js_divergence(p, q, key, num_samples: int = DEFAULT_NUM_SAMPLES, **kwargs) -> jax.Array:
    """Jensen–Shannon divergence in nats (``[0, log 2]``); :func:`js_estimate`'s value."""
    return js_estimate(p, q, key, num_samples, **kwargs).value


# -------------------------------------------------------------- Jeffreys
def jeffreys_estimate(
    p,
    q,
    key,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method: str = DEFAULT_METHOD,
    stl: bool = False,
    chunk_size: int | None = None,
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
            vp, sp, used = cv_or_plain(p, (sg(p), q), kp, n, sub, b, chunk=chunk)
            vq, sq, _ = cv_or_plain(q, (sg(q), p), kq, n, sub, b, chunk=chunk)
            return _estimate(vp + vq, jnp.sqrt(sp**2 + sq**2), used)
        hp = _log_ratio(p, q, stop_p=stl)
        hq = _log_ratio(q, p, stop_p=stl)
        return _estimate(*_two_sides(p, q, key, n, method, chunk, hp, hq, 1.0, 1.0))

    return _batched(fn, (p, q), key, num_samples, method, chunk_size)


def jeffreys_divergence(p, q, key, num_samples: int = DEFAULT_NUM_SAMPLES, **kwargs) -> jax.Array:
    """``KL(p‖q) + KL(q‖p)``; :func:`jeffreys_estimate`'s value."""
    return jeffreys_estimate(p, q, key, num_samples, **kwargs).value


# ------------------------------------------------------- (cross-)entropy
def cross_entropy_estimate(
    p,
    q,
    key,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method: str = DEFAULT_METHOD,
    chunk_size: int | None = None,
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


def entropy_estimate(
    p,
    key,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method: str = DEFAULT_METHOD,
    stl: bool = False,
    chunk_size: int | None = None,
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
            return _estimate(*cv_or_plain(p, (pe,), key, n, operator.neg, (-1.0,), chunk=chunk))
        lp = log_density(p, stop=stl)
        return _estimate(*_one_side(p, key, n, method, chunk, lambda x: -lp(x)))

    return _batched(fn, (p,), key, num_samples, method, chunk_size)


def entropy(p, key, num_samples: int = DEFAULT_NUM_SAMPLES, **kwargs) -> jax.Array:
    """``-E_p[log p]``; :func:`entropy_estimate`'s value."""
    return entropy_estimate(p, key, num_samples, **kwargs).value
