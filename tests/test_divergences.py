"""Monte Carlo divergences against quadrature, grids and closed forms; calibration of stderr.

Tolerances: a Monte Carlo estimate must be within ``4·stderr`` of the float64
reference (one case in ~16,000 would fail by chance for a calibrated Gaussian
error; the keys are fixed, so the test is deterministic), plus a rounding
allowance ``RTOL · (1 + |ref|)`` with ``RTOL = 2e-5`` for float32 sums of ~10⁴ terms
(relative rounding ~ √N · 2⁻²⁴ ≈ 6e-6, times a safety factor 3).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGMM

import gmmjax as g
from gmmjax.montecarlo.divergences import DEFAULT_METHOD
from tests._div_reference import (
    SEED_MU,
    SEED_SD,
    SEED_W,
    references_1d,
    references_2d_grid,
)

pytestmark = pytest.mark.numerics

METHODS = ("iid", "stratified", "antithetic", "qmc")
RTOL = 2e-5
F = jnp.result_type(float)  # float32, or float64 under JAX_ENABLE_X64=1


def _refit():
    """sklearn refit of the seed mixture on 3000 of its own samples (fixed seed)."""
    rng = np.random.default_rng(0)
    comp = rng.choice(3, size=3000, p=SEED_W)
    x = rng.normal(SEED_MU[comp], SEED_SD[comp])
    sk = SkGMM(3, random_state=0).fit(x[:, None])
    return sk.weights_, sk.means_[:, 0], np.sqrt(sk.covariances_[:, 0, 0])


SEED = (SEED_W, SEED_MU, SEED_SD)


@functools.cache
def _cases_1d():
    """The 1-D pairs, their quadrature references and the batched mixtures.

    Built on first use, not at import: under xdist every worker imports every test
    module, and the quadrature takes seconds.
    """
    # three 1-D pairs, all with K = 3 so they batch into one call: the seed vs its refit,
    # two single Gaussians (three identical components each; closed form 0.4431...),
    # and a bimodal p against a wide unimodal-ish q
    cases = [
        (SEED, _refit()),
        ((np.ones(3) / 3, np.zeros(3), np.ones(3)), (np.ones(3) / 3, np.ones(3), 2 * np.ones(3))),
        (
            (np.array([0.3, 0.5, 0.2]), np.array([-2.0, 1.0, 1.5]), np.array([0.5, 1.0, 0.3])),
            (np.array([0.6, 0.2, 0.2]), np.array([0.0, 1.0, -1.0]), np.array([2.0, 1.5, 3.0])),
        ),
    ]
    refs = [references_1d(p, q, ALPHA) for p, q in cases]

    def batch(side):
        w, mu, sd = (np.stack([c[side][i] for c in cases]) for i in range(3))
        return g.GaussianMixture(jnp.asarray(w, F), jnp.asarray(mu, F), scale=jnp.asarray(sd, F))

    return cases, refs, batch(0), batch(1)


ALPHA = 0.5


def _all_estimates(p, q, key, n, method, full):
    kw = dict(method=method)
    ks = jax.random.split(key, 8)
    if not full:  # the two headline estimators and the log-space (Rényi) path
        return {
            "kl": g.kl_estimate(p, q, ks[0], n, **kw),
            "js": g.js_estimate(p, q, ks[1], n, **kw),
            "renyi": g.renyi_estimate(p, q, ks[5], ALPHA, n, **kw),
        }
    return {
        "kl": g.kl_estimate(p, q, ks[0], n, **kw),
        "js": g.js_estimate(p, q, ks[1], n, **kw),
        "jeffreys": g.jeffreys_estimate(p, q, ks[2], n, **kw),
        "tv": g.total_variation_estimate(p, q, ks[3], n, **kw),
        "hellinger": g.squared_hellinger_estimate(p, q, ks[4], n, **kw),
        "renyi": g.renyi_estimate(p, q, ks[5], ALPHA, n, **kw),
        "cross_entropy": g.cross_entropy_estimate(p, q, ks[6], n, **kw),
        "entropy": g.entropy_estimate(p, ks[7], n, **kw),
    }


_all_jit = jax.jit(_all_estimates, static_argnames=("n", "method", "full"))


@pytest.mark.parametrize("method", METHODS)
def test_1d_estimators_against_quadrature(method):
    # every estimator for the default method; KL, JS and Rényi for the others
    # (compile time: each estimator is its own XLA program)
    full = method == DEFAULT_METHOD
    cases, refs, p1, q1 = _cases_1d()
    est = _all_jit(p1, q1, jax.random.key(11), n=20_000, method=method, full=full)
    for name, e in est.items():
        assert e.value.shape == (len(cases),)
        assert np.all(np.asarray(e.num_samples) >= 19_990)
        for i, ref in enumerate(refs):
            v, se = float(e.value[i]), float(e.stderr[i])
            assert np.isfinite(v) and se > 0, (name, i)
            tol = 4 * se + RTOL * (1 + abs(ref[name]))
            assert abs(v - ref[name]) <= tol, (method, name, i, v, ref[name], se)
    # bounded forms stay in their ranges, sample by sample
    js = np.asarray(est["js"].value)
    assert np.all((js >= 0) & (js <= np.log(2)))
    for name in ("tv", "hellinger") if full else ():
        v = np.asarray(est[name].value)
        assert np.all((v >= 0) & (v <= 1))


def test_two_gaussians_closed_form_reference():
    # the second 1-D case is N(0,1) vs N(1,2): the quadrature agrees with the textbook
    # formula ln(σq/σp) + (σp² + Δμ²)/(2σq²) - ½ to quadrature accuracy (1e-9)
    closed = np.log(2.0) + (1.0 + 1.0) / 8.0 - 0.5
    assert abs(_cases_1d()[1][1]["kl"] - closed) < 1e-9


def _calibration(p, q, keys, n, method):
    kl = jax.vmap(lambda k: g.kl_estimate(p, q, k, n, method=method))(keys)
    js = jax.vmap(lambda k: g.js_estimate(p, q, k, n, method=method))(keys)
    return kl, js


_calib_jit = jax.jit(_calibration, static_argnames=("n", "method"))


@pytest.mark.slow  # a calibration run over 200 keys: CI runs it in its own step
@pytest.mark.parametrize("method", METHODS)
def test_stderr_is_calibrated_over_200_keys(method):
    # seed case vs its refit; |estimate - truth| <= 3 stderr must hold in >= 97% of
    # 200 runs (a calibrated normal error gives 99.7%; qmc's t-distributed error with
    # R - 1 = 15 degrees of freedom gives 99.1%)
    p, q = (
        g.GaussianMixture(*(jnp.asarray(a, F) for a in m[:2]), scale=jnp.asarray(m[2], F))
        for m in _cases_1d()[0][0]
    )
    ref_kl, ref_js = (_cases_1d()[1][0][name] for name in ("kl", "js"))
    keys = jax.random.split(jax.random.key(2024), 200)
    kl, js = _calib_jit(p, q, keys, n=1000, method=method)
    for est, ref in ((kl, ref_kl), (js, ref_js)):
        err = np.abs(np.asarray(est.value, np.float64) - ref)
        se = np.asarray(est.stderr, np.float64)
        assert np.mean(err <= 3 * se) >= 0.97, (method, np.mean(err <= 3 * se))
        # and not vacuous: the error bars are not wildly too wide either
        assert np.mean(err <= 0.5 * se) <= 0.6, (method, np.mean(err <= 0.5 * se))


def _spd_factor(rng, d, scale=1.0):
    a = rng.normal(size=(d, d)) * 0.4
    return np.linalg.cholesky(a @ a.T + scale * np.eye(d))


# compiled once (run eagerly, its operations compile one by one)
_gaussian_kl = jax.jit(g.gaussian_kl)


@pytest.mark.parametrize("method", METHODS)
def test_single_gaussians_in_3d_match_closed_form(method):
    rng = np.random.default_rng(3)
    lp, lq = _spd_factor(rng, 3), _spd_factor(rng, 3, 2.0)
    mp, mq = rng.normal(size=3), rng.normal(size=3)
    p = g.GaussianMixture(
        jnp.ones(1, F), jnp.asarray(mp[None], F), scale_tril=jnp.asarray(lp[None], F)
    )
    q = g.GaussianMixture(
        jnp.ones(1, F), jnp.asarray(mq[None], F), scale_tril=jnp.asarray(lq[None], F)
    )
    # closed form in float64 numpy (no gmmjax): tr(Σq⁻¹Σp) + Δᵀ Σq⁻¹ Δ - d + ln|Σq|/|Σp|
    sp, sq = lp @ lp.T, lq @ lq.T
    diff = mq - mp
    ref = 0.5 * (
        np.trace(np.linalg.solve(sq, sp))
        + diff @ np.linalg.solve(sq, diff)
        - 3
        + np.linalg.slogdet(sq)[1]
        - np.linalg.slogdet(sp)[1]
    )
    est = g.kl_estimate(p, q, jax.random.key(5), 20_000, method=method)
    assert abs(float(est.value) - ref) <= 4 * float(est.stderr) + RTOL * (1 + ref)
    assert abs(float(_gaussian_kl(mp, lp, mq, lq)) - ref) < 1e-4 * (1 + ref)
    ent = g.entropy_estimate(p, jax.random.key(6), 20_000, method=method)
    ref_h = 1.5 * (1 + np.log(2 * np.pi)) + np.sum(np.log(np.diag(lp)))
    assert abs(float(ent.value) - ref_h) <= 4 * float(ent.stderr) + RTOL * (1 + ref_h)


P2 = (
    np.array([0.35, 0.65]),
    np.array([[-1.0, 0.5], [1.2, -0.3]]),
    np.array([[[0.6, 0.25], [0.25, 0.5]], [[0.4, -0.1], [-0.1, 0.9]]]),
)
Q2 = (
    np.array([0.5, 0.5]),
    np.array([[-0.5, 0.0], [1.0, 1.0]]),
    np.array([[[1.0, 0.0], [0.0, 0.3]], [[0.5, 0.2], [0.2, 0.5]]]),
)
_refs_2d = functools.cache(lambda: references_2d_grid(P2, Q2))  # on first use


def _gm2(m):
    return g.GaussianMixture(*(jnp.asarray(a, F) for a in m))


@pytest.mark.parametrize("method", METHODS)
def test_2d_against_fine_grid(method):
    # grid: 801² trapezoid over [-9, 9]²; its error (smooth integrand, h = 0.0225) is
    # < 1e-6, checked by the total mass
    refs = _refs_2d()
    assert abs(refs["mass_p"] - 1.0) < 1e-6
    p, q = _gm2(P2), _gm2(Q2)
    f = jax.jit(
        lambda p, q, k: (
            g.kl_estimate(p, q, k, 20_000, method=method),
            g.js_estimate(p, q, k, 20_000, method=method),
            g.total_variation_estimate(p, q, k, 20_000, method=method),
        )
    )
    for name, e in zip(("kl", "js", "tv"), f(p, q, jax.random.key(8)), strict=True):
        ref = refs[name]
        tol = 4 * float(e.stderr) + RTOL * (1 + abs(ref)) + 1e-6
        assert abs(float(e.value) - ref) <= tol, (method, name, float(e.value), ref)


def test_inputs_are_converted_once_at_the_entry(monkeypatch):
    """Each input of a divergence goes through ``as_gaussian_mixture`` exactly once."""
    from gmmjax.montecarlo import _entry, divergences

    calls = []
    real = _entry.as_gaussian_mixture

    def counting(d):
        calls.append(type(d).__name__)
        return real(d)

    monkeypatch.setattr(_entry, "as_gaussian_mixture", counting)
    import numpyro.distributions as dist

    p = g.GaussianMixture(jnp.ones(1), jnp.zeros(1), scale=jnp.ones(1))
    q = dist.Normal(1.0, 2.0)
    divergences.kl_estimate(p, q, jax.random.key(0), 64)
    assert calls == ["GaussianMixture", "Normal"]
