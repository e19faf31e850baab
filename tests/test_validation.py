"""Bad input gets a clear error at construction, outside jit; the messages are tested."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmmjax import GaussianMixture

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
