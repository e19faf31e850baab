"""Closed forms for single Gaussians against quadrature, scipy and NumPyro."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import integrate, stats

from gmmjax import gaussian_entropy, gaussian_kl, gaussian_overlap, log_gaussian_kernel
from gmmjax.gaussian import precision_cholesky, scale_tril_from_precision
from tests._helpers import X64, random_spd, tol

pytestmark = pytest.mark.numerics

# The functions under test, compiled once per shape: run eagerly, each of their dozens of
# operations compiles on its own for every new shape (the eager path keeps its own test,
# test_kl_1d_formula_and_quadrature[False]). jit traces the same Python code.
_kl = jax.jit(gaussian_kl, static_argnames="univariate")
_entropy = jax.jit(gaussian_entropy, static_argnames="univariate")
_overlap = jax.jit(gaussian_overlap, static_argnames="univariate")
_kernel = jax.jit(log_gaussian_kernel, static_argnums=3)
_prec_chol = jax.jit(precision_cholesky)
_tril_from_prec = jax.jit(scale_tril_from_precision)


def _kl_quad_1d(m1, s1, m2, s2):
    f = lambda x: (
        stats.norm.pdf(x, m1, s1)
        * (  # noqa: E731
            stats.norm.logpdf(x, m1, s1) - stats.norm.logpdf(x, m2, s2)
        )
    )
    lo, hi = m1 - 40 * s1, m1 + 40 * s1
    return integrate.quad(f, lo, hi, points=[m1], limit=400, epsabs=1e-13, epsrel=1e-12)[0]


@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize(
    "m1,s1,m2,s2",
    [(0.0, 1.0, 0.0, 1.0), (0.0, 1.0, 1.0, 2.0), (-0.5, 0.2, 0.3, 0.07), (3.0, 4.0, -2.0, 0.5)],
)
def test_kl_1d_formula_and_quadrature(m1, s1, m2, s2, use_jit):
    f = _kl if use_jit else gaussian_kl
    got = float(f(m1, s1, m2, s2))
    formula = np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    ref = _kl_quad_1d(m1, s1, m2, s2)
    assert abs(formula - ref) < 1e-8 * max(1.0, abs(ref))  # quad is accurate to ~1e-10 here
    # float32: a few ulps of the O(10) intermediate terms
    assert got == pytest.approx(ref, rel=tol(2e-6, 1e-12), abs=tol(2e-6, 1e-12))


def test_kl_multivariate_matches_numpyro_batched(rng):
    d, b = 4, 6
    cp, cq = random_spd(rng, b, d), random_spd(rng, b, d)
    mp, mq = rng.normal(size=(b, d)), rng.normal(size=(b, d))
    lp, lq = np.linalg.cholesky(cp), np.linalg.cholesky(cq)
    got = _kl(mp, lp, mq, lq)
    ref = jax.jit(
        lambda mp, lp, mq, lq: dist.kl_divergence(
            dist.MultivariateNormal(mp, scale_tril=lp), dist.MultivariateNormal(mq, scale_tril=lq)
        )
    )(mp, lp, mq, lq)
    # independent float64 reference from the textbook formula with numpy
    ref64 = [
        0.5
        * (
            np.trace(np.linalg.solve(cq[i], cp[i]))
            + (mq[i] - mp[i]) @ np.linalg.solve(cq[i], mq[i] - mp[i])
            - d
            + np.linalg.slogdet(cq[i])[1]
            - np.linalg.slogdet(cp[i])[1]
        )
        for i in range(b)
    ]
    assert got.shape == (b,)
    np.testing.assert_allclose(got, ref64, rtol=tol(1e-4, 1e-10), atol=tol(1e-5, 1e-12))
    np.testing.assert_allclose(got, ref, rtol=tol(1e-4, 1e-10), atol=tol(1e-5, 1e-12))


def test_kl_zero_on_identical_and_1d_equals_1x1(rng):
    c = random_spd(rng, 1, 3)[0]
    m = rng.normal(size=3)
    l = np.linalg.cholesky(c)
    assert abs(float(_kl(m, l, m, l))) < tol(1e-5, 1e-12)
    one = _kl(jnp.array([0.3]), jnp.array([[0.5]]), jnp.array([1.0]), jnp.array([[2.0]]))
    assert float(one) == pytest.approx(float(_kl(0.3, 0.5, 1.0, 2.0)), rel=tol(1e-6, 1e-13))


def test_entropy_against_scipy(rng):
    c = random_spd(rng, 3, 3)
    got = _entropy(np.linalg.cholesky(c))
    ref = [stats.multivariate_normal(np.zeros(3), ci).entropy() for ci in c]
    np.testing.assert_allclose(got, ref, rtol=tol(1e-6, 1e-12))
    assert float(_entropy(0.7, univariate=True)) == pytest.approx(
        stats.norm(0, 0.7).entropy(), rel=tol(1e-6, 1e-12)
    )


def test_overlap_against_quadrature():
    a, va, b, vb = 0.3, 0.5**2, -0.4, 1.2**2
    ref = integrate.quad(
        lambda x: stats.norm.pdf(x, a, np.sqrt(va)) * stats.norm.pdf(x, b, np.sqrt(vb)), -20, 20
    )[0]
    assert float(gaussian_overlap(a, va, b, vb)) == pytest.approx(ref, rel=tol(1e-6, 1e-10))


def test_overlap_multivariate_against_scipy(rng):
    ca, cb = random_spd(rng, 2, 3)
    a, b = rng.normal(size=3), rng.normal(size=3)
    ref = stats.multivariate_normal(b, ca + cb).pdf(a)
    assert float(_overlap(a, ca, b, cb)) == pytest.approx(ref, rel=tol(1e-5, 1e-11))


def test_precision_cholesky_helpers(rng):
    c = random_spd(rng, 4, 3)
    l = np.linalg.cholesky(c)
    p = np.asarray(_prec_chol(jnp.asarray(l)))
    np.testing.assert_allclose(
        p @ np.swapaxes(p, -1, -2), np.linalg.inv(c), rtol=tol(1e-4, 1e-10), atol=tol(1e-5, 1e-11)
    )
    assert np.allclose(np.tril(p, -1), 0)  # upper triangular
    l2 = np.asarray(_tril_from_prec(jnp.asarray(np.linalg.inv(c))))
    assert np.allclose(np.triu(l2, 1), 0)  # lower triangular
    np.testing.assert_allclose(l2, l, rtol=tol(1e-4, 1e-9), atol=tol(1e-5, 1e-10))


@pytest.mark.parametrize("ctype", ["full", "tied", "diag", "spherical", "univariate"])
def test_kernel_against_scipy(ctype, rng):
    k, d, n = 3, 2, 11
    locs = rng.normal(size=(k, d)) * 3 + 100.0  # far from the origin: exercises centring
    x = locs[0] + rng.normal(size=(n, d))
    if ctype == "full":
        covs = random_spd(rng, k, d)
        prec = _prec_chol(jnp.asarray(np.linalg.cholesky(covs)))
    elif ctype == "tied":
        covs = np.broadcast_to(random_spd(rng, 1, d)[0], (k, d, d))
        prec = _prec_chol(jnp.asarray(np.linalg.cholesky(covs[0])))
    elif ctype == "diag":
        sd = rng.uniform(0.5, 2.0, size=(k, d))
        covs = np.stack([np.diag(s**2) for s in sd])
        prec = jnp.asarray(1.0 / sd)  # on the host: an eager division compiles
    else:
        sd = rng.uniform(0.5, 2.0, size=k)
        covs = np.stack([s**2 * np.eye(d) for s in sd])
        prec = jnp.asarray(1.0 / sd)
    if ctype == "univariate":
        locs, x = locs[:, 0], x[:, 0]
        ref = np.stack([stats.norm(locs[j], sd[j]).logpdf(x) for j in range(k)], -1)
    else:
        ref = np.stack(
            [stats.multivariate_normal(locs[j], covs[j]).logpdf(x) for j in range(k)], -1
        )
    got = _kernel(jnp.asarray(x), jnp.asarray(locs), prec, ctype)
    assert got.shape == (n, k)
    # float32: Mahalanobis terms up to ~50 at offsets of ~100 from the origin; centring keeps
    # the error at a few ulps of those terms (≈ 1e-4 absolute).
    np.testing.assert_allclose(got, ref, rtol=tol(1e-5, 1e-10), atol=tol(3e-4, 1e-9))
    assert X64 == (got.dtype == jnp.float64)


@pytest.mark.parametrize("d", [1, 2, 3, 7, 32])
def test_tril_inverse_against_numpy(d, rng):
    from gmmjax.gaussian import tril_inverse

    l = np.linalg.cholesky(random_spd(rng, 5, d))
    got = np.asarray(jax.jit(tril_inverse)(jnp.asarray(l)))
    ref = np.linalg.inv(l)  # independent reference (numpy LAPACK)
    assert np.allclose(np.triu(got, 1), 0.0)
    # condition numbers of these factors are ≲ 10: float32 error a few ulps of O(1) entries
    np.testing.assert_allclose(got, ref, rtol=tol(1e-4, 1e-11), atol=tol(1e-5, 1e-12))
