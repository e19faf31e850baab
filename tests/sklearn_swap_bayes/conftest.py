"""Plugin that points scikit-learn's own BayesianGaussianMixture tests at gmmjax's estimator.

Loaded with ``-p tests.sklearn_swap_bayes.conftest`` by
``tests/test_sklearn_bayes_suite.py``, which runs the test module shipped in the
installed scikit-learn wheel (``sklearn/mixture/tests/test_bayesian_mixture.py``,
nothing copied). Before each test of that module, its module-level name
``BayesianGaussianMixture`` is replaced by
``gmmjax.sklearn.bayesian_mixture.BayesianGaussianMixture``, so every test constructs
and fits ours; the run ends with a line counting the swapped tests and the fits of
our estimator they made, which the calling test checks.

Tests of that module that call no estimator (``test_log_dirichlet_norm`` and
``test_log_wishart_norm`` test scikit-learn's private normalizers against scipy) run
unchanged: they neither need nor can use the swap. No test is skipped.
"""

import pytest

from gmmjax.sklearn.bayesian_mixture import BayesianGaussianMixture

_SWAPPED_MODULE = "sklearn.mixture.tests.test_bayesian_mixture"
_COUNTS = {"swapped": 0, "fits": 0}


@pytest.fixture(autouse=True)
def _gmmjax_bayesian_mixture(request, monkeypatch):
    module = getattr(request, "module", None)
    if module is not None and module.__name__ == _SWAPPED_MODULE:
        monkeypatch.setattr(module, "BayesianGaussianMixture", BayesianGaussianMixture)
        original = BayesianGaussianMixture.fit_predict

        def counted(self, *args, **kwargs):
            _COUNTS["fits"] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(BayesianGaussianMixture, "fit_predict", counted)
        _COUNTS["swapped"] += 1
    yield


def pytest_terminal_summary(terminalreporter):
    if not _COUNTS["swapped"]:
        return  # loaded as a directory conftest by the project's own run: nothing to say
    terminalreporter.write_line(
        f"gmmjax-swap: {_COUNTS['swapped']} tests swapped, {_COUNTS['fits']} gmmjax fits"
    )
