"""Integer seeds where a PRNG key is expected (issue 14, item 8)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gmmjax as g
from gmmjax._runtime.keys import as_key

# the same shapes and sample count as tests/test_compiled.py (K = 2, 1-D, N = 512), so the
# programs taking a key are compiled once per run and shared between the two files
P = g.GaussianMixture(jnp.array([0.4, 0.6]), jnp.array([-1.0, 1.0]), scale=jnp.ones(2))
Q = g.GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([0.0, 2.0]), scale=jnp.ones(2))
N = 512


def test_an_integer_seed_is_the_key_of_that_seed():
    # the reference is JAX's own jax.random.key(seed): same draws, same estimate. Seed 7,
    # not 0: a seed ignored in favour of key(0) would give other draws
    a = g.kl_estimate(P, Q, 7, N)
    b = g.kl_estimate(P, Q, jax.random.key(7), N)
    assert float(a.value) == float(b.value) and float(a.stderr) == float(b.stderr)
    # a seed is made into a key before the compiled program: new seeds (Python or NumPy
    # integers, up to the top of the uint64 range) trace and compile nothing new
    traces = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration":
            traces.append(duration)

    jax.random.key(np.uint64(2**64 - 1))  # JAX's own seeding program for a uint64 seed
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        c = g.kl_estimate(P, Q, np.int64(7), N)
        # (distinct low 32 bits: without x64, JAX seeds from the low 32 bits only)
        others = [g.kl_estimate(P, Q, s, N) for s in (8, 2**40 + 9, 2**64 - 1, 11 - 2**63)]
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert traces == []
    assert float(c.value) == float(b.value) and float(c.stderr) == float(b.stderr)
    top = g.kl_estimate(P, Q, jax.random.key(np.uint64(2**64 - 1)), N)
    assert float(others[2].value) == float(top.value)
    assert len({float(e.value) for e in [a, *others]}) == 5
    # legacy uint32[2] keys still pass through (another entry: every Monte Carlo entry
    # converts its key in montecarlo/_entry.py)
    raw = jax.random.PRNGKey(3)
    assert np.isfinite(float(g.js_estimate(P, Q, raw, N).value))
    # a traced integer seed under jit (the key it stands for: the reference, in the same
    # program so that both estimates compile once)
    f = jax.jit(lambda s, k: (g.kl_estimate(P, Q, s, N).value, g.kl_estimate(P, Q, k, N).value))
    from_seed, from_key = f(jnp.asarray(7), jax.random.key(7))
    assert float(from_seed) == float(from_key)


@pytest.mark.parametrize(
    "key,err,match",
    [
        (0.5, TypeError, "key must be a JAX PRNG key .* or an integer seed, got float"),
        ("0", TypeError, "got str"),
        (True, TypeError, "got a bool"),
        (2**70, ValueError, "does not fit in 64 bits"),
        (jnp.zeros(3), TypeError, "of dtype float(32|64) and shape \\(3,\\)"),  # x64: float64
    ],
)
def test_bad_keys_say_what_a_key_is(key, err, match):
    with pytest.raises(err, match=match):
        as_key(key)
    with pytest.raises(err, match=match):
        g.kl_estimate(P, Q, key, N)


def test_fit_em_accepts_an_integer_seed():
    import numpy as np

    from gmmjax import fit_em

    x = np.random.default_rng(0).normal(size=(200, 2))
    a = fit_em(x, 2, key=3, max_iter=5)
    b = fit_em(x, 2, key=jax.random.key(3), max_iter=5)  # JAX's own key is the reference
    np.testing.assert_array_equal(np.asarray(a.mixture.locs), np.asarray(b.mixture.locs))
