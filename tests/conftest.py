"""Shared fixtures; plain helpers live in ``tests/_helpers.py``.

One compilation cache per test run. Most of the suite's time is XLA compiling small
programs, and the same program is often compiled more than once: by both xdist
workers, by the examples and the command-line tests in their own processes, and by
different ``jit`` wrappers of the same function within one process. The run points
JAX's persistent compilation cache (:func:`gmmjax.enable_compilation_cache`, the
documented opt-in) at a fresh temporary directory that every worker and subprocess
shares, so each program is compiled once per run. The directory starts empty (a run
never reuses a previous run's programs) and is removed at the end.
"""

import os
import shutil
import tempfile

import numpy as np
import pytest

import gmmjax

_ENV = "GMMJAX_TEST_RUN_CACHE"


def pytest_configure(config):
    if getattr(config, "workerinput", None) is None and not os.environ.get(_ENV):
        # the controlling process (or a run without xdist): the workers inherit the env
        path = tempfile.mkdtemp(prefix="gmmjax-test-cache-")
        os.environ[_ENV] = path
        config._gmmjax_cache_owner = path
    path = os.environ[_ENV]
    gmmjax.enable_compilation_cache(path)
    # subprocesses (examples, the command) read JAX's own variables at import
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def pytest_unconfigure(config):
    path = getattr(config, "_gmmjax_cache_owner", None)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
        os.environ.pop(_ENV, None)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
