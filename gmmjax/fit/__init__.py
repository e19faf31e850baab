"""Fitting Gaussian mixtures: EM (:func:`fit_em`), initializers, scores, gradient fitting."""

from gmmjax.fit.em import EMResult, fit_em
from gmmjax.fit.init import kmeans, kmeans_plusplus
from gmmjax.fit.scoring import aic, bic, n_parameters, predict, predict_proba, score

__all__ = [
    "EMResult",
    "aic",
    "bic",
    "fit_em",
    "kmeans",
    "kmeans_plusplus",
    "n_parameters",
    "predict",
    "predict_proba",
    "score",
]
