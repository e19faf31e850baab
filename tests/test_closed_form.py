"""Closed-form Cauchy–Schwarz, L2, MMD and Bhattacharyya bounds against numerical integration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gmmjax import (
    GaussianMixture,
    bhattacharyya_bounds,
    cauchy_schwarz_divergence,
    log_inner_product,
    squared_l2_distance,
    squared_mmd,
)
from tests._gmm_reference import NpGMM, grid_2d, quad_1d, random_gmm
from tests._helpers import tol

pytestmark = pytest.mark.numerics

# float32: relative rounding of exp(log-sum-exp) of O(10) terms; float64: quad's ~1e-10
RTOL = tol(2e-5, 1e-8)

# module level: a new jax.jit wrapper per test call would compile again every time
_cs_jit = jax.jit(cauchy_schwarz_divergence)
_l2_jit = jax.jit(squared_l2_distance)


def _integrals_1d(p, q, mp=1.0, mq=1.0):
    pp = quad_1d(lambda a, b: np.exp(2 * a), p, q) * mp * mp
    pq = quad_1d(lambda a, b: np.exp(a + b), p, q) * mp * mq
    qq = quad_1d(lambda a, b: np.exp(2 * b), p, q) * mq * mq
    return pp, pq, qq


@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cs_and_l2_against_quad_1d(seed, use_jit):
    rng = np.random.default_rng(seed)
    p, q = random_gmm(rng, 3, 1), random_gmm(rng, 2, 1)
    pj, qj = p.to_jax("univariate"), q.to_jax("univariate")
    pp, pq, qq = _integrals_1d(p, q)
    cs = _cs_jit if use_jit else cauchy_schwarz_divergence
    l2 = _l2_jit if use_jit else squared_l2_distance
    assert float(cs(pj, qj)) == pytest.approx(-np.log(pq / np.sqrt(pp * qq)), rel=RTOL, abs=RTOL)
    # L2 subtracts O(0.3) terms: float32 cancellation gives ~1e-7 absolute error
    assert float(l2(pj, qj)) == pytest.approx(
        pp - 2 * pq + qq, rel=tol(1e-4, 1e-8), abs=tol(1e-6, 1e-12)
    )
    assert float(np.exp(log_inner_product(pj, qj))) == pytest.approx(pq, rel=RTOL)


def test_cs_and_l2_against_grid_2d():
    rng = np.random.default_rng(4)
    p, q = random_gmm(rng, 3, 2), random_gmm(rng, 2, 2)
    g, area = grid_2d(p, q, 501)
    lp, lq = p.logpdf(g), q.logpdf(g)
    pp, pq, qq = (np.sum(np.exp(a + b)) * area for a, b in ((lp, lp), (lp, lq), (lq, lq)))
    # the 501² trapezoid grid is accurate to ~1e-9 here (halving the spacing changes nothing)
    pj, qj = p.to_jax(), q.to_jax()
    assert float(cauchy_schwarz_divergence(pj, qj)) == pytest.approx(
        -np.log(pq / np.sqrt(pp * qq)), rel=tol(2e-5, 1e-7)
    )
    assert float(squared_l2_distance(pj, qj)) == pytest.approx(
        pp - 2 * pq + qq, rel=tol(1e-4, 1e-7), abs=tol(1e-6, 1e-10)
    )


def _mmd_grid_1d(p, q, h):
    """MMD² = ∫∫ (p-q)(x) (p-q)(y) k(x, y) on a uniform float64 grid."""
    lo = min(p.support()[0][0], q.support()[0][0])
    hi = max(p.support()[1][0], q.support()[1][0])
    x = np.linspace(lo, hi, 2001)
    dx = x[1] - x[0]
    diff = np.exp(p.logpdf1(x)) - np.exp(q.logpdf1(x))
    k = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * h * h))
    return float(diff @ k @ diff) * dx * dx


@pytest.mark.parametrize("h", [0.3, 1.0, 3.0])
def test_mmd_against_double_integral_1d(h):
    rng = np.random.default_rng(5)
    p, q = random_gmm(rng, 3, 1), random_gmm(rng, 2, 1)
    # the bandwidth is traced (not part of the compile key): the three values share a program
    got = float(squared_mmd(p.to_jax("univariate"), q.to_jax("univariate"), bandwidth=h))
    # float32 cancellation of O(1) kernel means: ~1e-6 absolute
    assert got == pytest.approx(_mmd_grid_1d(p, q, h), rel=tol(1e-4, 1e-8), abs=tol(2e-6, 1e-12))


def test_mmd_against_separable_integral_2d_diag():
    """Diagonal components and the Gaussian kernel factor over axes: 1-D double integrals."""
    rng = np.random.default_rng(6)
    p, q = random_gmm(rng, 2, 2, diag=True), random_gmm(rng, 3, 2, diag=True)
    h = 0.8
    x = np.linspace(-25, 25, 2501)
    dx = x[1] - x[0]
    k = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * h * h))

    def pdf(g, a, i):
        s = np.sqrt(g.c[a, i, i])
        return np.exp(-0.5 * ((x - g.m[a, i]) / s) ** 2) / (s * np.sqrt(2 * np.pi))

    def ek(f, g):
        return sum(
            f.w[a] * g.w[b] * np.prod([pdf(f, a, i) @ k @ pdf(g, b, i) * dx * dx for i in range(2)])
            for a in range(len(f.w))
            for b in range(len(g.w))
        )

    ref = ek(p, p) - 2 * ek(p, q) + ek(q, q)
    got = float(squared_mmd(p.to_jax("diag"), q.to_jax("diag"), bandwidth=h))
    assert got == pytest.approx(ref, rel=tol(1e-4, 1e-8), abs=tol(2e-6, 1e-12))


def test_cauchy_schwarz_invariant_to_scaling_and_l2_scales():
    rng = np.random.default_rng(8)
    p, q = random_gmm(rng, 3, 1), random_gmm(rng, 2, 1)
    pj, qj = p.to_jax("univariate"), q.to_jax("univariate")
    base = float(cauchy_schwarz_divergence(pj, qj))
    for a, b in [(0.01, 1.0), (3.0, 70.0), (1e3, 1e-2)]:
        pp, pq, qq = _integrals_1d(p, q, a, b)  # the scaled densities a·p and b·q
        ref = -np.log(pq / np.sqrt(pp * qq))
        # the masses are traced: one program for the three pairs
        got = float(cauchy_schwarz_divergence(pj, qj, mass_p=a, mass_q=b))
        assert got == pytest.approx(ref, rel=RTOL, abs=RTOL)
        assert got == pytest.approx(base, rel=RTOL, abs=RTOL)
        l2 = float(squared_l2_distance(pj, qj, mass_p=a, mass_q=b))
        assert l2 == pytest.approx(pp - 2 * pq + qq, rel=tol(1e-4, 1e-8))


def _same_density_permuted(rng, d):
    g = random_gmm(rng, 3, d)
    perm = np.array([2, 0, 1])
    return g, NpGMM(g.w[perm], g.m[perm], g.c[perm])


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1))
def test_zero_iff_equal(seed):
    """0 for the same density (even with permuted components), > 0 for any other one."""
    rng = np.random.default_rng(seed)
    p, p_perm = _same_density_permuted(rng, 2)
    # a different density with the same mean and covariance as p (moment-matched Gaussian),
    # written as 3 identical components: the same shapes as p, so one program per function
    # (the moments in numpy: eager jnp operations would compile one by one)
    pj = p.to_jax()
    mean = p.w @ p.m
    dev = p.m - mean
    cov = np.einsum("k,kij->ij", p.w, p.c + dev[:, :, None] * dev[:, None, :])
    gauss = NpGMM(np.full(3, 1 / 3), np.tile(mean, (3, 1)), np.tile(cov, (3, 1, 1))).to_jax()
    zero_tol = tol(2e-5, 1e-12)  # float32 rounding of log ⟨p,p⟩ differences
    for fn in (cauchy_schwarz_divergence, squared_l2_distance, squared_mmd):
        assert abs(float(fn(pj, p_perm.to_jax()))) < zero_tol, fn.__name__
        assert float(fn(pj, gauss)) > 10 * zero_tol, fn.__name__


def test_symmetric_and_affine_invariant_cs():
    rng = np.random.default_rng(10)
    p, q = random_gmm(rng, 3, 2), random_gmm(rng, 2, 2)
    a = np.array([[2.0, 0.5], [-0.3, 1.5]])
    shift = np.array([3.0, -1.0])

    def affine(g):
        return NpGMM(g.w, g.m @ a.T + shift, a @ g.c @ a.T)

    cs = float(cauchy_schwarz_divergence(p.to_jax(), q.to_jax()))
    assert float(cauchy_schwarz_divergence(q.to_jax(), p.to_jax())) == pytest.approx(cs, rel=RTOL)
    # CS is invariant under invertible affine maps of both densities (|det A| cancels)
    cs_affine = float(cauchy_schwarz_divergence(affine(p).to_jax(), affine(q).to_jax()))
    assert cs_affine == pytest.approx(cs, rel=tol(1e-4, 1e-9))


def test_bhattacharyya_bounds_bracket_quadrature():
    rng = np.random.default_rng(12)
    for _ in range(6):
        p, q = random_gmm(rng, 3, 1), random_gmm(rng, 2, 1)
        bc = quad_1d(lambda a, b: np.exp(0.5 * (a + b)), p, q)
        b = bhattacharyya_bounds(p.to_jax("univariate"), q.to_jax("univariate"))
        slack = tol(1e-5, 1e-9)  # float32 rounding of O(1) log terms; quad accuracy in float64
        assert float(b.lower) <= -np.log(bc) + slack <= float(b.upper) + 2 * slack


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(13)
    pn, qn = random_gmm(rng, 3, 2, spread=1.0), random_gmm(rng, 2, 2, spread=1.0)
    q = qn.to_jax()
    dt = q.locs.dtype
    chol = np.linalg.cholesky(pn.c).astype(dt)
    # test-side arithmetic in numpy: each eager jnp operation would compile on its own
    x0 = np.concatenate([np.log(pn.w.astype(dt)), pn.m.astype(dt).ravel()])

    @jax.jit
    def f(x):
        p = GaussianMixture.from_params(x[:3], x[3:].reshape(3, 2), chol, "full")
        bb = bhattacharyya_bounds(p, q)
        return jnp.stack(
            [
                cauchy_schwarz_divergence(p, q),
                squared_l2_distance(p, q) * 10,
                squared_mmd(p, q, bandwidth=0.7) * 10,
                bb.lower,
                bb.upper,
            ]
        )

    jac = np.asarray(jax.jit(jax.jacrev(f))(x0))
    assert np.all(np.isfinite(jac))
    v = np.random.default_rng(0).normal(size=x0.shape).astype(dt)
    h = tol(1e-2, 1e-5)  # float32: rounding eps·|f|/h ~ 1e-5 vs truncation h²·f''' ~ 1e-4
    fd = (np.asarray(f(x0 + h * v)) - np.asarray(f(x0 - h * v))) / (2 * h)
    np.testing.assert_allclose(jac @ v, fd, rtol=tol(3e-3, 1e-6), atol=tol(3e-3, 1e-6))


def test_batched_closed_forms():
    rng = np.random.default_rng(14)
    ps = [random_gmm(rng, 3, 2) for _ in range(3)]  # K_p=3, K_q=2, D=2 as in the 2-D grid test
    q = random_gmm(rng, 2, 2)
    pb = GaussianMixture(
        jnp.asarray(np.stack([g.w for g in ps])),
        jnp.asarray(np.stack([g.m for g in ps])),
        jnp.asarray(np.stack([g.c for g in ps])),
    )
    got = np.asarray(cauchy_schwarz_divergence(pb, q.to_jax()))  # numpy: no eager indexing
    assert got.shape == (3,)
    for i, g in enumerate(ps):
        assert float(got[i]) == pytest.approx(
            float(cauchy_schwarz_divergence(g.to_jax(), q.to_jax())), rel=tol(1e-5, 1e-12)
        )


def test_errors_are_clear():
    p1 = GaussianMixture(jnp.ones(1), jnp.zeros(1), scale=jnp.ones(1))
    p2 = GaussianMixture(jnp.ones(1), jnp.zeros((1, 2)), jnp.eye(2)[None])
    for fn in (cauchy_schwarz_divergence, squared_l2_distance, squared_mmd, bhattacharyya_bounds):
        with pytest.raises(ValueError, match="same space"):
            fn(p1, p2)
        with pytest.raises(TypeError, match="must be a gmmjax.GaussianMixture"):
            fn("p", p1)
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        squared_mmd(p1, p1, bandwidth=0.0)
    with pytest.raises(ValueError, match=r"bandwidth must be positive .* got .*-1\."):
        squared_mmd(p1, p1, bandwidth=jnp.asarray([1.0, -1.0]))
    for fn in (cauchy_schwarz_divergence, squared_l2_distance):
        with pytest.raises(ValueError, match=r"mass_p must be positive .* got -2.0"):
            fn(p1, p1, mass_p=-2.0)
        with pytest.raises(ValueError, match=r"mass_q must be positive .* got 0"):
            fn(p1, p1, mass_q=0)


def test_swept_bandwidth_and_masses_reuse_one_program():
    """A sweep over the values users sweep compiles once, and follows float32 like a float."""
    rng = np.random.default_rng(15)
    p, q = random_gmm(rng, 3, 1).to_jax("univariate"), random_gmm(rng, 2, 1).to_jax("univariate")
    compiles = []

    def listener(event, duration, **kwargs):
        # tracing happens for every new program, compiled or loaded from the disk cache
        if event == "/jax/core/compile/jaxpr_trace_duration":
            compiles.append(duration)

    squared_mmd(p, q, bandwidth=0.3)  # the first value compiles (or loads from disk)
    cauchy_schwarz_divergence(p, q, mass_p=0.3, mass_q=2.0)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        mmd = [squared_mmd(p, q, bandwidth=h) for h in (0.5, 1, 2.0, 4.0)]
        cs = [cauchy_schwarz_divergence(p, q, mass_p=a, mass_q=3) for a in (0.1, 7.0)]
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []
    assert all(v.dtype == p.mean.dtype for v in mmd + cs)
    # and the values are those of each bandwidth (the program is not stuck on one)
    assert len({float(v) for v in mmd}) == 4
