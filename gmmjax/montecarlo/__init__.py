"""Monte Carlo divergences between mixtures: sampling plans, the estimator, the divergences.

The data path: :mod:`~gmmjax.montecarlo.sampling` (where the points come from) →
:mod:`~gmmjax.montecarlo._estimators` (``E[h(x)]`` with its standard error, in
chunks) → :mod:`~gmmjax.montecarlo.divergences` and
:mod:`~gmmjax.montecarlo.f_divergences` (the public estimators, which convert their
inputs to `GaussianMixture` once, at the entry).
"""

from gmmjax.montecarlo._estimators import Estimate
from gmmjax.montecarlo.divergences import (
    cross_entropy,
    cross_entropy_estimate,
    entropy,
    entropy_estimate,
    jeffreys_divergence,
    jeffreys_estimate,
    js_divergence,
    js_estimate,
    kl_divergence,
    kl_estimate,
)
from gmmjax.montecarlo.f_divergences import (
    f_divergence,
    f_divergence_estimate,
    renyi_divergence,
    renyi_estimate,
    squared_hellinger,
    squared_hellinger_estimate,
    total_variation,
    total_variation_estimate,
)
from gmmjax.montecarlo.sampling import METHODS, as_gaussian_mixture

__all__ = [
    "METHODS",
    "Estimate",
    "as_gaussian_mixture",
    "cross_entropy",
    "cross_entropy_estimate",
    "entropy",
    "entropy_estimate",
    "f_divergence",
    "f_divergence_estimate",
    "jeffreys_divergence",
    "jeffreys_estimate",
    "js_divergence",
    "js_estimate",
    "kl_divergence",
    "kl_estimate",
    "renyi_divergence",
    "renyi_estimate",
    "squared_hellinger",
    "squared_hellinger_estimate",
    "total_variation",
    "total_variation_estimate",
]
