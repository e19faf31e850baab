"""Expectation–maximization for Gaussian mixtures, at scikit-learn parity.

:func:`fit_em` runs the whole fit (every restart, every iteration, the choice of the
best restart) as one compiled function: restarts are ``vmap``-ed and iterations are
a ``lax.while_loop``. A drawn initialization (k-means, ...) is a compiled function of
its own (:data:`gmmjax.fit.init.initial_assignments`) whose responsibilities enter
the fit as given ones: neither depends on the other's settings, so fits of several
covariance types share the initializer and fits of several inits the EM function.
The E-step is the one kernel :func:`gmmjax.gaussian.log_gaussian_kernel`; data pass
through it in chunks, so memory stays bounded for any number of points.

Convergence follows ``sklearn.mixture.GaussianMixture``: the lower bound of
iteration ``i`` is the mean log-likelihood of the parameters *entering* that
iteration, and the fit stops when it changes by less than ``tol``. Given the same
initial parameters, the iterates agree with scikit-learn's to rounding. The default
``tol`` is 1e-6, not scikit-learn's 1e-3 (:func:`fit_em` says why);
:class:`gmmjax.sklearn.GaussianMixture` keeps scikit-learn's defaults and is a thin
layer over :func:`fit_em` (initial assignments, ``max_iter=0``, ``warm_start``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gmmjax._params import factor
from gmmjax._runtime.keys import as_key
from gmmjax.fit import _check, _stats
from gmmjax.fit._sharded import shard_data
from gmmjax.fit.init import INITS, initial_assignments
from gmmjax.fit.scoring import aic, bic, predict, predict_proba, score
from gmmjax.gaussian import precision_cholesky
from gmmjax.mixture import GaussianMixture

__all__ = ["EMResult", "fit_em"]

_TYPES = ("full", "tied", "diag", "spherical")
# scikit-learn's message (its tests match it), then what we know in addition
_FAIL_MSG = (
    "Fitting the mixture model failed because some components have ill-defined "
    "empirical covariance (for instance caused by singleton or collapsed samples). "
    "Try to decrease the number of components, increase reg_covar, or scale the "
    "input data."
)
DEFAULT_TOL = 1e-6
"""Default ``tol`` of :func:`fit_em` (nats per sample); see its docstring for why."""


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


def _chunk_size(n: int, k: int, d: int, itemsize: int = 4) -> int:
    # ~8 MiB (CPU) for the (C, K, D) temporaries of the full type: cache-friendly
    # blocks, and bounded memory for any N (2^21 float32 or 2^20 float64 elements;
    # float64 chunks of 2^22 elements ran 2-4x slower, measured at N=2e5, D=16,
    # K=64); accelerators get 2^27 elements
    budget = (1 << 23) // itemsize if jax.default_backend() == "cpu" else 1 << 27
    c = max(256, budget // max(1, k * d))
    return int(min(n, c))


def _lbs_len(max_iter: int) -> int:
    """Length of the lower-bound buffer: ``max_iter`` rounded up to a power of two, at
    least 128.

    ``max_iter`` itself is traced, so fits that differ only in it share one compiled
    function per power of two (every ``max_iter <= 128`` one, the default included).
    """
    return 1 << max(7, int(max_iter - 1).bit_length()) if max_iter > 0 else 128


def _bucket(n: int) -> int:
    """Padded length of small data sets (a power of two, at least 64): fits of
    similar sizes share one compiled function; padding rows have zero weight."""
    return 1 << max(6, (n - 1).bit_length())


def _warm_state(warm, t, k, d, dt, univariate):
    """``(weights, means, {"scale": scale}, previous lower bound)`` of a warm start.

    Host arrays, except the weights (``exp`` of the logits); the fit factorizes the scale.
    """
    if isinstance(warm, EMResult):
        lbs = np.asarray(warm.lower_bounds)
        prev = float(lbs[-1]) if lbs.size else -np.inf
        warm = warm.mixture
    elif isinstance(warm, GaussianMixture):
        prev = -np.inf
    else:
        raise TypeError(
            "fit_em: warm_start must be an EMResult or a GaussianMixture, got "
            f"{type(warm).__name__}"
        )
    wt = warm.covariance_type
    same = wt == t or (univariate and wt == "univariate")
    if not same or warm.batch_shape or warm.n_components != k or warm.dim != d:
        raise ValueError(
            f"fit_em: warm_start is a {wt} mixture with {warm.n_components} components in "
            f"{warm.dim} dimensions (batch {warm.batch_shape}); this fit needs an unbatched "
            f"{t} mixture with {k} components in {d} dimensions"
        )
    weights = np.asarray(warm.weights).astype(dt)
    means = np.asarray(warm.locs).astype(dt).reshape(k, d)
    scale = factor(np.asarray(warm.scale_param), wt).astype(dt)  # the leaf as read
    if wt == "univariate":
        scale = scale[:, None, None]
    return weights, means, {"scale": scale}, prev


def _user_factors(user_prec, t):
    """``(prec, scale)`` from ``{"precisions": sklearn's precisions_init}`` or ``{"scale":
    a warm start's scale}`` (inside the fit: eager, they compiled ~20 small programs)."""
    if "precisions" in user_prec:
        return _stats.params_from_precisions(user_prec["precisions"], t)
    scale = user_prec["scale"]
    return (precision_cholesky(scale) if t in ("full", "tied") else 1.0 / scale), scale


def _em_one(r0, xs, ws, user, opts):
    """One restart: initial parameters (responsibilities, user values), then EM."""
    (t, k, init, lbs_len), tol, reg, max_iter, prev_lb = opts
    dt = xs.dtype
    tied_s = _stats.scatter(xs, ws) if t == "tied" else None
    uw, um, uprec = user
    if init == "params":  # every parameter given (user values or a warm start)
        ok = jnp.asarray(True)
        params = (uw, um, *uprec)
    else:  # "resp": given, or drawn by initial_assignments
        stats = _stats.resp_stats(xs, ws, r0, t, k)
        params, ok = _stats.mstep(stats, tied_s, reg, t)
        weights, means, prec, scale = params
        weights = weights if uw is None else uw
        means = means if um is None else um
        prec, scale = (prec, scale) if uprec is None else uprec
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

    lbs0 = jnp.full((lbs_len,), jnp.nan, dt)
    s0 = (jnp.zeros((), jnp.int32), prev_lb, params, lbs0, jnp.asarray(False), jnp.asarray(ok))
    n_iter, lb, params, lbs, conv, ok = jax.lax.while_loop(cond, body, s0)
    # max_iter = 0: the initialization itself, with scikit-learn's lower bound -inf
    lb = jnp.where(n_iter > 0, lb, -jnp.inf)
    return params, lb, n_iter, conv, ok, lbs


def _fit_impl(r0, xs, ws, center, user, tol, reg, max_iter, prev_lb, static):
    """All restarts (vmapped), then the best by its final lower bound.

    ``user`` holds the given weights, means (not centered) and precisions
    (:func:`_user_factors`), each None where not given.
    """
    t, k, kind, lbs_len, n_init = static
    opts = ((t, k, kind, lbs_len), tol, reg, max_iter, prev_lb)
    uw, um, uprec = user
    um = None if um is None else um - center
    uprec = None if uprec is None else _user_factors(uprec, t)
    run = jax.vmap(lambda rr: _em_one(rr, xs, ws, (uw, um, uprec), opts), axis_size=n_init)
    params, lb, n_iter, conv, ok, lbs = run(r0)
    score_ = jnp.where(ok, lb, -jnp.inf)
    # with max_iter = 0 scikit-learn keeps the last initialization (here: the last valid one)
    last_ok = n_init - 1 - jnp.argmax(ok[::-1])
    best = jnp.where(max_iter > 0, _stats.first_best(score_), last_ok)
    params = jax.tree.map(lambda a: a[best], params)
    ll = _stats.loglik(xs, ws, params, t) / jnp.sum(ws)
    weights, means, _, scale = params
    return (weights, means, scale), ll, n_iter[best], conv[best], ok[best], lbs[best]


_fit_jit = jax.jit(_fit_impl, static_argnames=("static",))


def fit_em(
    x,
    n_components: int,
    *,
    key=None,
    covariance_type: str = "full",
    max_iter: int = 1000,
    tol: float = DEFAULT_TOL,
    reg_covar: float = 1e-6,
    n_init: int = 1,
    init="kmeans",
    sample_weight=None,
    weights_init=None,
    means_init=None,
    precisions_init=None,
    warm_start=None,
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
    parallel (``vmap``) and the one with the highest final lower bound is kept
    (restarts whose covariances fail are dropped; scikit-learn raises instead).

    **Default tol.** ``tol`` is an absolute change of the mean log-likelihood per
    sample, as in scikit-learn, but its default is 1e-6, not scikit-learn's 1e-3
    (:class:`gmmjax.sklearn.GaussianMixture` keeps 1e-3). EM converges linearly: when
    successive gains shrink by a factor ``ρ`` per iteration, the gain still to come
    after a step of ``Δ`` is about ``Δ·ρ/(1-ρ)``, and overlapping components have
    ``ρ`` of 0.8-0.99. On the README's 1-D data (17,000 points, three overlapping
    components) ``tol=1e-3`` stops after 4 iterations 5e-3 nats per sample short of
    the optimum, with means several standard errors away from it; 1e-6 stops within
    about 1e-5 nats of it after ~55 iterations. A step of 1e-6 is still well above the
    float32 rounding of a mean log-likelihood (~1e-7 relative), so float32 fits
    converge too. The default ``max_iter`` is 1000 for the same reason (the loop
    stops as soon as ``tol`` is met, so it costs only fits that need it).

    Args:
      x: ``(N, D)`` data, or ``(N,)`` for 1-D data (the result is then a univariate
        mixture; every covariance type means the same in 1-D).
      n_components: the number of components ``K``.
      key: a JAX PRNG key for a random ``init`` and the restarts; not needed (may be
        None) when ``init`` is an array, every initial parameter is given, or
        ``warm_start`` is set.
      covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``
        (``"univariate"`` is accepted for 1-D data).
      max_iter: most EM iterations per restart. ``0`` returns the initialization
        itself (``n_iter = 0``, no lower bounds, not converged), as scikit-learn.
      tol: convergence threshold on the change of the lower bound (nats per sample);
        default 1e-6 (above).
      reg_covar: added to the diagonal of every covariance; keeps duplicated points
        and collapsing components finite.
      n_init: number of restarts.
      init: ``"kmeans"``, ``"k-means++"``, ``"random"`` or ``"random_from_data"``
        (see :mod:`gmmjax.fit.init`); or given initial assignments: integer labels
        ``(N,)``/``(n_init, N)`` in ``[0, K)`` or responsibilities
        ``(N, K)``/``(n_init, N, K)`` (e.g. from another clustering), one initial
        M-step each, one restart each (label -1: the point has no responsibility).
      sample_weight: ``(N,)`` nonnegative weights (frequency weights: an integer
        weight equals repeating the point).
      weights_init: ``(K,)`` initial weights (overrides ``init`` for the weights).
      means_init: ``(K, D)`` initial means (``(K,)`` for 1-D data).
      precisions_init: initial precision matrices (inverse covariances) in
        scikit-learn's layout: ``(K, D, D)`` full, ``(D, D)`` tied, ``(K, D)`` diag,
        ``(K,)`` spherical or 1-D; validated as scikit-learn does (shape, symmetric
        positive definite or positive), with its messages. When weights, means and
        precisions are all given, no initialization runs and ``n_init`` is 1.
      warm_start: an :class:`EMResult` (or a `GaussianMixture`) to continue from:
        ``init``, ``n_init`` and the ``*_init`` arguments are ignored, and the
        result's last lower bound is the previous value of the convergence test,
        so a fit that had converged stops after one iteration (scikit-learn's
        ``warm_start``).
      mesh: a ``jax.sharding.Mesh``: split the data over its devices and sum the
        E-step statistics across them (:mod:`gmmjax.fit._sharded`).

    Returns:
      An :class:`EMResult` ``(mixture, log_likelihood, n_iter, converged,
      lower_bounds)`` with methods ``score``, ``predict``, ``predict_proba``,
      ``bic`` and ``aic``.

    Raises:
      ValueError: NaN or inf in ``x``, fewer than 2 points, ``n_components`` larger
        than the number of points, a bad argument or initial parameter (scikit-learn's
        messages), or a fit whose covariances stop being positive definite (the
        message says what to change).
      TypeError: ``warm_start`` of another type.

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
    x, w, univariate = _check.as_data(x, sample_weight)
    t = covariance_type
    if univariate and t in (*_TYPES, "univariate"):
        t = "full"  # every type coincides in 1-D; full keeps the centered update
    elif t not in _TYPES:
        raise ValueError(
            f"fit_em: covariance_type must be one of {_TYPES} (or 'univariate' for 1-D data), "
            f"got {covariance_type!r}"
        )
    n, d = x.shape
    k = int(n_components)
    _check.check_counts(int(np.sum(w > 0)), k, max_iter, n_init, tol, reg_covar)
    dt = x.dtype
    if univariate and means_init is not None:
        means_init = np.reshape(np.asarray(means_init), (-1, 1))
    if univariate and precisions_init is not None:
        precisions_init = np.reshape(np.asarray(precisions_init), (-1, 1, 1))
    # given parameters stay NumPy until the fit (a jnp conversion compiles per shape)
    uw = None if weights_init is None else _check.check_weights(weights_init, k).astype(dt)
    um = None if means_init is None else _check.check_means(means_init, k, d).astype(dt)
    uprec = None
    if precisions_init is not None:
        uprec = {"precisions": _check.check_precisions(precisions_init, t, k, d).astype(dt)}
    prev_lb = -np.inf
    if warm_start is not None:
        uw, um, uprec, prev_lb = _warm_state(warm_start, t, k, d, dt, univariate)

    # center the data once (means are shifted back at the end); pad to whole chunks,
    # and small data sets to a power of two (one compiled function per size bucket)
    c = _chunk_size(n, k, d, jnp.dtype(dt).itemsize)
    n_pad = (-n % c) if c < n else _bucket(n) - n
    c = c if c < n else n + n_pad
    center, xs, ws = _check.prepare_data(x, w, n_pad, c)
    xs, ws = shard_data(xs, ws, mesh)
    if uw is not None and um is not None and uprec is not None:
        kind, r0, n_init = "params", None, 1  # nothing random: restarts would coincide
    else:
        kind, r0, n_init = _check.prepare_init(init, n, k, n_init, n_pad, c, dt)
    key = None if key is None else as_key(key)  # an integer seed is accepted too
    if kind in INITS:
        if key is None:
            raise ValueError(f"fit_em: init={init!r} is random: pass key=jax.random.key(seed)")
        # restart j draws with fold_in(key, j): restart 0 is the n_init=1 fit with the same
        # key; k-means labels, not (N, K) one-hots, where those would be large
        labels = kind == "kmeans" and n_init * xs.shape[0] * c * k > _check.ONE_HOT_MAX
        r0 = initial_assignments(key, xs, ws, static=(k, kind, n_init, labels))
        kind = "resp"
    static = (t, k, kind, _lbs_len(int(max_iter)), int(n_init))
    (weights, means, scale), ll, n_iter, conv, any_ok, lbs = _fit_jit(
        r0,
        xs,
        ws,
        center,
        (uw, um, uprec),
        np.asarray(tol, dt),
        np.asarray(reg_covar, dt),
        np.asarray(int(max_iter), np.int32),
        np.asarray(prev_lb, dt),
        static,
    )
    if not bool(any_ok) or not np.isfinite(float(ll)):
        msg = _FAIL_MSG + f" (reg_covar is now {reg_covar:g})"
        if dt == jnp.float32:
            msg += (
                "; in float32 a reg_covar of about 1e-4 times the data variance, or float64 "
                "(jax.config.update('jax_enable_x64', True)), avoids this"
            )
        raise ValueError(msg)
    n_iter = int(n_iter)
    # shifts and slices on the host (eager jnp compiles a program per op and shape;
    # in the fit, XLA would contract the shift with the M-step into a multiply-add)
    lbs = jax.device_put(np.asarray(lbs)[:n_iter])
    means = np.asarray(means) + center
    logw = jnp.log(weights)
    if univariate:
        means, scale, t = means[:, 0], np.asarray(scale)[:, 0, 0], "univariate"
    mixture = GaussianMixture.from_params(logw, jax.device_put(means), jax.device_put(scale), t)
    return EMResult(mixture, ll, n_iter, bool(conv), lbs)
