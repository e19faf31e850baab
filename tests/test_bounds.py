"""KL approximations and guaranteed bounds (gmmjax.kl_bounds) against independent references.

References: scipy.integrate.quad (1-D), uniform float64 grids (2-D), and a numpy
closed-form Gaussian KL; never gmmjax itself.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from gmmjax import GaussianMixture, KLBounds, kl_bounds
from tests._gmm_reference import (
    gaussian_kl_np,
    kl_grid_2d,
    kl_quad_1d,
    random_gmm,
)
from tests._helpers import X64, tol

pytestmark = pytest.mark.numerics

APPROX_EXACT_AT_K1 = ("gaussian", "matched", "variational", "variational_upper", "unscented")
LOWER = ("lower", "durrieu_lower", "bhattacharyya_lower")
UPPER = ("upper", "durrieu_upper", "variational_upper")

_bounds_jit = jax.jit(kl_bounds)


def _one_gaussian(rng, d, cov_type):
    m = rng.normal(size=(1, d))
    if cov_type in ("full", "tied"):
        a = rng.normal(size=(d, d))
        c = a @ a.T / d + 0.5 * np.eye(d)
    elif cov_type == "diag":
        c = np.diag(rng.uniform(0.3, 2.0, d))
    else:
        c = rng.uniform(0.3, 2.0) * np.eye(d)
    return m, c[None]


def _as_type(m, c, cov_type):
    w = jnp.ones(1)
    if cov_type == "univariate":
        return GaussianMixture(w, jnp.asarray(m[:, 0]), scale=jnp.sqrt(jnp.asarray(c[:, 0, 0])))
    if cov_type == "full":
        return GaussianMixture(w, jnp.asarray(m), jnp.asarray(c))
    if cov_type == "tied":
        return GaussianMixture(w, jnp.asarray(m), jnp.asarray(c[0]), covariance_type="tied")
    if cov_type == "diag":
        return GaussianMixture(
            w, jnp.asarray(m), jnp.asarray(np.diagonal(c, axis1=1, axis2=2)), covariance_type="diag"
        )
    return GaussianMixture(w, jnp.asarray(m), jnp.asarray(c[:, 0, 0]), covariance_type="spherical")


@pytest.mark.parametrize(
    "cov_type,d,use_jit",
    # kl_bounds jits itself; use_jit=True checks that it also composes with an outer jit.
    # univariate unjitted: the same program as test_float64_when_enabled's
    [
        ("univariate", 1, False),
        ("full", 3, False),
        ("tied", 2, True),
        ("diag", 4, True),
        ("spherical", 3, False),
    ],
)
def test_every_approximation_exact_for_single_gaussians(cov_type, d, use_jit):
    rng = np.random.default_rng(7)
    m1, c1 = _one_gaussian(rng, d, cov_type)
    m2, c2 = _one_gaussian(rng, d, cov_type)
    p, q = _as_type(m1, c1, cov_type), _as_type(m2, c2, cov_type)
    b = (_bounds_jit if use_jit else kl_bounds)(p, q)
    ref = gaussian_kl_np(m1[0], c1[0], m2[0], c2[0])
    # float32: a few ulps of O(10) intermediate terms (log-dets, traces)
    for name in APPROX_EXACT_AT_K1:
        assert float(getattr(b, name)) == pytest.approx(
            ref, rel=tol(1e-4, 1e-10), abs=tol(1e-5, 1e-12)
        ), name
    # the upper bound is then exact too; the lower bound is the Rényi-½ divergence 2·D_B
    assert float(b.upper) == pytest.approx(ref, rel=tol(1e-4, 1e-10), abs=tol(1e-5, 1e-12))
    cbar = 0.5 * (c1[0] + c2[0])
    delta = m1[0] - m2[0]
    d_b = 0.125 * delta @ np.linalg.solve(cbar, delta) + 0.5 * (
        np.linalg.slogdet(cbar)[1]
        - 0.5 * np.linalg.slogdet(c1[0])[1]
        - 0.5 * np.linalg.slogdet(c2[0])[1]
    )
    assert float(b.bhattacharyya_lower) == pytest.approx(
        2 * d_b, rel=tol(1e-4, 1e-10), abs=tol(1e-5, 1e-12)
    )
    eps = tol(1e-4, 1e-10) * (1 + ref)  # float32 rounding of O(1) terms
    assert 2 * d_b - eps <= float(b.lower) <= ref + eps
    # the product approximation is NOT exact at K=1: it is log z_pp - log t_pq (documented)
    lz = -0.5 * np.linalg.slogdet(2 * np.pi * 2 * c1[0])[1]
    cs = c1[0] + c2[0]
    lt = -0.5 * np.linalg.slogdet(2 * np.pi * cs)[1] - 0.5 * delta @ np.linalg.solve(cs, delta)
    assert float(b.product) == pytest.approx(lz - lt, rel=tol(1e-4, 1e-10), abs=tol(1e-5, 1e-12))


def _check_bracket(b: KLBounds, truth: float, slack: float) -> None:
    for name in LOWER:
        assert float(getattr(b, name)) <= truth + slack, (name, float(getattr(b, name)), truth)
    for name in UPPER:
        assert float(getattr(b, name)) >= truth - slack, (name, float(getattr(b, name)), truth)
    assert float(b.lower) >= 0.0


def _slack(truth):
    # float32: ~100 ulps of the O(10) log-sum-exp terms; float64: the quadrature
    # reference's own accuracy (quad ~1e-10, the 401² grid ~1e-8 for these widths).
    return tol(2e-4, 1e-7) * (1.0 + abs(truth))


def _draw_pair(seed, d, kp=3, kq=2):
    rng = np.random.default_rng(seed)
    return random_gmm(rng, kp, d), random_gmm(rng, kq, d)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1))
def test_bounds_bracket_quadrature_1d_hypothesis(seed):
    p, q = _draw_pair(seed, 1)
    truth = kl_quad_1d(p, q)
    _check_bracket(kl_bounds(p.to_jax("univariate"), q.to_jax("univariate")), truth, _slack(truth))


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1))
def test_bounds_bracket_quadrature_2d_hypothesis(seed):
    p, q = _draw_pair(seed, 2)
    truth = kl_grid_2d(p, q)
    # K_p=3, K_q=2, D=2 as in the other 2-D tests: one compiled program for all of them
    _check_bracket(kl_bounds(p.to_jax(), q.to_jax()), truth, _slack(truth))


def _stack(gmms, cov_type):
    """Batch a list of equal-K numpy mixtures into one batched GaussianMixture."""
    w = jnp.asarray(np.stack([g.w for g in gmms]))
    m = np.stack([g.m for g in gmms])
    c = np.stack([g.c for g in gmms])
    if cov_type == "univariate":
        return GaussianMixture(w, jnp.asarray(m[..., 0]), scale=jnp.sqrt(jnp.asarray(c[..., 0, 0])))
    return GaussianMixture(w, jnp.asarray(m), jnp.asarray(c))


def test_bounds_bracket_300_random_1d_pairs_batched():
    """Hundreds of pairs (including near-identical and far-apart ones) in one vmapped call."""
    rng = np.random.default_rng(2024)
    n = 300
    ps, qs = [], []
    for i in range(n):
        p = random_gmm(rng, 4, 1, spread=[0.3, 2.0, 5.0][i % 3], smin=0.2, smax=2.0)
        q = random_gmm(rng, 3, 1, spread=[0.3, 2.0, 5.0][i % 3], smin=0.2, smax=2.0)
        ps.append(p)
        qs.append(q)
    # a uniform grid with spacing ≤ 0.02 ≤ σ_min/10: the trapezoid rule is accurate to ~1e-10
    x = np.linspace(-60.0, 60.0, 12001)
    truth = []
    for p, q in zip(ps, qs, strict=True):
        lp = p.logpdf1(x)
        truth.append(np.trapezoid(np.exp(lp) * (lp - q.logpdf1(x)), x))
    truth = np.asarray(truth)
    b = kl_bounds(_stack(ps, "univariate"), _stack(qs, "univariate"))
    slack = tol(2e-4, 1e-7) * (1.0 + np.abs(truth))
    for name in LOWER:
        assert np.all(np.asarray(getattr(b, name)) <= truth + slack), name
    for name in UPPER:
        assert np.all(np.asarray(getattr(b, name)) >= truth - slack), name
    # the bracket is informative: the Durrieu mean and D_var err by far less than KL itself
    assert np.median(np.abs(np.asarray(b.variational) - truth)) < 0.2 * np.median(truth)


def test_variational_upper_is_monotone_in_iterations():
    """Each fixed-point step keeps a valid bound and never loosens it (Hershey & Olsen §7)."""
    rng = np.random.default_rng(3)
    pn, qn = random_gmm(rng, 3, 2), random_gmm(rng, 2, 2)
    p, q = pn.to_jax(), qn.to_jax()  # K_p=3, K_q=2, D=2 as elsewhere: compiled once
    # n_iter is static (a program each): 0 and 2 share one outer jit, in which XLA
    # computes their common terms once; 30 is the default, called as the other 2-D
    # tests call it so that its program is shared
    few = jax.jit(lambda a, b: [kl_bounds(a, b, n_iter=n).variational_upper for n in (0, 2)])
    vals = [float(v) for v in few(p, q)] + [float(kl_bounds(p, q).variational_upper)]
    eps = tol(1e-5, 1e-12) * (1 + abs(vals[0]))  # float32 rounding of the O(1) sums
    assert all(b <= a + eps for a, b in zip(vals, vals[1:], strict=False))
    # n_iter=0 is the plain convexity bound Σ π_a ω_b KL(f_a‖g_b), from the float64
    # parameters (the float32 ones differ by ~1e-7 relative, far below the tolerance)
    conv = sum(
        pn.w[a] * qn.w[b] * gaussian_kl_np(pn.m[a], pn.c[a], qn.m[b], qn.c[b])
        for a in range(3)
        for b in range(2)
    )
    assert vals[0] == pytest.approx(conv, rel=tol(1e-4, 1e-10))


def test_approximation_formulas_against_numpy():
    """D_var, D_prod, Goldberger and the Durrieu bounds recomputed from their definitions."""
    rng = np.random.default_rng(11)
    pn, qn = random_gmm(rng, 3, 2), random_gmm(rng, 2, 2)
    b = kl_bounds(pn.to_jax(), qn.to_jax())

    def kl(a, g, i, j):
        return gaussian_kl_np(a.m[i], a.c[i], g.m[j], g.c[j])

    def lov(a, g, i, j):
        cs = a.c[i] + g.c[j]
        dd = a.m[i] - g.m[j]
        return -0.5 * np.linalg.slogdet(2 * np.pi * cs)[1] - 0.5 * dd @ np.linalg.solve(cs, dd)

    kp, kq = 3, 2
    ent = np.array([0.5 * np.linalg.slogdet(2 * np.pi * np.e * pn.c[a])[1] for a in range(kp)])
    kpp = np.array([[kl(pn, pn, a, c) for c in range(kp)] for a in range(kp)])
    kpq = np.array([[kl(pn, qn, a, c) for c in range(kq)] for a in range(kp)])
    zpp = np.array([[lov(pn, pn, a, c) for c in range(kp)] for a in range(kp)])
    tpq = np.array([[lov(pn, qn, a, c) for c in range(kq)] for a in range(kp)])
    lw, lo = np.log(pn.w), np.log(qn.w)
    vp = logsumexp(lw[None] - kpp, axis=1)
    vq = logsumexp(lo[None] - kpq, axis=1)
    lz = logsumexp(lw[None] + zpp, axis=1)
    lt = logsumexp(lo[None] + tpq, axis=1)
    match = np.argmin(kpq - lo[None], axis=1)
    expect = {
        "variational": pn.w @ (vp - vq),
        "product": pn.w @ (lz - lt),
        "durrieu_lower": pn.w @ (-ent + vp - lt),
        "durrieu_upper": pn.w @ (lz + ent - vq),
        "matched": pn.w @ (kpq[np.arange(kp), match] + lw - lo[match]),
    }
    for name, val in expect.items():
        assert float(getattr(b, name)) == pytest.approx(
            val, rel=tol(1e-4, 1e-10), abs=tol(1e-4, 1e-10)
        ), name
    assert float(b.durrieu_mean) == pytest.approx(
        0.5 * (expect["durrieu_lower"] + expect["durrieu_upper"]), rel=tol(1e-4, 1e-10)
    )


def test_kl_of_identical_mixtures_is_bracketed_at_zero():
    rng = np.random.default_rng(5)
    p = random_gmm(rng, 3, 2).to_jax()
    b = kl_bounds(p, p)
    assert float(b.lower) == 0.0
    for name in ("variational", "matched", "unscented", "gaussian"):
        assert abs(float(getattr(b, name))) < tol(1e-4, 1e-10), name  # f32 rounding of O(1)


def test_batched_and_broadcast_against_loop():
    rng = np.random.default_rng(9)
    ps = [random_gmm(rng, 3, 2) for _ in range(3)]
    q = random_gmm(rng, 2, 2)
    b = kl_bounds(_stack(ps, "full"), q.to_jax())
    assert b.upper.shape == (3,)
    b = KLBounds(*(np.asarray(v) for v in b))  # numpy: eager indexing would compile
    for i, p in enumerate(ps):
        one = kl_bounds(p.to_jax(), q.to_jax())
        for name in KLBounds._fields:
            assert float(getattr(b, name)[i]) == pytest.approx(
                float(getattr(one, name)), rel=tol(1e-5, 1e-12), abs=tol(1e-5, 1e-12)
            )


GRAD_FIELDS = ("lower", "upper", "durrieu_mean", "variational", "unscented", "gaussian", "product")


def test_gradients_match_finite_differences():
    """All fields at once: one jacobian against one pair of central differences."""
    rng = np.random.default_rng(1)
    pn, qn = random_gmm(rng, 3, 2, spread=1.0), random_gmm(rng, 2, 2, spread=1.0)
    q = qn.to_jax()
    dt = q.locs.dtype
    # test-side arithmetic in numpy: each eager jnp operation would compile on its own
    x0 = np.concatenate([np.log(pn.w), pn.m.ravel(), np.linalg.cholesky(pn.c).ravel()]).astype(dt)

    def bounds(x):
        p = GaussianMixture.from_params(x[:3], x[3:9].reshape(3, 2), x[9:].reshape(3, 2, 2), "full")
        return kl_bounds(p, q)

    def f(x):
        return jnp.stack([getattr(bounds(x), n) for n in GRAD_FIELDS])

    # one program, the jacobian; the differences below call kl_bounds itself, with the
    # shapes of the other 2-D tests (K_p=3, K_q=2, D=2), so its program is reused
    jac = np.asarray(jax.jit(jax.jacrev(f))(x0))
    assert np.all(np.isfinite(jac))
    # keep the factors lower-triangular: perturb only their lower entries
    mask = np.concatenate([np.ones(9), np.tile(np.tril(np.ones((2, 2))).ravel(), 3)])
    v = np.random.default_rng(0).normal(size=x0.shape).astype(dt) * mask.astype(dt)
    # float32: h=1e-2 balances rounding (eps·|f|/h ~ 1e-5) and truncation (h²·f''' ~ 1e-4)
    h = tol(1e-2, 1e-5)
    up, down = (
        np.array([getattr(bounds(x), n) for n in GRAD_FIELDS]) for x in (x0 + h * v, x0 - h * v)
    )
    fd = (up - down) / (2 * h)
    np.testing.assert_allclose(jac @ v, fd, rtol=tol(3e-3, 1e-6), atol=tol(3e-3, 1e-6))


def test_errors_are_clear():
    p1 = GaussianMixture(jnp.ones(1), jnp.zeros(1), scale=jnp.ones(1))
    p2 = GaussianMixture(jnp.ones(1), jnp.zeros((1, 2)), jnp.eye(2)[None])
    with pytest.raises(ValueError, match="same space.*event_shape"):
        kl_bounds(p1, p2)
    with pytest.raises(TypeError, match="must be a gmmjax.GaussianMixture"):
        kl_bounds(p1, 3.0)
    pb = GaussianMixture(jnp.ones((2, 1)), jnp.zeros((2, 1)), scale=jnp.ones((2, 1)))
    pc = GaussianMixture(jnp.ones((3, 1)), jnp.zeros((3, 1)), scale=jnp.ones((3, 1)))
    with pytest.raises(ValueError, match="do not broadcast"):
        kl_bounds(pb, pc)


def test_float64_when_enabled():
    p = GaussianMixture(jnp.ones(1), jnp.zeros(1), scale=jnp.ones(1))
    assert kl_bounds(p, p).upper.dtype == (jnp.float64 if X64 else jnp.float32)
