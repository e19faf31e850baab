"""Drop-in scikit-learn estimators fitted in JAX: ``pip install 'gmmjax[sklearn]'``.

Replace ``from sklearn.mixture import GaussianMixture`` (or ``BayesianGaussianMixture``)
with ``from gmmjax.sklearn import GaussianMixture`` (or ``BayesianGaussianMixture``); the
rest of the code runs unchanged, and ``estimator.mixture_`` is the fitted
:class:`gmmjax.GaussianMixture` for the divergences. Shared machinery (validation, dtype
policy, random states, scoring): :mod:`gmmjax.sklearn._base`.
"""

try:
    import sklearn  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gmmjax.sklearn needs scikit-learn: pip install 'gmmjax[sklearn]' "
        "(or pip install scikit-learn)"
    ) from err

from gmmjax.sklearn.bayesian_mixture import BayesianGaussianMixture
from gmmjax.sklearn.gaussian_mixture import GaussianMixture

__all__ = ["BayesianGaussianMixture", "GaussianMixture"]
