"""Deterministic quadrature: cubature rules, KL by quadrature, and the 1-D reference."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmmjax import GaussianMixture, kl_quadrature, kl_reference_1d, standard_normal_rule
from tests._gmm_reference import NpGMM, gaussian_kl_np, kl_grid_2d, kl_quad_1d, random_gmm
from tests._helpers import X64, tol

pytestmark = pytest.mark.numerics


def _normal_moment(powers):
    """E Π z_i^{k_i} for z ~ N(0, I): Π (k_i - 1)!! for even k_i, else 0."""
    out = 1.0
    for k in powers:
        if k % 2:
            return 0.0
        out *= math.prod(range(k - 1, 0, -2)) if k else 1.0
    return out


@pytest.mark.parametrize(
    "dim,rule,order,degree",
    [
        (2, "degree5", None, 5),
        (5, "degree5", None, 5),
        (8, "degree5", None, 5),
        (2, "tensor", 4, 7),
        (3, "tensor", 3, 5),
    ],
)
def test_rules_integrate_monomials_exactly(dim, rule, order, degree):
    z, w = standard_normal_rule(dim, rule=rule, order=order)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    for total in range(1, degree + 1):
        for idx in itertools.combinations_with_replacement(range(dim), total):
            powers = np.bincount(idx, minlength=dim)
            got = float(np.sum(w * np.prod(z**powers, axis=1)))
            assert got == pytest.approx(_normal_moment(powers), abs=1e-10), powers
    # ... and not beyond: degree 6 is wrong for the degree-5 rule in D ≥ 2 (E z1²z2²z3² or z1⁶)
    if rule == "degree5":
        got6 = float(np.sum(w * z[:, 0] ** 6))
        assert abs(got6 - 15.0) > 1e-3


def test_kl_quadrature_exact_for_gaussians_all_rules():
    rng = np.random.default_rng(0)
    for d, rule in [(1, "tensor"), (2, "tensor"), (3, "tensor"), (6, "degree5")]:
        p, q = random_gmm(rng, 1, d), random_gmm(rng, 1, d)
        ref = gaussian_kl_np(p.m[0], p.c[0], q.m[0], q.c[0])
        pj = p.to_jax("univariate" if d == 1 else "full")
        qj = q.to_jax("univariate" if d == 1 else "full")
        got = float(kl_quadrature(pj, qj, rule=rule, order=None if d < 3 else 4))
        # float32: a few ulps of the O(10) log-density values summed with O(1) weights
        assert got == pytest.approx(ref, rel=tol(1e-4, 1e-9), abs=tol(1e-4, 1e-9)), (d, rule)


def test_kl_quadrature_mixtures_1d_2d():
    rng = np.random.default_rng(1)
    p, q = random_gmm(rng, 3, 1), random_gmm(rng, 2, 1)
    ref = kl_quad_1d(p, q)
    got = float(kl_quadrature(p.to_jax("univariate"), q.to_jax("univariate")))
    # Gauss–Hermite per component converges algebraically where q switches its dominant
    # component: measured rel. error 3.5e-5 at order 64 and 1.1e-6 at the default 128
    assert got == pytest.approx(ref, rel=1e-5, abs=1e-5)
    p2, q2 = random_gmm(rng, 3, 2), random_gmm(rng, 2, 2)
    ref2 = kl_grid_2d(p2, q2)
    got2 = float(kl_quadrature(p2.to_jax(), q2.to_jax()))
    # 48² points per component: measured rel. error 8.5e-6 (1.6e-4 at 24²)
    assert got2 == pytest.approx(ref2, rel=5e-5)


def test_kl_quadrature_3d_against_a_separable_reference():
    """p and q share an independent third axis: KL = KL_2D + KL of the third marginals."""
    rng = np.random.default_rng(2)
    p2, q2 = random_gmm(rng, 2, 2, spread=1.0), random_gmm(rng, 2, 2, spread=1.0)

    def lift(g, m3, v3):
        k = len(g.w)
        c = np.zeros((k, 3, 3))
        c[:, :2, :2] = g.c
        c[:, 2, 2] = v3
        return NpGMM(g.w, np.concatenate([g.m, np.full((k, 1), m3)], 1), c)

    p3, q3 = lift(p2, 0.3, 0.8), lift(q2, -0.5, 1.3)
    ref = kl_grid_2d(p2, q2) + gaussian_kl_np(
        np.array([0.3]), np.array([[0.8]]), np.array([-0.5]), np.array([[1.3]])
    )
    got = float(kl_quadrature(p3.to_jax(), q3.to_jax(), order=20))
    # Gauss–Hermite converges only algebraically where q switches dominant component
    # (measured: rel. error 2e-3, 3e-4, 1.5e-4 at orders 8, 16, 20), hence 5e-4
    assert got == pytest.approx(ref, rel=5e-4)


@pytest.mark.parametrize("seed", range(4))
def test_reference_1d_against_scipy_quad(seed):
    rng = np.random.default_rng(100 + seed)
    p = random_gmm(rng, 4, 1, spread=3.0, smin=0.1, smax=3.0)
    q = random_gmm(rng, 3, 1, spread=3.0, smin=0.1, smax=3.0)
    ref = kl_quad_1d(p, q)
    got = float(kl_reference_1d(p.to_jax("univariate"), q.to_jax("univariate")))
    # float64: the 1e-8 target (both rules are accurate to ~1e-11 here); float32: rounding
    # of the 32768 summed O(1) terms
    assert got == pytest.approx(ref, rel=tol(2e-5, 1e-8), abs=tol(2e-5, 1e-8))


def test_reference_1d_is_differentiable():
    rng = np.random.default_rng(3)
    p, q = random_gmm(rng, 2, 1), random_gmm(rng, 2, 1)
    qj = q.to_jax("univariate")
    dt = qj.locs.dtype
    # inputs and test-side arithmetic in numpy: each eager jnp operation would compile
    sd, logw = np.sqrt(p.c[:, 0, 0]).astype(dt), np.log(p.w).astype(dt)

    def f(m):
        pj = GaussianMixture.from_params(logw, m, sd, "univariate")
        return kl_reference_1d(pj, qj)

    m0 = p.m[:, 0].astype(dt)
    g = np.asarray(jax.jit(jax.grad(f))(m0))  # one program (eagerly: forward, backward)
    h = tol(1e-2, 1e-5)
    e = np.asarray([1.0, 0.0], dt)
    fd = (float(f(m0 + h * e)) - float(f(m0 - h * e))) / (2 * h)
    assert float(g[0]) == pytest.approx(float(fd), rel=tol(5e-3, 1e-6), abs=tol(5e-3, 1e-6))


def test_errors_are_clear():
    p1 = GaussianMixture(jnp.ones(1), jnp.zeros(1), scale=jnp.ones(1))
    p2 = GaussianMixture(jnp.ones(1), jnp.zeros((1, 2)), jnp.eye(2)[None])
    with pytest.raises(ValueError, match="univariate"):
        kl_reference_1d(p2, p2)
    with pytest.raises(ValueError, match="same space"):
        kl_quadrature(p1, p2)
    with pytest.raises(ValueError, match="rule must be"):
        standard_normal_rule(2, rule="sparse")
    with pytest.raises(ValueError, match="lower the order or use rule='degree5'"):
        standard_normal_rule(8, rule="tensor", order=10)
    assert kl_quadrature(p1, p1).dtype == (jnp.float64 if X64 else jnp.float32)
