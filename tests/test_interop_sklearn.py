"""from_sklearn / to_sklearn: every covariance type, exact round trips in float64."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGM

from gmmjax import GaussianMixture, from_sklearn, to_sklearn

TYPES = ("full", "tied", "diag", "spherical")
SK_ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.normal(size=(80, 3)) + 3, rng.normal(size=(70, 3)) @ rng.normal(size=(3, 3))]
    )


def _sk(t, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SkGM(2, covariance_type=t, random_state=0).fit(x)


@pytest.mark.parametrize("t", TYPES)
def test_sklearn_round_trips_bit_for_bit(x64, t):
    x = _data()
    sk = _sk(t, x)
    mix = from_sklearn(sk)
    assert mix.covariance_type == t and mix.locs.dtype == jnp.float64
    # the converted mixture is the same density: log_prob equals sklearn's
    # score_samples to float64 rounding (1e-10 relative on values of ~5 nats)
    np.testing.assert_allclose(mix.log_prob(x), sk.score_samples(x), rtol=1e-10)
    # sklearn -> gmmjax -> sklearn: every public array bit for bit
    back = to_sklearn(mix)
    for name in SK_ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(sk, name), err_msg=name)
    # gmmjax -> sklearn -> gmmjax: every leaf bit for bit
    mix2 = GaussianMixture.from_params(
        mix.logits + 0.0, mix.locs * 1.0, mix.scale_param * 1.0, t
    )  # a fresh mixture (no memory of sklearn)
    again = from_sklearn(to_sklearn(mix2))
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(mix2), strict=True):
        np.testing.assert_array_equal(a, b)
    # the converted estimator works in sklearn: same scores and predictions
    sk2 = to_sklearn(mix2)
    np.testing.assert_allclose(sk2.score_samples(x), mix.log_prob(x), rtol=1e-10)
    np.testing.assert_array_equal(sk2.predict(x), sk.predict(x))


@pytest.mark.parametrize("t", TYPES)
def test_arithmetic_conversion_is_within_ulps(x64, t):
    # without the remembered source (public arrays edited), the conversion is
    # arithmetic: weights via exp/log, covariances via Cholesky; float64 rounding
    # bounds the error by ~1e-15 relative, we allow 1e-12
    sk = _sk(t, _data(1))
    mix = from_sklearn(sk)
    fresh = GaussianMixture.from_params(mix.logits, mix.locs, mix.scale_param, t)
    sk3 = to_sklearn(fresh)
    for name in SK_ARRAYS:
        np.testing.assert_allclose(getattr(sk3, name), getattr(sk, name), rtol=1e-12, atol=1e-14)
    sk3.means_ = sk3.means_ + 1.0  # an edit: from_sklearn must follow the public arrays
    np.testing.assert_allclose(from_sklearn(sk3).locs, np.asarray(mix.locs) + 1.0, rtol=1e-14)


def test_univariate_round_trip(x64):
    mix = GaussianMixture(
        jnp.array([0.2, 0.8]), jnp.array([-1.0, 2.0]), scale=jnp.array([0.5, 1.5])
    )
    sk = to_sklearn(mix)
    assert sk.covariance_type == "spherical" and sk.means_.shape == (2, 1)
    x = np.linspace(-3, 4, 7)
    np.testing.assert_allclose(sk.score_samples(x[:, None]), mix.log_prob(x), rtol=1e-12)
    back = from_sklearn(sk)
    assert back.covariance_type == "univariate"
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(mix), strict=True):
        np.testing.assert_array_equal(a, b)
    # a 1-feature sklearn fit read as univariate
    fit = _sk("full", np.random.default_rng(0).normal(size=(50, 1)))
    uni = from_sklearn(fit, univariate=True)
    assert uni.event_shape == ()
    np.testing.assert_allclose(uni.scale_param**2, fit.covariances_[:, 0, 0], rtol=1e-14)


def test_messages():
    with pytest.raises(ValueError, match="fitted"):
        from_sklearn(SkGM(2))
    with pytest.raises(TypeError, match="expects a GaussianMixture"):
        to_sklearn("not a mixture")
    batched = GaussianMixture(jnp.ones((3, 2)) / 2, jnp.zeros((3, 2)), scale=jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="batch_shape"):
        to_sklearn(batched)
    with pytest.raises(ValueError, match="univariate=True needs a 1-feature"):
        from_sklearn(_sk("diag", _data()), univariate=True)


def test_fitted_estimators_go_straight_into_the_divergences():
    # the sklearn user's one call: KL with an error bar between two fitted models,
    # against the recipe that needs no gmmjax (sklearn's own sample and score_samples):
    # both estimate the same KL, so they agree within 4 combined standard errors
    from sklearn.mixture import BayesianGaussianMixture

    import gmmjax
    import gmmjax.sklearn

    x = _data()
    a, b = _sk("full", x), _sk("diag", _data(1))
    est = gmmjax.kl_estimate(a, b, jax.random.key(0), 4096)
    xs = a.sample(20000)[0]
    h = a.score_samples(xs) - b.score_samples(xs)
    recipe, recipe_se = h.mean(), h.std() / np.sqrt(h.size)
    assert abs(float(est.value) - recipe) < 4 * np.hypot(float(est.stderr), recipe_se)
    # the same program as with converted mixtures, and for every kind of estimator
    ref = gmmjax.kl_estimate(from_sklearn(a), from_sklearn(b), jax.random.key(0), 4096)
    assert float(est.value) == float(ref.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        others = [
            BayesianGaussianMixture(n_components=2, max_iter=20, random_state=0).fit(x),
            gmmjax.sklearn.GaussianMixture(2, random_state=0).fit(x),
        ]
    for m in others:
        want = float(gmmjax.kl_bounds(from_sklearn(m), from_sklearn(b)).upper)
        assert float(gmmjax.kl_bounds(m, b).upper) == want
    # closed over by the caller's jit: converted to constants while tracing
    f = jax.jit(lambda key: gmmjax.js_divergence(a, b, key, 256))
    assert np.isfinite(float(f(jax.random.key(1))))


def test_an_unfitted_estimator_or_an_array_is_named():
    import gmmjax

    b = _sk("full", _data())
    with pytest.raises(ValueError, match=r"this GaussianMixture is not fitted \(call .fit\(X\)"):
        gmmjax.kl_divergence(SkGM(2), b, 0, 256)
    with pytest.raises(TypeError, match=r"got an array of shape \(3,\)"):
        gmmjax.kl_divergence(np.zeros(3), b, 0, 256)
    with pytest.raises(TypeError, match=r"`p` must be .* got an array of shape \(2, 3\)"):
        gmmjax.kl_bounds(jnp.zeros((2, 3)), b)
