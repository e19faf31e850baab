"""`BayesianGaussianMixture`: scikit-learn's variational Bayesian mixture, fitted in JAX.

A drop-in replacement for ``sklearn.mixture.BayesianGaussianMixture``: the same
constructor parameters and defaults, fitted attributes and methods, validated by
scikit-learn's own utilities (same errors). The fit itself is one compiled call of
:func:`gmmjax.fit.variational.fit_variational` (all restarts ``vmap``-ed, the
iterations a ``lax.while_loop``); the initial responsibilities are computed exactly
as scikit-learn's ``BaseMixture._initialize_parameters`` does (its ``KMeans``,
``kmeans_plusplus`` or ``RandomState`` draws, from ``random_state``), so that a fit
with the same ``random_state`` reproduces scikit-learn's to rounding in float64
(``jax.config.update("jax_enable_x64", True)``). Without x64 the fit runs in float32.

``mixture_`` is the fitted `gmmjax.GaussianMixture` of ``weights_``, ``means_`` and
``covariances_`` (the posterior-mean weights and the normalized Wishart scales), ready
for :func:`gmmjax.kl_estimate` and the other divergences. Note that ``score_samples``,
``predict`` and ``predict_proba`` use, as scikit-learn's, the variational expectations
``E[log π_k] + E[log N(x | μ_k, Λ_k⁻¹)]``, not the density of ``mixture_``.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as _SkBGMM
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted

from gmmjax._params import to_device
from gmmjax.fit.variational import (
    VBPriors,
    VBState,
    expected_mixture,
    expected_weights,
    fit_variational,
    weighted_log_prob_batch,
)

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def _validate_data(est, X, **kw):
        return est._validate_data(X, **kw)


__all__ = ["BayesianGaussianMixture"]


def _check_shape(param, shape, name):
    if param.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got {param.shape}"
        )


def _dtype():
    return jnp.result_type(float)


class BayesianGaussianMixture(DensityMixin, BaseEstimator):
    """Variational Bayesian estimation of a Gaussian mixture (scikit-learn's, in JAX).

    Parameters, attributes and methods are those of
    ``sklearn.mixture.BayesianGaussianMixture`` (see its documentation); the model
    and the updates are given in :mod:`gmmjax.fit.variational`. Additionally,
    ``mixture_`` returns the fitted `gmmjax.GaussianMixture`.

    Differences: the fit runs in float64 only under ``jax_enable_x64`` (float32
    otherwise, whatever the input dtype); ``verbose`` messages are printed after the
    compiled fit, for the kept restart, without per-iteration times.

    Example:
      >>> import numpy as np
      >>> X = np.array([[1, 2], [1, 4], [1, 0], [4, 2], [12, 4], [10, 7]])
      >>> bgm = BayesianGaussianMixture(n_components=2, random_state=42).fit(X)
      >>> bgm.means_.round(1).tolist()
      [[2.5, 2.3], [8.5, 4.5]]
      >>> bgm.predict([[0, 0], [9, 3]])
      array([0, 1])

    References:
      Bishop, *Pattern Recognition and Machine Learning* (2006), §10.2; Blei & Jordan,
      "Variational inference for Dirichlet process mixtures", Bayesian Analysis 1 (2006).
    """

    _parameter_constraints: dict = dict(_SkBGMM._parameter_constraints)

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    # ------------------------------------------------------------ priors
    def _check_parameters(self, X, xp=None):
        """Set the prior attributes (``*_prior_``) from the parameters and ``X``."""
        n_features = X.shape[1]
        k = self.n_components
        wcp = self.weight_concentration_prior
        self.weight_concentration_prior_ = 1.0 / k if wcp is None else wcp
        mpp = self.mean_precision_prior
        self.mean_precision_prior_ = 1.0 if mpp is None else mpp
        if self.mean_prior is None:
            self.mean_prior_ = X.mean(axis=0)
        else:
            self.mean_prior_ = check_array(
                self.mean_prior, dtype=[np.float64, np.float32], ensure_2d=False
            )
            _check_shape(self.mean_prior_, (n_features,), "means")
        dof = self.degrees_of_freedom_prior
        if dof is None:
            self.degrees_of_freedom_prior_ = n_features
        elif dof > n_features - 1.0:
            self.degrees_of_freedom_prior_ = dof
        else:
            raise ValueError(
                "The parameter 'degrees_of_freedom_prior' should be greater than "
                f"{n_features - 1}, but got {dof:.3f}."
            )
        self._check_covariance_prior(X)

    def _check_covariance_prior(self, X):
        n_features = X.shape[1]
        t = self.covariance_type
        if self.covariance_prior is None:
            if t in ("full", "tied"):
                self.covariance_prior_ = np.atleast_2d(np.cov(X.T))
            else:
                var = np.var(X, axis=0, ddof=1)
                self.covariance_prior_ = var if t == "diag" else var.mean()
        elif t == "spherical":
            self.covariance_prior_ = self.covariance_prior
        else:
            prior = check_array(
                self.covariance_prior, dtype=[np.float64, np.float32], ensure_2d=False
            )
            shape = (n_features, n_features) if t in ("full", "tied") else (n_features,)
            _check_shape(prior, shape, f"{t} covariance_prior")
            if t == "diag":
                if np.any(prior <= 0.0):
                    raise ValueError(f"'{t} precision' should be positive")
            elif not (np.allclose(prior, prior.T) and np.all(np.linalg.eigvalsh(prior) > 0.0)):
                raise ValueError(f"'{t} precision' should be symmetric, positive-definite")
            self.covariance_prior_ = prior

    def _priors(self) -> VBPriors:
        dt = _dtype()
        pri = (self.weight_concentration_prior_, self.mean_precision_prior_, self.mean_prior_)
        pri += (self.degrees_of_freedom_prior_, self.covariance_prior_)
        return VBPriors(*(to_device(v, dt) for v in pri))

    # ------------------------------------------------------------ initialization
    def _initial_resp(self, X, random_state):
        """scikit-learn's initial responsibilities (``BaseMixture._initialize_parameters``)."""
        n, k = X.shape[0], self.n_components
        resp = np.zeros((n, k), dtype=X.dtype)
        if self.init_params == "kmeans":
            km = KMeans(n_clusters=k, n_init=1, random_state=random_state).fit(X)
            resp[np.arange(n), km.labels_] = 1
        elif self.init_params == "random":
            resp = np.asarray(random_state.uniform(size=(n, k)), dtype=X.dtype)
            resp /= resp.sum(axis=1)[:, np.newaxis]
        elif self.init_params == "random_from_data":
            idx = random_state.choice(n, size=k, replace=False)
            resp[idx, np.arange(k)] = 1
        else:  # "k-means++"
            _, idx = kmeans_plusplus(X, k, random_state=random_state)
            resp[idx, np.arange(k)] = 1
        return resp

    def _fit_kwargs(self):
        return dict(
            covariance_type=self.covariance_type,
            weight_concentration_prior_type=self.weight_concentration_prior_type,
            priors=self._priors(),
            tol=self.tol,
            reg_covar=self.reg_covar,
        )

    def _initialize_parameters(self, X, random_state, xp=None):
        """Initialize the posterior from one draw of initial responsibilities."""
        resp = self._initial_resp(X, random_state)
        res = fit_variational(X, self.n_components, resp=resp, max_iter=0, **self._fit_kwargs())
        self._set_state(res.state)

    # ------------------------------------------------------------ state <-> attributes
    def _state(self) -> VBState:
        dt = _dtype()
        wc = self.weight_concentration_
        a, b = wc if isinstance(wc, tuple) else (wc, np.zeros_like(wc))
        parts = (a, b, self.mean_precision_, self.means_, self.degrees_of_freedom_)
        parts += (self.covariances_, self.precisions_cholesky_)
        return VBState(*(to_device(v, dt) for v in parts))

    def _set_state(self, st: VBState):
        npa = lambda a: np.asarray(a)[()]  # noqa: E731  (0-d arrays become numpy scalars)
        pt, t = self.weight_concentration_prior_type, self.covariance_type
        if pt == "dirichlet_process":
            self.weight_concentration_ = (npa(st.conc_a), npa(st.conc_b))
        else:
            self.weight_concentration_ = npa(st.conc_a)
        self.mean_precision_ = npa(st.mean_precision)
        self.means_ = npa(st.means)
        self.degrees_of_freedom_ = npa(st.dof)
        self.covariances_ = npa(st.covariances)
        self.precisions_cholesky_ = pc = npa(st.prec_chol)
        self.weights_ = npa(expected_weights(st, pt))
        if t in ("full", "tied"):
            self.precisions_ = pc @ np.swapaxes(pc, -1, -2)
        else:
            self.precisions_ = pc**2

    # ------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Estimate the variational posterior (``n_init`` restarts, the best kept).

        Returns:
          self.
        """
        self.fit_predict(X, y)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X, y=None):
        """Fit, then return the most probable component of each point ``(N,)``."""
        X = _validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        if X.shape[0] < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, n_samples = {X.shape[0]}"
            )
        self._check_parameters(X)
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        self.converged_ = False
        random_state = check_random_state(self.random_state)
        kw = self._fit_kwargs()
        if do_init:
            resp = np.stack([self._initial_resp(X, random_state) for _ in range(n_init)])
            res = fit_variational(X, self.n_components, resp=resp, max_iter=self.max_iter, **kw)
        else:
            state, lb = self._state(), self.lower_bound_
            res = fit_variational(
                X, self.n_components, state=state, lower_bound=lb, max_iter=self.max_iter, **kw
            )
        self._set_state(res.state)
        self.n_iter_ = res.n_iter
        self.converged_ = res.converged
        self.lower_bound_ = float(res.lower_bound) if self.max_iter > 0 else -np.inf
        self.lower_bounds_ = [float(v) for v in np.asarray(res.lower_bounds)]
        self._print_verbose(n_init)
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return np.asarray(res.labels).astype(np.intp)  # numpy's argmax dtype, as sklearn

    def _print_verbose(self, n_init):
        if not self.verbose:
            return
        for i in range(n_init):
            print(f"Initialization {i}")
        prev = -np.inf
        for i, lb in enumerate(self.lower_bounds_, start=1):
            if i % self.verbose_interval == 0:
                print(
                    f"  Iteration {i}"
                    + (f"\t ll change {lb - prev:.5f}" if self.verbose >= 2 else "")
                )
            prev = lb
        msg = "converged" if self.converged_ else "did not converge"
        extra = f"\t lower bound {self.lower_bound_:.5f}." if self.verbose >= 2 else ""
        print(f"Initialization {msg}.{extra}")

    # ------------------------------------------------------------ inference
    def _weighted_log_prob(self, X):
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False)
        t, pt = self.covariance_type, self.weight_concentration_prior_type
        # cast on the host: jnp.asarray(X, dtype) compiled a program per shape
        return weighted_log_prob_batch(np.asarray(X, _dtype()), self._state(), t, pt)

    def score_samples(self, X):
        """Per-point ``log Σ_k exp(E[log π_k] + E[log N(x | μ_k, Λ_k⁻¹)])`` ``(N,)``."""
        return np.asarray(logsumexp(self._weighted_log_prob(X), axis=1))

    def score(self, X, y=None):
        """Mean of :meth:`score_samples` over ``X`` (a float)."""
        return float(np.mean(self.score_samples(X)))

    def predict(self, X):
        """Most probable component of each point ``(N,)``."""
        return np.asarray(jnp.argmax(self._weighted_log_prob(X), axis=1)).astype(np.intp)

    def predict_proba(self, X):
        """Responsibilities ``(N, K)``."""
        return np.asarray(jax.nn.softmax(self._weighted_log_prob(X), axis=1))

    def sample(self, n_samples=1):
        """Draw ``(X (n_samples, D), y (n_samples,))`` from ``weights_, means_, covariances_``.

        Uses ``random_state`` as scikit-learn does (same draws for the same seed).
        """
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(
                # scikit-learn's message (which prints n_components)
                f"Invalid value for 'n_samples': {self.n_components} . The sampling "
                "requires at least one sample."
            )
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_)
        d = self.means_.shape[1]
        t = self.covariance_type
        parts = []
        covs = np.asarray(self.covariances_, np.float64)  # numpy checks PSD to 1e-8
        for k, (mean, c) in enumerate(zip(self.means_, counts, strict=True)):
            if t in ("full", "tied"):
                cov = covs[k] if t == "full" else covs
                parts.append(rng.multivariate_normal(mean, cov, int(c)))
            else:
                parts.append(
                    mean + rng.standard_normal(size=(c, d)) * np.sqrt(self.covariances_[k])
                )
        y = np.concatenate([np.full(int(c), k, dtype=np.int64) for k, c in enumerate(counts)])
        return np.vstack(parts), y

    @property
    def mixture_(self):
        """The fitted `gmmjax.GaussianMixture` (``weights_``, ``means_``, ``covariances_``)."""
        check_is_fitted(self)
        t, pt = self.covariance_type, self.weight_concentration_prior_type
        return expected_mixture(self._state(), t, pt)
