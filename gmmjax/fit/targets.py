"""Ready-made losses for :func:`gmmjax.fit.gradient.fit_gradient`.

* :func:`fit_ml`: maximum likelihood on data (full batch or minibatches).
* :func:`fit_to_target`: fit a mixture ``q`` to a target by minimizing a
  divergence. The target may be

  - an unnormalized log-density ``f(x) = log p(x) + const`` (a callable):
    reverse ``KL(q‖p)`` up to the constant, with sticking-the-landing gradients;
  - any NumPyro distribution: reverse KL (default), forward ``KL(p‖q)`` or JS,
    by Monte Carlo (:mod:`gmmjax.montecarlo.divergences`);
  - a Gaussian mixture (or NumPyro Gaussian): additionally the closed-form
    Cauchy–Schwarz divergence and squared L2 distance (:mod:`gmmjax.deterministic.closed_form`).

Reverse KL is mode seeking: started on one side, ``q`` can leave a mode of ``p``
uncovered for good, because ``KL(q‖p)`` only looks where ``q`` has mass. JS and
Cauchy–Schwarz see both densities, so they pull components onto every mode.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from gmmjax.deterministic.closed_form import cauchy_schwarz_divergence, squared_l2_distance
from gmmjax.fit.gradient import GradientFit, fit_gradient
from gmmjax.mixture import GaussianMixture
from gmmjax.montecarlo.divergences import js_divergence, kl_divergence
from gmmjax.montecarlo.sampling import as_gaussian_mixture

__all__ = ["DIVERGENCES", "fit_ml", "fit_to_target"]

DIVERGENCES = ("reverse_kl", "kl", "js", "cs", "l2")


class _UnnormalizedTarget:
    """An unnormalized log-density seen as a distribution that is never sampled."""

    def __init__(self, log_prob: Callable, event_shape):
        self.log_prob = log_prob
        self.event_shape = tuple(event_shape)
        self.batch_shape = ()

    def sample(self, key, sample_shape=()):
        raise TypeError(
            "an unnormalized log-density cannot be sampled; use divergence='reverse_kl'"
        )


def fit_ml(
    x,
    init: GaussianMixture,
    *,
    key,
    num_steps: int = 1000,
    optimizer: optax.GradientTransformation | None = None,
    batch_size: int | None = None,
    sample_weight=None,
) -> GradientFit:
    """Maximum likelihood by gradient descent on ``-(1/Σs) Σ_n s_n log q(x_n)``.

    Args:
      x: ``(N, D)`` data (``(N,)`` for a univariate ``init``).
      init: starting mixture (e.g. from :func:`gmmjax.fit_em` with few iterations).
      key: PRNG key (minibatches).
      num_steps: optimizer steps.
      optimizer: optax transformation (default ``optax.adam(0.05)``).
      batch_size: minibatch size drawn with replacement per step (``None``: all data).
      sample_weight: ``(N,)`` nonnegative weights.

    Returns:
      :class:`~gmmjax.fit.gradient.GradientFit`; ``losses`` are the per-step
      negative mean log-likelihoods (on the minibatch when ``batch_size`` is set).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> x = jnp.concatenate([jnp.linspace(-3.5, -2.5, 50), jnp.linspace(2.5, 3.5, 50)])
      >>> init = GaussianMixture(jnp.ones(2) / 2, jnp.array([-1.0, 1.0]), scale=jnp.ones(2))
      >>> fit = fit_ml(x, init, key=jax.random.key(0), num_steps=400)
      >>> sorted(round(float(m), 1) for m in fit.mixture.locs)
      [-3.0, 3.0]
    """
    x = jnp.asarray(x)
    n = x.shape[0]
    w = jnp.ones(n, x.dtype) if sample_weight is None else jnp.asarray(sample_weight, x.dtype)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")

    def loss(m, k):
        if batch_size is None:
            xb, wb = x, w
        else:
            idx = jax.random.randint(k, (int(batch_size),), 0, n)
            xb, wb = x[idx], w[idx]
        return -jnp.sum(wb * m.log_prob(xb)) / jnp.sum(wb)

    return fit_gradient(loss, init, key=key, num_steps=num_steps, optimizer=optimizer)


def fit_to_target(
    target,
    init: GaussianMixture,
    *,
    key,
    divergence: str = "reverse_kl",
    num_samples: int = 1000,
    num_steps: int = 1000,
    optimizer: optax.GradientTransformation | None = None,
    method: str = "stratified",
) -> GradientFit:
    """Fit ``q`` (starting at ``init``) to ``target`` by minimizing a divergence.

    Args:
      target: a callable unnormalized log-density ``x -> log p(x) + c`` (only
        ``"reverse_kl"``), any NumPyro distribution, or a `GaussianMixture`.
      init: the starting mixture ``q``.
      key: PRNG key.
      divergence: ``"reverse_kl"`` ``KL(q‖p)`` (sticking-the-landing gradient),
        ``"kl"`` ``KL(p‖q)`` (samples from the target), ``"js"`` (Jensen–Shannon,
        samples from both), ``"cs"`` (Cauchy–Schwarz, closed form) or ``"l2"``
        (squared L2 distance, closed form); the last two need a Gaussian target.
      num_samples: Monte Carlo points per step and side (static).
      num_steps: optimizer steps.
      optimizer: optax transformation (default ``optax.adam(0.05)``).
      method: sampling plan of :mod:`gmmjax.montecarlo.divergences` (``"qmc"``, ``"stratified"``,
        ``"antithetic"``, ``"iid"``); stratified plans give the weights an exact
        pathwise gradient.

    Returns:
      :class:`~gmmjax.fit.gradient.GradientFit`. With a callable target the losses
      are ``KL(q‖p) - log Z`` (the normalizer is unknown).

    Raises:
      ValueError: unknown divergence, or one that the target does not support.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> log_p = lambda x: -0.5 * ((x - 2.0) / 0.5) ** 2   # N(2, 0.5²), unnormalized
      >>> init = GaussianMixture(jnp.ones(1), jnp.zeros(1), scale=jnp.ones(1))
      >>> fit = fit_to_target(log_p, init, key=jax.random.key(0), num_steps=300,
      ...                     num_samples=256)
      >>> round(float(fit.mixture.locs[0]), 1), round(float(fit.mixture.scale_param[0]), 1)
      (2.0, 0.5)

    References:
      Roeder, Wu & Duvenaud, NeurIPS 2017, eq. 8; Lin, IEEE Trans. Inf. Theory 37
      (1991) (JS); Kampa, Hasanbelliu & Principe, IJCNN 2011 (closed-form CS).
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    n = int(num_samples)
    if callable(target) and not hasattr(target, "log_prob"):
        if divergence != "reverse_kl":
            raise ValueError(
                "a log-density function supports only divergence='reverse_kl' (it cannot be "
                f"sampled or integrated); got {divergence!r}. Pass a NumPyro distribution "
                "or a GaussianMixture for the other divergences"
            )
        target = _UnnormalizedTarget(target, init.event_shape)
    gauss = as_gaussian_mixture(target)
    if divergence in ("cs", "l2") and gauss is None:
        raise ValueError(
            f"divergence={divergence!r} is a closed form for Gaussian mixtures; the target is "
            f"a {type(target).__name__}. Use 'reverse_kl', 'kl' or 'js'"
        )

    def loss(q, k):
        if divergence == "reverse_kl":
            return kl_divergence(q, target, k, n, method=method, stl=True)
        if divergence == "kl":
            return kl_divergence(target, q, k, n, method=method)
        if divergence == "js":
            return js_divergence(q, target, k, n, method=method)
        if divergence == "cs":
            return cauchy_schwarz_divergence(q, gauss)
        return squared_l2_distance(q, gauss)

    return fit_gradient(loss, init, key=key, num_steps=num_steps, optimizer=optimizer)
