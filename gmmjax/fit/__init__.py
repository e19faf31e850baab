"""Fitting Gaussian mixtures: EM (:func:`fit_em`), initializers, scores, gradient fitting."""

from gmmjax.fit.em import EMResult, fit_em
from gmmjax.fit.gradient import GradientFit, fit_gradient, from_unconstrained, to_unconstrained
from gmmjax.fit.init import kmeans, kmeans_plusplus
from gmmjax.fit.scoring import aic, bic, n_parameters, predict, predict_proba, score
from gmmjax.fit.targets import fit_ml, fit_to_target

__all__ = [
    "EMResult",
    "GradientFit",
    "aic",
    "bic",
    "fit_em",
    "fit_gradient",
    "fit_ml",
    "fit_to_target",
    "from_unconstrained",
    "kmeans",
    "kmeans_plusplus",
    "n_parameters",
    "predict",
    "predict_proba",
    "score",
    "to_unconstrained",
]
