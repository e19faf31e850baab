"""gmmjax: Gaussian mixtures as NumPyro distributions, and divergences between them."""

from gmmjax.bounds import KLBounds, kl_bounds
from gmmjax.closed_form import (
    BhattacharyyaBounds,
    bhattacharyya_bounds,
    cauchy_schwarz_divergence,
    log_inner_product,
    squared_l2_distance,
    squared_mmd,
)
from gmmjax.fit import EMResult, aic, bic, fit_em, predict, predict_proba, score
from gmmjax.gaussian import (
    gaussian_entropy,
    gaussian_kl,
    gaussian_overlap,
    log_gaussian_kernel,
    log_gaussian_overlap,
)
from gmmjax.interop import from_numpyro, from_sklearn, to_numpyro, to_sklearn
from gmmjax.io import load_mixture, save_mixture
from gmmjax.mixture import GaussianMixture
from gmmjax.quadrature import kl_quadrature, kl_reference_1d, standard_normal_rule

__version__ = "0.1.0"

__all__ = [
    "BhattacharyyaBounds",
    "EMResult",
    "GaussianMixture",
    "KLBounds",
    "aic",
    "bhattacharyya_bounds",
    "bic",
    "cauchy_schwarz_divergence",
    "fit_em",
    "from_numpyro",
    "from_sklearn",
    "gaussian_entropy",
    "gaussian_kl",
    "gaussian_overlap",
    "kl_bounds",
    "kl_quadrature",
    "kl_reference_1d",
    "load_mixture",
    "log_gaussian_kernel",
    "log_gaussian_overlap",
    "log_inner_product",
    "predict",
    "predict_proba",
    "save_mixture",
    "score",
    "squared_l2_distance",
    "squared_mmd",
    "standard_normal_rule",
    "to_numpyro",
    "to_sklearn",
]
