"""`GaussianMixture`: scikit-learn's estimator, fitted by :func:`gmmjax.fit_em`."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as _SkGaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils.validation import validate_data

from gmmjax._params import to_device
from gmmjax.fit import _check
from gmmjax.fit.em import EMResult, fit_em
from gmmjax.fit.scoring import n_parameters
from gmmjax.mixture import GaussianMixture as _Mixture
from gmmjax.sklearn._base import MixtureBase, fit_dtype, initial_labels, log_prob_resp

__all__ = ["GaussianMixture"]


_NOT_CONVERGED = (
    "Best performing initialization did not converge. Try different init parameters, "
    "or increase max_iter, tol, or check for degenerate data."
)


class GaussianMixture(MixtureBase):
    """Gaussian mixture fitted by EM: ``sklearn.mixture.GaussianMixture``, in JAX.

    A drop-in replacement: the same constructor parameters with the same meaning and
    defaults, the same fitted attributes, methods, warnings and errors, so
    ``from gmmjax.sklearn import GaussianMixture`` in place of
    ``from sklearn.mixture import GaussianMixture`` leaves the rest of the code
    unchanged. scikit-learn's own test modules ``test_gaussian_mixture.py`` and
    ``test_mixture.py`` pass against it (``tests/test_sklearn_suite.py``). In
    addition, ``mixture_`` hands over the fit as a :class:`gmmjax.GaussianMixture`
    for the divergences::

        kl = gmmjax.kl_estimate(gm_a.mixture_, gm_b.mixture_, jax.random.key(0))

    **How it fits.** The initialization is drawn exactly as scikit-learn draws it
    from ``random_state`` (its ``KMeans``, ``kmeans_plusplus`` or NumPy draws; see
    :mod:`gmmjax.sklearn._base`); every restart, iteration and M-step then runs in
    one compiled JAX function, :func:`gmmjax.fit_em` (restarts in parallel). From
    the same initialization the iterates agree with scikit-learn's to rounding
    (about 1e-13 in float64).

    **Precision.** float64 data are fitted in float64 when ``jax_enable_x64`` is on
    (``jax.config.update("jax_enable_x64", True)`` or ``JAX_ENABLE_X64=1``), and in
    float32 otherwise, which is faster but agrees with scikit-learn only to float32
    rounding; float32 data are fitted in float32. The fitted attributes are NumPy
    arrays of the dtype of the fit.

    **Differences.** ``verbose`` messages are printed after the compiled fit, for the
    kept initialization, with the mean time per iteration. Array-API inputs
    (``array_api_dispatch``) are not supported: pass NumPy arrays. With
    ``init_params="k-means++"`` or ``"random_from_data"`` (one seed point per
    component) scikit-learn's initial weights are ``1/n_samples`` each and do not sum
    to one; ours are normalized (``1/K``). The first E-step's responsibilities, hence
    every iterate, are the same; ``lower_bounds_[0]`` is higher than scikit-learn's by
    ``log(n_samples/K)``, and ``max_iter=0`` returns normalized ``weights_``. With
    those inits and ``covariance_type="tied"`` scikit-learn's initial covariance
    depends on the origin of the data (its formula assumes responsibilities that sum
    to one per point); ours is computed on centred data, so the fits can differ.

    Parameters (as scikit-learn's): ``n_components=1``, ``covariance_type="full"``
    (``"full"``, ``"tied"``, ``"diag"``, ``"spherical"``), ``tol=1e-3`` (on the
    change of the mean log-likelihood per sample), ``reg_covar=1e-6``,
    ``max_iter=100`` (0 returns the initialization), ``n_init=1``,
    ``init_params="kmeans"`` (``"kmeans"``, ``"k-means++"``, ``"random"``,
    ``"random_from_data"``), ``weights_init``, ``means_init``, ``precisions_init``
    (validated as scikit-learn does, with its messages), ``random_state``,
    ``warm_start=False`` (continue from the last fit; convergence is detected across
    calls), ``verbose=0``, ``verbose_interval=10``.

    Attributes (after ``fit``): ``weights_`` ``(K,)``, ``means_`` ``(K, D)``,
    ``covariances_``, ``precisions_``, ``precisions_cholesky_`` (scikit-learn's
    shapes per covariance type), ``converged_``, ``n_iter_``, ``lower_bound_``,
    ``lower_bounds_``, ``n_features_in_``, ``feature_names_in_`` (string column
    names only), and ``mixture_`` (the fitted :class:`gmmjax.GaussianMixture`).

    Example:
      >>> import numpy as np
      >>> from gmmjax.sklearn import GaussianMixture
      >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
      >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
      >>> gm.means_.round(3).tolist()
      [[10.0, 2.0], [1.0, 2.0]]
      >>> gm.predict([[0, 0], [12, 3]])
      array([1, 0])
      >>> gm.mixture_.n_components
      2

    References:
      scikit-learn's ``sklearn/mixture/_gaussian_mixture.py`` (the interface and
      its semantics); Dempster, Laird & Rubin, JRSS B 39 (1977) (EM).
    """

    # scikit-learn's own constraints for the same parameters
    _parameter_constraints: dict = dict(_SkGaussianMixture._parameter_constraints)

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
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
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    def fit_predict(self, X, y=None):
        """Fit on ``X`` ``(n_samples, n_features)``, then predict its labels.

        Fits ``n_init`` times (restarts in parallel) and keeps the restart with the
        highest final lower bound; warns ``ConvergenceWarning`` when that one did
        not converge (``max_iter > 0``). With ``warm_start`` a second call continues
        from the first.

        Returns:
          ``(n_samples,)`` component labels, equal to ``fit(X).predict(X)``.
        """
        self._validate_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        n, d = X.shape
        k = self.n_components
        if n < k:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {k}, n_samples = {n}"
            )
        # scikit-learn's checks (and messages), before anything is drawn
        if self.weights_init is not None:
            _check.check_weights(self.weights_init, k)
        if self.means_init is not None:
            _check.check_means(self.means_init, k, d)
        if self.precisions_init is not None:
            _check.check_precisions(self.precisions_init, self.covariance_type, k, d)

        do_init = not (self.warm_start and hasattr(self, "converged_"))
        kw = dict(
            covariance_type=self.covariance_type,
            max_iter=self.max_iter,
            tol=self.tol,
            reg_covar=self.reg_covar,
            weights_init=self.weights_init,
            means_init=self.means_init,
            precisions_init=self.precisions_init,
        )
        x = np.asarray(X, fit_dtype(X))  # host cast: fit_em works on NumPy data
        t0 = time.perf_counter()
        if not do_init:
            prev = EMResult(
                self._mixture(), np.nan, self.n_iter_, self.converged_, self.lower_bounds_
            )
            res = fit_em(x, k, warm_start=prev, **kw)
        elif all(v is not None for v in (self.weights_init, self.means_init, self.precisions_init)):
            res = fit_em(x, k, **kw)  # nothing to draw (scikit-learn skips it too)
        else:
            rs = check_random_state(self.random_state)
            inits = np.stack(
                [initial_labels(X, self.init_params, k, rs) for _ in range(self.n_init)]
            )
            res = fit_em(x, k, init=inits, **kw)
        elapsed = time.perf_counter() - t0

        self._set_result(res)
        if self.verbose:
            self._print_verbose(elapsed, do_init)
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(_NOT_CONVERGED, ConvergenceWarning, stacklevel=2)
        return np.argmax(log_prob_resp(self._mixture(), X)[1], axis=1)

    def _set_result(self, res: EMResult):
        mix = res.mixture
        t = self.covariance_type
        scale = np.asarray(mix.scale_param)
        self.weights_ = np.asarray(mix.weights)
        self.means_ = np.asarray(mix.locs)
        if t in ("full", "tied"):
            pc = np.asarray(mix.precisions_cholesky)
            self.covariances_ = scale @ np.swapaxes(scale, -1, -2)
            self.precisions_cholesky_ = pc
            self.precisions_ = pc @ np.swapaxes(pc, -1, -2)
        else:
            self.covariances_ = scale * scale
            self.precisions_cholesky_ = 1.0 / scale
            self.precisions_ = self.precisions_cholesky_**2
        self.converged_ = bool(res.converged)
        self.n_iter_ = int(res.n_iter)
        self.lower_bounds_ = np.asarray(res.lower_bounds)
        self.lower_bound_ = float(self.lower_bounds_[-1]) if self.n_iter_ else -np.inf

    def _mixture(self) -> _Mixture:
        t = self.covariance_type
        cov = np.asarray(self.covariances_)
        scale = np.linalg.cholesky(cov) if t in ("full", "tied") else np.sqrt(cov)
        leaves = (np.log(self.weights_), self.means_, scale)
        return _Mixture.from_params(*(to_device(a) for a in leaves), t)

    def _print_verbose(self, elapsed, do_init):
        lbs = self.lower_bounds_
        runs = self.n_init if do_init else 1
        per_iter = elapsed / max(1, runs * max(1, self.n_iter_))
        for i in range(runs):
            print(f"Initialization {i}")
        prev = -np.inf
        for it, lb in enumerate(lbs, start=1):
            if it % self.verbose_interval == 0:
                if self.verbose == 1:
                    print(f"  Iteration {it}")
                else:
                    print(
                        f"  Iteration {it}\t time lapse {per_iter:.5f}s\t ll change {lb - prev:.5f}"
                    )
            prev = lb
        msg = "converged" if self.converged_ else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {msg}.")
        else:
            print(
                f"Initialization {msg}. time lapse {elapsed:.5f}s\t "
                f"lower bound {self.lower_bound_:.5f}."
            )

    def _n_parameters(self) -> int:
        """Number of free parameters (scikit-learn's ``_n_parameters``)."""
        return n_parameters(self._mixture())

    def bic(self, X):
        """Bayesian information criterion ``-2 N·score(X) + p log N`` (lower is better)."""
        n = np.shape(X)[0]
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Akaike information criterion ``-2 N·score(X) + 2p`` (lower is better)."""
        return -2 * self.score(X) * np.shape(X)[0] + 2 * self._n_parameters()
