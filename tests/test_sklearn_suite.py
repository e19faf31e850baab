"""scikit-learn's own mixture tests, as installed, against `gmmjax.sklearn.GaussianMixture`.

Runs ``sklearn/mixture/tests/test_gaussian_mixture.py`` and ``test_mixture.py`` from
the installed wheel (``--pyargs``; nothing is copied) in a subprocess, in float64
(``JAX_ENABLE_X64=1``) and with scikit-learn's float32 variants on
(``SKLEARN_RUN_FLOAT32_TESTS=1``), with ``sklearn.mixture.GaussianMixture`` pointed at
our estimator by ``tests/sklearn_swap/swap_plugin.py`` before the modules import it.
Tests that only exercise scikit-learn's private helpers are skipped, each with its
reason (``swap_plugin.SKIPS``). About two minutes on the 2-core machine: ``slow``.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sklearn_swap.swap_plugin import SKIPS

ROOT = Path(__file__).resolve().parents[1]
SWAP = ROOT / "tests" / "sklearn_swap"
MODULES = ["sklearn.mixture.tests.test_gaussian_mixture", "sklearn.mixture.tests.test_mixture"]
# reasons scikit-learn itself gives for skipping (no array-API libraries installed)
SKLEARN_OWN_SKIPS = ("SCIPY_ARRAY_API", "array_api", "array API")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~100 s alone on 2 cores; several times that under load
@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in MODULES),
    reason="this scikit-learn installation ships without its test modules",
)
def test_sklearn_mixture_suite_passes_with_the_swap():
    env = dict(os.environ, JAX_ENABLE_X64="1", SKLEARN_RUN_FLOAT32_TESTS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(SWAP / "pytest.ini"),
        "--rootdir",
        str(SWAP),
        "-p",
        "tests.sklearn_swap.swap_plugin",
        "--pyargs",
        *MODULES,
        "-q",
        "-rs",
        "-p",
        "no:randomly",
    ]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-6000:]
    # the swap happened (the plugin also asserts it for every collected module)
    assert "gmmjax swap: sklearn.mixture.GaussianMixture" in log
    assert "-> gmmjax.sklearn.gaussian_mixture.GaussianMixture" in log
    summary = log.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    # 49 float64 + 15 float32 tests run against the estimator with scikit-learn 1.9;
    # a lower count would mean tests silently dropped out
    assert passed >= 60, summary
    assert "failed" not in summary and "error" not in summary, summary
    # every skip is either ours (listed with its reason) or scikit-learn's own
    for line in log.splitlines():
        if line.startswith("SKIPPED"):
            reason = line.split(": ", 1)[-1]
            ours = any(reason == r for r in SKIPS.values())
            assert ours or any(s in reason for s in SKLEARN_OWN_SKIPS), line
