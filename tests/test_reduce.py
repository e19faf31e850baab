"""The term-by-term reductions (`gmmjax._reduce`) against jax's own reductions.

Both paths of `logsumexp_last` (autodiff of the columns up to 4 terms, the softmax rule
from 5, XLA's reduce past 16) and of `sum_last` must give jax's values and derivatives,
forward and reverse, and a zero gradient where every term is -inf.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmmjax._reduce import logsumexp_last, sum_last


def _rows(k, seed=0):
    a = 3.0 * jax.random.normal(jax.random.key(seed), (6, k))
    # row 0: every term -inf; row 1: one term -inf
    return a.at[0].set(-jnp.inf).at[1, 0].set(-jnp.inf)


@pytest.mark.parametrize("k", [1, 3, 4, 5, 16, 17])
def test_logsumexp_last_matches_jax_in_value_and_derivatives(k):
    a = _rows(k)
    live = np.any(np.isfinite(np.asarray(a)), axis=-1)  # rows 0 (and 1 when k = 1) are dead
    weights = jnp.arange(6.0)  # distinct cotangents per row

    def ours(a):
        return jnp.sum(jnp.where(live, logsumexp_last(a), 0.0) * weights)

    def ref(a):
        return jnp.sum(jnp.where(live, jax.nn.logsumexp(a, axis=-1), 0.0) * weights)

    value = logsumexp_last(a)
    assert np.all(np.asarray(value)[~live] == -np.inf)
    # float32: the same formula up to the order of k terms, a few ulps of values ~ 10
    np.testing.assert_allclose(value[live], jax.nn.logsumexp(a[live], axis=-1), rtol=2e-6)
    g, g_ref = jax.grad(ours)(a), jax.grad(ref)(a)
    np.testing.assert_allclose(g[live], g_ref[live], rtol=1e-5, atol=1e-7)
    # the row where every term is -inf: gradient 0, not NaN
    g_dead = jax.grad(lambda a: jnp.sum(logsumexp_last(a)))(a)[0]
    assert np.all(np.asarray(g_dead) == 0.0)
    # forward mode: the directional derivative is the gradient's inner product
    v = jax.random.normal(jax.random.key(1), a.shape)
    _, tangent = jax.jvp(ours, (a,), (v,))
    expected = jnp.sum(jnp.where(live[:, None], g_ref, 0.0) * v)
    np.testing.assert_allclose(tangent, expected, rtol=1e-5)


@pytest.mark.parametrize("k", [3, 5])
def test_logsumexp_last_has_jaxs_hessian(k):
    x = jax.random.normal(jax.random.key(2), (k,))
    np.testing.assert_allclose(
        jax.hessian(logsumexp_last)(x), jax.hessian(jax.nn.logsumexp)(x), atol=1e-6
    )


@pytest.mark.parametrize("d", [1, 2, 8, 9])
def test_sum_last_matches_jnp_sum_in_value_and_derivatives(d):
    a = jax.random.normal(jax.random.key(3), (5, 4, d))
    np.testing.assert_allclose(sum_last(a * a), jnp.sum(a * a, axis=-1), rtol=1e-6)
    ct = jax.random.normal(jax.random.key(4), (5, 4))
    g = jax.grad(lambda a: jnp.sum(sum_last(a * a) * ct))(a)
    np.testing.assert_allclose(g, 2.0 * a * ct[..., None], rtol=1e-6)
    v = jax.random.normal(jax.random.key(5), a.shape)
    _, tangent = jax.jvp(lambda a: sum_last(a * a), (a,), (v,))
    np.testing.assert_allclose(tangent, jnp.sum(2.0 * a * v, axis=-1), rtol=1e-5, atol=1e-6)
