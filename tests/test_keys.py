"""Integer seeds where a PRNG key is expected (issue 14, item 8)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gmmjax as g
from gmmjax._runtime.keys import as_key

P = g.GaussianMixture(jnp.array([0.4, 0.6]), jnp.array([-1.0, 1.0]), scale=jnp.ones(2))
Q = g.GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([0.0, 2.0]), scale=jnp.ones(2))


def test_an_integer_seed_is_the_key_of_that_seed():
    # the reference is JAX's own jax.random.key(seed): same draws, same estimate
    a = g.kl_estimate(P, Q, 0, 1000)
    b = g.kl_estimate(P, Q, jax.random.key(0), 1000)
    assert float(a.value) == float(b.value) and float(a.stderr) == float(b.stderr)
    c = g.js_estimate(P, Q, np.int64(7), 1000)
    assert float(c.value) == float(g.js_estimate(P, Q, jax.random.key(7), 1000).value)
    raw = jax.random.PRNGKey(3)  # legacy uint32[2] keys still pass through
    assert np.isfinite(float(g.total_variation_estimate(P, Q, raw, 1000).value))
    # a traced integer seed under jit
    f = jax.jit(lambda s: g.kl_estimate(P, Q, s, 1000).value)
    assert float(f(jnp.asarray(0))) == float(f(jax.random.key(0)))


@pytest.mark.parametrize(
    "key,err,match",
    [
        (0.5, TypeError, "key must be a JAX PRNG key .* or an integer seed, got float"),
        ("0", TypeError, "got str"),
        (True, TypeError, "got a bool"),
        (2**70, ValueError, "does not fit in 64 bits"),
        (jnp.zeros(3), TypeError, "of dtype float32 and shape \\(3,\\)"),
    ],
)
def test_bad_keys_say_what_a_key_is(key, err, match):
    with pytest.raises(err, match=match):
        as_key(key)
    with pytest.raises(err, match=match):
        g.kl_estimate(P, Q, key, 100)


def test_fit_em_accepts_an_integer_seed():
    import numpy as np

    from gmmjax import fit_em

    x = np.random.default_rng(0).normal(size=(200, 2))
    a = fit_em(x, 2, key=3, max_iter=5)
    b = fit_em(x, 2, key=jax.random.key(3), max_iter=5)  # JAX's own key is the reference
    np.testing.assert_array_equal(np.asarray(a.mixture.locs), np.asarray(b.mixture.locs))
