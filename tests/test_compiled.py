"""Compiled by default (gmmjax._runtime.compile): one cached program per static configuration,
the same numbers as the op-by-op path, and composition under the user's jit/vmap/grad."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import pytest

import gmmjax
from gmmjax._runtime.compile import compiled

P = gmmjax.GaussianMixture(
    jnp.array([0.3, 0.7]), jnp.array([-1.0, 1.5]), scale=jnp.array([0.6, 1.1])
)
Q = gmmjax.GaussianMixture(
    jnp.array([0.5, 0.5]), jnp.array([0.0, 2.0]), scale=jnp.array([1.0, 0.8])
)
KEY = jax.random.key(0)
N = 512

_COMPILES = {"n": 0}


def _count(event, duration, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES["n"] += 1


jax.monitoring.register_event_duration_secs_listener(_count)


def _shifted(m, shift):
    return gmmjax.GaussianMixture.from_params(
        m.logits, m.locs + shift, m.scale_param, m.covariance_type
    )


def test_plain_call_equals_the_op_by_op_path():
    # the wrapper must not change a single number: same program, same key. float32
    # fusion may reorder sums, so allow a few ulps of the value (KL ≈ 0.5 here)
    got = gmmjax.kl_estimate(P, Q, KEY, N)
    ref = gmmjax.kl_estimate.__wrapped__(P, Q, KEY, N)
    np.testing.assert_allclose(got.value, ref.value, rtol=1e-5)
    np.testing.assert_allclose(got.stderr, ref.stderr, rtol=1e-4)
    assert int(got.num_samples) == int(ref.num_samples)


def test_repeat_calls_with_new_values_do_not_recompile():
    gmmjax.js_estimate(P, Q, KEY, N)  # compiles (or reuses) this configuration
    args = [(_shifted(P, 0.1 * i), jax.random.key(i)) for i in range(3)]
    before = _COMPILES["n"]
    for p, key in args:
        gmmjax.js_estimate(p, Q, key, N)
    assert _COMPILES["n"] == before


def test_a_new_static_argument_compiles_a_new_program():
    # the configuration of the other tests here (and of tests/test_keys.py): compiled
    # once per run; only the new num_samples compiles in this test
    gmmjax.kl_estimate(P, Q, KEY, N)
    before = _COMPILES["n"]
    a = gmmjax.kl_estimate(P, Q, KEY, N + 2)
    assert _COMPILES["n"] > before
    assert int(a.num_samples) == N + 2


def test_composes_under_user_jit_vmap_and_grad():
    # reference: the same estimator through the undecorated function
    def loss(shift):
        return gmmjax.kl_divergence(_shifted(P, shift), Q, KEY, N)

    def loss_ref(shift):
        return gmmjax.kl_estimate.__wrapped__(_shifted(P, shift), Q, KEY, N).value

    shifts = np.array([0.0, 0.5, 1.0, 0.2], jnp.result_type(float))  # host: no eager ops
    g = jax.jit(jax.grad(loss))(shifts[3])
    # the reference values and gradient in one program of their own (op by op, the
    # backward pass would compile a few hundred single operations; the op-by-op values
    # are checked above), called once per shift
    ref_value_and_grad = jax.jit(jax.value_and_grad(loss_ref))
    refs = [ref_value_and_grad(s) for s in shifts]
    # both are the same pathwise derivative; float32 reassociation only
    np.testing.assert_allclose(g, refs[3][1], rtol=1e-4, atol=1e-6)
    vals = jax.vmap(loss)(shifts[:3])
    np.testing.assert_allclose(vals, [float(v) for v, _ in refs[:3]], rtol=1e-4, atol=1e-6)


def test_bounds_compose_under_vmap():
    b = jax.vmap(lambda s: gmmjax.kl_bounds(_shifted(P, s), Q).lower)(jnp.array([0.0, 1.0]))
    ref = jnp.stack([gmmjax.kl_bounds.__wrapped__(_shifted(P, s), Q).lower for s in (0.0, 1.0)])
    np.testing.assert_allclose(b, ref, rtol=1e-5)


def test_errors_still_name_the_problem():
    with pytest.raises(ValueError, match="method must be 'auto' or one of"):
        gmmjax.kl_estimate(P, Q, KEY, N, method="bogus")
    with pytest.raises(TypeError, match="num_samples must be a Python int"):
        gmmjax.kl_estimate(P, Q, KEY, jnp.asarray(100))


def test_unhashable_arguments_fall_back_to_the_eager_path():
    calls = []

    @compiled
    def f(x, opts):
        calls.append(isinstance(x, jax.core.Tracer))
        return x * len(opts)

    assert float(f(jnp.asarray(2.0), {1, 2, 3})) == 6.0  # a set: no pytree, no hash
    assert calls == [False]
    assert float(f(jnp.asarray(2.0), (1, 2, 3))) == 6.0  # a tuple selects a program
    assert calls[-1] is True


def test_callable_argument_is_static():
    tv = gmmjax.f_divergence_estimate(P, Q, KEY, lambda t: 0.5 * jnp.abs(t - 1.0), N)
    ref = gmmjax.total_variation_estimate(P, Q, KEY, N)
    # the same samples and the same per-point term written two ways
    np.testing.assert_allclose(tv.value, ref.value, rtol=1e-4)


@pytest.mark.slow
def test_persistent_cache_is_written_and_reused(tmp_path):
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, jax.monitoring, gmmjax
        misses = []
        jax.monitoring.register_event_listener(
            lambda e, **kw: misses.append(e) if e.endswith("cache_misses") else None)
        p = gmmjax.GaussianMixture(jnp.array([1.0]), jnp.array([0.0]), scale=jnp.array([1.0]))
        gmmjax.kl_estimate(p, p, jax.random.key(0), 64).value.block_until_ready()
        print("MISSES", len(misses))
        """
    )
    env = dict(os.environ, GMMJAX_COMPILATION_CACHE=str(tmp_path), PYTHONPATH=os.getcwd())
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240
        )
        for _ in range(2)
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    assert any(tmp_path.iterdir())  # entries were written on the first run
    first = int(runs[0].stdout.split("MISSES")[-1])
    second = int(runs[1].stdout.split("MISSES")[-1])
    # the first run compiles every program; the second loads all of them from disk
    assert first >= 1 and second == 0


def test_matmul_precision_is_part_of_the_cache_key():
    gmmjax.kl_estimate(P, Q, KEY, N)
    before = _COMPILES["n"]
    with gmmjax.matmul_precision("default"):
        fast = gmmjax.kl_estimate(P, Q, KEY, N)
    assert _COMPILES["n"] > before  # a new program, not the "highest" one reused
    # on CPU every precision computes the same float32 product
    np.testing.assert_allclose(fast.value, gmmjax.kl_estimate(P, Q, KEY, N).value, rtol=1e-5)
    with pytest.raises(ValueError, match="matmul precision must be one of"):
        with gmmjax.matmul_precision("fastest"):
            pass


@pytest.mark.numerics
def test_kernel_at_highest_precision_matches_scipy():
    # K·D = 512 gives row blocks of 512, so 1,100 points take the blocked path with a
    # padded last block (_kernel_full.row_chunk)
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(3)
    d, k = 16, 32
    a = rng.normal(size=(k, d, d)) / np.sqrt(d)
    cov = a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(d)
    locs = rng.normal(size=(k, d)) * 3.0
    x = rng.normal(size=(1100, d)) * 3.0
    m = gmmjax.GaussianMixture(np.ones(k) / k, locs, cov)  # NumPy in: no eager operations
    got = np.asarray(m.component_log_probs(jnp.asarray(x)))
    ref = np.stack([multivariate_normal(locs[j], cov[j]).logpdf(x) for j in range(k)], -1)
    ref = ref - np.log(k)  # NumPyro's component_log_probs: log w_k + log N_k
    # float32: relative error ~1e-6 of the Mahalanobis term (up to ~10^3 here)
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-3)
