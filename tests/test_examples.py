"""Smoke tests of examples/*.py: each runs end to end with ``--quick`` and writes its outputs.

Each example is a separate process (as a user runs it). JAX compilation dominates
their cost and is single-threaded, so they run concurrently to use both cores.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# example -> (files it must write, text its output must contain)
EXPECTED = {
    "kl_between_fitted_gmms.py": (
        ["mixture_A.json", "mixture_B.json"],
        ["KL(A‖B) =", "KL(B‖A) =", "JS(A,B)", "bounds ["],
    ),
    "gaussian_kl_curves.py": (["kl_curves.png", "kl_convergence.png"], ["closed form"]),
    "mixture_density.py": (["mixture_density.png"], ["∫ p dx = 1.000000", "∫∫ p dx = 1.000"]),
    "fit_by_divergence.py": (["fit_by_divergence.png"], ["Cauchy–Schwarz", "reverse KL(q‖p)"]),
    "vmap_many_pairs.py": ([], ["2000 pairs", "jax.vmap over 1000 single pairs", "sharded over"]),
    "vi_multimodal.py": (["vi_multimodal.png"], ["AutoGaussianMixture (K=2): KL(q‖posterior)"]),
    "multihost.py": ([], ["process 0/1: 2 devices", "JOINT"]),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start every example at once; collect (returncode, output, seconds, outdir)."""
    env = dict(os.environ, MPLBACKEND="Agg")
    procs = {}
    for name in EXPECTED:
        cwd = tmp_path_factory.mktemp(name.removesuffix(".py"))
        out = cwd / "new_folder"  # not there yet: each example makes its --out folder
        args = [sys.executable, str(EXAMPLES / name), "--quick"]
        if name != "vmap_many_pairs.py":
            args += ["--out", str(out)]
        procs[name] = (subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True), out, time.time())  # fmt: skip
    results = {}
    for name, (proc, out, t0) in procs.items():
        text, _ = proc.communicate(timeout=280)
        results[name] = (proc.returncode, text, time.time() - t0, out)
    return results


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(runs, name):
    code, text, seconds, out = runs[name]
    assert code == 0, f"{name} failed:\n{text[-3000:]}"
    files, needles = EXPECTED[name]
    for f in files:
        assert (out / f).is_file() and (out / f).stat().st_size > 100, f
    for needle in needles:
        assert needle in text, (needle, text[-2000:])
