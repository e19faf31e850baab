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

import jaxlib
import numpy as np
import pytest

import gmmjax

_ENV = "GMMJAX_TEST_RUN_CACHE"

# XLA's CPU code emitters. The suite compiles ~3,000 programs, most of them small, and
# compiling is most of its time. XLA's older elemental emitters
# (--xla_cpu_use_fusion_emitters=false) compile these programs ~40% faster than its
# default fusion emitters; both implement the same HLO semantics. The test run uses
# them (every worker and subprocess inherits the variable); CI runs the whole suite a
# second time with XLA's defaults (GMMJAX_TEST_XLA_DEFAULTS=1), so the code users run
# is tested too. Only for the jaxlib series it was measured on: an unknown XLA flag
# aborts the process, and a later jaxlib may drop this one.
_FAST_COMPILE = "--xla_cpu_use_fusion_emitters=false"
if (
    os.environ.get("GMMJAX_TEST_XLA_DEFAULTS", "0") in ("", "0")
    and jaxlib.__version__.startswith("0.10.")
    and "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", "")
):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()


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
