"""`GaussianMixture` against scipy, sklearn and its own moments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import logsumexp

from gmmjax import GaussianMixture
from tests._helpers import X64, random_spd, tol

pytestmark = pytest.mark.numerics

K, D = 3, 2


def _params(ctype, rng, batch=()):
    """Parameters in the constructor's layout, and dense covariances for scipy."""
    w = rng.dirichlet(np.ones(K), size=batch)
    if ctype == "univariate":
        locs = rng.normal(size=batch + (K,))
        var = rng.uniform(0.3, 2.0, size=batch + (K,))
        return w, locs, var, var
    locs = rng.normal(size=batch + (K, D)) * 2
    if ctype == "full":
        cov = random_spd(rng, int(np.prod(batch + (K,))), D).reshape(batch + (K, D, D))
        dense = cov
    elif ctype == "tied":
        cov = random_spd(rng, int(np.prod(batch or (1,))), D).reshape(batch + (D, D))
        dense = np.broadcast_to(cov[..., None, :, :], batch + (K, D, D))
    elif ctype == "diag":
        cov = rng.uniform(0.3, 2.0, size=batch + (K, D))
        dense = cov[..., :, None] * np.eye(D)
    else:
        cov = rng.uniform(0.3, 2.0, size=batch + (K,))
        dense = cov[..., None, None] * np.eye(D)
    return w, locs, cov, dense


def _scipy_logpdf(w, locs, dense, x, univariate):
    """log p(x) for one mixture, from scipy."""
    if univariate:
        comp = [stats.norm(locs[k], np.sqrt(dense[k])).logpdf(x) for k in range(K)]
    else:
        comp = [stats.multivariate_normal(locs[k], dense[k]).logpdf(x) for k in range(K)]
    return logsumexp(np.log(w) + np.stack(comp, -1), axis=-1)


TYPES = ["full", "tied", "diag", "spherical", "univariate"]
# float32 log-densities of O(10) magnitude: a few ulps (1e-5 relative, 1e-5 absolute).
RTOL, ATOL = tol(1e-5, 1e-10), tol(1e-5, 1e-10)


# one jitted function for every case: cases whose mixtures share a layout and shapes
# (the three ways of giving one covariance type) reuse its compiled program
_jit_log_prob = jax.jit(lambda m, v: m.log_prob(v))


@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("ctype", TYPES)
@pytest.mark.parametrize("kw", ["covariance_matrix", "precision_matrix", "scale"])
def test_log_prob_against_scipy(ctype, kw, use_jit, rng):
    w, locs, cov, dense = _params(ctype, rng)
    if kw == "precision_matrix":
        arg = np.linalg.inv(cov) if ctype in ("full", "tied") else 1.0 / cov
    elif kw == "scale":
        if ctype in ("full", "tied"):
            kw, arg = "scale_tril", np.linalg.cholesky(cov)
        else:
            arg = np.sqrt(cov)
    else:
        arg = cov
    p = GaussianMixture(w, locs, covariance_type=ctype, **{kw: arg})
    x = rng.normal(size=(13,) if ctype == "univariate" else (13, D)) * 2
    f = _jit_log_prob if use_jit else (lambda m, v: m.log_prob(v))
    got = f(p, jnp.asarray(x))
    assert got.shape == (13,)
    np.testing.assert_allclose(
        got, _scipy_logpdf(w, locs, dense, x, ctype == "univariate"), rtol=RTOL, atol=ATOL
    )
    assert got.dtype == (jnp.float64 if X64 else jnp.float32)


@pytest.mark.parametrize("ctype", TYPES)
def test_batched_log_prob_and_component_log_probs(ctype, rng):
    batch = (2, 3)
    w, locs, cov, dense = _params(ctype, rng, batch)
    p = GaussianMixture(w, locs, covariance_matrix=cov, covariance_type=ctype)
    assert p.batch_shape == batch
    ev = () if ctype == "univariate" else (D,)
    x = rng.normal(size=(5,) + batch + ev)
    # the three methods in one compiled program (eagerly, one program each)
    got, comp, r = jax.jit(
        lambda p, x: (p.log_prob(x), p.component_log_probs(x), p.responsibilities(x))
    )(p, jnp.asarray(x))
    assert got.shape == (5,) + batch and comp.shape == (5,) + batch + (K,)
    for i in range(batch[0]):
        for j in range(batch[1]):
            ref = _scipy_logpdf(w[i, j], locs[i, j], dense[i, j], x[:, i, j], ctype == "univariate")
            np.testing.assert_allclose(got[:, i, j], ref, rtol=RTOL, atol=ATOL)
    # responsibilities are a softmax over components
    np.testing.assert_allclose(np.sum(r, -1), 1.0, rtol=tol(1e-5, 1e-12))


@pytest.mark.parametrize("ctype", ["full", "tied", "diag", "spherical"])
def test_log_prob_equals_sklearn_score_samples(ctype, rng):
    from sklearn.mixture import GaussianMixture as SkGM

    w, locs, cov, _ = _params(ctype, rng)
    x = rng.normal(size=(50, D)) * 2
    sk = SkGM(n_components=K, covariance_type=ctype)
    sk.weights_, sk.means_, sk.covariances_ = w, locs, cov
    if ctype in ("full", "tied"):
        sk.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(cov))
    else:
        sk.precisions_cholesky_ = 1.0 / np.sqrt(cov)
    ref = sk.score_samples(x)  # the weighted sum of normalized component densities
    got = GaussianMixture(w, locs, covariance_matrix=cov, covariance_type=ctype).log_prob(x)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


def test_univariate_seed_mixture_takes_plain_numbers_and_integrates_to_one():
    n = np.array([2000.0, 5000.0, 10000.0])
    w, mu, sd = n / n.sum(), np.array([-0.5, -0.1, 0.2]), np.array([0.2, 0.07, 0.13])
    p = GaussianMixture(w, mu, scale=sd)
    assert p.event_shape == () and p.batch_shape == ()
    xs = np.linspace(-1.5, 1.0, 7)
    ref = np.log(sum(w[k] * stats.norm.pdf(xs, mu[k], sd[k]) for k in range(3)))
    np.testing.assert_allclose(p.log_prob(xs), ref, rtol=RTOL, atol=ATOL)
    total = integrate.quad(
        lambda t: float(jnp.exp(p.log_prob(t))), -3, 3, points=list(mu), limit=200
    )[0]
    assert total == pytest.approx(1.0, abs=tol(1e-5, 1e-9))
    # cdf against scipy
    cdf_ref = sum(w[k] * stats.norm.cdf(xs, mu[k], sd[k]) for k in range(3))
    np.testing.assert_allclose(p.cdf(xs), cdf_ref, rtol=tol(1e-5, 1e-10), atol=tol(1e-6, 1e-12))


@pytest.mark.parametrize("ctype", TYPES)
def test_sample_moments_match_mean_and_covariance(ctype, rng):
    w, locs, cov, _ = _params(ctype, rng)
    p = GaussianMixture(w, locs, covariance_matrix=cov, covariance_type=ctype)
    n = 200_000
    x = np.asarray(p.sample(jax.random.key(7), (n,)), dtype=np.float64)
    assert x.shape == (n,) + p.event_shape
    # the moments in one compiled program (eagerly, one program each)
    moments = jax.jit(
        lambda p: (p.mean, p.covariance_matrix, p.component_covariance_matrix, p.variance)
    )(p)
    mean, cov, comp_cov, variance = (np.asarray(a, np.float64) for a in moments)
    m, c = mean, np.atleast_2d(cov)
    xs = x.reshape(n, -1)
    # independent check of the law of total covariance: build the moments in numpy
    dense = np.atleast_3d(comp_cov)
    wl = np.asarray(w)
    lm = np.asarray(locs).reshape(K, -1)
    m_ref = wl @ lm
    c_ref = np.einsum(
        "k,kde->de",
        wl,
        dense.reshape(K, lm.shape[1], lm.shape[1])
        + np.einsum("kd,ke->kde", lm - m_ref, lm - m_ref),
    )
    np.testing.assert_allclose(m.reshape(-1), m_ref, rtol=tol(1e-5, 1e-12), atol=tol(1e-6, 1e-12))
    np.testing.assert_allclose(c, c_ref, rtol=tol(1e-5, 1e-12), atol=tol(1e-6, 1e-12))
    # sample mean: SE = sqrt(var/n); allow 5 SE (two-sided p ≈ 6e-7 per coordinate)
    se_mean = np.sqrt(np.diag(c) / n)
    assert np.all(np.abs(xs.mean(0) - m.reshape(-1)) < 5 * se_mean)
    # sample covariance: SE of each entry from the sample fourth moments
    dev = xs - m.reshape(-1)
    prod = np.einsum("nd,ne->nde", dev, dev)
    se_cov = prod.std(0) / np.sqrt(n)
    assert np.all(np.abs(prod.mean(0) - c) < 5 * se_cov)
    np.testing.assert_allclose(variance.reshape(-1), np.diag(c), rtol=tol(1e-5, 1e-12))


def test_sample_is_pathwise_in_locs_and_scales(rng):
    w, locs, cov, _ = _params("full", rng)
    key = jax.random.key(3)

    def f(loc_shift, scale_mult):
        p = GaussianMixture(w, locs + loc_shift, scale_tril=np.linalg.cholesky(cov) * scale_mult)
        return jnp.mean(p.sample(key, (1000,)))

    g = jax.jit(jax.grad(f, argnums=(0, 1)))(0.0, 1.0)  # one program, not one per op
    # d mean(x)/d shift = 1 exactly for any sample; the scale gradient is finite
    assert float(g[0]) == pytest.approx(1.0, rel=tol(1e-5, 1e-12))
    assert np.isfinite(float(g[1]))


def test_moments_of_a_new_shape_compile_one_program_each():
    """mean, variance and the other moments run as one program per layout and shape
    (eagerly, each of their operations compiled on its own: ~10 programs per moment)."""
    m = GaussianMixture(
        jnp.full(5, 0.2), jnp.arange(35.0).reshape(5, 7), jnp.broadcast_to(jnp.eye(7), (5, 7, 7))
    )  # K = 5, D = 7: a shape no other test uses
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        mean, var = m.mean, m.variance
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert len(compiles) <= 2
    # and the values: the law of total variance, by hand in NumPy
    locs = np.arange(35.0).reshape(5, 7)
    np.testing.assert_allclose(mean, locs.mean(0), rtol=1e-6)
    np.testing.assert_allclose(var, 1.0 + locs.var(0), rtol=1e-6)
