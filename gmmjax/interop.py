"""Conversions between `GaussianMixture` and other libraries' mixtures.

NumPyro: ``MixtureSameFamily(Categorical, MultivariateNormal | Normal)``.
"""

from __future__ import annotations

import numpyro.distributions as dist

from gmmjax.mixture import GaussianMixture

__all__ = ["from_numpyro", "to_numpyro"]


def to_numpyro(mixture: GaussianMixture) -> dist.MixtureSameFamily:
    """Convert to NumPyro's ``MixtureSameFamily``.

    Univariate mixtures become ``MixtureSameFamily(Categorical, Normal)``; every
    other covariance type becomes ``MixtureSameFamily(Categorical,
    MultivariateNormal(scale_tril=...))`` with dense factors (NumPyro has no
    diagonal or tied Gaussian family, so the cheap layouts are expanded here).

    Args:
      mixture: a `GaussianMixture` of any batch shape.

    Returns:
      A ``MixtureSameFamily`` with equal ``log_prob``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gmmjax import GaussianMixture, to_numpyro
      >>> p = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([0.0, 1.0]),
      ...                     scale=jnp.ones(2))
      >>> type(to_numpyro(p)).__name__
      'MixtureSameFamily'
    """
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"to_numpyro expects a GaussianMixture, got {type(mixture).__name__}")
    mixing = dist.Categorical(logits=mixture.logits)
    if mixture.covariance_type == "univariate":
        comp = dist.Normal(mixture.locs, mixture.scale_param)
    else:
        comp = dist.MultivariateNormal(mixture.locs, scale_tril=mixture.component_scale_tril)
    return dist.MixtureSameFamily(mixing, comp)


def from_numpyro(mixture: dist.MixtureSameFamily) -> GaussianMixture:
    """Convert NumPyro's ``MixtureSameFamily`` of ``Normal`` or ``MultivariateNormal``.

    Args:
      mixture: ``MixtureSameFamily(Categorical, Normal | MultivariateNormal)``.

    Returns:
      A `GaussianMixture` (``"univariate"`` for ``Normal`` components, ``"full"``
      for ``MultivariateNormal``) with equal ``log_prob``.

    Raises:
      TypeError: the mixture is not a ``MixtureSameFamily`` of Gaussians.
    """
    if not isinstance(mixture, dist.MixtureSameFamily):
        raise TypeError(
            f"from_numpyro expects numpyro.distributions.MixtureSameFamily, got "
            f"{type(mixture).__name__}"
        )
    mixing = mixture.mixing_distribution
    comp = mixture.component_distribution
    logits = mixing.logits
    if isinstance(comp, dist.Normal):
        return GaussianMixture(logits=logits, locs=comp.loc, scale=comp.scale)
    if isinstance(comp, dist.MultivariateNormal):
        return GaussianMixture(logits=logits, locs=comp.loc, scale_tril=comp.scale_tril)
    raise TypeError(
        f"from_numpyro supports components Normal or MultivariateNormal, got {type(comp).__name__}"
    )
