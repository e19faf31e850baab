"""pytest plugin: scikit-learn's installed mixture tests against `gmmjax.sklearn`.

Loaded with ``-p tests.sklearn_swap.swap_plugin`` by ``tests/test_sklearn_suite.py``,
which runs the test modules shipped in the scikit-learn wheel (``--pyargs
sklearn.mixture.tests.test_gaussian_mixture ...``; nothing is copied). At
configuration time, before those modules are imported, it points
``sklearn.mixture.<Name>`` at ``gmmjax.sklearn.<Name>`` for each name given by
``--gmmjax-swap`` (default ``GaussianMixture``), so the modules' own
``from sklearn.mixture import GaussianMixture`` binds our estimator; at collection
it checks that every collected module's name is ours. Importing this file does
nothing (pytest imports it for its doctests too).

Tests that exercise only scikit-learn's private helpers, not the estimator, are
skipped; :data:`SKIPS` gives the reason for each.
"""

from __future__ import annotations

import pytest

_PRIVATE = "exercises only sklearn's private helper {} (never calls the estimator)"
SKIPS = {
    "test_suffstat_sk_full": _PRIVATE.format("_estimate_gaussian_covariances_full"),
    "test_suffstat_sk_tied": _PRIVATE.format("_estimate_gaussian_covariances_tied"),
    "test_suffstat_sk_diag": _PRIVATE.format("_estimate_gaussian_covariances_diag"),
    "test_gaussian_suffstat_sk_spherical": _PRIVATE.format(
        "_estimate_gaussian_covariances_spherical"
    ),
    "test_compute_log_det_cholesky": _PRIVATE.format("_compute_log_det_cholesky"),
    "test_gaussian_mixture_log_probabilities": _PRIVATE.format("_estimate_log_gaussian_prob"),
    "test_gaussian_mixture_precisions_init": (
        "calls sklearn's private GaussianMixture._initialize(X, resp) and "
        "_set_parameters; the same behaviour (precisions_init gives the flipped-Cholesky "
        "precisions_cholesky_) is checked in tests/test_sklearn_estimator.py"
    ),
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters": (
        "counts calls of sklearn's private _estimate_gaussian_parameters (our M-step is "
        "JAX); that no initialization runs when weights/means/precisions are all given "
        "is checked in tests/test_sklearn_estimator.py"
    ),
    "test_gaussian_mixture_array_api_compliance": (
        "array-API dispatch (array_api_dispatch=True with torch/cupy/array-api-strict "
        "inputs) is not supported: the estimator takes NumPy arrays"
    ),
    "test_gaussian_mixture_raises_where_array_api_not_implemented": (
        "array-API dispatch is not supported (see above)"
    ),
}


def pytest_addoption(parser):
    parser.addoption(
        "--gmmjax-swap",
        default="GaussianMixture",
        help="comma-separated names of sklearn.mixture to replace by gmmjax.sklearn's",
    )


def pytest_configure(config):
    import sklearn.mixture

    import gmmjax.sklearn

    names = [n for n in config.getoption("--gmmjax-swap").split(",") if n]
    config._gmmjax_swap = {}
    for name in names:
        config._gmmjax_swap[name] = (getattr(sklearn.mixture, name), getattr(gmmjax.sklearn, name))
        setattr(sklearn.mixture, name, getattr(gmmjax.sklearn, name))


def pytest_unconfigure(config):
    import sklearn.mixture

    for name, (orig, _) in getattr(config, "_gmmjax_swap", {}).items():
        setattr(sklearn.mixture, name, orig)


def pytest_collection_modifyitems(config, items):
    swap = config._gmmjax_swap
    for item in items:
        module = getattr(item, "module", None)
        for name, (_, ours) in swap.items():
            if module is not None and hasattr(module, name):
                assert getattr(module, name) is ours, f"{module.__name__}.{name} not swapped"
        reason = SKIPS.get(getattr(item, "originalname", item.name))
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter, config):
    for name, (orig, ours) in getattr(config, "_gmmjax_swap", {}).items():
        terminalreporter.write_line(
            f"gmmjax swap: sklearn.mixture.{name} ({orig.__module__}) -> "
            f"{ours.__module__}.{ours.__qualname__}"
        )
