"""Deterministic divergences between mixtures: closed forms, approximations, bounds, quadrature.

* :mod:`~gmmjax.deterministic.closed_form`: exact Cauchy–Schwarz, L2 and MMD, and the
  Bhattacharyya bounds.
* :mod:`~gmmjax.deterministic.bounds`: guaranteed bounds on KL and the classic
  approximations side by side (:func:`kl_bounds`).
* :mod:`~gmmjax.deterministic.quadrature`: cubature references for KL in low dimension.
"""

from gmmjax.deterministic.bounds import KLBounds, kl_bounds
from gmmjax.deterministic.closed_form import (
    BhattacharyyaBounds,
    bhattacharyya_bounds,
    cauchy_schwarz_divergence,
    log_inner_product,
    squared_l2_distance,
    squared_mmd,
)
from gmmjax.deterministic.quadrature import kl_quadrature, kl_reference_1d, standard_normal_rule

__all__ = [
    "BhattacharyyaBounds",
    "KLBounds",
    "bhattacharyya_bounds",
    "cauchy_schwarz_divergence",
    "kl_bounds",
    "kl_quadrature",
    "kl_reference_1d",
    "log_inner_product",
    "squared_l2_distance",
    "squared_mmd",
    "standard_normal_rule",
]
