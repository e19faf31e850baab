"""What the scikit-learn estimators of :mod:`gmmjax.sklearn` share.

Meant for every estimator of this subpackage (``GaussianMixture`` here,
``BayesianGaussianMixture`` alongside): subclass :class:`MixtureBase`, implement
``fit_predict`` and ``_mixture()``, and reuse the helpers below.

* **Input validation** is scikit-learn's own: ``sklearn.utils.validation.validate_data``
  (``n_features_in_``, ``feature_names_in_``, NaN/inf, sparse, complex and empty
  inputs, with sklearn's messages), ``check_random_state``, ``check_is_fitted`` and
  ``_parameter_constraints`` checked by ``BaseEstimator._validate_params``.
* **dtype policy** (:func:`fit_dtype`): float64 data are fitted in float64 when
  ``jax_enable_x64`` is on and in float32 otherwise; float32 data stay float32.
  Fitted attributes are NumPy arrays of that dtype.
* **Randomness.** :func:`initial_labels` draws the initialization exactly as
  scikit-learn's ``BaseMixture._initialize_parameters`` does from the same
  ``random_state`` (``KMeans(n_init=1, random_state=rs)``,
  ``sklearn.cluster.kmeans_plusplus``, ``rs.uniform``, ``rs.choice``), so a fit
  with an integer ``random_state`` starts where scikit-learn's starts, and the EM
  that follows (JAX) agrees with it to rounding. :func:`jax_key` maps a
  ``random_state`` (None, int, ``RandomState``) to a JAX key for code that draws
  in JAX.
* **Scoring.** :meth:`MixtureBase.score_samples`, ``score``, ``predict`` and
  ``predict_proba`` evaluate the fitted mixture with one compiled function over
  chunks of rows (:func:`log_prob_resp`); row counts are padded to powers of two,
  so calls on data of similar sizes share the compiled code.
* ``mixture_`` returns the fitted :class:`gmmjax.GaussianMixture` (built from the
  fitted attributes each time, so it follows edits to them), ready for
  ``gmmjax.kl_estimate(a.mixture_, b.mixture_, key)``.
* ``sample`` draws with NumPy from ``random_state`` in scikit-learn's order, so it
  returns the very samples scikit-learn's ``sample`` returns for the same
  parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from gmmjax._params import to_device
from gmmjax._reduce import logsumexp_last
from gmmjax.fit.em import _bucket, _chunk_size

__all__ = ["MixtureBase", "fit_dtype", "initial_labels", "jax_key", "log_prob_resp"]


def fit_dtype(x: np.ndarray):
    """The JAX dtype a fit on ``x`` runs in: float32 data stay float32; float64 data
    are float64 under ``jax_enable_x64`` and float32 otherwise."""
    if x.dtype == np.float32:
        return jnp.float32
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def jax_key(random_state):
    """A JAX PRNG key from a scikit-learn ``random_state``.

    An int gives ``jax.random.key(int)`` (reproducible); a ``RandomState`` (or None,
    NumPy's global one) is advanced by one draw, as scikit-learn advances it.
    """
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return jax.random.key(int(random_state))
    rs = check_random_state(random_state)
    return jax.random.key(int(rs.randint(np.iinfo(np.int32).max)))


def initial_labels(x: np.ndarray, init_params: str, n_components: int, rs):
    """One initialization drawn as scikit-learn draws it, from ``RandomState`` ``rs``.

    Returns what :func:`gmmjax.fit_em` takes as ``init``: integer labels ``(N,)``
    (``-1`` for points that start with no responsibility) for ``kmeans``,
    ``k-means++`` and ``random_from_data``, responsibilities ``(N, K)`` for
    ``random``.
    """
    n = x.shape[0]
    if init_params == "kmeans":
        km = KMeans(n_clusters=n_components, n_init=1, random_state=rs).fit(x)
        return km.labels_.astype(np.int32)
    if init_params == "random":
        r = np.asarray(rs.uniform(size=(n, n_components)), dtype=x.dtype)
        return r / r.sum(axis=1)[:, None]
    if init_params == "random_from_data":
        idx = rs.choice(n, size=n_components, replace=False)
    else:  # "k-means++"
        _, idx = kmeans_plusplus(x, n_components, random_state=rs)
    labels = np.full(n, -1, np.int32)
    labels[idx] = np.arange(n_components, dtype=np.int32)
    return labels


@jax.jit
def _log_prob_resp_chunks(mixture, xs):
    def one(xc):
        wlp = mixture.component_log_probs(xc)
        lse = logsumexp_last(wlp)
        return lse, wlp - lse[:, None]

    return jax.lax.map(one, xs)


def log_prob_resp(mixture, x):
    """``(log p(x_n) (N,), log p(k | x_n) (N, K))`` as NumPy arrays, in chunks.

    Args:
      mixture: an unbatched (not univariate) `GaussianMixture` ``K`` × ``D``.
      x: ``(N, D)`` data (NumPy), cast to the mixture's dtype.
    """
    n, d = x.shape
    k = mixture.n_components
    c = _chunk_size(n, k, d, jnp.dtype(mixture.locs.dtype).itemsize)
    c = c if c < n else _bucket(n)
    n_pad = -n % c
    xd = np.asarray(x, mixture.locs.dtype)
    xp = np.concatenate([xd, np.zeros((n_pad, d), xd.dtype)])
    lse, log_resp = _log_prob_resp_chunks(mixture, to_device(xp.reshape(-1, c, d)))
    return np.asarray(lse).reshape(-1)[:n], np.asarray(log_resp).reshape(-1, k)[:n]


class MixtureBase(DensityMixin, BaseEstimator):
    """Scoring, sampling and ``mixture_`` shared by the mixture estimators.

    Subclasses set the fitted attributes ``weights_``, ``means_``, ``covariances_``
    and ``covariance_type``, and implement ``_mixture()`` (the fitted
    `gmmjax.GaussianMixture`) and ``fit_predict``.
    """

    @property
    def mixture_(self):
        """The fitted mixture as a :class:`gmmjax.GaussianMixture` (``K`` × ``D``).

        Raises:
          NotFittedError: before ``fit``.
        """
        check_is_fitted(self)
        return self._mixture()

    def fit(self, X, y=None):
        """Fit the mixture on ``X`` ``(n_samples, n_features)`` and return ``self``."""
        self.fit_predict(X, y)
        return self

    def _log_prob_resp(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return log_prob_resp(self._mixture(), X)

    def score_samples(self, X):
        """Log-likelihood of each sample, ``(n_samples,)``."""
        return self._log_prob_resp(X)[0]

    def score(self, X, y=None):
        """Mean log-likelihood per sample of ``X`` (a Python float)."""
        return float(np.mean(self.score_samples(X)))

    def predict(self, X):
        """The most probable component of each sample, ``(n_samples,)`` ints."""
        return np.argmax(self._log_prob_resp(X)[1], axis=1)

    def predict_proba(self, X):
        """Posterior probability of each component, ``(n_samples, n_components)``."""
        return np.exp(self._log_prob_resp(X)[1])

    def sample(self, n_samples=1):
        """Draw ``n_samples`` points from the fitted mixture (scikit-learn's draws).

        Returns:
          ``(X (n_samples, n_features) float64, y (n_samples,) component labels)``,
          sorted by component, as scikit-learn's ``sample``.
        """
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling requires at "
                "least one sample."
            )
        rng = check_random_state(self.random_state)
        w = np.asarray(self.weights_, np.float64)
        if self.weights_.dtype != np.float64:
            w = w / w.sum()  # float32 weights may sum to 1 + 1e-7, which numpy refuses
        counts = rng.multinomial(n_samples, w)
        means = np.asarray(self.means_, np.float64)
        cov = np.asarray(self.covariances_, np.float64)
        d = means.shape[1]
        t = self.covariance_type
        parts = []
        for k, c in enumerate(counts):  # K host draws in scikit-learn's order
            if t in ("full", "tied"):
                ck = cov[k] if t == "full" else cov
                parts.append(rng.multivariate_normal(means[k], ck, int(c)))
            else:
                parts.append(means[k] + rng.standard_normal(size=(c, d)) * np.sqrt(cov[k]))
        y = np.repeat(np.arange(len(counts)), counts)
        return np.vstack(parts), y
