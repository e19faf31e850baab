"""A mixture is a pytree: jit, vmap, lax.map, tree_map; and it works inside NumPyro."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions.batch_util import vmap_over

from gmmjax import GaussianMixture, from_numpyro, to_numpyro
from gmmjax.mixture import MixtureParams
from tests._helpers import X64, random_spd

K, D = 3, 2


def _mixture(rng, ctype="full", batch=()):
    w = rng.dirichlet(np.ones(K), size=batch)
    locs = rng.normal(size=batch + (K, D))
    cov = random_spd(rng, int(np.prod(batch + (K,))), D).reshape(batch + (K, D, D))
    return GaussianMixture(w, locs, covariance_matrix=cov, covariance_type=ctype)


def test_jit_vmap_laxmap_treemap_agree(rng):
    pb = _mixture(rng, batch=(4,))
    x = jnp.asarray(rng.normal(size=(6, D)))
    ref = pb.log_prob(x[:, None, :])  # (6, 4) by broadcasting
    by_vmap = jax.vmap(lambda m: m.log_prob(x))(pb)  # (4, 6)
    by_map = jax.lax.map(lambda m: m.log_prob(x), pb)
    by_jit = jax.jit(lambda m: m.log_prob(x[:, None, :]))(pb)
    same = jax.tree_util.tree_map(lambda a: a, pb)
    assert isinstance(same, GaussianMixture) and same.batch_shape == (4,)
    # identical arithmetic in each path; float32 reassociation allows ~1 ulp
    np.testing.assert_allclose(by_vmap.T, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(by_map.T, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(by_jit, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(same.log_prob(x[:, None, :]), ref, rtol=1e-6, atol=1e-6)
    # vmap can return mixtures, and the batch shape follows the leaves
    built = jax.vmap(
        lambda l: GaussianMixture.from_params(pb.logits[0], l, pb.scale_param[0], "full")
    )(pb.locs)
    assert built.batch_shape == (4,)


def test_expand_keeps_type_and_values(rng):
    p = _mixture(rng)
    e = p.expand((5,))
    assert isinstance(e, GaussianMixture) and e.batch_shape == (5,)
    x = jnp.asarray(rng.normal(size=(3, D)))
    np.testing.assert_allclose(
        e.log_prob(x[:, None]), np.repeat(np.asarray(p.log_prob(x))[:, None], 5, 1), rtol=1e-6
    )
    with pytest.raises(ValueError, match="Cannot broadcast distribution of shape"):
        e.expand((3,))


def test_grad_flows_to_every_parameter(rng):
    p = _mixture(rng)
    x = jnp.asarray(rng.normal(size=(10, D)))
    g = jax.jit(jax.grad(lambda m: jnp.sum(m.log_prob(x))))(p)  # one program, not one per op
    for leaf in jax.tree_util.tree_leaves(g):
        assert np.all(np.isfinite(leaf)) and np.any(leaf != 0)


@pytest.mark.parametrize("ctype", ["full", "diag", "univariate"])
def test_numpyro_conversion_round_trip(ctype, rng):
    if ctype == "univariate":
        p = GaussianMixture(
            rng.dirichlet(np.ones(K)), rng.normal(size=K), scale=rng.uniform(0.5, 2, K)
        )
        x = jnp.asarray(rng.normal(size=9))
    else:
        w = rng.dirichlet(np.ones(K))
        cov = random_spd(rng, K, D) if ctype == "full" else rng.uniform(0.5, 2, (K, D))
        p = GaussianMixture(
            w, rng.normal(size=(K, D)), covariance_matrix=cov, covariance_type=ctype
        )
        x = jnp.asarray(rng.normal(size=(9, D)))
    m = to_numpyro(p)
    assert isinstance(m, dist.MixtureSameFamily)
    # NumPyro evaluates through its own triangular solves: equal to a few float32 ulps
    # (jitted: one compiled program rather than one per NumPyro operation)
    np.testing.assert_allclose(jax.jit(m.log_prob)(x), p.log_prob(x), rtol=1e-5, atol=1e-5)
    back = from_numpyro(m)
    np.testing.assert_allclose(back.log_prob(x), p.log_prob(x), rtol=1e-5, atol=1e-5)


def test_from_numpyro_rejects_other_families():
    m = dist.MixtureSameFamily(
        dist.Categorical(probs=jnp.ones(2) / 2), dist.Laplace(jnp.zeros(2), 1.0)
    )
    with pytest.raises(TypeError, match="Normal or MultivariateNormal"):
        from_numpyro(m)
    with pytest.raises(TypeError, match="MixtureSameFamily"):
        from_numpyro(dist.Normal(0.0, 1.0))


def test_nuts_recovers_means_of_two_component_mixture():
    from numpyro.infer import MCMC, NUTS

    true = np.array([-2.0, 3.0])
    rng = np.random.default_rng(0)
    n = 400
    z = rng.random(n) < 0.4
    data = np.where(z, rng.normal(true[0], 0.5, n), rng.normal(true[1], 0.5, n))

    def model(y):
        mu = numpyro.sample("mu", dist.Normal(jnp.array([-1.0, 1.0]), 5.0).to_event(1))
        # an ordering penalty removes label switching between the two components
        numpyro.factor("order", jnp.where(mu[0] < mu[1], 0.0, -1e3))
        numpyro.sample(
            "y", GaussianMixture(jnp.array([0.4, 0.6]), mu, scale=jnp.array([0.5, 0.5])), obs=y
        )

    mcmc = MCMC(NUTS(model), num_warmup=300, num_samples=400, progress_bar=False)
    mcmc.run(jax.random.key(1), jnp.asarray(data))
    post = np.asarray(mcmc.get_samples()["mu"])
    # posterior sd of each mean ≈ 0.5/sqrt(n_k) ≈ 0.04; the posterior mean sits within
    # sampling noise of the true value: allow 5 posterior sd plus the data's own noise.
    sd = 0.5 / np.sqrt(np.array([0.4, 0.6]) * n)
    assert np.all(np.abs(post.mean(0) - true) < 5 * sd + 0.05)


def test_logprob_difference_at_1e5_points_does_not_deadlock(tmp_path):
    """The precision-Cholesky kernel never holds large triangular solves, so two mixtures'
    log_prob in one jit finish with the default XLA flags (see shared/notes)."""
    code = textwrap.dedent(
        """
        import os, jax, jax.numpy as jnp, numpy as np
        assert "xla_cpu_enable_concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", "")
        from gmmjax import GaussianMixture
        r = np.random.default_rng(0)
        def mk(k):
            a = r.normal(size=(k, 2, 2)); c = a @ a.transpose(0, 2, 1) + np.eye(2)
            return GaussianMixture(np.ones(k) / k, r.normal(size=(k, 2)), covariance_matrix=c)
        p, q = mk(5), mk(6)
        f = jax.jit(lambda p, q, x: p.log_prob(x) - q.log_prob(x))
        for i in range(10):
            x = jax.random.normal(jax.random.key(i), (100_000, 2))
            out = f(p, q, x).block_until_ready()
        assert np.all(np.isfinite(out))
        print("ok")
        """
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "XLA_FLAGS"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("ok")


def test_gradient_recipe_with_mixture_params(rng):
    """Differentiate MixtureParams, not the mixture: named fields, same numbers as the
    analytic gradient of the 1-D log-likelihood, d/dμ_k Σ_n log p(x_n) = Σ_n r_nk (x_n - μ_k)/σ_k²."""
    w, mu, sd = np.array([0.3, 0.7]), np.array([-1.0, 2.0]), np.array([0.5, 1.5])
    p = GaussianMixture(w, mu, scale=sd)
    x = rng.normal(size=40)
    g = jax.jit(jax.grad(lambda prm: jnp.sum(p.with_params(prm).log_prob(x))))(p.params)
    assert isinstance(g, MixtureParams) and g._fields == ("logits", "locs", "scale_param")
    comp = np.stack(
        [w[k] * np.exp(-0.5 * ((x - mu[k]) / sd[k]) ** 2) / sd[k] for k in range(2)], -1
    )
    r = comp / comp.sum(-1, keepdims=True)
    ref_mu = np.sum(r * (x[:, None] - mu) / sd**2, axis=0)
    # float32 sums of 40 terms of O(10): 1e-4 relative
    np.testing.assert_allclose(g.locs, ref_mu, rtol=1e-4 if not X64 else 1e-10)
    # d/d logit_k with normalized logits: Σ_n (r_nk - w_k)
    np.testing.assert_allclose(g.logits, np.sum(r - w, axis=0), rtol=1e-4, atol=1e-4)
    # one gradient step, applied by name
    new = p.with_params(jax.tree.map(lambda a, b: a + 1e-3 * b, p.params, g))
    assert float(jnp.sum(new.log_prob(x))) > float(jnp.sum(p.log_prob(x)))


def test_repr_shows_leaves_and_survives_gradients_and_tracers(rng):
    p = _mixture(rng)
    text = repr(p)
    assert "covariance_type='full'" in text and "logits=float" in text and "[3, 2, 2]" in text
    g = jax.grad(lambda m: jnp.sum(m.log_prob(jnp.zeros(D))))(p)
    assert "scale_param=" in repr(g)  # a gradient pytree prints its numbers
    jax.jit(lambda m: repr(m) and m.logits)(p)  # tracers: shapes only, no crash
    assert "None" in repr(vmap_over(p, locs=0))
