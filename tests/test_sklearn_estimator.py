"""`gmmjax.sklearn.GaussianMixture` against `sklearn.mixture.GaussianMixture`.

References: scikit-learn's estimator fitted from the same ``random_state`` (its own
initialization, its own EM, float64), scikit-learn's ``check_estimator`` battery, and
closed forms (the unique upper-triangular factor of a precision matrix). scikit-learn's
own mixture test modules run in ``tests/test_sklearn_suite.py``.
"""

import warnings
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGM
from sklearn.utils.estimator_checks import parametrize_with_checks

import gmmjax
from gmmjax.sklearn import GaussianMixture
from gmmjax.sklearn._base import jax_key

TYPES = ("full", "tied", "diag", "spherical")


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


# Compiled programs: `fit_em` compiles one per covariance type, init kind (drawn,
# given responsibilities or labels, or given parameters), number of restarts, max_iter
# bucket (one for every max_iter <= 128, the default 100 included) and padded data
# shape. The tests below keep to a few of those: 360 points x 3 features (padded to
# 512), K = 3, full covariances, n_init = 2 with drawn inits.


def _data(seed=0, n=(150, 120, 90)):
    rng = np.random.RandomState(seed)
    a = rng.normal(size=(3, 3))
    return np.concatenate(
        [
            rng.normal(size=(n[0], 3)) + 3.0,
            rng.normal(size=(n[1], 3)) * 0.6 - 2.0,
            rng.normal(size=(n[2], 3)) @ a,
        ]
    )


def _quiet(est, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(x)


ATTRS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


@pytest.mark.parametrize(
    "t, init",
    # all eight in CI; the fast suite keeps one dense and one diagonal (suite time)
    [
        pytest.param(
            t,
            i,
            marks=() if (t, i) in {("full", "kmeans"), ("diag", "random")} else pytest.mark.slow,
        )
        for t in TYPES
        for i in ("kmeans", "random")
    ],
)
def test_parity_with_sklearn_same_random_state(x64, t, init):
    # float64, the same random_state: the same initialization (drawn by sklearn's own
    # KMeans / RandomState) and the same EM, so only rounding separates the fits. The
    # issue's bound is 1e-10 (log-likelihood and parameters); observed ~1e-13.
    x = _data()
    kw = dict(
        n_components=3, covariance_type=t, init_params=init, random_state=1, n_init=2, tol=1e-6
    )
    ours, sk = GaussianMixture(**kw).fit(x), SkGM(**kw).fit(x)
    assert ours.n_iter_ == sk.n_iter_ and ours.converged_ == sk.converged_
    for name in ATTRS:
        got, want = getattr(ours, name), getattr(sk, name)
        assert got.dtype == np.float64 and got.shape == want.shape, name
        np.testing.assert_allclose(
            got, want, rtol=0, atol=1e-10 * max(1.0, np.abs(want).max()), err_msg=name
        )
    assert abs(ours.score(x) - sk.score(x)) < 1e-10
    assert abs(ours.lower_bound_ - sk.lower_bound_) < 1e-10
    np.testing.assert_allclose(ours.lower_bounds_, sk.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(ours.score_samples(x), sk.score_samples(x), rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.predict_proba(x), sk.predict_proba(x), rtol=0, atol=1e-10)
    np.testing.assert_array_equal(ours.predict(x), sk.predict(x))
    np.testing.assert_allclose(ours.bic(x), sk.bic(x), rtol=1e-12)
    np.testing.assert_allclose(ours.aic(x), sk.aic(x), rtol=1e-12)
    # sample(): the same NumPy draws in the same order from the same random_state
    xs, ys = ours.sample(50)
    xs_sk, ys_sk = sk.sample(50)
    np.testing.assert_array_equal(ys, ys_sk)
    np.testing.assert_allclose(xs, xs_sk, rtol=0, atol=1e-9)


@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_max_iter_zero_returns_sklearns_initialization(x64, init):
    # max_iter=0: no EM step, the initialization itself, which is drawn as sklearn
    # draws it (rounding only: 1e-12); no ConvergenceWarning, n_iter_ 0. For the
    # one-point-per-component inits sklearn's initial weights are 1/N each (they do not
    # sum to 1); ours are those normalized.
    x = _data(1)
    kw = dict(n_components=3, init_params=init, random_state=3, max_iter=0, n_init=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ours, sk = GaussianMixture(**kw).fit(x), SkGM(**kw).fit(x)
    assert ours.n_iter_ == 0 and not ours.converged_ and ours.lower_bound_ == -np.inf
    assert len(ours.lower_bounds_) == 0
    np.testing.assert_allclose(ours.weights_, sk.weights_ / sk.weights_.sum(), rtol=0, atol=1e-12)
    for name in ("means_", "covariances_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(sk, name), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "t, init",
    [
        pytest.param(t, i, marks=() if t == "full" else pytest.mark.slow)
        for t in ("full", "diag", "spherical")
        for i in ("k-means++", "random_from_data")
    ],
)
def test_parity_one_point_inits(x64, t, init):
    # the same iterates as sklearn (1e-10); its first lower bound is that of weights
    # 1/N instead of 1/K (above), so it is lower by log(N/K). That bound (~ -1e6) comes
    # from covariances equal to reg_covar = 1e-6 up to the rounding of a one-point
    # scatter (~1e-15·|x|²), a relative perturbation ~1e-8: hence rtol 1e-7 there.
    # n_init=2 (both keep the same restart): the compiled program of the parity test
    x = _data(9)
    kw = dict(
        n_components=3, covariance_type=t, init_params=init, random_state=4, tol=1e-6, n_init=2
    )
    ours, sk = _quiet(GaussianMixture(**kw), x), _quiet(SkGM(**kw), x)
    assert ours.n_iter_ == sk.n_iter_
    for name in ATTRS:
        want = getattr(sk, name)
        np.testing.assert_allclose(
            getattr(ours, name), want, rtol=0, atol=1e-10 * max(1.0, np.abs(want).max())
        )
    np.testing.assert_allclose(ours.lower_bounds_[1:], sk.lower_bounds_[1:], rtol=1e-10)
    shifted = ours.lower_bounds_[0] - np.log(len(x) / 3)
    np.testing.assert_allclose(shifted, sk.lower_bounds_[0], rtol=1e-7)


def test_warm_start_matches_sklearn_call_by_call(x64):
    # warm_start with max_iter=2: each call continues the last one; the convergence
    # test compares the first new lower bound with the last call's, so the call that
    # converges and its n_iter_ are sklearn's. The first call draws n_init=3
    # initializations (sklearn too), the later ones continue the kept one
    x = _data(2)
    kw = dict(n_components=3, warm_start=True, max_iter=2, random_state=0, tol=1e-5, n_init=3)
    ours, sk = GaussianMixture(**kw), SkGM(**kw)
    seen = []
    for _ in range(60):
        _quiet(ours, x), _quiet(sk, x)
        assert (ours.n_iter_, ours.converged_) == (sk.n_iter_, sk.converged_)
        np.testing.assert_allclose(ours.means_, sk.means_, rtol=0, atol=1e-9)
        seen.append(ours.converged_)
        if ours.converged_:
            break
    assert seen[-1] and not seen[0]  # it took several calls, and it converged


def test_precisions_init_gives_the_upper_triangular_factor(x64):
    # P with P Pᵀ = Λ and P upper triangular with a positive diagonal is unique; with
    # every init given and max_iter=0 the fit returns it (1e-12: one Cholesky)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3, 3))
    prec = a @ np.swapaxes(a, 1, 2) + np.eye(3)
    gm = GaussianMixture(
        3,
        weights_init=[0.3, 0.3, 0.4],
        means_init=np.zeros((3, 3)),
        precisions_init=prec,
        max_iter=0,
    ).fit(_data(3))
    p = gm.precisions_cholesky_
    np.testing.assert_array_equal(np.tril(p, -1), 0.0)
    assert np.all(np.diagonal(p, axis1=1, axis2=2) > 0)
    np.testing.assert_allclose(p @ np.swapaxes(p, 1, 2), prec, rtol=1e-12)
    np.testing.assert_allclose(gm.precisions_, prec, rtol=1e-12)


def test_no_initialization_when_every_parameter_is_given(x64):
    # sklearn's gh-26015: with weights, means and precisions all given nothing is drawn.
    # Both converge in 5 iterations (measured), so max_iter=16 gives the same iterates
    # as the default 100
    x = _data(4)
    kw = dict(
        weights_init=[0.3, 0.3, 0.4],
        means_init=x[[0, 200, 300]],
        precisions_init=np.stack([np.eye(3)] * 3),
        max_iter=16,
    )
    with mock.patch("gmmjax.sklearn.gaussian_mixture.initial_labels") as drawn:
        ours = _quiet(GaussianMixture(3, **kw), x)
    assert drawn.call_count == 0
    sk = _quiet(SkGM(3, **kw), x)
    assert ours.n_iter_ == sk.n_iter_
    np.testing.assert_allclose(ours.means_, sk.means_, atol=1e-10)


def test_mixture_property_hands_over_the_fit(x64):
    # mixture_ is a gmmjax.GaussianMixture with the fitted parameters: its log_prob is
    # sklearn's score_samples of the same fit (rounding, 1e-10), and it feeds the
    # divergences (KL(p‖p) = 0 exactly for the same samples)
    x = _data(5)
    ours = GaussianMixture(3, random_state=0, n_init=2).fit(x)
    sk = SkGM(3, random_state=0, n_init=2).fit(x)
    mix = ours.mixture_
    assert isinstance(mix, gmmjax.GaussianMixture) and mix.n_components == 3
    np.testing.assert_allclose(mix.log_prob(jnp.asarray(x)), sk.score_samples(x), atol=1e-10)
    est = gmmjax.kl_estimate(mix, mix, jax.random.key(0), num_samples=1000)
    assert float(est.value) == 0.0
    with pytest.raises(Exception, match="not fitted"):
        GaussianMixture().mixture_  # noqa: B018


def test_dtype_policy():
    # float32 unless jax_enable_x64 (then float64 data stay float64); float32 data stay
    # float32 either way. K = 3 and n_init = 2: the shapes of the parity test (float64)
    # and of the convergence-warning test (float32)
    x = _data(6)
    kw = dict(n_components=3, random_state=0, n_init=2)
    with jax.enable_x64(False):
        gm = GaussianMixture(**kw).fit(x)
        assert gm.means_.dtype == np.float32 and gm.covariances_.dtype == np.float32
    with jax.enable_x64(True):
        assert GaussianMixture(**kw).fit(x).means_.dtype == np.float64
        gm32 = GaussianMixture(**kw).fit(x.astype(np.float32))
        assert gm32.means_.dtype == np.float32
    # float32 fit: sklearn's float64 fit from the same init agrees to float32 rounding
    # (score to 1e-4 nats/sample: the sum of 360 float32 log-densities, relative ~1e-6)
    sk = SkGM(**kw).fit(x)
    assert abs(gm.score(x) - sk.score(x)) < 1e-4


def test_convergence_warning_and_verbose(capsys):
    # tol=0 never converges: all max_iter (the default 100) iterations run and the fit
    # warns. n_init=2 and the default max_iter share the dtype test's float32 program
    x = _data(7)
    kw = dict(n_components=3, random_state=0, n_init=2, tol=0)
    with pytest.warns(ConvergenceWarning, match="Best performing initialization did not converge"):
        GaussianMixture(**kw).fit(x)
    _quiet(GaussianMixture(**kw, verbose=2, verbose_interval=5), x)
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 20" in out and "ll change" in out
    assert "did not converge" in out


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(covariance_type="banana"), "The 'covariance_type' parameter of GaussianMixture"),
        (dict(n_components=0), "The 'n_components' parameter of GaussianMixture"),
        (dict(max_iter=-1), "The 'max_iter' parameter"),
        (dict(init_params="magic"), "The 'init_params' parameter"),
        (dict(n_components=500), "Expected n_samples >= n_components"),
        (dict(weights_init=[0.5, 0.6]), r"should be normalized, but got sum\(weights\) = 1.10000"),
        (
            dict(means_init=np.zeros((2, 5))),
            r"The parameter 'means' should have the shape of \(2, 3\)",
        ),
        (
            dict(covariance_type="tied", precisions_init=-np.eye(3)),
            "'tied precision' should be symmetric, positive-definite",
        ),
        (
            dict(covariance_type="diag", precisions_init=np.ones((3, 3))),
            "'diag precision' should have the shape",
        ),
    ],
)
def test_errors_are_sklearns(kwargs, match):
    x = _data(8)
    args = dict(n_components=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**args).fit(x)
    # and sklearn says the same (its own estimator, same arguments)
    with pytest.raises(ValueError, match=match.replace("of GaussianMixture", "")):
        SkGM(**args).fit(x)


def test_jax_key_mapping():
    # an int is reproducible; a RandomState advances (two draws differ)
    a, b = jax_key(3), jax_key(3)
    assert np.array_equal(jax.random.key_data(a), jax.random.key_data(b))
    rs = np.random.RandomState(0)
    assert not np.array_equal(jax.random.key_data(jax_key(rs)), jax.random.key_data(jax_key(rs)))


@parametrize_with_checks(
    [GaussianMixture(), GaussianMixture(covariance_type="diag", init_params="random")],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_estimator_checks(estimator, check):
    # scikit-learn's estimator battery (41 checks each); check_array_api_input skips
    # itself (array-API dispatch is not supported; see the class docstring)
    check(estimator)


def test_readme_estimator_block_runs():
    # the README's estimator example runs as written and its KL is a finite estimate
    # with its standard error (b is a shifted by 0.5 along x: KL clearly positive)
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "guide" / "fit.md").read_text()
    section = text[text.index("## scikit-learn estimator: `gmmjax.sklearn.GaussianMixture`") :]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(block, "README-sklearn-estimator", "exec"), scope)
    kl = scope["kl"]
    assert float(kl.value) > 3 * float(kl.stderr) > 0
    assert scope["labels"].shape == (3000,) and np.isfinite(scope["bic"])
