"""gmmjax.sklearn.BayesianGaussianMixture against scikit-learn's, and its own contracts.

Reference: ``sklearn.mixture.BayesianGaussianMixture`` fitted with the same
``random_state`` (hence the same initial responsibilities: our estimator draws them
with scikit-learn's own KMeans/RandomState calls), and scipy for densities.
Tolerances: float64 (``JAX_ENABLE_X64=1``) agrees to rounding (1e-10 asked, ~1e-13
measured); float32 runs the same iterations in single precision, whose rounding
(6e-8 relative) grows over the iterations to ~1e-5 on these well-separated data, so
2e-3 (relative where stated) leaves room without hiding a wrong update (a wrong term
moves the parameters by O(1)).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.mixture import BayesianGaussianMixture as SkBGMM  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402

import gmmjax  # noqa: E402
from gmmjax.fit.variational import expected_weights, fit_variational  # noqa: E402
from gmmjax.sklearn.bayesian_mixture import BayesianGaussianMixture  # noqa: E402

TYPES = ["full", "tied", "diag", "spherical"]
PRIORS = ["dirichlet_process", "dirichlet_distribution"]
# every covariance type x prior runs in CI; two of them in the fast suite (one per prior,
# one dense and one diagonal type), the rest behind the `slow` marker (suite time)
PARITY_GRID = [
    pytest.param(t, p, marks=() if (t, p) in FAST else pytest.mark.slow)
    for FAST in [{("full", "dirichlet_process"), ("diag", "dirichlet_distribution")}]
    for t in ["full", "tied", "diag", "spherical"]
    for p in PRIORS
]
X64 = jax.config.jax_enable_x64
ATOL = 1e-10 if X64 else 2e-3
RTOL_LB = 1e-11 if X64 else 1e-4


def _data(seed=0, n=240, d=3):
    rng = np.random.RandomState(seed)
    centers = np.array([[0.0, 0.0, 0.0], [6.0, 1.0, -2.0], [-5.0, 4.0, 3.0]])[:, :d]
    labels = rng.randint(0, 3, n)
    a = rng.randn(3, d, d) * 0.4 + np.eye(d)
    x = centers[labels] + np.einsum("nij,nj->ni", a[labels], rng.randn(n, d))
    return x


X = _data()
# Compiled programs: `fit_variational` compiles one per covariance type, prior type,
# n_components, max_iter bucket (128 up to max_iter 128, then 512 up to 512), number of
# restarts and data shape. Most tests below fit X with K = 5, full covariances and the
# Dirichlet-process prior, at max_iter 500 or at max_iter <= 128, so that they share
# the programs of the parity tests instead of compiling their own.


def _pair(**kw):
    kw = {"n_components": 5, "random_state": 0, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = BayesianGaussianMixture(**kw).fit(X)
        ref = SkBGMM(**kw).fit(X)
    return ours, ref


def _close(a, b, atol=ATOL):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=atol)


ATTRS = [
    "weights_",
    "means_",
    "covariances_",
    "precisions_",
    "precisions_cholesky_",
    "mean_precision_",
    "degrees_of_freedom_",
]


@pytest.mark.numerics
@pytest.mark.parametrize("cov, prior_type", PARITY_GRID)
def test_parity_with_sklearn(cov, prior_type):
    # tol=0: both run all 25 iterations (no convergence test can tip differently)
    ours, ref = _pair(
        covariance_type=cov, weight_concentration_prior_type=prior_type, max_iter=25, tol=0.0
    )
    assert ours.n_iter_ == ref.n_iter_ == 25
    assert ours.converged_ is ref.converged_ is False
    # precisions scale like 1/variance; the data variances here are O(1) (precisions O(1))
    for name in ATTRS:
        _close(getattr(ours, name), getattr(ref, name))
    wc_o, wc_r = ours.weight_concentration_, ref.weight_concentration_
    if prior_type == "dirichlet_process":
        assert isinstance(wc_o, tuple) and len(wc_o) == 2
        _close(wc_o[0], wc_r[0], ATOL * 300)  # concentrations are counts, up to N = 240
        _close(wc_o[1], wc_r[1], ATOL * 300)
    else:
        _close(wc_o, wc_r, ATOL * 300)
    lb_ref = float(np.ravel(ref.lower_bound_)[0])
    assert abs(ours.lower_bound_ - lb_ref) <= RTOL_LB * abs(lb_ref)
    np.testing.assert_allclose(
        ours.lower_bounds_, np.ravel(ref.lower_bounds_), rtol=RTOL_LB, atol=0
    )
    # per-point quantities: log-probabilities O(10), responsibilities in [0, 1]
    _close(ours.score_samples(X), ref.score_samples(X), ATOL * 10)
    _close(ours.predict_proba(X), ref.predict_proba(X))
    assert abs(ours.score(X) - ref.score(X)) <= ATOL * 10
    for name in ["weight_concentration_prior_", "mean_precision_prior_", "mean_prior_"]:
        _close(getattr(ours, name), getattr(ref, name), 1e-12)
    _close(ours.degrees_of_freedom_prior_, ref.degrees_of_freedom_prior_, 0)
    _close(ours.covariance_prior_, ref.covariance_prior_, 1e-12)


@pytest.mark.numerics
@pytest.mark.parametrize(
    "init", ["random", pytest.param("random_from_data", marks=pytest.mark.slow), "k-means++"]
)
def test_parity_other_inits_and_restarts(init):
    ours, ref = _pair(covariance_type="diag", init_params=init, n_init=3, max_iter=400)
    # same restart kept, same iterations, same convergence
    assert ours.n_iter_ == ref.n_iter_ and ours.converged_ == ref.converged_
    for name in ATTRS:
        _close(getattr(ours, name), getattr(ref, name), ATOL * 10)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


@pytest.mark.numerics
def test_convergence_by_tol_matches_sklearn():
    # float32 resolves the bound (magnitude ~1e3) to ~1e-4 only: a change near tol can
    # tip either way there, so float32 checks a coarser tol and allows one iteration more
    ours, ref = _pair(covariance_type="full", tol=1e-6 if X64 else 1e-1, max_iter=500)
    assert ref.converged_ and ours.converged_
    assert abs(ours.n_iter_ - ref.n_iter_) <= (0 if X64 else 1)
    _close(ours.means_, ref.means_, ATOL * 10)
    assert len(ours.lower_bounds_) == ours.n_iter_
    # the bound never decreases (coordinate ascent), up to rounding
    assert np.all(np.diff(ours.lower_bounds_) >= -1e-9 * abs(ours.lower_bound_))


@pytest.mark.numerics
@pytest.mark.parametrize("prior_type", PRIORS)
def test_warm_start_matches_sklearn(prior_type):
    kw = dict(
        n_components=4,
        covariance_type="tied",
        weight_concentration_prior_type=prior_type,
        warm_start=True,
        max_iter=3,
        tol=0.0,
        random_state=0,
    )
    ours, ref = BayesianGaussianMixture(**kw), SkBGMM(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(3):
            ours.fit(X)
            ref.fit(X)
            assert ours.n_iter_ == ref.n_iter_ == 3
            _close(ours.means_, ref.means_)
            _close(ours.covariances_, ref.covariances_)
            lb_ref = float(np.ravel(ref.lower_bound_)[0])
            assert abs(ours.lower_bound_ - lb_ref) <= RTOL_LB * abs(lb_ref)
    # with a loose tol the continued fit detects convergence across calls
    ours.set_params(tol=1e3)
    ours.fit(X)
    assert ours.converged_ and ours.n_iter_ == 1


def test_max_iter_zero_returns_the_initialization():
    ours, ref = _pair(covariance_type="spherical", max_iter=0)
    assert ours.n_iter_ == 0 and ours.lower_bound_ == -np.inf and ours.lower_bounds_ == []
    assert not ours.converged_
    _close(ours.means_, ref.means_, 1e-4)


def test_convergence_warning():
    est = BayesianGaussianMixture(n_components=5, max_iter=2, tol=0.0, random_state=0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        est.fit(X)


def test_fit_predict_is_predict_after_fit():
    est = BayesianGaussianMixture(n_components=5, random_state=1, max_iter=500)
    labels = est.fit_predict(X)
    np.testing.assert_array_equal(labels, est.predict(X))
    assert labels.shape == (X.shape[0],)


def test_score_samples_is_logsumexp_of_the_variational_terms():
    # independent recomputation with scipy of scikit-learn's formula for the diag type
    from scipy.special import digamma

    est = BayesianGaussianMixture(
        n_components=5,
        covariance_type="diag",
        weight_concentration_prior_type="dirichlet_distribution",
        random_state=0,
    ).fit(X)  # converges in 76 iterations (measured); the parity test's program
    d = X.shape[1]
    a = est.weight_concentration_
    log_w = digamma(a) - digamma(a.sum())
    cols = []
    for k in range(5):
        var = est.covariances_[k]
        lg = multivariate_normal(est.means_[k], np.diag(var)).logpdf(X)
        lg -= 0.5 * d * np.log(est.degrees_of_freedom_[k])
        log_lambda = d * np.log(2.0) + sum(
            digamma(0.5 * (est.degrees_of_freedom_[k] - i)) for i in range(d)
        )
        cols.append(lg + 0.5 * (log_lambda - d / est.mean_precision_[k]) + log_w[k])
    ref = logsumexp(np.stack(cols, 1), axis=1)
    tol = 1e-9 if X64 else 1e-3  # float32 log-densities of magnitude ~10
    np.testing.assert_allclose(est.score_samples(X), ref, rtol=0, atol=tol)


@pytest.mark.parametrize(
    "cov, prior_type",
    # the prior type of each covariance type is that of its fast parity case, whose
    # compiled programs (K = 5) these fits share; it changes only the weights
    [
        ("full", "dirichlet_process"),
        pytest.param("tied", "dirichlet_process", marks=pytest.mark.slow),
        ("diag", "dirichlet_distribution"),
        pytest.param("spherical", "dirichlet_process", marks=pytest.mark.slow),
    ],
)
def test_mixture_matches_fitted_attributes_and_feeds_the_divergences(cov, prior_type):
    k_ = 5
    kw = dict(n_components=k_, covariance_type=cov, weight_concentration_prior_type=prior_type)
    # both fits converge within the default max_iter (15 to 76 iterations, measured),
    # the max_iter bucket of the parity tests
    est = BayesianGaussianMixture(**kw, random_state=0).fit(X)
    m = est.mixture_
    assert isinstance(m, gmmjax.GaussianMixture)
    c = est.covariances_
    covs = {
        "full": lambda: c,
        "tied": lambda: np.broadcast_to(c, (k_, 3, 3)),
        "diag": lambda: np.stack([np.diag(v) for v in c]),
        "spherical": lambda: np.stack([v * np.eye(3) for v in c]),
    }[cov]()
    dens = sum(
        est.weights_[k] * multivariate_normal(est.means_[k], covs[k]).pdf(X[:20]) for k in range(k_)
    )
    tol = 1e-10 if X64 else 1e-4  # relative, on log-densities
    np.testing.assert_allclose(np.asarray(m.log_prob(jnp.asarray(X[:20]))), np.log(dens), rtol=tol)
    other = BayesianGaussianMixture(**kw, random_state=0).fit(X + 1.0)
    kl = gmmjax.kl_estimate(est.mixture_, other.mixture_, jax.random.key(0))
    assert np.isfinite(float(kl.value)) and float(kl.value) > 0


def test_sample_matches_sklearn_draws():
    ours, ref = _pair(covariance_type="full", max_iter=500)
    xs_o, ys_o = ours.sample(50)
    xs_r, ys_r = ref.sample(50)
    np.testing.assert_array_equal(ys_o, ys_r)
    # same RandomState draws pushed through parameters equal to ATOL
    _close(xs_o, xs_r, ATOL * 100)
    with pytest.raises(ValueError, match="The sampling requires at least one sample"):
        ours.sample(0)


def test_errors_are_sklearns():
    with pytest.raises(NotFittedError, match="is not fitted yet"):
        BayesianGaussianMixture().predict(X)
    with pytest.raises(InvalidParameterError, match="covariance_type"):
        BayesianGaussianMixture(covariance_type="bogus").fit(X)
    with pytest.raises(InvalidParameterError, match="weight_concentration_prior_type"):
        BayesianGaussianMixture(weight_concentration_prior_type="x").fit(X)
    with pytest.raises(ValueError, match="should be greater than 2, but got 1.500"):
        BayesianGaussianMixture(degrees_of_freedom_prior=1.5).fit(X)
    with pytest.raises(ValueError, match="Expected n_samples >= n_components"):
        BayesianGaussianMixture(n_components=5).fit(X[:4])
    with pytest.raises(ValueError, match="'means' should have the shape of"):
        BayesianGaussianMixture(mean_prior=np.zeros(2)).fit(X)
    with pytest.raises(ValueError, match="'full covariance_prior' should have the shape"):
        BayesianGaussianMixture(covariance_prior=np.eye(2)).fit(X)
    bad = -np.eye(3)
    with pytest.raises(ValueError, match="symmetric, positive-definite"):
        BayesianGaussianMixture(covariance_prior=bad).fit(X)
    with pytest.raises(ValueError, match="'diag precision' should be positive"):
        BayesianGaussianMixture(covariance_type="diag", covariance_prior=-np.ones(3)).fit(X)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        BayesianGaussianMixture().fit(np.full((4, 2), np.nan))
    est = BayesianGaussianMixture(n_components=5, random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :2])


def test_params_and_clone():
    est = BayesianGaussianMixture(n_components=4, weight_concentration_prior=0.3)
    params = est.get_params()
    assert params == SkBGMM(n_components=4, weight_concentration_prior=0.3).get_params()
    est.set_params(covariance_type="diag")
    assert clone(est).get_params()["covariance_type"] == "diag"


def test_fit_variational_with_jax_init():
    # the function form, initialized in JAX (no sklearn): the DP prior empties the two
    # extra components (expected weights 0.004 and 0.001, measured)
    res = fit_variational(jnp.asarray(X), 5, key=jax.random.key(0), max_iter=500, tol=1e-6)
    assert res.converged
    w = np.asarray(expected_weights(res.state, "dirichlet_process"))
    assert int(np.sum(w > 0.05)) == 3
    assert res.labels.shape == (X.shape[0],)
    with pytest.raises(ValueError, match="give resp, state or a PRNG key"):
        fit_variational(X, 3)


def test_ill_defined_scale_raises_sklearns_message():
    # no prior scale (W0^-1 = 0, bypassing the estimator's checks) and reg_covar=0: a
    # component that holds one repeated point has a singular scale matrix
    from gmmjax.fit.variational import VBPriors

    x = np.repeat(np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]]), 10, axis=0)
    resp = np.repeat(np.eye(3), 10, axis=0)
    pri = VBPriors(1.0 / 3, 1.0, x.mean(0), 2.0, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="ill-defined empirical covariance.*increase reg_covar"):
        fit_variational(x, 3, priors=pri, resp=resp, reg_covar=0.0, max_iter=5)


def test_verbose_prints_sklearns_messages(capsys):
    BayesianGaussianMixture(
        n_components=5, verbose=2, verbose_interval=1, random_state=0, max_iter=500
    ).fit(X)
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 1\t ll change" in out
    assert "Initialization converged." in out and "lower bound" in out
