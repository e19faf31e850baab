"""scikit-learn's own ``test_bayesian_mixture.py`` against ``gmmjax``'s estimator.

The test module shipped in the installed scikit-learn wheel runs in a subprocess
(float64: ``JAX_ENABLE_X64=1``), with its module-level ``BayesianGaussianMixture``
pointed at ``gmmjax.sklearn.bayesian_mixture.BayesianGaussianMixture`` by the plugin
``tests/sklearn_swap_bayes/conftest.py``. Nothing is copied; no test is skipped
(``test_log_dirichlet_norm`` and ``test_log_wishart_norm`` call only scikit-learn's
private normalizers and need no swap; ``test_compare_covar_type`` calls the private
``_check_parameters``/``_initialize_parameters``, which our estimator provides).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]
MODULE = "sklearn.mixture.tests.test_bayesian_mixture"


# 256-319 s wall (80-98 s CPU) on the loaded 2-core VM, most of it compiling the loop for the
# suite's many distinct (covariance type, prior, shape) configurations
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sklearn_bayesian_mixture_suite_passes_with_gmmjax_estimator(tmp_path):
    env = dict(os.environ, JAX_ENABLE_X64="1", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "tests.sklearn_swap_bayes.conftest",
        "-W",
        "error",
        "--pyargs",
        MODULE,
    ]
    # run outside the repository, so that neither its pytest configuration nor its
    # conftest apply: the suite sees only scikit-learn's own conftest and the plugin
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    passed = int(re.search(r"(\d+) passed", out).group(1))
    assert not re.search(r"\d+ (failed|skipped|error)", out), out[-3000:]
    swap = re.search(r"gmmjax-swap: (\d+) tests swapped, (\d+) gmmjax fits", out)
    assert swap, out[-3000:]
    # every test of the module ran with the swap in place, and the estimator tests fitted ours
    assert int(swap.group(1)) == passed >= 17
    assert int(swap.group(2)) > 100
