"""The ``"cv"`` method: closed forms against scipy/quadrature, exactness, calibration.

References are independent of the code under test: scipy's Gaussian entropy and
numpy closed forms for Gaussian KL and the Bhattacharyya coefficient, scipy
quadrature (Simpson on a 2-D grid) for Jensen–Shannon, and an iid Monte Carlo run
with scipy's ``logpdf`` for mixtures.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

import gmmjax as g
from gmmjax.montecarlo._estimators import expectation
from gmmjax.montecarlo._overlap import ALPHA, _regression_expectation, overlap_proposal
from gmmjax.montecarlo._surrogates import expected_log_components, surrogate, switch
from gmmjax.montecarlo.control_variates import auto_method
from gmmjax.montecarlo.divergences import DEFAULT_METHOD
from tests._helpers import random_mixture_params

pytestmark = pytest.mark.numerics
F = jnp.result_type(float)  # float32, or float64 under JAX_ENABLE_X64=1
EPS = float(jnp.finfo(F).eps)


def _np_kl(m1, c1, m2, c2):
    """Gaussian KL in numpy (slogdet / solve), independent of gmmjax."""
    d = len(m1)
    dm = m2 - m1
    return 0.5 * (
        np.trace(np.linalg.solve(c2, c1))
        + dm @ np.linalg.solve(c2, dm)
        - d
        + np.linalg.slogdet(c2)[1]
        - np.linalg.slogdet(c1)[1]
    )


_rand_params = random_mixture_params


def _mix(params):
    w, mu, tril = params
    # numpy in, cast once: an eager jnp.asarray would compile a conversion per shape
    return g.GaussianMixture(np.asarray(w, F), np.asarray(mu, F), scale_tril=np.asarray(tril, F))


# The private building blocks are not compiled by the library: run eagerly, each of
# their dozens of operations would be compiled on its own. One program each instead.
_expected_log_components = jax.jit(expected_log_components)
_overlap_proposal = jax.jit(overlap_proposal, static_argnums=2)
_switch = jax.jit(lambda s, e: switch(s, e, surrogate(s, e), 2))


# ----------------------------------------------------------------- closed forms
@pytest.mark.parametrize("ctype", ["full", "diag", "spherical", "univariate"])
def test_expected_log_components_is_minus_cross_entropy(ctype):
    # E_{N_a}[log N_c] = -H(N_a) - KL(N_a || N_c), with scipy's entropy and a numpy KL
    rng = np.random.default_rng(0)
    d = 1 if ctype == "univariate" else 4
    w, mu, tril = _rand_params(rng, 3, d)
    if ctype == "univariate":
        s = g.GaussianMixture(
            np.asarray(w, F), np.asarray(mu[:, 0], F), scale=np.asarray(tril[:, 0, 0], F)
        )
        covs = tril**2
    elif ctype == "full":
        s = _mix((w, mu, tril))
        covs = tril @ np.swapaxes(tril, -1, -2)
    else:
        sd = (
            np.exp(0.3 * rng.normal(size=(3, d))) if ctype == "diag" else np.exp(rng.normal(size=3))
        )
        s = g.GaussianMixture(
            np.asarray(w, F), np.asarray(mu, F), scale=np.asarray(sd, F), covariance_type=ctype
        )
        sd_full = sd if ctype == "diag" else sd[:, None] * np.ones((3, d))
        covs = np.stack([np.diag(v**2) for v in sd_full])
    got = np.asarray(_expected_log_components(s, s), np.float64)
    for a in range(3):
        ent = scipy.stats.multivariate_normal(mu[a], covs[a]).entropy()
        for c in range(3):
            ref = -ent - _np_kl(mu[a], covs[a], mu[c], covs[c])
            # float32: the terms are O(10) and the Mahalanobis part sums D products
            np.testing.assert_allclose(got[a, c], ref, rtol=50 * EPS, atol=50 * EPS)


def _np_logpdf(par, x):
    """log of a full-covariance mixture at points ``(N, D)`` with scipy."""
    w, mu, tril = par
    cols = [
        np.log(w[c]) + scipy.stats.multivariate_normal(mu[c], tril[c] @ tril[c].T).logpdf(x)
        for c in range(len(w))
    ]
    return np.logaddexp.reduce(np.stack(cols, -1), axis=-1)


def _np_binary_entropy(delta):
    a = np.abs(delta)
    return np.logaddexp(0.0, -a) + a / (1.0 + np.exp(a))


def test_switch_moments_match_sampled_log_ratios():
    # the switching features' closed forms (mean, sd and correlation of the log-ratios
    # δ_j = log(v_0 N_0) - log(v_j N_j) of q's components under each component of p)
    # against 200,000 float64 draws per component with scipy's logpdf
    rng = np.random.default_rng(5)
    d, m = 4, 200_000
    pp, qp = _rand_params(rng, 2, d, spread=0.8), _rand_params(rng, 3, d, spread=0.8)
    sw = _switch(_mix(pp), _mix(qp))
    sel = np.asarray(sw.sel, np.float64)  # (K_p, K_q, 2): +1 at c_0, -1 at c_j
    for a in range(2):
        x = pp[1][a] + rng.normal(size=(m, d)) @ pp[2][a].T
        t = np.stack(
            [
                np.log(qp[0][c])
                + scipy.stats.multivariate_normal(qp[1][c], qp[2][c] @ qp[2][c].T).logpdf(x)
                for c in range(3)
            ],
            -1,
        )
        delta = t @ sel[a]  # (m, 2)
        sd = delta.std(0)
        # the sample mean is within 5 of its standard errors; the sample sd and
        # correlation have relative errors ~sqrt(kurtosis / m) ≈ 0.5%: 3% covers them
        np.testing.assert_allclose(sw.centre[a], delta.mean(0), atol=5 * np.max(sd) / math.sqrt(m))
        np.testing.assert_allclose(sw.scale[a], sd, rtol=0.03)
        corr = np.corrcoef(delta.T)[0, 1]
        np.testing.assert_allclose(sw.mean[a], [0.0, 0.0, 1.0, 1.0, corr], atol=0.03)
        assert sel[a].sum(0).tolist() == [0.0, 0.0]  # each column is +1 and -1


def test_overlap_proposal_dominates_the_js_integrand():
    # m H_b(s) <= log 2 · Z · g(x) at every x (the bounds of the _overlap docstring), with
    # m, s from scipy; g, Z from the proposal. Its pair components' log-weights must be
    # the Bhattacharyya coefficients of a numpy closed form.
    rng = np.random.default_rng(11)
    pp, qp = _rand_params(rng, 3, 4), _rand_params(rng, 2, 4)
    p, q = _mix(pp), _mix(qp)
    prop = _overlap_proposal(p, q, 6)  # all 3 x 2 pairs
    x = np.concatenate([rng.normal(size=(2000, 4)) * 3.0, np.asarray(prop.mixture.locs)])
    lp, lq = _np_logpdf(pp, x), _np_logpdf(qp, x)
    lhs = np.logaddexp(lp, lq) - math.log(2) + np.log(_np_binary_entropy(lp - lq))
    w = np.exp(np.asarray(prop.mixture.logits, np.float64))
    locs, trils = (np.asarray(a, np.float64) for a in (prop.mixture.locs, prop.mixture.scale_param))
    g_pairs = sum(
        w[c] / (1 - ALPHA) * scipy.stats.multivariate_normal(locs[c], trils[c] @ trils[c].T).pdf(x)
        for c in range(6)
    )
    rhs = math.log(math.log(2)) + float(prop.log_z) + np.log(g_pairs)
    assert np.all(lhs <= rhs + 1e-3), np.max(lhs - rhs)
    # Bhattacharyya: log BC = -(1/8) Δμᵀ Σ̄⁻¹ Δμ - ½ log(|Σ̄| / √(|Σ_a||Σ_b|))
    ref = []
    for a in range(3):
        for b in range(2):
            ca, cb = (t[2][i] @ t[2][i].T for t, i in ((pp, a), (qp, b)))
            cbar, dm = 0.5 * (ca + cb), pp[1][a] - qp[1][b]
            ld = [np.linalg.slogdet(c)[1] for c in (cbar, ca, cb)]
            log_bc = -dm @ np.linalg.solve(cbar, dm) / 8 - 0.5 * (ld[0] - 0.5 * (ld[1] + ld[2]))
            ref.append(0.5 * math.log(pp[0][a] * qp[0][b]) + log_bc)
    got = np.log(w[:6] / (1 - ALPHA)) + float(prop.log_z)
    np.testing.assert_allclose(np.sort(got), np.sort(ref), rtol=1e-4, atol=1e-4)


def _grid_js(par_p, par_q, lim=12.0, n=801):
    """JS by Simpson's rule on a 2-D grid (float64; scipy logpdf)."""
    t = np.linspace(-lim, lim, n)
    x = np.stack(np.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    lp, lq = _np_logpdf(par_p, x), _np_logpdf(par_q, x)
    lm = np.logaddexp(lp, lq) - math.log(2)
    f = (0.5 * (np.exp(lp) * (lp - lm) + np.exp(lq) * (lq - lm))).reshape(n, n)
    return scipy.integrate.simpson(scipy.integrate.simpson(f, x=t), x=t)


def _separated_pair():
    # two 2-component mixtures in 2-D that barely overlap (JS = log 2 - 0.005)
    w = np.array([0.6, 0.4])
    tril = np.array([[[1.0, 0.0], [0.3, 0.8]], [[0.7, 0.0], [-0.2, 1.1]]])
    pp = (w, np.array([[-2.4, 0.0], [-1.6, 2.4]]), tril)
    qp = (w[::-1].copy(), np.array([[2.4, 0.4], [2.0, -2.4]]), tril[::-1].copy())
    return pp, qp


def _js_cv_against_quadrature(pp, qp, seed, n):
    """JS ``"cv"`` at 48 keys against 2-D quadrature: calibrated and unbiased.

    Returns the reference, the values and the samples saved over iid (MSE ratio).
    """
    p, q = _mix(pp), _mix(qp)
    ref = _grid_js(pp, qp)
    keys = jax.random.split(jax.random.key(seed), 48)
    cv = jax.jit(jax.vmap(lambda kk: g.js_estimate(p, q, kk, n, method="cv")))(keys)
    iid = jax.jit(jax.vmap(lambda kk: g.js_estimate(p, q, kk, n, method="iid")))(keys)
    v, se = np.asarray(cv.value, np.float64), np.asarray(cv.stderr, np.float64)
    # calibrated: each key fails |v - ref| <= 3 se with probability ~0.3%; 4 or more
    # failures of 48 have probability < 1e-4 (1e-6 covers float32 rounding of log 2 - I)
    assert np.sum(np.abs(v - ref) > 3 * se + 1e-6) <= 3, (v, ref, se)
    # unbiased: the mean over keys agrees with the reference within 4 of its stderr
    assert abs(v.mean() - ref) <= 4 * np.sqrt(np.mean(se**2) / len(v)) + 1e-6
    iv = np.asarray(iid.value, np.float64)
    return ref, v, np.mean((iv - ref) ** 2) / np.mean((v - ref) ** 2)


@pytest.mark.slow
def test_js_cv_calibrated_and_efficient_where_p_and_q_barely_overlap():
    pp, qp = _separated_pair()
    ref, v, saved = _js_cv_against_quadrature(pp, qp, 0, 4096)
    assert 0.68 < ref < math.log(2) - 1e-3
    # efficiency: measured 73x against iid here; with 48 keys the MSE ratio is within a
    # factor 1.6 of its mean with prob. > 0.99, so 20x leaves a wide margin
    assert saved > 20.0, saved
    assert np.all((v >= 0) & (v <= math.log(2)))


def test_js_cv_gradient_matches_finite_differences():
    # d JS / d (means, logits) of p: the importance-weighted gradient at fixed points,
    # averaged over 8 keys, against central differences of the quadrature
    pp, qp = _separated_pair()
    q = _mix(qp)

    def js(locs, logits, kk):
        p = g.GaussianMixture.from_params(logits, locs, np.asarray(pp[2], F), "full")
        return g.js_divergence(p, q, kk, 8192, method="cv")

    grad = jax.jit(jax.vmap(jax.grad(js, argnums=(0, 1)), in_axes=(None, None, 0)))
    g_loc, g_logit = grad(
        np.asarray(pp[1], F),
        np.log(np.asarray(pp[0], F)),
        jax.random.split(jax.random.key(1), 8),
    )
    g_loc, g_logit = np.asarray(g_loc, np.float64), np.asarray(g_logit, np.float64)
    h = 1e-4

    def check(samples, fd):
        m, s = samples.mean(), samples.std(ddof=1) / math.sqrt(len(samples))
        assert abs(m - fd) <= 5 * s + 1e-4, (m, s, fd)

    for i, j in ((0, 0), (1, 1)):
        e = np.zeros_like(pp[1])
        e[i, j] = h
        up, down = ((pp[0], pp[1] + sgn * e, pp[2]) for sgn in (1, -1))
        check(g_loc[:, i, j], (_grid_js(up, qp) - _grid_js(down, qp)) / (2 * h))
    # logit_0 moves w0 by w0 w1 (softmax), w1 = 1 - w0
    w0 = pp[0][0]
    up, down = ((np.array([w, 1 - w]), pp[1], pp[2]) for w in (w0 + h, w0 - h))
    check(g_logit[:, 0], (_grid_js(up, qp) - _grid_js(down, qp)) / (2 * h) * w0 * (1 - w0))


# ------------------------------------------------------------------- exactness
@pytest.mark.parametrize("name", ["kl_estimate", "jeffreys_estimate", "cross_entropy_estimate"])
def test_cv_is_exact_for_single_gaussians(name):
    # K = 1: log p - log q is a quadratic, the control variate removes all of it,
    # so the estimate is the closed form up to rounding and the stderr is ~0
    rng = np.random.default_rng(3)
    d = 8
    pp, qp = _rand_params(rng, 1, d), _rand_params(rng, 1, d)
    p, q = _mix(pp), _mix(qp)
    c1, c2 = (t[2][0] @ t[2][0].T for t in (pp, qp))
    m1, m2 = pp[1][0], qp[1][0]
    kl12, kl21 = _np_kl(m1, c1, m2, c2), _np_kl(m2, c2, m1, c1)
    ent = scipy.stats.multivariate_normal(m1, c1).entropy()
    ref = {
        "kl_estimate": kl12,
        "jeffreys_estimate": kl12 + kl21,
        "cross_entropy_estimate": ent + kl12,
    }[name]
    est = getattr(g, name)(p, q, jax.random.key(0), 512, method="cv")
    # float32 rounding of sums of 512 terms of size ~|ref|: a few hundred eps relative
    np.testing.assert_allclose(float(est.value), ref, rtol=300 * EPS, atol=300 * EPS)
    assert float(est.stderr) <= 300 * EPS * (1 + abs(ref))


# ------------------------------------------------------------------ calibration
def _iid_reference(pp, qp, n, seed):
    """KL and JS by iid sampling with scipy logpdf (float64): (value, stderr) each."""
    rng = np.random.default_rng(seed)

    def sample(par, m):
        w, mu, tril = par
        comp = rng.choice(len(w), size=m, p=w)
        return mu[comp] + np.einsum("nij,nj->ni", tril[comp], rng.normal(size=(m, mu.shape[1])))

    xp, xq = sample(pp, n), sample(qp, n)
    dp = _np_logpdf(pp, xp) - _np_logpdf(qp, xp)
    dq = _np_logpdf(pp, xq) - _np_logpdf(qp, xq)
    js_p = math.log(2) - np.logaddexp(0, -dp)  # log(2 p / (p + q)) on p's samples
    js_q = math.log(2) - np.logaddexp(0, dq)
    kl = (dp.mean(), dp.std() / math.sqrt(n))
    js = (0.5 * (js_p.mean() + js_q.mean()), 0.5 * math.sqrt((js_p.var() + js_q.var()) / n))
    return kl, js


@pytest.mark.slow
def test_cv_calibrated_and_efficient_at_d8():
    rng = np.random.default_rng(8)
    d, k, n, nk = 8, 4, 4096, 48
    pp, qp = _rand_params(rng, k, d), _rand_params(rng, k, d)
    p, q = _mix(pp), _mix(qp)
    refs = _iid_reference(pp, qp, 400_000, 1)
    keys = jax.random.split(jax.random.key(0), nk)
    for fn, (ref, ref_se) in ((g.kl_estimate, refs[0]), (g.js_estimate, refs[1])):
        cv = jax.jit(jax.vmap(lambda kk, fn=fn: fn(p, q, kk, n, method="cv")))(keys)
        iid = jax.jit(jax.vmap(lambda kk, fn=fn: fn(p, q, kk, n, method="iid")))(keys)
        v, se = np.asarray(cv.value, np.float64), np.asarray(cv.stderr, np.float64)
        tol = 3.0 * np.sqrt(se**2 + ref_se**2)
        # calibrated stderr: each key fails with probability ~0.3%; 4 or more
        # failures out of 48 would happen with probability < 1e-4
        assert np.sum(np.abs(v - ref) > tol) <= 3, (fn.__name__, v, ref, se)
        # efficiency: the spread over keys is at least 2.5x smaller in variance than
        # iid's (measured 12x for KL, 5x for JS on such pairs; with 48 keys the
        # sample-variance ratio is within a factor 1.6 of its mean with prob. > 0.99)
        ratio = np.var(np.asarray(iid.value, np.float64)) / np.var(v)
        assert ratio > 2.5, (fn.__name__, ratio)


# ------------------------------------------------------------- API and gradients
def test_default_is_auto_by_dimension():
    assert DEFAULT_METHOD == "auto"
    assert [auto_method(d) for d in (1, 2, 3, 64)] == ["qmc", "qmc", "cv", "cv"]
    rng = np.random.default_rng(5)
    # (fn, D, K, N, the method "auto" stands for there); JS too (bench_js_auto.py). The
    # "cv" cases have the shapes of other tests here, whose programs they share: KL those
    # of test_cv_is_exact_for_single_gaussians, JS (at D = 3, the first "cv" dimension)
    # those of test_js_cv_with_few_points_still_has_a_stderr
    cases = (
        (g.kl_estimate, 2, 2, 256, "qmc"),
        (g.js_estimate, 2, 2, 256, "qmc"),
        (g.kl_estimate, 8, 1, 512, "cv"),
        (g.js_estimate, 3, 2, 4, "cv"),
    )
    for fn, d, k, n, method in cases:
        p, q = _mix(_rand_params(rng, k, d)), _mix(_rand_params(rng, k, d))
        key = jax.random.key(1)
        a = fn(p, q, key, n)
        b = fn(p, q, key, n, method=method)
        assert float(a.value) == float(b.value), (fn.__name__, d)


def test_cv_gradient_is_pathwise_and_exact_for_gaussians():
    # K = 1: the estimate is the closed form, so its gradient must be the closed form's
    rng = np.random.default_rng(4)
    pp, qp = _rand_params(rng, 1, 3), _rand_params(rng, 1, 3)
    p, q = _mix(pp), _mix(qp)
    # one outer jit: grad of the compiled estimator alone compiles a forward and a
    # backward program
    got = jax.jit(jax.grad(lambda m: g.kl_divergence(m, q, jax.random.key(0), 256, method="cv")))(p)
    # numpy reference: d KL / d μ_p = Σ_q⁻¹ (μ_p - μ_q)
    c2 = qp[2][0] @ qp[2][0].T
    ref = np.linalg.solve(c2, pp[1][0] - qp[1][0])
    np.testing.assert_allclose(np.asarray(got.locs[0]), ref, rtol=1e-3, atol=1e-4)


def test_cv_weight_gradient_matches_stratified():
    # both estimators are Σ_a w_a · (stratum mean): the weight gradient is exact in w,
    # so with large N they agree within a few stderr of the stratum means (~1e-2 here)
    rng = np.random.default_rng(6)
    p, q = _mix(_rand_params(rng, 3, 4)), _mix(_rand_params(rng, 3, 4))

    def grad(method, n):
        f = lambda lg: g.kl_divergence(  # noqa: E731
            g.GaussianMixture.from_params(lg, p.locs, p.scale_param, "full"),
            q,
            jax.random.key(2),
            n,
            method=method,
        )
        return np.asarray(jax.jit(jax.grad(f))(p.logits))  # one program, not forward + backward

    a, b = grad("cv", 8192), grad("stratified", 65536)
    np.testing.assert_allclose(a - a.mean(), b - b.mean(), atol=0.05)


def _np_kl_to_student_t(par, df, n, seed):
    """KL(mixture ‖ standard multivariate t) by iid sampling with scipy: (value, stderr)."""
    rng = np.random.default_rng(seed)
    w, mu, tril = par
    comp = rng.choice(len(w), size=n, p=w)
    x = mu[comp] + np.einsum("nij,nj->ni", tril[comp], rng.normal(size=(n, mu.shape[1])))
    d = mu.shape[1]
    diff = _np_logpdf(par, x) - scipy.stats.multivariate_t(np.zeros(d), np.eye(d), df=df).logpdf(x)
    return diff.mean(), diff.std() / math.sqrt(n)


def test_cv_under_vmap_batch_and_fallbacks():
    import numpyro.distributions as dist

    rng = np.random.default_rng(7)
    ps = [_rand_params(rng, 2, 3) for _ in range(2)]
    batch = g.GaussianMixture(
        np.asarray(np.stack([t[0] for t in ps]), F),
        np.asarray(np.stack([t[1] for t in ps]), F),
        scale_tril=np.asarray(np.stack([t[2] for t in ps]), F),
    )
    q = _mix(_rand_params(rng, 2, 3))
    est = g.js_estimate(batch, q, jax.random.key(0), 512, method="cv")
    v = np.asarray(est.value)  # numpy: eager jnp ops would each compile
    assert v.shape == (2,) and np.all((v >= 0) & (v <= math.log(2)))
    # a non-Gaussian q has no surrogate: cv falls back to antithetic sampling of p; the
    # reference is an iid run with scipy's densities. Numpy in and no argument checks:
    # eagerly, each of the constructor's checks would compile a program of its own
    df = 5.0
    t = dist.MultivariateStudentT(df, np.zeros(3, F), np.eye(3, dtype=F), validate_args=False)
    a = g.kl_estimate(_mix(ps[0]), t, jax.random.key(1), 4096, method="cv")
    ref, ref_se = _np_kl_to_student_t(ps[0], df, 4096, seed=2)
    assert abs(float(a.value) - ref) < 4 * math.hypot(float(a.stderr), ref_se)
    # f-divergences have no control variate: "cv" means its antithetic point set
    tv = g.total_variation_estimate(_mix(ps[0]), q, jax.random.key(3), 512, method="cv")
    tv_a = g.total_variation_estimate(_mix(ps[0]), q, jax.random.key(3), 512, method="antithetic")
    assert float(tv.value) == float(tv_a.value)


def test_unknown_method_message():
    p = _mix(_rand_params(np.random.default_rng(0), 1, 2))
    with pytest.raises(ValueError, match="'auto' or one of"):
        g.kl_estimate(p, p, jax.random.key(0), 16, method="bogus")


def _typed_mixture(rng, ctype, d=3, k=2):
    """A mixture of the given covariance type, and the same density as full-covariance numpy
    parameters ``(w, mu (K, D), scale_tril (K, D, D))`` (D = 1 for univariate)."""
    w = rng.dirichlet(np.ones(k))
    sd = np.exp(0.3 * rng.normal(size=(k, d)))
    if ctype == "univariate":
        mu = 2 * rng.normal(size=k)
        m = g.GaussianMixture(np.asarray(w, F), np.asarray(mu, F), scale=np.asarray(sd[:, 0], F))
        return m, (w, mu[:, None], sd[:, :1, None])
    mu = 2 * rng.normal(size=(k, d))
    if ctype == "tied":
        tril = np.tril(0.3 * rng.normal(size=(d, d)), -1) + np.diag(sd[0])
        m = g.GaussianMixture(
            np.asarray(w, F),
            np.asarray(mu, F),
            scale_tril=np.asarray(tril, F),
            covariance_type="tied",
        )
        return m, (w, mu, np.broadcast_to(tril, (k, d, d)))
    scale = {"diag": sd, "spherical": sd[:, 0]}[ctype]
    m = g.GaussianMixture(
        np.asarray(w, F), np.asarray(mu, F), scale=np.asarray(scale, F), covariance_type=ctype
    )
    sd_full = sd if ctype == "diag" else sd[:, :1] * np.ones((k, d))
    return m, (w, mu, np.stack([np.diag(v) for v in sd_full]))


@pytest.mark.parametrize("ctype", ["univariate", "diag", "spherical", "tied"])
def test_js_cv_agrees_with_antithetic_for_every_covariance_type(ctype):
    # the proposal is built from dense factors of any type; the estimate must agree with
    # a 32x longer antithetic run within 4 combined stderr. The reference runs on the
    # same densities written as full-covariance mixtures (built from numpy, not from the
    # typed ones): independent of the typed code paths, and one compiled program for
    # the three 3-D types.
    rng = np.random.default_rng(12)
    (p, pf), (q, qf) = _typed_mixture(rng, ctype), _typed_mixture(rng, ctype)
    a = g.js_estimate(p, q, jax.random.key(1), 4096, method="cv")
    b = g.js_estimate(_mix(pf), _mix(qf), jax.random.key(2), 2**17, method="antithetic")
    assert abs(float(a.value - b.value)) <= 4 * math.hypot(float(a.stderr), float(b.stderr))
    assert 0 < float(a.stderr) < 5e-3


def test_js_cv_with_few_points_still_has_a_stderr():
    # N = 2K: at most a quarter of the points are strata, so some hold two pairs and
    # the pooled variance exists (all-singleton strata would report stderr 0)
    rng = np.random.default_rng(13)
    p, q = _mix(_rand_params(rng, 2, 3)), _mix(_rand_params(rng, 2, 3))
    est = g.js_estimate(p, q, jax.random.key(0), 4, method="cv")
    assert float(est.stderr) > 0 and 0 <= float(est.value) <= math.log(2)


# ------------------------------------------- overlap proposal: ranking, regression
def _np_log_pi(pp, qp):
    """``(K_p, K_q)`` log √(w_a v_b) BC_ab from a numpy closed form (slogdet / solve)."""
    out = np.empty((len(pp[0]), len(qp[0])))
    for a in range(len(pp[0])):
        for b in range(len(qp[0])):
            ca, cb = pp[2][a] @ pp[2][a].T, qp[2][b] @ qp[2][b].T
            cbar, dm = 0.5 * (ca + cb), pp[1][a] - qp[1][b]
            ld = [np.linalg.slogdet(c)[1] for c in (cbar, ca, cb)]
            log_bc = -dm @ np.linalg.solve(cbar, dm) / 8 - 0.5 * (ld[0] - 0.5 * (ld[1] + ld[2]))
            out[a, b] = 0.5 * math.log(pp[0][a] * qp[0][b]) + log_bc
    return out


@pytest.mark.parametrize("equal_diag", [True, False])
def test_ranked_pairs_have_exact_weights_and_near_largest_mass(equal_diag):
    # 6 x 6 components, 8 pairs kept: the pairs are ranked by an approximate π_ab, and
    # the kept ones must carry the exact Bhattacharyya weights (r stays the density the
    # points are drawn from). With equal diagonal covariances the approximation is
    # exact, so the kept set is the numpy top 8; otherwise it keeps at least 90% of the
    # top 8's mass (measured 99.6% on this pair)
    rng = np.random.default_rng(21)
    pp, qp = _rand_params(rng, 6, 3), _rand_params(rng, 6, 3)
    if equal_diag:
        tril = np.diag([0.7, 1.0, 1.3])
        pp, qp = ((t[0], t[1], np.broadcast_to(tril, (6, 3, 3)).copy()) for t in (pp, qp))
    prop = _overlap_proposal(_mix(pp), _mix(qp), 8)
    ref = _np_log_pi(pp, qp)
    kept = np.asarray(prop.kept) > 0
    assert kept.sum() == 8
    w = np.exp(np.asarray(prop.mixture.logits, np.float64))
    got = np.log(w[:8] / (1 - ALPHA)) + float(prop.log_z)
    np.testing.assert_allclose(np.sort(got), np.sort(ref[kept]), rtol=1e-4, atol=1e-4)
    top = np.sort(ref.ravel())[::-1][:8]
    if equal_diag:
        np.testing.assert_allclose(np.sort(ref[kept]), np.sort(top), rtol=1e-6)
    else:
        assert np.exp(ref[kept]).sum() >= 0.9 * np.exp(top).sum()


def test_regression_expectation_is_unbiased_with_the_known_mean_features():
    # E_r[h] for h = 0.1 x0² + 3 N_0 / r on a 2-component r: the closed form is
    # 0.1 Σ_c ω_c (μ_c0² + Σ_c,00) + 3 (E_r[N_0 / r] = 1). The features N_c / r have
    # mean 1, so the cross-fitted coefficients should absorb the second term: the
    # stderr must fall far below the plain antithetic estimate's (measured 10.7x, and
    # the spread of the 48 values equals the mean stderr to 0.1%), and
    # the estimate must stay calibrated (48 keys; 4 or more 3-stderr misses have
    # probability < 1e-4) and unbiased (mean within 4 of its stderr)
    w = np.array([0.3, 0.7])
    mu = np.array([[0.0, 0.5], [1.5, -0.5]])
    tril = np.array([[[1.0, 0.0], [0.4, 0.6]], [[0.8, 0.0], [-0.3, 1.2]]])
    r = _mix((w, mu, tril))
    cov00 = np.einsum("cij,cij->ci", tril, tril)[:, 0]  # (L Lᵀ)_00 = Σ_j L_0j²
    truth = 0.1 * np.sum(w * (mu[:, 0] ** 2 + cov00)) + 3.0

    def fn(x):
        comp = r.component_log_probs(x) - r.log_weights  # log N_k
        f = jnp.exp(comp - r.log_prob(x)[..., None])
        return 0.1 * x[..., 0] ** 2 + 3.0 * f[..., 0], f

    n = 1024
    reg = jax.jit(jax.vmap(lambda kk: _regression_expectation(r, kk, n, fn, chunk=256)))
    plain = jax.jit(
        jax.vmap(lambda kk: expectation(r, kk, n, "antithetic", lambda x: fn(x)[0], chunk=256))
    )
    keys = jax.random.split(jax.random.key(3), 48)
    v, se = (np.asarray(a, np.float64) for a in reg(keys))
    se_plain = np.asarray(plain(keys)[1], np.float64)
    assert np.sum(np.abs(v - truth) > 3 * se) <= 3, (v, se, truth)
    assert abs(v.mean() - truth) <= 4 * np.sqrt(np.mean(se**2) / len(v))
    assert np.mean(se) < np.mean(se_plain) / 4, (np.mean(se), np.mean(se_plain))


def _overlapping_pair():
    # two 3-component mixtures in 2-D that overlap moderately (JS ≈ 0.3)
    rng = np.random.default_rng(5)
    pp, qp = _rand_params(rng, 3, 2), _rand_params(rng, 3, 2)
    return pp, (qp[0], qp[1] * 0.5 + 0.8, qp[2])


def test_js_cv_calibrated_and_efficient_where_p_and_q_overlap():
    # moderate overlap (JS = 0.327), where the importance weights alone gain least:
    # against 2-D quadrature, 48 keys, calibration and bias as above. Samples saved over
    # iid, measured with 400 keys: 7.4x (4.7x without the regression on p / r and
    # q / r). The 1% quantile of an F(48, 48) ratio is 0.51, so 3x leaves a margin
    ref, _, saved = _js_cv_against_quadrature(*_overlapping_pair(), 4, 2048)
    assert 0.1 < ref < 0.5
    assert saved > 3.0, saved


@pytest.mark.parametrize("k", [1, 3])
def test_js_cv_of_a_mixture_with_itself_is_zero_to_rounding(k):
    # p = q: every h and every feature is constant up to float rounding (with one
    # component, p / r = q / r = 1 exactly in exact arithmetic). Coefficients fitted to
    # rounding noise once gave a stderr of 0.06 at N = 64, and different coefficients per
    # fold 2.5e-4; both must stay at rounding level (measured ≤ 4e-6 at N = 64)
    rng = np.random.default_rng(k)
    w, mu, tril = _rand_params(rng, k, 3)
    p = _mix((w, mu, tril))
    est = jax.jit(jax.vmap(lambda kk: g.js_estimate(p, p, kk, 64, method="cv")))(
        jax.random.split(jax.random.key(2), 8)
    )
    assert np.all(np.asarray(est.value) <= 1e-5), est.value
    assert np.all(np.asarray(est.stderr) <= 1e-4), est.stderr
