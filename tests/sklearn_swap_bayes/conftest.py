"""Plugin that points scikit-learn's own BayesianGaussianMixture tests at gmmjax's estimator.

Loaded with ``-p tests.sklearn_swap_bayes.conftest`` by
``tests/test_sklearn_bayes_suite.py``, which runs the test module shipped in the
installed scikit-learn wheel (``sklearn/mixture/tests/test_bayesian_mixture.py``,
nothing copied). Before each test, the module-level name ``BayesianGaussianMixture``
is replaced by ``gmmjax.sklearn.bayesian_mixture.BayesianGaussianMixture``; every
test of that module then constructs and fits ours.
"""

import pytest

from gmmjax.sklearn.bayesian_mixture import BayesianGaussianMixture

_SWAPPED_MODULE = "sklearn.mixture.tests.test_bayesian_mixture"


@pytest.fixture(autouse=True)
def _gmmjax_bayesian_mixture(request, monkeypatch):
    module = getattr(request, "module", None)
    if module is not None and module.__name__ == _SWAPPED_MODULE:
        monkeypatch.setattr(module, "BayesianGaussianMixture", BayesianGaussianMixture)
    yield
