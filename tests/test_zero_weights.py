"""Zero-weight (dead) components work everywhere: density, sampling, divergences, EM, gradients.

References: NumPyro's ``MixtureSameFamily`` (density), the mixture with the dead
component removed (estimates: same law), the closed-form Gaussian KL, scipy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import stats

import gmmjax as g
from gmmjax import GaussianMixture
from gmmjax.montecarlo.sampling import multinomial_counts, systematic_allocation
from tests._helpers import tol

pytestmark = pytest.mark.numerics


def test_issue_reproducer_log_prob_matches_mixture_same_family():
    # issue 10: MixtureSameFamily returns -1.286 here; the old constructor raised
    w, mu, sd = jnp.array([0.5, 0.5, 0.0]), jnp.array([-1.0, 0.0, 1.0]), jnp.ones(3)
    got = GaussianMixture(w, mu, sd).log_prob(0.3)
    # the reference in one program (eagerly, NumPyro's checks and density compile op by op)
    ref = jax.jit(
        lambda w, mu, sd: dist.MixtureSameFamily(
            dist.Categorical(probs=w), dist.Normal(mu, sd)
        ).log_prob(0.3)
    )(w, mu, sd)
    # NumPyro clamps the zero probability to float tiny (1e-38), which changes nothing at
    # float precision; both are a logsumexp of the same two terms: a few ulps
    np.testing.assert_allclose(got, ref, rtol=tol(1e-6, 1e-12))
    assert float(got) == pytest.approx(-1.286, abs=5e-4)
    # and scipy: log(½ N(0.3; -1, 1) + ½ N(0.3; 0, 1))
    sp = np.log(0.5 * stats.norm.pdf(0.3, -1, 1) + 0.5 * stats.norm.pdf(0.3, 0, 1))
    np.testing.assert_allclose(got, sp, rtol=tol(1e-6, 1e-12))


@pytest.mark.parametrize("ctype", ["full", "diag", "spherical", "tied"])
def test_log_prob_equals_mixture_without_the_dead_component(ctype, rng):
    k, d = 3, 2
    locs = rng.normal(size=(k, d))
    cov = {
        "full": np.broadcast_to(np.eye(d), (k, d, d)) * np.array([1.0, 2.0, 0.5])[:, None, None],
        "diag": rng.uniform(0.5, 2, (k, d)),
        "spherical": rng.uniform(0.5, 2, k),
        "tied": np.array([[1.0, 0.3], [0.3, 0.8]]),
    }[ctype]
    p = GaussianMixture(np.array([0.4, 0.0, 0.6]), locs, cov, covariance_type=ctype)
    keep = np.array([0, 2])
    live_cov = cov if ctype == "tied" else cov[keep]
    q = GaussianMixture(np.array([0.4, 0.6]), locs[keep], live_cov, covariance_type=ctype)
    x = jnp.asarray(rng.normal(size=(20, d)) * 2)
    # the three methods in one program (each alone compiles a program of its own)
    lp, lq, r = jax.jit(lambda p, q, x: (p.log_prob(x), q.log_prob(x), p.responsibilities(x)))(
        p, q, x
    )
    np.testing.assert_allclose(lp, lq, rtol=tol(1e-6, 1e-12))
    assert np.all(np.asarray(r)[:, 1] == 0)


def test_sample_never_draws_a_dead_component():
    # the dead component sits at 1e3: any draw from it would be far from the others
    p = GaussianMixture(
        jnp.array([0.0, 0.5, 0.0, 0.5, 0.0]), jnp.array([1e3, -1.0, 1e3, 1.0, 1e3]), jnp.ones(5)
    )
    x = p.sample(jax.random.key(0), (200_000,))
    assert float(np.max(np.abs(np.asarray(x)))) < 10.0
    # compiled (the library calls it traced); eagerly its chunked draw compiles op by op
    counts = jax.jit(multinomial_counts, static_argnums=1)(jax.random.key(1), 100_000, p.weights)
    assert counts.tolist()[0::2] == [0, 0, 0] and sum(counts.tolist()) == 100_000


@pytest.mark.parametrize(
    "w,total,expected",
    [
        ([0.5, 0.0, 0.5], 6, [3, 0, 3]),
        ([0.0, 0.5, 0.5], 7, [0, 4, 3]),
        ([0.5, 0.5, 0.0], 7, [4, 3, 0]),
        ([0.0, 1.0, 0.0], 5, [0, 5, 0]),
        ([0.2, 0.3, 0.5], 13, [3, 4, 6]),  # unchanged without dead components
    ],
)
def test_stratified_allocation_gives_dead_components_no_points(w, total, expected):
    # hand-computed: live components get 1, the rest by systematic allocation
    f = jax.jit(systematic_allocation, static_argnums=1)
    assert f(jnp.asarray(w, jnp.float32), total).tolist() == expected


def _dead_pair(lp):
    # p = N(lp, 1) plus a dead component at 50; q = N(1, 2²) plus a dead one at -50
    p = GaussianMixture.from_params(
        jnp.array([0.0, -jnp.inf]), jnp.array([lp, 50.0]), jnp.ones(2), "univariate"
    )
    q = GaussianMixture(jnp.array([0.0, 1.0]), jnp.array([-50.0, 1.0]), scale=jnp.array([1.0, 2.0]))
    return p, q


_DEAD_METHODS = ("stratified", "qmc", "antithetic", "iid")


@jax.jit
def _dead_kl_and_grad(lp):
    # each method's estimate and its gradient in μ_p, all from one program (the forward
    # pass is shared; one program compiles faster than four); built under jit, so the
    # constructors' operations do not compile one by one
    def one(method):
        def f(lp):
            est = g.kl_estimate(*_dead_pair(lp), jax.random.key(0), 4096, method=method)
            return est.value, est

        (_, est), grad = jax.value_and_grad(f, has_aux=True)(lp)
        return est, grad

    return {method: one(method) for method in _DEAD_METHODS}


@pytest.fixture(scope="module")
def dead_kl_and_grads():
    return _dead_kl_and_grad(0.0)


@pytest.mark.parametrize("method", _DEAD_METHODS)
def test_kl_with_a_dead_component_is_unbiased_and_has_finite_gradients(method, dead_kl_and_grads):
    # KL(p || q) is the closed-form Gaussian KL: log 2 + (1 + 1)/8 - 1/2.
    truth = np.log(2.0) + 2.0 / 8.0 - 0.5
    _dead_pair(0.0)  # the eager constructors accept the dead components too
    est, grad = dead_kl_and_grads[method]
    assert np.isfinite(float(est.value)) and np.isfinite(float(est.stderr))
    # unbiased: within 4 standard errors of the truth (two-sided p ≈ 6e-5)
    assert abs(float(est.value) - truth) <= 4 * float(est.stderr) + 1e-6
    # d KL / d μ_p at μ_p = 0 is (μ_p - μ_q)/σ_q² = -1/4 (closed form)
    assert np.isfinite(float(grad))
    assert abs(float(grad) + 0.25) < 0.1  # MC gradient; SE ≈ 0.01 at 4096 points


def test_gradients_at_a_dead_component_are_finite(rng):
    w = jnp.array([0.3, 0.0, 0.7])
    locs, cov = (
        jnp.asarray(rng.normal(size=(3, 2))),
        jnp.asarray(np.broadcast_to(np.eye(2), (3, 2, 2))),
    )
    x = jnp.asarray(rng.normal(size=(10, 2)))

    def loss(w, locs, cov):
        return jnp.sum(GaussianMixture(w, locs, cov).log_prob(x))

    grads = jax.grad(loss, argnums=(0, 1, 2))(w, locs, cov)
    for gr in grads:
        assert np.all(np.isfinite(np.asarray(gr)))
    # a dead component's mean and covariance cannot move log p: zero gradient (indexed on
    # the host: an eager slice compiles a program)
    assert np.all(np.asarray(grads[1])[1] == 0) and np.all(np.asarray(grads[2])[1] == 0)
    # the gradient through the stored parameters too
    gp = jax.grad(lambda p: jnp.sum(p.log_prob(x)))(GaussianMixture(w, locs, cov))
    for leaf in jax.tree_util.tree_leaves(gp):
        assert np.all(np.isfinite(np.asarray(leaf)))


def test_fit_em_with_an_empty_component_returns_a_usable_mixture():
    # two clusters, three components, one initial mean far from all data: it ends empty
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 0.5, (200, 2)), rng.normal(3, 0.5, (200, 2))])
    means_init = np.array([[-3.0, -3.0], [3.0, 3.0], [1e3, 1e3]])
    res = g.fit_em(jnp.asarray(x), 3, key=jax.random.key(0), means_init=means_init, max_iter=20)
    m = res.mixture
    w = np.asarray(m.weights)
    # sklearn's 10·eps guard: the empty component keeps a weight of order eps/N
    assert w[2] < 1e-6 and np.all(np.isfinite(w))
    lm = np.asarray(m.log_prob(jnp.asarray(x)))
    assert np.all(np.isfinite(lm))
    s = m.sample(jax.random.key(2), (1000,))
    assert np.all(np.isfinite(np.asarray(s)))
    # and a mixture with that component's weight set to exactly zero is valid: the same
    # density at every data point (same shapes as m: the same compiled log_prob)
    w0 = np.where(np.arange(3) == 2, 0.0, w)
    p = GaussianMixture(w0 / w0.sum(), m.locs, scale_tril=m.scale_param)
    np.testing.assert_allclose(p.log_prob(jnp.asarray(x)), lm, rtol=tol(1e-5, 1e-10))


def test_logits_minus_inf_marks_a_dead_component():
    p = GaussianMixture(
        logits=jnp.array([0.0, -jnp.inf]), locs=jnp.array([0.0, 5.0]), scale=jnp.ones(2)
    )
    assert p.weights.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="every logit is -inf"):
        GaussianMixture(logits=jnp.full(2, -jnp.inf), locs=jnp.zeros(2), scale=jnp.ones(2))
