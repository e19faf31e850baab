"""Gradients vs finite differences of quadrature, invariants, extreme cases, inputs, errors.

Tolerances are stated per test; Monte Carlo ones are multiples of a measured stderr.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

import gmmjax as g
from tests._div_reference import SEED_MU, SEED_SD, SEED_W, logpdf_1d, references_1d

pytestmark = pytest.mark.numerics
F = jnp.result_type(float)

# ------------------------------------------------------------- gradients
# raw parameters θ = (logits_p, locs_p, log sd_p, logits_q, locs_q, log sd_q), 18 numbers
THETA0 = np.concatenate(
    [
        np.log(SEED_W),
        SEED_MU,
        np.log(SEED_SD),
        np.log([0.3, 0.3, 0.4]),
        [-0.4, -0.05, 0.25],
        np.log([0.25, 0.1, 0.1]),
    ]
)


def _mixes_np(theta):
    def one(t):
        w = np.exp(t[:3] - np.max(t[:3]))
        return w / w.sum(), t[3:6], np.exp(t[6:9])

    return one(theta[:9]), one(theta[9:])


def _mixes_jax(theta):
    def one(t):
        return g.GaussianMixture.from_params(t[:3], t[3:6], jnp.exp(t[6:9]), "univariate")

    return one(theta[:9]), one(theta[9:])


_GRID = np.linspace(-4.0, 4.0, 160_001)  # h = 5e-5 < smallest sd / 1000


def _kl_js_quad(theta, cache=None):
    """KL and JS of the θ pair by composite Simpson quadrature in float64 on [-4, 4].

    Mass outside [-4, 4] is < 1e-12 for these mixtures; Simpson's error with h = 5e-5
    on integrands whose narrowest scale is 0.07 is far below 1e-10. ``cache`` maps a
    half of θ (its bytes) to that mixture's log-density on the grid.
    """
    cache = {} if cache is None else cache

    def logpdf(half, mix):
        if half.tobytes() not in cache:
            cache[half.tobytes()] = logpdf_1d(_GRID, mix)
        return cache[half.tobytes()]

    p, q = _mixes_np(theta)
    a, b = logpdf(theta[:9], p), logpdf(theta[9:], q)
    m = np.logaddexp(a, b) - np.log(2)
    kl = integrate.simpson(np.exp(a) * (a - b), x=_GRID)
    js = integrate.simpson(0.5 * (np.exp(a) * (a - m) + np.exp(b) * (b - m)), x=_GRID)
    return np.array([kl, js])


def _fd_reference(h=1e-4):
    """Central differences of the float64 quadrature values (error ~ h^2 f3 ~ 1e-7).

    A step moves one parameter, so one side keeps θ0's density (computed once).
    """
    grad = np.zeros((2, 18))
    cache = {}
    for i in range(18):
        e = np.zeros(18)
        e[i] = h
        grad[:, i] = (_kl_js_quad(THETA0 + e, cache) - _kl_js_quad(THETA0 - e, cache)) / (2 * h)
    return grad


def _grads(theta, keys, method):
    def f(t, k):
        p, q = _mixes_jax(t)
        return jnp.stack(
            [
                g.kl_divergence(p, q, k, 20_000, method=method),
                g.js_divergence(p, q, k, 20_000, method=method),
            ]
        )

    return jax.vmap(jax.jacrev(f), in_axes=(None, 0))(theta, keys)


_GRAD_METHODS = ("iid", "stratified", "qmc")


@jax.jit
def _grads_all(theta, keys):
    # every method in one program: it compiles faster than one program per method
    return {method: _grads(theta, keys, method) for method in _GRAD_METHODS}


@pytest.fixture(scope="module")
def fd_refs():
    ref = _fd_reference()
    return {"kl": ref[0], "js": ref[1]}


@pytest.fixture(scope="module")
def mc_grads():
    keys = jax.random.split(jax.random.key(3), 16)
    return _grads_all(jnp.asarray(THETA0, F), keys)


@pytest.mark.parametrize("method", _GRAD_METHODS)
def test_gradients_match_finite_differences_of_quadrature(method, fd_refs, mc_grads):
    # 16 independent keys give the mean gradient and its standard error; the mean must
    # be within 4 standard errors (+1e-3 absolute for the central-difference error of
    # the float64 quadrature and float32 rounding of the per-key gradients)
    jac = np.asarray(mc_grads[method], np.float64)
    for j, name in enumerate(("kl", "js")):
        gs = jac[:, j, :]
        mean, se = gs.mean(0), gs.std(0, ddof=1) / 4.0
        ref = fd_refs[name]
        assert np.all(np.abs(mean - ref) <= 4 * se + 1e-3 + 1e-3 * np.abs(ref)), (
            method,
            name,
            mean,
            ref,
            se,
        )
    if method != "iid":  # exact (score-free) weight gradients: far tighter than iid's
        assert np.all(jac[:, 0, :3].std(0) < 0.1)


# ------------------------------------------------------------- invariants
_kl_pair = jax.jit(lambda p, q, k: g.kl_estimate(p, q, k, 4000, method="stratified"))
_js_pair = jax.jit(lambda p, q, k: g.js_estimate(p, q, k, 4000, method="stratified"))

_floats = st.floats(-2.0, 2.0)


def _mix2d(draw):
    w = np.array([draw(st.floats(0.1, 1.0)) for _ in range(3)])
    mu = np.array([[draw(_floats) for _ in range(2)] for _ in range(3)])
    ls = np.array([[draw(st.floats(-0.7, 0.7)) for _ in range(2)] for _ in range(3)])
    off = np.array([draw(st.floats(-0.5, 0.5)) for _ in range(3)])
    tril = np.zeros((3, 2, 2))
    tril[:, 0, 0], tril[:, 1, 1], tril[:, 1, 0] = np.exp(ls[:, 0]), np.exp(ls[:, 1]), off
    return w / w.sum(), mu, tril


@st.composite
def mixture_pairs(draw):
    return _mix2d(draw), _mix2d(draw)


def _gm(m):
    w, mu, tril = m
    return g.GaussianMixture(jnp.asarray(w, F), jnp.asarray(mu, F), scale_tril=jnp.asarray(tril, F))


@settings(max_examples=10, deadline=None)
@given(mixture_pairs(), st.integers(0, 2**30))
def test_invariants(pair, seed):
    p, q = _gm(pair[0]), _gm(pair[1])
    k = jax.random.key(seed)
    # KL(p‖p) = 0 exactly: log p - log p on the same points
    assert abs(float(_kl_pair(p, p, k).value)) <= 1e-6
    # JS symmetric (in distribution: within 4 combined stderr) and in [0, log 2]
    a, b = _js_pair(p, q, k), _js_pair(q, p, jax.random.fold_in(k, 1))
    for e in (a, b):
        assert 0.0 <= float(e.value) <= np.log(2)
    # (host arithmetic on the scalars: eager jnp would compile a program per operation)
    assert (
        abs(float(a.value) - float(b.value))
        <= 4 * np.hypot(float(a.stderr), float(b.stderr)) + 1e-6
    )
    # permutation of the components of p (and of q)
    perm = np.array([2, 0, 1])
    pp = _gm(tuple(x[perm] for x in pair[0]))
    qp = _gm(tuple(x[perm[::-1]] for x in pair[1]))
    base = _kl_pair(p, q, k)
    other = _kl_pair(pp, qp, jax.random.fold_in(k, 2))
    assert (
        abs(float(base.value) - float(other.value))
        <= 4 * np.hypot(float(base.stderr), float(other.stderr)) + 1e-5
    )
    # an invertible affine map x -> A x + b of both
    a_mat = np.array([[1.5, 0.4], [-0.3, 0.8]])
    shift = np.array([3.0, -1.0])

    def affine(m):
        w, mu, tril = m
        cov = a_mat @ (tril @ np.swapaxes(tril, -1, -2)) @ a_mat.T
        return w, mu @ a_mat.T + shift, np.linalg.cholesky(cov)

    mapped = _kl_pair(_gm(affine(pair[0])), _gm(affine(pair[1])), jax.random.fold_in(k, 3))
    assert (
        abs(float(base.value) - float(mapped.value))
        <= 4 * np.hypot(float(base.stderr), float(mapped.stderr)) + 1e-4
    )


# ------------------------------------------------------------- extremes
def _gm1(w, mu, sd):
    return g.GaussianMixture(jnp.asarray(w, F), jnp.asarray(mu, F), scale=jnp.asarray(sd, F))


EXTREMES = {
    # two components 50σ apart in both; only the weights differ
    "50_sigma": (([0.5, 0.5], [0.0, 50.0], [1.0, 1.0]), ([0.2, 0.8], [0.0, 50.0], [1.0, 1.0])),
    # a component of weight 1e-6 far from the rest
    "tiny_weight": (
        ([1 - 1e-6, 1e-6], [0.0, 10.0], [1.0, 1.0]),
        ([0.5, 0.5], [0.5, -0.5], [1.2, 1.0]),
    ),
    # wide p inside a narrow q: KL ≈ 45²/2 ≈ 10³
    "wide_in_narrow": (
        ([0.5, 0.5], [0.0, 0.1], [1.0, 1.0]),
        ([0.5, 0.5], [0.0, 0.1], [1 / 45, 1 / 45]),
    ),
    # and the reverse: narrow p inside a wide q
    "narrow_in_wide": (
        ([0.5, 0.5], [0.0, 0.1], [1 / 45, 1 / 45]),
        ([0.5, 0.5], [0.0, 0.1], [1.0, 1.0]),
    ),
}


_extreme_jit = jax.jit(
    lambda p, q, k: (
        g.kl_estimate(p, q, k, 20_000),
        g.js_estimate(p, q, k, 20_000),
        jax.grad(lambda p: g.kl_divergence(p, q, k, 20_000))(p),
    )
)


@pytest.mark.parametrize("case", list(EXTREMES))
def test_extreme_cases_finite_and_correct(case):
    pm, qm = (tuple(np.asarray(a, np.float64) for a in m) for m in EXTREMES[case])
    ref = references_1d(pm, qm)
    kl, js, grad = _extreme_jit(_gm1(*pm), _gm1(*qm), jax.random.key(4))
    for e, r in ((kl, ref["kl"]), (js, ref["js"])):
        assert np.isfinite(float(e.value)) and np.isfinite(float(e.stderr))
        # 4 stderr + relative 1e-4: float32 sums of terms ~10³ lose ~1e-5 relative
        assert abs(float(e.value) - r) <= 4 * float(e.stderr) + 1e-4 * (1 + abs(r)), (case, r)
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(grad))
    if case == "wide_in_narrow":
        assert 900 < ref["kl"] < 1100


# ------------------------------------------------------------- inputs
@jax.jit
def _numpyro_and_mixture_pairs(k):
    # every distribution is built inside one program: built eagerly, each constructor's
    # few dozen operations would compile one by one for each new shape
    def kl(p, q):
        return g.kl_estimate(p, q, k, 2000).value

    def gm1(loc, sd):
        return g.GaussianMixture(jnp.ones(1), jnp.full(1, loc), scale=jnp.full(1, sd))

    loc, tril = jnp.array([0.0, 1.0]), jnp.array([[1.0, 0.0], [0.3, 0.7]])
    other = g.GaussianMixture(
        jnp.ones(2) / 2,
        jnp.array([[0.0, 0.0], [1.0, 1.0]]),
        scale_tril=jnp.broadcast_to(jnp.eye(2), (2, 2, 2)),
    )
    msf = dist.MixtureSameFamily(
        dist.Categorical(probs=jnp.ones(2) / 2),
        dist.MultivariateNormal(other.locs, scale_tril=other.scale_param),
    )
    mvn = dist.MultivariateNormal(loc, scale_tril=tril)
    gm2 = g.GaussianMixture(jnp.ones(1), loc[None], scale_tril=tril[None])
    return (
        (kl(dist.Normal(0.0, 1.0), dist.Normal(1.0, 2.0)), kl(gm1(0.0, 1.0), gm1(1.0, 2.0))),
        (kl(mvn, msf), kl(gm2, other)),
    )


def test_numpyro_inputs_equal_gaussian_mixture():
    (a, b), (c, d) = _numpyro_and_mixture_pairs(jax.random.key(0))
    assert np.allclose(a, b, rtol=1e-6)
    assert np.allclose(c, d, rtol=1e-5)


def test_generic_numpyro_distribution_against_quadrature():
    # KL(Laplace(0, 1) ‖ Normal(0.5, 1.5)): p is sampled with its own sample()
    p, q = dist.Laplace(0.0, 1.0), dist.Normal(0.5, 1.5)
    ref = integrate.quad(
        lambda x: stats.laplace.pdf(x) * (stats.laplace.logpdf(x) - stats.norm.logpdf(x, 0.5, 1.5)),
        -60,
        60,
        points=[0.0],
        limit=400,
    )[0]
    est = jax.jit(lambda k: g.kl_estimate(p, q, k, 50_000, chunk_size=8192))(jax.random.key(1))
    assert abs(float(est.value) - ref) <= 4 * float(est.stderr) + 1e-4


def test_stl_gradient_vanishes_at_the_optimum():
    # with q = p, ∇_x(log p_sg - log q) = 0 at every point, so the STL gradient is 0 up
    # to float rounding (1e-4), while the plain gradient carries the score noise
    p = _gm1(SEED_W, SEED_MU, SEED_SD)
    # both gradients from one program (same points: the forward pass is shared)
    f = jax.jit(
        lambda p: tuple(
            jax.grad(
                lambda p: g.kl_divergence(
                    p,
                    _gm1(SEED_W, SEED_MU, SEED_SD),
                    jax.random.key(2),
                    4000,
                    method="stratified",
                    stl=stl,
                )
            )(p)
            for stl in (True, False)
        )
    )
    stl, plain = f(p)
    assert max(np.max(np.abs(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(stl)) < 1e-4
    assert max(np.max(np.abs(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(plain)) > 1e-3


def test_batches_and_vmap_over_1000_pairs():
    # a batch gives the same estimates as one call per member with the split keys
    locs = np.array([[0.0, 1.0], [0.0, 2.0], [1.0, 3.0]])
    p = _gm1(np.ones((3, 2)) / 2, locs, np.ones((3, 2)))
    q = _gm1(np.ones(2) / 2, [0.5, 1.0], [1.0, 2.0])  # broadcasts against p's batch (3,)
    key = jax.random.key(9)
    f = jax.jit(lambda p, q, k: g.kl_estimate(p, q, k, 1000, method="stratified"))
    batch = f(p, q, key)
    keys = jax.random.split(key, 3)
    for i in range(3):
        one = f(_gm1(np.ones(2) / 2, locs[i], np.ones(2)), q, keys[i])
        assert np.allclose(batch.value[i], one.value, rtol=1e-5, atol=1e-6)
    # vmap over 1,000 K=1 pairs (10,000 works the same way; 1,000 keeps the suite fast)
    rng = np.random.default_rng(0)
    mp, mq = rng.normal(size=1000), rng.normal(size=1000)
    sp, sq = np.exp(rng.uniform(-0.5, 0.5, 1000)), np.exp(rng.uniform(-0.5, 0.5, 1000))
    ps, qs = (
        _gm1(np.ones((1000, 1)), mp[:, None], sp[:, None]),
        _gm1(np.ones((1000, 1)), mq[:, None], sq[:, None]),
    )
    est = jax.jit(jax.vmap(lambda p, q, k: g.kl_estimate(p, q, k, 512)))(
        ps, qs, jax.random.split(key, 1000)
    )
    closed = np.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5
    assert est.value.shape == (1000,)
    assert (
        np.mean(np.abs(np.asarray(est.value) - closed) <= 3 * np.asarray(est.stderr) + 1e-5) >= 0.97
    )


def test_batched_gradient_equals_per_pair_gradient():
    """``jax.grad`` over a batch of pairs gives each pair's own gradient, in the
    log-weights too: both paths normalize them inside the differentiated function (as
    NumPyro's Categorical does), so the log-weight gradient sums to zero. Before, one
    pair's gradient in ``logits`` kept the total-mass direction and differed from the
    batch's by 0.52 here."""
    p, q = (
        g.GaussianMixture(
            np.full((2, 3), 1 / 3), np.arange(6.0).reshape(2, 3) / 3, np.ones((2, 3))
        ),
        g.GaussianMixture(np.array([0.2, 0.8]), np.array([0.5, 1.5]), np.array([1.0, 0.7])),
    )
    key = jax.random.key(3)
    f = lambda p, k: g.kl_divergence(p, q, k, 600, method="stratified")  # noqa: E731
    batch = jax.grad(lambda p: jnp.sum(f(p, key)))(p)
    keys = jax.random.split(key, 2)
    for i in range(2):
        one = jax.grad(f)(jax.tree.map(lambda a, i=i: a[i], p), keys[i])
        for a, b in zip(jax.tree.leaves(batch), jax.tree.leaves(one), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)  # float32 rounding
        assert abs(float(jnp.sum(one.logits))) < 1e-5


def test_chunked_evaluation_matches_reference():
    p, q = _gm1(SEED_W, SEED_MU, SEED_SD), _gm1([0.3, 0.7], [-0.3, 0.1], [0.2, 0.15])
    ref = references_1d(
        tuple(np.asarray(a) for a in (SEED_W, SEED_MU, SEED_SD)),
        (np.array([0.3, 0.7]), np.array([-0.3, 0.1]), np.array([0.2, 0.15])),
    )["kl"]
    methods = ("iid", "qmc")
    ests = jax.jit(  # both methods in one program
        lambda p, q, k: [
            g.kl_estimate(p, q, k, 30_000, method=method, chunk_size=1000) for method in methods
        ]
    )(p, q, jax.random.key(5))
    for method, est in zip(methods, ests, strict=True):
        assert abs(float(est.value) - ref) <= 4 * float(est.stderr) + 1e-5, method


# ------------------------------------------------------------- errors
def test_errors_are_clear():
    p1, p2 = (
        _gm1([1.0], [0.0], [1.0]),
        g.GaussianMixture(jnp.ones(1), jnp.zeros((1, 2)), scale_tril=jnp.eye(2)[None]),
    )
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="same event shape"):
        g.kl_estimate(p1, p2, k, 100)
    with pytest.raises(ValueError, match="method must be 'auto' or one of"):
        g.kl_estimate(p1, p1, k, 100, method="sobol")
    with pytest.raises(TypeError, match="num_samples must be a Python int"):
        g.kl_estimate(p1, p1, k, 100.0)
    with pytest.raises(ValueError, match="needs num_samples >= 6"):
        g.kl_estimate(_gm1(np.ones(3) / 3, np.zeros(3), np.ones(3)), p1, k, 5, method="antithetic")
    with pytest.raises(ValueError, match="do not broadcast"):
        g.kl_estimate(
            _gm1(np.ones((2, 1)), np.zeros((2, 1)), np.ones((2, 1))),
            _gm1(np.ones((3, 1)), np.zeros((3, 1)), np.ones((3, 1))),
            k,
            100,
        )
    with pytest.raises(TypeError, match="NumPyro distribution"):
        g.kl_estimate(p1, "q", k, 100)
    with pytest.raises(ValueError, match="alpha must be positive"):
        g.renyi_estimate(p1, p1, k, -1.0, 100)
