"""gmmjax: Gaussian mixtures as NumPyro distributions, and divergences between them."""

from gmmjax.gaussian import (
    gaussian_entropy,
    gaussian_kl,
    gaussian_overlap,
    log_gaussian_kernel,
    log_gaussian_overlap,
)
from gmmjax.interop import from_numpyro, to_numpyro
from gmmjax.mixture import GaussianMixture

__version__ = "0.1.0"

__all__ = [
    "GaussianMixture",
    "from_numpyro",
    "gaussian_entropy",
    "gaussian_kl",
    "gaussian_overlap",
    "log_gaussian_kernel",
    "log_gaussian_overlap",
    "to_numpyro",
]
