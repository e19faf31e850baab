"""Scores of a fitted mixture on data: ``score``, ``predict``, ``predict_proba``, BIC, AIC.

All follow ``sklearn.mixture.GaussianMixture``'s definitions, so the numbers can be
compared directly:

    score = (1/N) Σ_n log p(x_n),   BIC = -2 N·score + p log N,   AIC = -2 N·score + 2p,

with ``p`` the number of free parameters (:func:`n_parameters`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from gmmjax.mixture import GaussianMixture

__all__ = ["aic", "bic", "n_parameters", "predict", "predict_proba", "score"]


def _check(mixture, x):
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"expected a GaussianMixture, got {type(mixture).__name__}")
    if mixture.batch_shape:
        raise ValueError(
            f"expected an unbatched mixture, got batch_shape {mixture.batch_shape}; "
            "vmap over the batch instead"
        )
    x = jnp.asarray(x)
    want = 1 if mixture.covariance_type == "univariate" else 2
    if x.ndim != want:
        shape = "(N,)" if want == 1 else f"(N, {mixture.dim})"
        raise ValueError(f"x must have shape {shape} for this mixture, got {x.shape}")
    return x


def n_parameters(mixture: GaussianMixture) -> int:
    """Number of free parameters: ``K-1`` weights, ``K·D`` means and the covariances.

    Covariances: ``K·D(D+1)/2`` (full), ``D(D+1)/2`` (tied), ``K·D`` (diag), ``K``
    (spherical, univariate).

    Example:
      >>> import jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> n_parameters(GaussianMixture(jnp.ones(2) / 2, jnp.zeros(2), scale=jnp.ones(2)))
      5
    """
    k, d, t = mixture.n_components, mixture.dim, mixture.covariance_type
    cov = {
        "full": k * d * (d + 1) // 2,
        "tied": d * (d + 1) // 2,
        "diag": k * d,
        "spherical": k,
        "univariate": k,
    }[t]
    return int(cov + k * d + k - 1)


def score(mixture: GaussianMixture, x) -> jax.Array:
    """Mean log-likelihood per sample, ``(1/N) Σ_n log p(x_n)`` (sklearn's ``score``).

    Args:
      mixture: an unbatched `GaussianMixture`.
      x: ``(N, D)`` points (``(N,)`` for a univariate mixture).

    Returns:
      A scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> p = GaussianMixture(jnp.ones(1), jnp.zeros(1), scale=jnp.ones(1))
      >>> round(float(score(p, jnp.zeros(3))), 4)  # log N(0; 0, 1)
      -0.9189
    """
    return jnp.mean(mixture.log_prob(_check(mixture, x)))


def predict_proba(mixture: GaussianMixture, x) -> jax.Array:
    """Posterior component probabilities ``p(k | x_n)``, shape ``(N, K)``."""
    return mixture.responsibilities(_check(mixture, x))


def predict(mixture: GaussianMixture, x) -> jax.Array:
    """The most probable component of each point, shape ``(N,)`` ints."""
    x = _check(mixture, x)
    return jnp.argmax(mixture.component_log_probs(x), axis=-1)


def bic(mixture: GaussianMixture, x) -> jax.Array:
    """Bayesian information criterion ``-2 Σ_n log p(x_n) + p log N`` (lower is better).

    References:
      Schwarz, "Estimating the dimension of a model", Ann. Statist. 6 (1978).
    """
    x = _check(mixture, x)
    n = x.shape[0]
    return -2.0 * score(mixture, x) * n + n_parameters(mixture) * math.log(n)


def aic(mixture: GaussianMixture, x) -> jax.Array:
    """Akaike information criterion ``-2 Σ_n log p(x_n) + 2p`` (lower is better).

    References:
      Akaike, "A new look at the statistical model identification", IEEE TAC 19 (1974).
    """
    x = _check(mixture, x)
    n = x.shape[0]
    return -2.0 * score(mixture, x) * n + 2 * n_parameters(mixture)
