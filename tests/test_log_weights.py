"""The ``logits`` leaf counts only up to a constant (``GaussianMixture.log_weights``).

A mixture is a pytree, so a gradient step on it (``optax.apply_updates(p, updates)``)
moves the ``logits`` leaf off the simplex: its logsumexp is no longer 0. NumPyro's
``Categorical`` normalizes its logits where it reads them; before ``log_weights``,
``log_prob``, the bounds, quadrature, the closed forms and ``save_mixture`` used the
leaf as given (``log_prob`` was off by the shift, ``kl_quadrature`` went negative, a
saved file failed to load). The references are NumPyro's ``MixtureSameFamily`` on the
same leaves and the same mixture with a normalized leaf.

Tolerances: a shift changes the normalized log-weights by a few float32 ulps (about
1e-7 of values of order 1), so the outputs agree to rtol 1e-5 (1e-12 in float64).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

import gmmjax as g
from tests._helpers import random_mixture_params, tol

RTOL = tol(1e-5, 1e-12)


def _mixture(seed, k, d, covariance_type="full"):
    w, mu, tril = random_mixture_params(np.random.default_rng(seed), k, d)
    if covariance_type == "univariate":
        return g.GaussianMixture(
            jnp.asarray(w), jnp.asarray(mu[:, 0]), scale=jnp.asarray(tril[:, 0, 0])
        )
    return g.GaussianMixture(jnp.asarray(w), jnp.asarray(mu), scale_tril=jnp.asarray(tril))


def _shifted(m, shift):
    """The same leaves with ``logits + shift`` (what a gradient step may leave)."""
    out = jax.tree_util.tree_map(lambda a: a, m)
    out.logits = m.logits + shift
    return out


def _numpyro(m):
    comp = dist.MultivariateNormal(m.locs, scale_tril=m.scale_param)
    return dist.MixtureSameFamily(dist.Categorical(logits=m.logits), comp)


def test_an_optax_step_on_the_pytree_leaves_a_normalized_density():
    p = _mixture(0, 3, 2)
    x = jax.random.normal(jax.random.key(1), (64, 2)) * 2.0
    loss = lambda m: -jnp.mean(m.log_prob(x))  # noqa: E731
    opt = optax.sgd(2.0)
    state = opt.init(p)
    for _ in range(3):
        updates, state = opt.update(jax.grad(loss)(p), state)
        p = optax.apply_updates(p, updates)
    shift = float(jax.nn.logsumexp(p.logits))
    assert abs(shift) > 1e-3, "the steps must move the leaf off the simplex"
    ref = _numpyro(p)  # normalizes its logits itself
    np.testing.assert_allclose(p.log_prob(x), ref.log_prob(x), rtol=RTOL)
    np.testing.assert_allclose(jnp.sum(p.weights), 1.0, rtol=RTOL)
    np.testing.assert_allclose(p.mean, ref.mean, rtol=RTOL, atol=RTOL)


def test_the_log_weight_gradient_is_numpyros():
    # NumPyro's gradient in its Categorical logits is Σ_n (r_nk - w_k) / N: it sums to
    # zero. Using the leaf as given gave Σ_n r_nk / N (summing to one).
    p = _shifted(_mixture(2, 4, 3), 0.3)
    x = jax.random.normal(jax.random.key(3), (50, 3))
    ours = jax.grad(lambda lg: jnp.mean(_shifted(p, lg - p.logits).log_prob(x)))(p.logits)
    ref = jax.grad(lambda lg: jnp.mean(_numpyro(_shifted(p, lg - p.logits)).log_prob(x)))(p.logits)
    np.testing.assert_allclose(ours, ref, atol=tol(1e-6, 1e-13))
    assert abs(float(jnp.sum(ours))) < tol(1e-6, 1e-13)


_KEY = jax.random.key(4)

# every public consumer of the weights, on a pair (p, q)
_CONSUMERS = {
    "log_prob": lambda p, q: p.log_prob(q.locs),
    "mean_variance": lambda p, q: (p.mean, p.variance),
    "kl_bounds": lambda p, q: g.kl_bounds(p, q),
    "kl_quadrature": lambda p, q: g.kl_quadrature(p, q),
    "bhattacharyya_bounds": lambda p, q: g.bhattacharyya_bounds(p, q),
    "log_inner_product": lambda p, q: g.log_inner_product(p, q),
    "squared_l2_distance": lambda p, q: g.squared_l2_distance(p, q),
    "squared_mmd": lambda p, q: g.squared_mmd(p, q),
    "kl_divergence": lambda p, q: g.kl_divergence(p, q, _KEY, 512),
    "js_divergence": lambda p, q: g.js_divergence(p, q, _KEY, 512),
    "to_sklearn": lambda p, q: g.to_sklearn(p).weights_,
}


@pytest.mark.parametrize("name", sorted(_CONSUMERS))
def test_every_consumer_ignores_a_shift_of_the_leaf(name):
    fn = _CONSUMERS[name]
    p, q = _mixture(5, 3, 2), _mixture(6, 2, 2)
    want = jax.tree_util.tree_leaves(fn(p, q))
    for args in ((_shifted(p, 1.5), q), (p, _shifted(q, -2.0))):
        got = jax.tree_util.tree_leaves(fn(*args))
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL)


def test_the_univariate_cdf_ignores_a_shift():
    p = _mixture(7, 3, 1, "univariate")
    x = jnp.linspace(-3.0, 3.0, 7)
    np.testing.assert_allclose(_shifted(p, 0.8).cdf(x), p.cdf(x), rtol=RTOL)


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_a_shifted_leaf_is_saved_normalized(tmp_path, suffix):
    # before: the file held weights exp(leaf) that did not sum to one, and loading
    # refused it ("field `weights` must be nonnegative and sum to 1")
    p = _mixture(8, 3, 2)
    path = tmp_path / f"m{suffix}"
    g.save_mixture(_shifted(p, 0.4), path)
    back = g.load_mixture(path)
    np.testing.assert_allclose(back.weights, p.weights, rtol=RTOL)
    x = p.locs + 0.5
    np.testing.assert_allclose(back.log_prob(x), p.log_prob(x), rtol=RTOL)
    # a normalized leaf is still written as is: it loads bit for bit
    g.save_mixture(p, path)
    np.testing.assert_array_equal(g.load_mixture(path).logits, p.logits)
