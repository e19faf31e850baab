"""Expectation–maximization for Gaussian mixtures, at scikit-learn parity.

:func:`fit_em` runs the whole fit (initialization, every restart, every
iteration, the choice of the best restart) as one compiled function: restarts
are ``vmap``-ed and iterations are a ``lax.while_loop``. The E-step is the one
kernel :func:`gmmjax.gaussian.log_gaussian_kernel`; data pass through it in
chunks, so memory stays bounded for any number of points.

Convergence follows ``sklearn.mixture.GaussianMixture``: the lower bound of
iteration ``i`` is the mean log-likelihood of the parameters *entering* that
iteration, and the fit stops when it changes by less than ``tol``. Given the same
initial parameters, the iterates agree with scikit-learn's to rounding.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gmmjax.fit import _stats
from gmmjax.fit._sharded import shard_data
from gmmjax.fit.init import INITS, initial_responsibilities
from gmmjax.fit.scoring import aic, bic, predict, predict_proba, score
from gmmjax.mixture import GaussianMixture

__all__ = ["EMResult", "fit_em"]

_TYPES = ("full", "tied", "diag", "spherical")
_FAIL_MSG = (
    "EM failed: a component covariance stopped being positive definite (a component "
    "collapsed onto one point or onto duplicated points, or the data are degenerate). "
    "Increase reg_covar (now {reg:g}), decrease n_components, or scale the data"
)


class EMResult(NamedTuple):
    """The outcome of :func:`fit_em`.

    Attributes:
      mixture: the fitted `GaussianMixture` (``univariate`` for 1-D data).
      log_likelihood: mean log-likelihood per sample of ``mixture`` on the data
        (weighted by ``sample_weight``), i.e. ``score(mixture, x)``.
      n_iter: EM iterations run by the kept restart.
      converged: whether the kept restart met ``tol`` within ``max_iter``.
      lower_bounds: ``(n_iter,)`` the lower bound (mean log-likelihood of the
        parameters entering each iteration), as scikit-learn's ``lower_bounds_``.
    """

    mixture: GaussianMixture
    log_likelihood: jax.Array
    n_iter: int
    converged: bool
    lower_bounds: jax.Array

    def score(self, x):
        """Mean log-likelihood per sample of ``x``; see :func:`gmmjax.fit.score`."""
        return score(self.mixture, x)

    def predict(self, x):
        """Most probable component per point; see :func:`gmmjax.fit.predict`."""
        return predict(self.mixture, x)

    def predict_proba(self, x):
        """Responsibilities ``(N, K)``; see :func:`gmmjax.fit.predict_proba`."""
        return predict_proba(self.mixture, x)

    def bic(self, x):
        """Bayesian information criterion on ``x``; see :func:`gmmjax.fit.bic`."""
        return bic(self.mixture, x)

    def aic(self, x):
        """Akaike information criterion on ``x``; see :func:`gmmjax.fit.aic`."""
        return aic(self.mixture, x)


def _chunk_size(n: int, k: int, d: int) -> int:
    # ~2^22 elements (CPU) for the (C, K, D) temporaries of the full type: in
    # cache-friendly blocks, and bounded memory for any N; accelerators get 2^27
    budget = 1 << (22 if jax.default_backend() == "cpu" else 27)
    c = max(256, budget // max(1, k * d))
    return int(min(n, c))


def _em_one(key, xs, ws, user, opts):
    """One restart: init from responsibilities (or user params), then EM."""
    (t, k, init, max_iter), tol, reg = opts
    x_flat = xs.reshape(-1, xs.shape[-1])
    w_flat = ws.reshape(-1)
    dt = xs.dtype
    tied_s = _stats.scatter(xs, ws) if t == "tied" else None
    uw, um, up = user
    if uw is None or um is None or up is None:
        r = initial_responsibilities(key, x_flat, w_flat, k, init).reshape(xs.shape[:2] + (k,))
        stats = _stats.resp_stats(xs, ws, r, t)
        params, ok = _stats.mstep(stats, tied_s, reg, t)
        weights, means, prec, scale = params
    else:
        ok = jnp.asarray(True)
        weights, means, prec, scale = None, None, None, None
    if uw is not None:
        weights = uw
    if um is not None:
        means = um
    if up is not None:
        prec, scale = _stats.params_from_precisions(up, t)
    params = (weights, means, prec, scale)
    total_w = jnp.sum(ws)

    def cond(s):
        i, _, _, _, conv, ok = s
        return (i < max_iter) & ~conv & ok

    def body(s):
        i, lb_prev, params, lbs, _, _ = s
        ll, stats = _stats.estep_stats(xs, ws, params, t)
        lb = ll / total_w
        new, ok = _stats.mstep(stats, tied_s, reg, t)
        ok = ok & jnp.isfinite(lb)
        conv = jnp.abs(lb - lb_prev) < tol
        new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, params)
        return i + 1, lb, new, lbs.at[i].set(lb), conv, ok

    lbs0 = jnp.full((max_iter,), jnp.nan, dt)
    s0 = (
        jnp.zeros((), jnp.int32),
        jnp.asarray(-jnp.inf, dt),
        params,
        lbs0,
        jnp.asarray(False),
        jnp.asarray(ok),
    )
    n_iter, lb, params, lbs, conv, ok = jax.lax.while_loop(cond, body, s0)
    return params, lb, n_iter, conv, ok, lbs


def _fit_impl(keys, xs, ws, user, tol, reg, static):
    """All restarts (vmapped), then the best by its final lower bound."""
    opts = (static, tol, reg)
    params, lb, n_iter, conv, ok, lbs = jax.vmap(lambda kk: _em_one(kk, xs, ws, user, opts))(keys)
    score_ = jnp.where(ok, lb, -jnp.inf)
    best = jnp.argmax(score_)
    pick = lambda a: a[best]  # noqa: E731
    params = jax.tree.map(pick, params)
    ll = _stats.loglik(xs, ws, params, static[0]) / jnp.sum(ws)
    return params, ll, n_iter[best], conv[best], jnp.any(ok), lbs[best]


_fit_jit = jax.jit(_fit_impl, static_argnames=("static",))


def _as_data(x, sample_weight):
    """Validate the data; returns ``(x (N, D) float, w (N,), univariate)``."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim not in (1, 2):
        raise ValueError(
            f"fit_em: x must have shape (N,) for 1-D data or (N, D), got shape {x.shape}"
        )
    univariate = x.ndim == 1
    if univariate:
        x = x[:, None]
    xn = np.asarray(x)
    if not np.all(np.isfinite(xn)):
        bad = int(np.sum(~np.all(np.isfinite(xn), axis=1)))
        raise ValueError(
            f"fit_em: x contains NaN or infinite values in {bad} point(s); remove or "
            "impute them before fitting"
        )
    if sample_weight is None:
        w = jnp.ones(x.shape[0], x.dtype)
    else:
        w = jnp.asarray(sample_weight, x.dtype)
        wn = np.asarray(w)
        if w.shape != (x.shape[0],):
            raise ValueError(
                f"fit_em: sample_weight must have shape ({x.shape[0]},), one weight per "
                f"point, got {w.shape}"
            )
        if not np.all(np.isfinite(wn)) or np.any(wn < 0) or not np.any(wn > 0):
            raise ValueError(
                "fit_em: sample_weight must be finite and nonnegative with a positive sum"
            )
    return x, w, univariate


def _check_user(name, value, shape, dtype):
    if value is None:
        return None
    v = jnp.asarray(value, dtype)
    if v.shape != shape:
        raise ValueError(f"fit_em: {name} must have shape {shape}, got {v.shape}")
    if not np.all(np.isfinite(np.asarray(v))):
        raise ValueError(f"fit_em: {name} contains NaN or infinite values")
    return v


def _user_init(weights_init, means_init, precisions_init, t, k, d, dtype):
    uw = _check_user("weights_init", weights_init, (k,), dtype)
    if uw is not None:
        un = np.asarray(uw)
        if np.any(un < 0) or abs(float(un.sum()) - 1.0) > 1e-6:
            raise ValueError("fit_em: weights_init must be nonnegative and sum to 1")
    um = _check_user("means_init", means_init, (k, d), dtype)
    pshape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[t]
    up = _check_user(f"precisions_init (covariance_type={t!r})", precisions_init, pshape, dtype)
    if up is not None and t in ("diag", "spherical") and np.any(np.asarray(up) <= 0):
        raise ValueError("fit_em: precisions_init must be positive")
    return uw, um, up


def fit_em(
    x,
    n_components: int,
    *,
    key,
    covariance_type: str = "full",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    n_init: int = 1,
    init: str = "kmeans",
    sample_weight=None,
    weights_init=None,
    means_init=None,
    precisions_init=None,
    mesh=None,
) -> EMResult:
    """Fit a Gaussian mixture by expectation–maximization (scikit-learn semantics).

    Each iteration computes responsibilities ``r_nk ∝ w_k N(x_n; μ_k, Σ_k)`` (E-step,
    with the shared kernel) and then

        n_k = Σ_n s_n r_nk + 10·eps,   w_k = n_k / Σ_j n_j,   μ_k = Σ_n s_n r_nk x_n / n_k,
        Σ_k = Σ_n s_n r_nk (x_n - μ_k)(x_n - μ_k)ᵀ / n_k + reg_covar · I

    (M-step; ``s_n`` the sample weights), with the covariance restricted to the
    chosen type. The lower bound of an iteration is the weighted mean
    log-likelihood ``Σ s_n log p(x_n) / Σ s_n`` of the parameters entering it; EM
    stops when it changes by less than ``tol``. ``n_init`` restarts run in
    parallel (``vmap``) and the one with the highest final lower bound is kept.

    Args:
      x: ``(N, D)`` data, or ``(N,)`` for 1-D data (the result is then a univariate
        mixture; every covariance type means the same in 1-D).
      n_components: the number of components ``K``.
      key: a JAX PRNG key (initialization and restarts).
      covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``
        (``"univariate"`` is accepted for 1-D data).
      max_iter: most EM iterations per restart (≥ 1).
      tol: convergence threshold on the change of the lower bound (nats per sample).
      reg_covar: added to the diagonal of every covariance; keeps duplicated points
        and collapsing components finite.
      n_init: number of restarts.
      init: ``"kmeans"``, ``"k-means++"``, ``"random"`` or ``"random_from_data"``
        (see :mod:`gmmjax.fit.init`).
      sample_weight: ``(N,)`` nonnegative weights (frequency weights: an integer
        weight equals repeating the point).
      weights_init: ``(K,)`` initial weights (overrides ``init`` for the weights).
      means_init: ``(K, D)`` initial means (``(K,)`` for 1-D data).
      precisions_init: initial precision matrices (inverse covariances) in
        scikit-learn's layout: ``(K, D, D)`` full, ``(D, D)`` tied, ``(K, D)`` diag,
        ``(K,)`` spherical or 1-D.
      mesh: a ``jax.sharding.Mesh``: split the data over its devices and sum the
        E-step statistics across them (:mod:`gmmjax.fit._sharded`).

    Returns:
      An :class:`EMResult` ``(mixture, log_likelihood, n_iter, converged,
      lower_bounds)`` with methods ``score``, ``predict``, ``predict_proba``,
      ``bic`` and ``aic``.

    Raises:
      ValueError: NaN or inf in ``x``, fewer than 2 points, ``n_components`` larger
        than the number of points, a bad argument, or a fit whose covariances stop
        being positive definite (the message says what to change).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gmmjax import fit_em
      >>> k1, k2 = jax.random.split(jax.random.key(0))
      >>> x = jnp.concatenate([jax.random.normal(k1, (200,)) - 3.0,
      ...                      jax.random.normal(k2, (200,)) + 3.0])
      >>> res = fit_em(x, 2, key=jax.random.key(1))
      >>> sorted(round(float(m)) for m in res.mixture.locs)
      [-3, 3]
      >>> bool(res.converged)
      True

    References:
      Dempster, Laird & Rubin, "Maximum likelihood from incomplete data via the EM
      algorithm", JRSS B 39 (1977); Bishop, *Pattern Recognition and Machine
      Learning* (2006), eqs. 9.23–9.27.
    """
    x, w, univariate = _as_data(x, sample_weight)
    t = covariance_type
    if univariate and t in (*_TYPES, "univariate"):
        t = "full"  # every type coincides in 1-D; full keeps the centered update
    elif t not in _TYPES:
        raise ValueError(
            f"fit_em: covariance_type must be one of {_TYPES} (or 'univariate' for 1-D data), "
            f"got {covariance_type!r}"
        )
    if init not in INITS:
        raise ValueError(f"fit_em: init must be one of {INITS}, got {init!r}")
    n, d = x.shape
    k = int(n_components)
    if k < 1:
        raise ValueError(f"fit_em: n_components must be at least 1, got {n_components}")
    n_pos = int(np.sum(np.asarray(w) > 0))
    if n_pos < 2:
        raise ValueError(
            f"fit_em: too few points: got {n_pos} with positive weight, need at least 2"
        )
    if k > n_pos:
        raise ValueError(
            f"fit_em: n_components={k} is larger than the number of points ({n_pos}); "
            "use fewer components or more data"
        )
    if int(max_iter) < 1 or int(n_init) < 1:
        raise ValueError("fit_em: max_iter and n_init must be at least 1")
    if not tol >= 0 or not reg_covar >= 0:
        raise ValueError("fit_em: tol and reg_covar must be nonnegative")
    if univariate and means_init is not None:
        means_init = jnp.reshape(jnp.asarray(means_init), (-1, 1))
    if univariate and precisions_init is not None:
        precisions_init = jnp.reshape(jnp.asarray(precisions_init), (-1, 1, 1))
    user = _user_init(weights_init, means_init, precisions_init, t, k, d, x.dtype)

    # center the data once (means are shifted back at the end); pad to whole chunks
    center = (w @ x) / jnp.sum(w)
    xc = x - center
    um = None if user[1] is None else user[1] - center
    user = (user[0], um, user[2])
    c = _chunk_size(n, k, d)
    n_pad = -n % c
    xc = jnp.concatenate([xc, jnp.zeros((n_pad, d), x.dtype)])
    wp = jnp.concatenate([w, jnp.zeros((n_pad,), x.dtype)])
    xs, ws = shard_data(xc.reshape(-1, c, d), wp.reshape(-1, c), mesh)
    # restart j uses fold_in(key, j): restart 0 is the n_init=1 fit with the same key
    keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(int(n_init)))
    static = (t, k, init, int(max_iter))
    params, ll, n_iter, conv, any_ok, lbs = _fit_jit(
        keys, xs, ws, user, jnp.asarray(tol, x.dtype), jnp.asarray(reg_covar, x.dtype), static
    )
    if not bool(any_ok) or not bool(jnp.isfinite(ll)):
        msg = _FAIL_MSG.format(reg=reg_covar)
        if x.dtype == jnp.float32:
            msg += (
                "; in float32 a reg_covar of about 1e-4 times the data variance, or float64 "
                "(jax.config.update('jax_enable_x64', True)), avoids this"
            )
        raise ValueError(msg)
    weights, means, _, scale = params
    means = means + center
    if univariate:
        mixture = GaussianMixture.from_params(
            jnp.log(weights), means[:, 0], scale[:, 0, 0], "univariate"
        )
    else:
        mixture = GaussianMixture.from_params(jnp.log(weights), means, scale, t)
    n_iter = int(n_iter)
    return EMResult(mixture, ll, n_iter, bool(conv), lbs[:n_iter])
