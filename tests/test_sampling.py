"""Sampling plans: allocation, block layout, the lattice sequence, conversions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import stats

import gmmjax as g
from gmmjax.montecarlo.sampling import (
    as_gaussian_mixture,
    block_info,
    kronecker_alpha,
    make_layout,
    multinomial_counts,
    standard_normals,
    systematic_allocation,
)


@pytest.mark.parametrize("total", [3, 10, 1000, 12_345])
def test_systematic_allocation(total):
    w = jnp.array([1e-6, 0.2, 0.3, 0.5 - 1e-6])[: min(4, total)]
    w = w / w.sum()
    # jitted (total static): one compiled program instead of one per operation
    n = np.asarray(jax.jit(systematic_allocation, static_argnums=1)(w, total))
    assert n.sum() == total and np.all(n >= 1)
    # proportional up to the one point every component gets first and rounding (±1)
    assert np.all(np.abs(n - 1 - (total - len(w)) * np.asarray(w)) <= 1.0 + 1e-6)


def test_multinomial_counts_law():
    # chunked inverse-CDF counts: mean n·w within 4 binomial standard deviations
    w = jnp.array([0.1, 0.2, 0.7])
    n = 50_000
    # jitted (n and chunk static): one compiled program instead of one per operation
    counts = jax.jit(multinomial_counts, static_argnums=(1, 3))
    c = np.asarray(counts(jax.random.key(0), n, w, 8192))
    assert c.sum() == n
    sd = np.sqrt(n * np.asarray(w) * (1 - np.asarray(w)))
    assert np.all(np.abs(c - n * np.asarray(w)) <= 4 * sd)


def test_kronecker_alpha_is_the_generalized_golden_ratio():
    # φ_2 is the plastic number 1.3247...: α = (1/φ, 1/φ²)
    phi = 1.324717957244746
    assert np.allclose(kronecker_alpha(2) / 2**32, [1 / phi, 1 / phi**2], atol=1e-9)


@pytest.mark.parametrize("method", ["iid", "stratified", "antithetic", "qmc"])
def test_layout_covers_every_point_once(method):
    p = g.GaussianMixture(
        jnp.array([0.05, 0.15, 0.8]),
        jnp.zeros((3, 2)),
        scale_tril=jnp.broadcast_to(jnp.eye(2), (3, 2, 2)),
    )
    n = 1000
    lay = make_layout(p, jax.random.key(1), n, method)
    # one compiled program (the layout closed over) instead of one per operation
    rep, comp, first, valid = jax.jit(lambda: block_info(lay, jnp.arange(lay.num_blocks + 5)))()
    counts = np.zeros((lay.replicates, 3), int)
    np.add.at(counts, (np.asarray(rep), np.asarray(comp)), np.asarray(valid))
    assert np.array_equal(counts, np.asarray(lay.counts))
    assert counts.sum() <= n and counts.sum() >= n - lay.replicates
    if method != "iid":
        assert np.all(counts >= 1)


def test_qmc_inputs_are_standard_normal_and_more_uniform_than_iid():
    p = g.GaussianMixture(jnp.ones(1), jnp.zeros(1), scale=jnp.ones(1))
    n = 4096
    out = {}
    for method in ("iid", "qmc"):
        lay = make_layout(p, jax.random.key(2), n, method)

        @jax.jit  # the layout closed over (its ints are static): one program per method
        def inputs():
            rep, comp, first, valid = block_info(lay, jnp.arange(lay.num_blocks))
            eps = standard_normals(jax.random.key(3), method, lay, rep, comp, first, 1, jnp.float32)
            return eps, valid

        eps, valid = inputs()
        eps = np.asarray(eps).reshape(-1)
        mask = (np.arange(lay.block)[None] < np.asarray(valid)[:, None]).reshape(-1)
        out[method] = stats.kstest(eps[mask], "norm").statistic
    # iid KS distance ~ 1/√n ≈ 0.016; the lattice's is far smaller (≈ replicates/n)
    assert out["iid"] < 0.03
    assert out["qmc"] < 0.25 * out["iid"]


def test_conversions_of_numpyro_gaussians():
    x = jnp.linspace(-2.0, 2.0, 7)
    for d in (
        dist.Normal(0.5, 2.0),
        dist.MixtureSameFamily(
            dist.Categorical(probs=jnp.array([0.3, 0.7])),
            dist.Normal(jnp.array([0.0, 1.0]), jnp.array([1.0, 0.5])),
        ),
    ):
        # NumPyro's log_prob jitted: one program instead of one per operation
        assert np.allclose(as_gaussian_mixture(d).log_prob(x), jax.jit(d.log_prob)(x), atol=1e-5)
    mvn = dist.MultivariateNormal(
        jnp.array([0.0, 1.0]), scale_tril=jnp.array([[1.0, 0.0], [0.5, 0.8]])
    )
    x2 = jnp.stack([x, -x], -1)
    assert np.allclose(as_gaussian_mixture(mvn).log_prob(x2), jax.jit(mvn.log_prob)(x2), atol=1e-5)
    assert as_gaussian_mixture(dist.Laplace(0.0, 1.0)) is None
