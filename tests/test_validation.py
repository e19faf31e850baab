"""Bad input gets a clear error; value checks follow validate_args; the messages are tested."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

from gmmjax import GaussianMixture
from gmmjax.mixture import checked

W = np.array([0.2, 0.3, 0.5])
LOCS = np.zeros((3, 2))
COV = np.broadcast_to(np.eye(2), (3, 2, 2)).copy()


def test_weights_not_on_simplex():
    with pytest.raises(ValueError, match="sum to 1.*normalize them"):
        GaussianMixture(np.array([0.2, 0.3, 0.6]), LOCS, covariance_matrix=COV)
    with pytest.raises(ValueError, match="nonnegative"):
        GaussianMixture(np.array([-0.2, 0.7, 0.5]), LOCS, covariance_matrix=COV)
    # logits need no normalization
    p = GaussianMixture(logits=np.array([1.0, 2.0, 3.0]), locs=LOCS, covariance_matrix=COV)
    np.testing.assert_allclose(np.sum(p.weights), 1.0, rtol=1e-6)


def test_shapes_that_disagree():
    with pytest.raises(ValueError, match=r"locs must have shape \(\.\.\., K, D\) with K=3"):
        GaussianMixture(W, np.zeros((4, 2)), covariance_matrix=COV)
    with pytest.raises(ValueError, match=r"`covariance_matrix` must have shape .*\(3, 2, 2\)"):
        GaussianMixture(W, LOCS, covariance_matrix=np.eye(2))
    with pytest.raises(ValueError, match=r"\(3, 2\) for covariance_type='diag'"):
        GaussianMixture(W, LOCS, covariance_matrix=np.ones(3), covariance_type="diag")
    with pytest.raises(ValueError, match="do not broadcast"):
        GaussianMixture(np.tile(W, (2, 1)), np.zeros((3, 3, 2)), covariance_matrix=COV)
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        GaussianMixture(W, LOCS, covariance_matrix=COV, covariance_type="banana")
    with pytest.raises(TypeError, match="exactly one of covariance_matrix"):
        GaussianMixture(W, LOCS)
    with pytest.raises(TypeError, match="exactly one of covariance_matrix"):
        GaussianMixture(W, LOCS, covariance_matrix=COV, scale_tril=COV)
    with pytest.raises(TypeError, match="exactly one of weights or logits"):
        GaussianMixture(W, LOCS, covariance_matrix=COV, logits=W)
    with pytest.raises(TypeError, match="pass scale_tril="):
        GaussianMixture(W, LOCS, scale=COV)


@pytest.mark.parametrize(
    "kw,value,ctype",
    [
        ("covariance_matrix", np.array([[[1.0, 2.0], [2.0, 1.0]]] * 3), "full"),  # indefinite
        ("covariance_matrix", np.array([[1.0, 2.0], [2.0, 1.0]]), "tied"),
        ("covariance_matrix", np.array([[1.0, -1.0]] * 3), "diag"),
        ("covariance_matrix", np.array([1.0, 0.0, 1.0]), "spherical"),
        ("scale_tril", np.array([[[-1.0, 0.0], [0.0, 1.0]]] * 3), "full"),
        ("precision_matrix", np.array([[[1.0, 2.0], [2.0, 1.0]]] * 3), "full"),
    ],
)
def test_not_positive_definite(kw, value, ctype):
    with pytest.raises(
        ValueError, match="not positive definite.*add a small multiple of the identity"
    ):
        GaussianMixture(W, LOCS, covariance_type=ctype, **{kw: value})


def test_not_symmetric():
    c = COV.copy()
    c[:, 0, 1] = 0.5
    with pytest.raises(ValueError, match="not symmetric"):
        GaussianMixture(W, LOCS, covariance_matrix=c)


@pytest.mark.parametrize("field", ["weights", "locs", "covariance_matrix"])
def test_nan_parameters(field):
    args = {"weights": W.copy(), "locs": LOCS.copy(), "covariance_matrix": COV.copy()}
    args[field].flat[0] = np.nan
    with pytest.raises(ValueError, match=f"`{field}` contains 1 NaN or infinite"):
        GaussianMixture(args["weights"], args["locs"], covariance_matrix=args["covariance_matrix"])


def test_log_prob_last_dimension_must_be_d():
    p = GaussianMixture(W, LOCS, covariance_matrix=COV)
    with pytest.raises(ValueError, match=r"last dimension 3 but the mixture is 2-dimensional"):
        p.log_prob(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="does not broadcast against the batch shape"):
        p.expand((4,)).log_prob(np.zeros((5, 2)))


def test_checks_skip_under_jit_and_construction_works_there():
    # inside jit the values are unknown: the mixture builds, and log_prob is usable
    @jax.jit
    def f(w):
        return GaussianMixture(w, LOCS, covariance_matrix=COV).log_prob(jnp.zeros(2))

    assert np.isfinite(float(f(jnp.asarray(W))))


# ------------------------------------------------ issue 16: input with a wrong meaning


def test_spherical_with_a_k_by_d_array_is_rejected():
    locs = np.zeros((2, 2))  # K = D = 2: (K, D) variances would read as a batch of 2
    with pytest.raises(ValueError, match=r"spherical.*would add batch dimensions \(2,\).*'diag'"):
        GaussianMixture(np.ones(2) / 2, locs, np.ones((2, 2)), covariance_type="spherical")
    # K != D: the shape check names the fix too
    with pytest.raises(
        ValueError, match=r"shape \(\.\.\.,\) \+ \(3,\).*use covariance_type='diag'"
    ):
        GaussianMixture(W, LOCS, np.ones((3, 2)), covariance_type="spherical")
    # a real batch (locs carry it too) is still fine
    p = GaussianMixture(
        np.ones(2) / 2, np.zeros((3, 2, 2)), np.ones((3, 2)), covariance_type="spherical"
    )
    assert p.batch_shape == (3,)


def test_scale_tril_with_a_nonzero_upper_triangle_is_rejected():
    lt = np.broadcast_to(np.array([[1.0, 0.5], [0.2, 1.0]]), (3, 2, 2))
    with pytest.raises(ValueError, match=r"lower triangular.*largest \|L_ij\| = 0\.5.*jnp\.tril"):
        GaussianMixture(W, LOCS, scale_tril=lt)
    # validation off: NumPyro's contract, the lower triangle is used
    p = GaussianMixture(W, LOCS, scale_tril=lt, validate_args=False)
    q = GaussianMixture(W, LOCS, scale_tril=np.tril(lt))
    np.testing.assert_allclose(p.log_prob(np.ones(2)), q.log_prob(np.ones(2)), rtol=1e-6)


# -------------------------------------- value checks follow validate_args (NumPyro's way)

BAD = {
    "weights": dict(weights=np.array([0.2, 0.3, 0.6]), locs=LOCS, covariance_matrix=COV),
    "negative": dict(weights=np.array([-0.2, 0.7, 0.5]), locs=LOCS, covariance_matrix=COV),
    "nan_locs": dict(weights=W, locs=np.full((3, 2), np.nan), covariance_matrix=COV),
    "not_pd": dict(weights=W, locs=LOCS, covariance_matrix=-COV),
    "zero_scale": dict(weights=W, locs=LOCS, scale=np.zeros((3, 2)), covariance_type="diag"),
}
MESSAGES = {
    "weights": "sum to 1",
    "negative": "nonnegative",
    "nan_locs": "`locs` contains",
    "not_pd": "not positive definite",
    "zero_scale": "not positive definite",
}


@pytest.mark.parametrize("case", list(BAD))
def test_value_checks_are_off_when_validation_is_off(case):
    GaussianMixture(**BAD[case], validate_args=False)
    with numpyro.validation_enabled(False):
        GaussianMixture(**BAD[case])
    with pytest.raises(ValueError, match=MESSAGES[case]):
        GaussianMixture(**BAD[case], validate_args=True)


@pytest.mark.parametrize("case", list(BAD))
def test_concrete_parameters_are_checked_inside_jit(case):
    # NumPyro checks constants closed over in jit (ensure_compile_time_eval)
    with pytest.raises(ValueError, match=MESSAGES[case]):
        jax.jit(lambda: GaussianMixture(**BAD[case], validate_args=True).log_prob(np.zeros(2)))()


def _log_prob_at_zero(ctype):
    def f(arrays):
        return GaussianMixture(**arrays, covariance_type=ctype).log_prob(jnp.zeros(2))

    return f


# built once, so that cases with the same argument shapes reuse one compiled program
_PLAIN = {ctype: jax.jit(_log_prob_at_zero(ctype)) for ctype in (None, "diag")}
_CHECKED = {ctype: checked(_log_prob_at_zero(ctype)) for ctype in (None, "diag")}


@pytest.mark.parametrize("case", list(BAD))
def test_checked_mode_catches_traced_parameters(case):
    kw = dict(BAD[case])
    ctype = kw.pop("covariance_type", None)
    arrays = {k: jnp.asarray(v) for k, v in kw.items()}
    # plain jit: traced values cannot be inspected, the result is silently wrong or NaN
    _PLAIN[ctype](arrays)
    with pytest.raises(ValueError, match=MESSAGES[case]):
        _CHECKED[ctype](arrays)
    good = {"weights": W, "locs": LOCS, "covariance_matrix": COV}
    np.testing.assert_allclose(
        _CHECKED[None](good),  # covariance_type=None: the default
        GaussianMixture(**good).log_prob(jnp.zeros(2)),
        rtol=1e-6,
    )


def test_explicit_validate_args_follows_numpyro():
    p = GaussianMixture(np.array([0.2, 0.3, 0.6]), LOCS, COV, validate_args=False)
    p.validate_args()  # the stored (normalized) parameters are valid
    bad = GaussianMixture(W, LOCS, -COV, validate_args=False)  # Cholesky of -I is NaN
    with pytest.raises(ValueError, match="not positive definite"):
        bad.validate_args()
    with pytest.raises(RuntimeError, match="Cannot validate arguments inside jitted code"):
        jax.jit(lambda m: m.validate_args())(p)
