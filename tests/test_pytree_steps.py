"""What a gradient step on the mixture pytree leaves behind is still read right.

A mixture is a pytree, so ``optax.apply_updates(p, updates)`` moves its leaves freely:

* the ``logits`` leaf leaves the simplex (its logsumexp is no longer 0). NumPyro's
  ``Categorical`` normalizes its logits where it reads them; before
  ``GaussianMixture.log_weights``, ``log_prob``, the bounds, quadrature, the closed
  forms and ``save_mixture`` used the leaf as given (``log_prob`` was off by the shift,
  ``kl_quadrature`` went negative, a saved file failed to load);
* a full or tied factor's upper triangle got a gradient from the estimators, bounds,
  quadrature and ``sample`` (which multiplied by the whole leaf) but not from
  ``log_prob`` (a triangular solve). One Adam loop on KL(p‖q) then reached KL = -12
  and NaN. Only the lower triangle is read now (``_params.factor``).

The references are NumPyro's ``MixtureSameFamily`` on the same leaves and the same
mixture with a clean leaf. Tolerances: a shift changes the normalized log-weights by a
few float32 ulps (about 1e-7 of values of order 1), so outputs agree to rtol 1e-5
(1e-12 in float64); the upper triangle is not read at all, so those agree exactly up
to the same rounding.
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
    "to_sklearn": lambda p, q: (g.to_sklearn(p).weights_, g.to_sklearn(p).covariances_),
}


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


def _with_upper(m, seed):
    """The same mixture with random values above the diagonal of its factor leaf."""
    out = jax.tree_util.tree_map(lambda a: a, m)
    noise = jax.random.normal(jax.random.key(seed), m.scale_param.shape, m.scale_param.dtype)
    out.scale_param = m.scale_param + jnp.triu(noise, 1)
    return out


_SAMPLE = {
    "sample": lambda p, q: p.sample(_KEY, (16,)),
    "entropy": lambda p, q: g.entropy(p, _KEY, 256),
}


@pytest.mark.parametrize("name", ["kl_divergence", "kl_quadrature"])
def test_the_upper_triangle_gets_no_gradient(name):
    # it got 0.50 (KL) and 0.52 (quadrature) at this size before; the bounds (0.62) and
    # the L2 distance (0.003) too, which the invariance test below covers through their values
    fn = _CONSUMERS[name]
    p, q = _mixture(11, 2, 3), _mixture(12, 2, 3)
    grad = jax.grad(lambda m: fn(m, q))(p)
    assert float(jnp.max(jnp.abs(grad.scale_param))) > 1e-3  # the lower triangle moves
    np.testing.assert_array_equal(jnp.triu(grad.scale_param, 1), 0.0)


def test_an_adam_loop_on_the_pytree_fits_and_stays_finite():
    # fit p to q by Adam on KL(p‖q) directly on the pytree, with a dead component in p;
    # before: KL = -12 at step 30 (the upper triangle read by sampling only), then NaN
    q = _mixture(13, 2, 2)
    p0 = _mixture(14, 3, 2)
    p = g.GaussianMixture(jnp.array([0.5, 0.5, 0.0]), p0.locs, scale_tril=p0.scale_param)
    key = jax.random.key(15)
    loss = lambda m: g.kl_divergence(m, q, key, 1024)  # noqa: E731
    opt = optax.adam(0.05)

    @jax.jit
    def step(m, state):
        value, grad = jax.value_and_grad(loss)(m)
        updates, state = opt.update(grad, state, m)
        return optax.apply_updates(m, updates), state, value

    state, values = opt.init(p), []
    for _ in range(60):
        p, state, value = step(p, state)
        values.append(float(value))
    assert np.all(np.isfinite(values))
    # an estimate with 1,024 quasi-random points: its stderr is below 0.01 here; the
    # fit starts near 1.3 and KL(p‖q) >= 0 (checked independently by quadrature)
    final = float(g.kl_quadrature(p, q))
    assert 0.0 <= final < 0.1 * values[0]
    assert float(p.weights[2]) == 0.0
    np.testing.assert_array_equal(jnp.triu(p.scale_param, 1), 0.0)


def test_a_factor_with_an_upper_triangle_and_signs_is_saved_as_read(tmp_path):
    # before: the file held the leaf, and loading refused it ("field `exact.scale` must
    # be lower triangular with a positive diagonal")
    p = _mixture(16, 3, 2)
    path = tmp_path / "m.json"
    g.save_mixture(_with_signs(_with_upper(p, 2)), path)
    back = g.load_mixture(path)
    np.testing.assert_array_equal(back.scale_param, p.scale_param)
    np.testing.assert_allclose(back.log_prob(p.locs), p.log_prob(p.locs), rtol=RTOL)


def _with_signs(m):
    """The same covariances with signs flipped: column 0 of each full factor (``L S`` with
    ``S = diag(-1, 1, ...)``, so ``(LS)(LS)ᵀ = LLᵀ``), or every standard deviation."""
    out = jax.tree_util.tree_map(lambda a: a, m)
    if m.covariance_type == "full":
        flip = jnp.ones(m.dim, m.scale_param.dtype).at[0].set(-1.0)
        out.scale_param = m.scale_param * flip
    else:
        out.scale_param = -m.scale_param
    return out


def _diag(seed, k, d):
    w, mu, tril = random_mixture_params(np.random.default_rng(seed), k, d)
    sd = jnp.asarray(np.exp(np.diagonal(tril, 0, -2, -1)))
    return g.GaussianMixture(jnp.asarray(w), jnp.asarray(mu), scale=sd, covariance_type="diag")


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("name", sorted(_CONSUMERS) + sorted(_SAMPLE))
def test_every_consumer_reads_the_moved_leaves_as_the_same_mixture(name, covariance_type):
    # the leaves as a step may leave them: logits shifted, random values above the
    # diagonal of a full factor, signs flipped. Before, on one side or the other: log_prob
    # off by the shift and NaN from a negative diagonal; bounds, quadrature, closed forms
    # and MMD off by the shift; sampling, KL, entropy, bounds, quadrature, moments and the
    # sklearn export reading the upper triangle
    fn = {**_CONSUMERS, **_SAMPLE}[name]
    make = _mixture if covariance_type == "full" else _diag
    p, q = make(17, 3, 2), make(18, 2, 2)

    def moved(m, seed):
        m = _with_signs(_shifted(m, 1.5 - seed))
        return _with_upper(m, seed) if covariance_type == "full" else m

    want = jax.tree_util.tree_leaves(fn(p, q))
    for args in ((moved(p, 0), q), (p, moved(q, 1))):
        got = jax.tree_util.tree_leaves(fn(*args))
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL)


def test_a_negative_univariate_scale_is_its_absolute_value():
    # the density of N(μ, s²) for either sign of s, against the closed form; and exported
    # as a valid NumPyro Normal (positive scale)
    p = _mixture(19, 2, 1, "univariate")
    neg = _with_signs(p)
    x = jnp.linspace(-4.0, 4.0, 9)
    sd = np.abs(np.asarray(neg.scale_param, np.float64))
    mu, w = np.asarray(p.locs, np.float64), np.asarray(p.weights, np.float64)
    xs = np.asarray(x, np.float64)[:, None]
    ref = np.log(np.sum(w * np.exp(-0.5 * ((xs - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), -1))
    np.testing.assert_allclose(neg.log_prob(x), ref, rtol=tol(1e-5, 1e-12))
    np.testing.assert_allclose(g.to_numpyro(neg).log_prob(x), ref, rtol=tol(1e-5, 1e-12))
