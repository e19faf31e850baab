"""Gradient-based fitting: maximum likelihood and divergence minimization with optax.

Parameters live in an *unconstrained* pytree (a dict of arrays) so that any
optax optimizer can move them freely:

=============  ==========================================================
key            meaning
=============  ==========================================================
``logits``     ``(K,)`` unnormalized log-weights (softmax gives the weights)
``locs``       ``(K, D)`` means (``(K,)`` for a univariate mixture)
``scale``      ``full``/``tied``: the lower Cholesky factor with its diagonal
               replaced by its logarithm (``L = tril(S, -1) + diag(exp(diag S))``);
               ``diag``/``spherical``/``univariate``: log standard deviations
=============  ==========================================================

:func:`to_unconstrained` and :func:`from_unconstrained` convert between a
`GaussianMixture` and that pytree; they are inverse to rounding and traceable::

    params = to_unconstrained(mixture)
    mixture = from_unconstrained(params, mixture.covariance_type)

:func:`fit_gradient` minimizes any ``loss(mixture, key)`` over the parameters
(one ``lax.scan`` over the steps, all compiled). :func:`fit_ml` and
:func:`fit_to_target` build the loss for the common cases.

References:
  Kingma & Ba, "Adam", ICLR 2015; Roeder, Wu & Duvenaud, "Sticking the landing",
  NeurIPS 2017, eq. 8 (reverse KL with the score term dropped); Pinheiro & Bates,
  "Unconstrained parametrizations for variance-covariance matrices", Statistics
  and Computing 6 (1996) (log-Cholesky).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gmmjax.mixture import GaussianMixture

__all__ = ["GradientFit", "fit_gradient", "from_unconstrained", "to_unconstrained"]


class GradientFit(NamedTuple):
    """Result of a gradient fit.

    Attributes:
      mixture: the fitted `GaussianMixture`.
      params: the final unconstrained parameters (:func:`to_unconstrained` layout).
      losses: ``(num_steps,)`` loss at each step (before its update).
    """

    mixture: GaussianMixture
    params: dict
    losses: jax.Array


def to_unconstrained(mixture: GaussianMixture) -> dict:
    """The unconstrained pytree ``{"logits", "locs", "scale"}`` of a mixture.

    Args:
      mixture: a `GaussianMixture` (any batch shape).

    Returns:
      A dict of arrays (layout in the module docstring).

    Example:
      >>> import jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> p = GaussianMixture(jnp.array([0.25, 0.75]), jnp.zeros((2, 2)),
      ...                     scale_tril=jnp.array([[[2.0, 0.0], [1.0, 1.0]]] * 2))
      >>> u = to_unconstrained(p)
      >>> [round(float(v), 4) for v in u["scale"][0].ravel()]  # log 2, 0; 1, log 1
      [0.6931, 0.0, 1.0, 0.0]
      >>> q = from_unconstrained(u, "full")
      >>> bool(jnp.allclose(q.component_covariance_matrix, p.component_covariance_matrix))
      True
    """
    s = mixture.scale_param
    if mixture.covariance_type in ("full", "tied"):
        diag = jnp.diagonal(s, axis1=-2, axis2=-1)
        raw = jnp.tril(s, -1) + _diag_embed(jnp.log(diag))
    else:
        raw = jnp.log(s)
    return {"logits": mixture.logits, "locs": mixture.locs, "scale": raw}


def _diag_embed(v):
    return v[..., :, None] * jnp.eye(v.shape[-1], dtype=v.dtype)


def from_unconstrained(params: dict, covariance_type: str) -> GaussianMixture:
    """The `GaussianMixture` of an unconstrained pytree (inverse of :func:`to_unconstrained`).

    Safe inside ``jit`` and ``grad`` (no value checks).

    Args:
      params: dict with ``logits``, ``locs`` and ``scale`` (module docstring).
      covariance_type: one of ``full``, ``tied``, ``diag``, ``spherical``, ``univariate``.

    Returns:
      The mixture.
    """
    raw = params["scale"]
    if covariance_type in ("full", "tied"):
        diag = jnp.diagonal(raw, axis1=-2, axis2=-1)
        scale = jnp.tril(raw, -1) + _diag_embed(jnp.exp(diag))
    else:
        scale = jnp.exp(raw)
    return GaussianMixture.from_params(params["logits"], params["locs"], scale, covariance_type)


def fit_gradient(
    loss: Callable,
    init: GaussianMixture,
    *,
    key,
    num_steps: int = 1000,
    optimizer: optax.GradientTransformation | None = None,
) -> GradientFit:
    """Minimize ``loss(mixture, key)`` over the mixture's parameters with optax.

    The parameters are the unconstrained pytree of :func:`to_unconstrained`; each
    step draws a fresh ``key`` for the loss (Monte Carlo losses), differentiates,
    and applies one optimizer update. All steps run in one compiled ``lax.scan``.

    Args:
      loss: ``(GaussianMixture, key) -> scalar`` to minimize (jax-traceable).
      init: the starting mixture (its covariance type is kept).
      key: PRNG key.
      num_steps: optimizer steps (static).
      optimizer: an optax transformation; default ``optax.adam(0.05)``.

    Returns:
      :class:`GradientFit` ``(mixture, params, losses)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> init = GaussianMixture(jnp.ones(1), jnp.zeros(1), scale=jnp.ones(1))
      >>> x = 3.0 + 0.5 * jax.random.normal(jax.random.key(0), (2000,))
      >>> nll = lambda m, key: -jnp.mean(m.log_prob(x))
      >>> fit = fit_gradient(nll, init, key=jax.random.key(1), num_steps=300)
      >>> round(float(fit.mixture.locs[0]), 1), round(float(fit.mixture.scale_param[0]), 1)
      (3.0, 0.5)
    """
    if not isinstance(init, GaussianMixture):
        raise TypeError(f"init must be a GaussianMixture, got {type(init).__name__}")
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    opt = optax.adam(0.05) if optimizer is None else optimizer
    t = init.covariance_type
    params0 = to_unconstrained(init)

    def objective(params, k):
        return loss(from_unconstrained(params, t), k)

    @jax.jit
    def run(params, key):
        def step(carry, k):
            params, state = carry
            value, grads = jax.value_and_grad(objective)(params, k)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        keys = jax.random.split(key, int(num_steps))
        (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), keys)
        return params, losses

    params, losses = run(params0, key)
    return GradientFit(from_unconstrained(params, t), params, losses)
