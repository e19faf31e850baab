"""The NumPyro distribution contract, as NumPyro's own generic battery checks it.

Each test here is our own statement of one contract that NumPyro 0.22's
``test/test_distributions.py`` exercises (see ``tests/numpyro_battery.md`` for running
that battery itself): constraints keyed by the constructor's arguments with their true
event dimensions, ``infer_shapes``, ``vmap_over``, ``promote_batch_shape`` and
``scan``, ``expand``, ``has_rsample``, output types, and the issue's reproducers.
References are NumPyro's ``MixtureSameFamily`` and hand-derived shapes.
"""

import inspect
import typing

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.control_flow import scan
from numpyro.distributions import constraints
from numpyro.distributions.batch_util import promote_batch_shape, vmap_over

from gmmjax import GaussianMixture
from tests._helpers import X64

W = np.array([0.2, 0.3, 0.5])
L32 = np.array([[-1.0, 0.5], [0.0, 1.5], [2.0, -0.5]])
C322 = np.array([[[1.0, 0.3], [0.3, 0.8]], [[0.6, -0.2], [-0.2, 1.2]], [[1.5, 0.0], [0.0, 0.5]]])
# (covariance_type, locs, covariance argument, expected event dims of
#  weights, locs, covariance_matrix; expected (batch_shape, event_shape))
CASES = {
    "univariate": (np.array([-2.0, 0.0, 3.0]), np.array([0.5, 1.0, 2.0]), (1, 1, 1), ((), ())),
    "full": (L32, C322, (1, 2, 3), ((), (2,))),
    "tied": (L32, C322[0], (1, 2, 2), ((), (2,))),
    "diag": (L32, np.array([[1.0, 0.5], [0.7, 1.2], [0.4, 2.0]]), (1, 2, 2), ((), (2,))),
    "spherical": (L32, np.array([0.5, 1.0, 1.5]), (1, 2, 1), ((), (2,))),
}


def _make(ctype, **kw):
    locs, cov, _, _ = CASES[ctype]
    return GaussianMixture(W, locs, cov, covariance_type=ctype, **kw)


def _reference(ctype):
    """The same mixture as NumPyro's MixtureSameFamily."""
    locs, cov, _, _ = CASES[ctype]
    mix = dist.Categorical(probs=jnp.asarray(W))
    if ctype == "univariate":
        return dist.MixtureSameFamily(mix, dist.Normal(locs, np.sqrt(cov)))
    dense = {
        "full": lambda: cov,
        "tied": lambda: np.broadcast_to(cov, (3, 2, 2)),
        "diag": lambda: cov[:, :, None] * np.eye(2),
        "spherical": lambda: cov[:, None, None] * np.eye(2),
    }[ctype]()
    return dist.MixtureSameFamily(mix, dist.MultivariateNormal(locs, dense))


@pytest.mark.parametrize("ctype", list(CASES))
def test_arg_constraints_are_keyed_by_constructor_arguments(ctype):
    d = _make(ctype)
    params = set(inspect.signature(GaussianMixture).parameters) - {
        "covariance_type",
        "validate_args",
    }
    keys = set(d.arg_constraints)
    # every key is a constructor argument; scale= exists for the diagonal types only
    assert keys <= params
    assert params - keys == ({"scale"} if ctype in ("full", "tied") else set())
    ev = CASES[ctype][2]
    assert d.arg_constraints["weights"].event_dim == ev[0]
    assert d.arg_constraints["logits"].event_dim == ev[0]
    assert d.arg_constraints["locs"].event_dim == ev[1]
    for name in ("covariance_matrix", "precision_matrix", "scale_tril"):
        assert d.arg_constraints[name].event_dim == ev[2]
    assert set(d.reparametrized_params) <= params
    # the class itself describes the default (full) type
    assert GaussianMixture.arg_constraints["covariance_matrix"].event_dim == 3
    assert GaussianMixture.arg_constraints_for(ctype).keys() == d.arg_constraints.keys()


@pytest.mark.parametrize("ctype", list(CASES))
def test_constraints_accept_the_arguments_and_match_the_checks(ctype):
    locs, cov, _, _ = CASES[ctype]
    c = GaussianMixture.arg_constraints_for(ctype)
    assert bool(jnp.all(c["weights"](jnp.asarray(W))))
    assert bool(jnp.all(c["locs"](jnp.asarray(locs))))
    assert bool(jnp.all(c["covariance_matrix"](jnp.asarray(cov))))
    # constraint check output has the argument's batch shape: here ()
    assert jnp.shape(c["covariance_matrix"](jnp.asarray(cov))) == ()


@pytest.mark.parametrize("ctype", list(CASES))
@pytest.mark.parametrize("batch", [(), (4,)])
def test_infer_shapes_matches_the_built_distribution(ctype, batch):
    locs, cov, _, (b, e) = CASES[ctype]
    w = np.broadcast_to(W, batch + W.shape)
    locs = np.broadcast_to(locs, batch + locs.shape)
    shapes = GaussianMixture.infer_shapes(
        w.shape, locs.shape, cov.shape, covariance_type=None if ctype == "full" else ctype
    )
    assert shapes == (batch + b, e)  # hand-derived
    d = GaussianMixture(w, locs, cov, covariance_type=ctype)
    assert (d.batch_shape, d.event_shape) == shapes


def test_issue_reproducer_infer_shapes():
    # issue 10: returned batch shape (3,) (truth ()) and raised for the multivariate call
    assert GaussianMixture.infer_shapes((3,), (3,), (3,)) == ((), ())
    assert GaussianMixture.infer_shapes((3,), (3, 2), (3, 2, 2)) == ((), (2,))
    assert GaussianMixture.infer_shapes(
        (2, 3), (2, 3, 2), scale=(3, 2), covariance_type="diag"
    ) == ((2,), (2,))


@pytest.mark.numerics
def test_issue_reproducer_scan_matches_mixture_same_family():
    ys = jnp.array([-1.0, 0.2, 0.7, 3.0])

    def model(make):
        def step(c, y):
            numpyro.sample("y", make(), obs=y)
            return c, None

        scan(step, None, ys)

    w, mu, sd = jnp.ones(2) / 2, jnp.array([-1.0, 1.0]), jnp.ones(2)

    def log_density(make):  # one compiled program per model (op-by-op otherwise)
        return jax.jit(lambda: numpyro.infer.util.log_density(model, (make,), {}, {})[0])()

    got = log_density(lambda: GaussianMixture(w, mu, sd))
    ref = log_density(
        lambda: dist.MixtureSameFamily(dist.Categorical(probs=w), dist.Normal(mu, sd))
    )
    np.testing.assert_allclose(got, ref, rtol=1e-6 if not X64 else 1e-12)


def _build_and_log_prob(ctype, x, in_axes, axes):
    """jit(vmap building the mixture with ``out_axes=axes``, then vmap reading it with
    ``in_axes=axes``): one compiled program, the same batching rules as an eager vmap."""

    def run(w, m, c):
        bd = jax.vmap(
            lambda w, m, c: GaussianMixture(w, m, c, covariance_type=ctype),
            in_axes=(in_axes["weights"], in_axes["locs"], in_axes["covariance_matrix"]),
            out_axes=axes,
        )(w, m, c)
        return bd, jax.vmap(lambda m: m.log_prob(x), in_axes=(axes,))(bd)

    return jax.jit(run)


@pytest.mark.parametrize("ctype", ["full", "diag", "univariate"])
def test_vmap_over_each_argument(ctype):
    locs, cov, _, _ = CASES[ctype]
    d = _make(ctype)
    x = d.sample(jax.random.key(0))
    args = {"weights": W, "locs": locs, "covariance_matrix": cov}
    for name in args:
        batched = dict(args)
        batched[name] = np.stack([args[name], args[name]])
        in_axes = {k: (0 if k == name else None) for k in args}
        axes = vmap_over(d, **{name: 0})
        bd, lp = _build_and_log_prob(ctype, x, in_axes, axes)(
            batched["weights"], batched["locs"], batched["covariance_matrix"]
        )
        # only the vmapped argument's leaf carries the new axis
        assert bd.batch_shape == (2,)
        np.testing.assert_allclose(lp, jnp.stack([d.log_prob(x)] * 2), rtol=1e-6)
        # and it is usable directly: leaves broadcast to the batch shape on use
        np.testing.assert_allclose(bd.log_prob(x), lp, rtol=1e-6)


def test_promote_batch_shape_reads_the_leaves():
    # jit(vmap): one compiled program (an eager vmap compiles each batched operation);
    # weights and covariances passed in, so no value check runs on them in the trace
    d = jax.jit(jax.vmap(lambda m, w, c: GaussianMixture(w, m, c), in_axes=(0, None, None)))(
        np.stack([L32, L32 + 1.0]), W, C322
    )
    p = promote_batch_shape(d)
    assert p.batch_shape == (2,) and p.locs is d.locs


@pytest.mark.parametrize("ctype", list(CASES))
def test_expand(ctype):
    d = _make(ctype)
    e = d.expand((4, 1))
    assert isinstance(e, GaussianMixture) and e.batch_shape == (4, 1)
    ee = e.expand((3, 4, 5))
    assert ee.batch_shape == (3, 4, 5)
    x = d.sample(jax.random.key(0), (3,))  # (3,): the sample program of the test below
    xe = jnp.reshape(x, (3, 1, 1, 1) + d.event_shape)
    np.testing.assert_allclose(
        ee.log_prob(xe),
        np.broadcast_to(np.asarray(d.log_prob(x))[:, None, None, None], (3, 3, 4, 5)),
        rtol=1e-6,
    )
    # NumPyro's ExpandedDistribution message (its battery matches on it)
    with pytest.raises(ValueError, match=r"Cannot broadcast distribution of shape \(4, 1\)"):
        e.expand((3, 1))
    with pytest.raises(ValueError, match="Cannot broadcast distribution of shape"):
        e.expand((1,))


@pytest.mark.numerics
@pytest.mark.parametrize("ctype", list(CASES))
def test_log_prob_and_sample_against_mixture_same_family(ctype):
    d = _make(ctype)

    @jax.jit  # NumPyro's side, built and run in one compiled program (op by op, each
    def reference():  # operation would compile on its own)
        ref = _reference(ctype)
        x = ref.sample(jax.random.key(3), (50,))
        return x, ref.log_prob(x), ref.mean, ref.variance

    x, ref_lp, ref_mean, ref_var = reference()
    np.testing.assert_allclose(d.log_prob(x), ref_lp, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.mean, ref_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d.variance, ref_var, rtol=1e-5, atol=1e-6)


@pytest.mark.numerics
@pytest.mark.parametrize("ctype", list(CASES))
@pytest.mark.parametrize("use_jit", [False, True])
def test_output_types_and_dtypes(ctype, use_jit):
    d = _make(ctype)
    want = jnp.float64 if X64 else jnp.float32
    f = jax.jit if use_jit else (lambda fn: fn)

    def outputs():  # jitted: every output from one compiled program
        outs = {
            "sample": d.sample(jax.random.key(0), (3,)),
            "log_prob": d.log_prob(d.sample(jax.random.key(0))),
            "mean": d.mean,
            "variance": d.variance,
        }
        if ctype == "univariate":
            outs["cdf"] = d.cdf(0.3)
        return outs

    outs = f(outputs)()
    for name, out in outs.items():
        assert isinstance(out, jax.Array), name
        assert out.dtype == want, name
    for name in ("sample", "log_prob", "cdf"):
        ann = typing.get_type_hints(getattr(GaussianMixture, name)).get("return")
        assert ann is jax.Array, name
    for name in ("mean", "variance"):
        assert typing.get_type_hints(getattr(GaussianMixture, name).fget)["return"] is jax.Array


@pytest.mark.parametrize("ctype", ["full", "tied", "diag", "spherical"])
def test_multivariate_cdf_is_not_implemented(ctype):
    with pytest.raises(NotImplementedError, match="univariate"):
        _make(ctype).cdf(jnp.zeros(2))


def test_has_rsample_false_and_sample_pathwise_in_locs():
    d = _make("full")
    assert not d.has_rsample  # the component draw is discrete, as in MixtureSameFamily
    with pytest.raises(NotImplementedError):
        d.rsample(jax.random.key(0))
    # weights and covariances passed in (traced), so no value check runs on them in the trace
    g = jax.jit(
        jax.grad(lambda m, w, c: jnp.sum(GaussianMixture(w, m, c).sample(jax.random.key(0))))
    )(jnp.asarray(L32), W, C322)
    # one draw: d x / d μ_c = 1 for the drawn component's coordinates, 0 elsewhere
    assert sorted(np.asarray(g).sum(-1).tolist()) == [0.0, 0.0, 2.0]


def test_support_and_out_of_support_warning():
    d = _make("full", validate_args=True)
    assert d.support is constraints.real_vector
    with pytest.warns(UserWarning, match="Out-of-support"):
        lp = d.log_prob(jnp.array([jnp.nan, 0.0]))
    assert float(lp) == -np.inf
    with pytest.warns(UserWarning, match="Out-of-support"):
        jax.jit(lambda: _make("univariate", validate_args=True).log_prob(np.nan))()
    # validation off: no warning, NaN propagates as NumPyro's distributions do
    assert np.isnan(float(_make("full", validate_args=False).log_prob(jnp.array([jnp.nan, 0.0]))))


def test_data_closed_over_by_jit_is_checked_outside_the_program():
    """A mixture passed to jit, data closed over (a constant in the program): the support
    check runs outside, so XLA does not fold it over the whole constant (4.5 s of
    compilation at N = 10⁵, D = 64); values and the warning are NumPyro's."""
    d = _make("full", validate_args=True)
    x = np.random.default_rng(0).normal(size=(300, 2))
    f = jax.jit(lambda m: m.log_prob(x))
    np.testing.assert_allclose(f(d), d.log_prob(x), rtol=1e-6)
    # no (300, 2) boolean mask, nor its reduction, in the program
    assert "300x2xi1" not in f.lower(d).as_text()
    bad = x.copy()
    bad[7, 1] = np.nan
    with pytest.warns(UserWarning, match="Out-of-support"):
        lp = jax.jit(lambda m: m.log_prob(bad))(d)
    assert float(lp[7]) == -np.inf and bool(jnp.all(jnp.isfinite(jnp.delete(lp, 7))))


@pytest.mark.numerics
@pytest.mark.parametrize("ctype", list(CASES))
def test_the_mixture_interface_of_mixture_same_family(ctype):
    # NumPyro's mixtures expose mixture_size, mixture_dim, mixing_distribution,
    # component_distribution, component_mean/variance/sample/cdf and the *weighted*
    # component_log_probs (log w_k + log N_k). Code written for MixtureSameFamily (cluster
    # assignments by argmax of component_log_probs) must read the same numbers here;
    # before, component_log_probs was unweighted and the rest missing.
    one = _reference(ctype)
    ref = dist.MixtureSameFamily(  # batch (2,): NumPyro's expand would hide the interface
        dist.Categorical(probs=jnp.broadcast_to(jnp.asarray(W), (2, 3))),
        one.component_distribution.expand((2, 3)),
    )
    d = _make(ctype).expand((2,))
    x = ref.sample(jax.random.key(4), (7,))
    assert d.mixture_size == ref.mixture_size == 3
    assert d.mixture_dim == ref.mixture_dim
    # float32 log-densities of order 10: rtol 1e-5 is about 100 ulps
    np.testing.assert_allclose(d.component_log_probs(x), ref.component_log_probs(x), rtol=1e-5)
    np.testing.assert_allclose(
        jnp.exp(d.component_log_probs(x) - d.log_prob(x)[..., None]),
        d.responsibilities(x),
        rtol=1e-5,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        d.mixing_distribution.probs, ref.mixing_distribution.probs, rtol=1e-6
    )
    comp = d.component_distribution
    assert comp.batch_shape == ref.component_distribution.batch_shape == (2, 3)
    xe = jnp.expand_dims(x, d.mixture_dim)
    np.testing.assert_allclose(
        comp.log_prob(xe), ref.component_distribution.log_prob(xe), rtol=1e-5
    )
    np.testing.assert_allclose(d.component_mean, ref.component_mean, rtol=1e-6)
    np.testing.assert_allclose(d.component_variance, ref.component_variance, rtol=1e-5)
    key = jax.random.key(5)  # the same NumPyro component draws from the same key
    np.testing.assert_allclose(
        d.component_sample(key, (4,)), ref.component_sample(key, (4,)), rtol=1e-5, atol=1e-6
    )
    if ctype == "univariate":
        want = one.component_distribution.cdf(xe)  # (an expanded Normal has no cdf)
        np.testing.assert_allclose(d.component_cdf(x), want, rtol=1e-5, atol=1e-7)
    else:
        with pytest.raises(NotImplementedError):
            d.component_cdf(x)
