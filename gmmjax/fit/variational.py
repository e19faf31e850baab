"""Variational Bayesian Gaussian mixtures: the VB-EM loop of scikit-learn's BayesianGaussianMixture.

The model (Bishop 2006, §10.2; Blei & Jordan 2006 for the stick-breaking prior) puts
conjugate priors on a K-component Gaussian mixture:

* weights: a Dirichlet distribution ``Dir(α₀, …, α₀)`` (``"dirichlet_distribution"``)
  or the truncated stick-breaking representation of a Dirichlet process, with
  ``v_k ~ Beta(1, α₀)`` and ``π_k = v_k Π_{j<k}(1 - v_j)`` (``"dirichlet_process"``);
* each component: ``μ_k | Λ_k ~ N(m₀, (β₀ Λ_k)⁻¹)`` and ``Λ_k ~ Wishart(W₀, ν₀)``
  with ``W₀⁻¹`` = ``covariance_prior`` (restricted to the covariance type).

The mean-field posterior ``q(π) q(μ, Λ) q(z)`` is updated by coordinate ascent. With
``r_nk`` the responsibilities, ``N_k = Σ_n r_nk + 10·eps``, ``x̄_k`` and ``S_k`` (plus
``reg_covar`` on the diagonal) the weighted means and covariances (as in EM):

    β_k = β₀ + N_k,   m_k = (β₀ m₀ + N_k x̄_k) / β_k,   ν_k = ν₀ + N_k,
    ν_k Σ_k = W₀⁻¹ + N_k S_k + (β₀ N_k / β_k)(x̄_k - m₀)(x̄_k - m₀)ᵀ,
    α_k = α₀ + N_k  (Dirichlet),   (1 + N_k, α₀ + Σ_{j>k} N_j)  (Dirichlet process),

with ``Σ_k`` (``covariances_``) the normalized Wishart scale (``E[Λ_k] = Σ_k⁻¹``), and
the E-step (Bishop's eqs. 10.64–10.67 with ``W_k = (ν_k Σ_k)⁻¹``)

    log ρ_nk = E[log π_k] + log N(x_n; m_k, Σ_k) - (D/2) log ν_k
               + ½ (Σ_{i<D} ψ((ν_k - i)/2) + D log 2 - D/β_k),   r_nk ∝ ρ_nk,

where ``log N(x_n; m_k, Σ_k)`` is the one kernel
:func:`gmmjax.gaussian.log_gaussian_kernel` with the precision Cholesky of ``Σ_k``, and
``E[log π_k] = ψ(α_k) - ψ(Σ_j α_j)`` (Dirichlet) or
``ψ(a_k) - ψ(a_k + b_k) + Σ_{j<k} (ψ(b_j) - ψ(a_j + b_j))`` (stick breaking).

The lower bound is scikit-learn's (constant terms dropped): the entropy of ``q(z)``
minus the log normalizers of the Wishart, Dirichlet (or Beta) and Gaussian factors;
it is computed after each M-step and the loop stops when it changes by less than
``tol``. Every restart, iteration, E-step pass (chunked with ``lax.scan``, so memory
is bounded for any N) and the choice of the best restart run in one compiled
function: restarts are ``vmap``-ed, iterations are a ``lax.while_loop``.

References:
  Bishop, *Pattern Recognition and Machine Learning* (2006), §10.2, eqs. 10.46–10.66.
  Attias, "A variational Bayesian framework for graphical models", NIPS 12 (2000).
  Blei & Jordan, "Variational inference for Dirichlet process mixtures", Bayesian
  Analysis 1 (2006), §3.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from gmmjax._params import as_float, to_device
from gmmjax.fit import _stats
from gmmjax.fit._vb import (
    VBPriors,
    VBResult,
    VBState,
    _lower_bound,
    _update,
    expected_weights,
    weighted_log_prob,
)
from gmmjax.fit.init import INITS, initial_responsibilities
from gmmjax.gaussian import cholesky
from gmmjax.mixture import GaussianMixture

__all__ = [
    "PRIOR_TYPES",
    "VBPriors",
    "VBResult",
    "VBState",
    "default_priors",
    "expected_mixture",
    "expected_weights",
    "fit_variational",
    "weighted_log_prob",
]

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
_TYPES = ("full", "tied", "diag", "spherical")
FAIL_MSG = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease "
    "the number of components, increase reg_covar, or scale the input data."
)


# ------------------------------------------------------------------ the compiled loop
def _estep(xs, ws, st, covariance_type, prior_type, k):
    """One chunked pass: ``(Σ r log r, (N_k, s_k, S_k))``."""

    def body(acc, chunk):
        xc, wc = chunk
        wlp = weighted_log_prob(xc, st, covariance_type, prior_type)
        log_r = wlp - logsumexp(wlp, axis=1, keepdims=True)
        r = jnp.exp(log_r)
        ent = jnp.sum(jnp.where((wc[:, None] > 0) & (r > 0), r * log_r, 0.0))
        stats = _stats.chunk_stats(xc, wc, r, covariance_type)
        return jax.tree.map(jnp.add, acc, (ent, stats)), None

    template = jnp.zeros((k, xs.shape[-1]), xs.dtype)
    init = _stats._zero_acc(xs, template, covariance_type)
    acc, _ = jax.lax.scan(body, init, (xs, ws))
    return acc


def _labels(xs, st, covariance_type, prior_type):
    """Most probable component per point, chunk by chunk ``(n_chunks, C)``."""
    return jax.lax.map(
        lambda xc: jnp.argmax(weighted_log_prob(xc, st, covariance_type, prior_type), axis=1), xs
    )


def _loop(st, lb0, xs, ws, pri, tied_s, reg, tol, max_iter, static):
    t, pt, k, cap = static

    def cond(s):
        i, _, _, _, conv, ok = s
        return (i < max_iter) & ~conv & ok

    def body(s):
        i, lb_prev, st, lbs, _, _ = s
        r_log_r, stats = _estep(xs, ws, st, t, pt, k)
        new, ok = _update(stats, tied_s, pri, reg, t, pt)
        lb = _lower_bound(new, r_log_r, t, pt)
        conv = jnp.abs(lb - lb_prev) < tol
        new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, st)
        return i + 1, lb, new, lbs.at[i].set(lb), conv, ok

    dt = xs.dtype
    s0 = (
        jnp.zeros((), jnp.int32),
        jnp.asarray(lb0, dt),
        st,
        jnp.full((cap,), jnp.nan, dt),
        jnp.asarray(False),
        jnp.asarray(True),
    )
    n_iter, lb, st, lbs, conv, ok = jax.lax.while_loop(cond, body, s0)
    return st, lb, n_iter, conv, ok, lbs


def _fit_impl(resps, xs, ws, pri, reg, tol, max_iter, static):
    """Every restart from its responsibilities ``(R, n_chunks, C, K)``, then the best."""
    t, pt = static[:2]
    tied_s = _stats.scatter(xs, ws) if t == "tied" else None

    def one(r):
        st, ok0 = _update(_stats.resp_stats(xs, ws, r, t, r.shape[-1]), tied_s, pri, reg, t, pt)
        st, lb, n_iter, conv, ok, lbs = _loop(
            st, -jnp.inf, xs, ws, pri, tied_s, reg, tol, max_iter, static
        )
        return st, lb, n_iter, conv, ok & ok0, lbs

    st, lb, n_iter, conv, ok, lbs = jax.vmap(one)(resps)
    # scikit-learn keeps the first restart with the highest bound (the last when max_iter=0)
    best = jnp.where(max_iter == 0, resps.shape[0] - 1, _stats.first_best(lb))
    pick = lambda a: a[best]  # noqa: E731
    st = jax.tree.map(pick, st)
    labels = _labels(xs, st, t, pt)
    return st, lb[best], n_iter[best], conv[best], jnp.all(ok), lbs[best], labels


def _warm_impl(st, lb_prev, xs, ws, pri, reg, tol, max_iter, static):
    """Continue from a previous state (``warm_start``)."""
    t, pt = static[:2]
    tied_s = _stats.scatter(xs, ws) if t == "tied" else None
    st, lb, n_iter, conv, ok, lbs = _loop(
        st, lb_prev, xs, ws, pri, tied_s, reg, tol, max_iter, static
    )
    return st, lb, n_iter, conv, ok, lbs, _labels(xs, st, t, pt)


_fit_jit = jax.jit(_fit_impl, static_argnames=("static",))
_warm_jit = jax.jit(_warm_impl, static_argnames=("static",))


def _wlp_impl(xs, st, static):
    return jax.lax.map(lambda xc: weighted_log_prob(xc, st, *static), xs)


_wlp_jit = jax.jit(_wlp_impl, static_argnames=("static",))


def _init_impl(key, x, k, init, n_init, c):
    """``n_init`` restarts' responsibilities, in chunks ``(R, n_chunks, c, K)``."""
    # restart j uses fold_in(key, j), as fit_em
    keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(n_init))
    w = jnp.ones(x.shape[:1], x.dtype)
    resp = jax.vmap(lambda kk: initial_responsibilities(kk, x, w, k, init))(keys)
    return jax.vmap(lambda r: _chunks(r, c))(resp)


_init_jit = jax.jit(_init_impl, static_argnames=("k", "init", "n_init", "c"))


def _prep_impl(x, center, pri_mean, resp, means, c):
    """The host glue of :func:`fit_variational` as one program: centre the data (and
    the prior mean and a warm state's means) and cut data, weights and restarts'
    responsibilities into chunks of ``c``. ``center`` is an input: computed here, its
    scaling by 1/N would be fused into ``x - center`` (one rounding less)."""
    xc = x - center
    ws = _chunks(jnp.ones(x.shape[:1], x.dtype), c)
    if resp is not None:
        resp = jax.vmap(lambda r: _chunks(r, c))(resp[None] if resp.ndim == 2 else resp)
    means = None if means is None else means + -center
    return pri_mean - center, xc, _chunks(xc, c), ws, resp, means


_prep_jit = jax.jit(_prep_impl, static_argnames=("c",))


# ------------------------------------------------------------------ host-side helpers
def _chunk_size(n: int, k: int, d: int) -> int:
    # as fit_em: ~2^22 elements (CPU) for the (C, K, D) temporaries of the full type.
    # Small data are padded to a power of two (zero weights), so that fits on data of
    # similar sizes share one compilation
    budget = 1 << (22 if jax.default_backend() == "cpu" else 27)
    return int(min(1 << max(4, (n - 1).bit_length()), max(256, budget // max(1, k * d))))


def _capacity(max_iter: int) -> int:
    """Length of the recorded lower bounds: a power of two ≥ 128 (few compilations)."""
    return 1 << max(7, (int(max_iter) - 1).bit_length())


def _chunks(a, c):
    """Pad the leading axis to whole chunks of ``c`` and reshape to ``(n_chunks, c, ...)``."""
    n_pad = -a.shape[0] % c
    a = jnp.concatenate([a, jnp.zeros((n_pad,) + a.shape[1:], a.dtype)])
    return a.reshape((-1, c) + a.shape[1:])


@jax.jit
def _shift(st: VBState, delta) -> VBState:
    return st._replace(means=st.means + delta)


def weighted_log_prob_batch(x, st: VBState, covariance_type: str, prior_type: str):
    """``(N, K)`` :func:`weighted_log_prob` for any N, compiled and chunked."""
    dt = st.means.dtype
    # padding and slicing on the host (eagerly on the device, each compiled per shape)
    xd = np.asarray(to_device(x, dt) if isinstance(x, jax.Array) else x, dt)
    n, d = xd.shape
    c = _chunk_size(n, st.means.shape[0], d)
    xp = np.concatenate([xd, np.zeros((-n % c, d), dt)]).reshape(-1, c, d)
    out = np.asarray(_wlp_jit(jax.device_put(xp), st, (covariance_type, prior_type)))
    return jax.device_put(out.reshape(-1, out.shape[-1])[:n])


def default_priors(x, n_components: int, covariance_type: str) -> VBPriors:
    """scikit-learn's default priors: α₀ = 1/K, β₀ = 1, m₀ = mean(x), ν₀ = D and
    ``W₀⁻¹`` the sample covariance (``ddof=1``) restricted to the covariance type."""
    x = jnp.asarray(x)
    d = x.shape[1]
    dt = x.dtype
    if covariance_type in ("full", "tied"):
        cov = jnp.atleast_2d(jnp.cov(x.T))
    else:
        cov = jnp.var(x, axis=0, ddof=1)
        if covariance_type == "spherical":
            cov = jnp.mean(cov)
    scalar = lambda v: to_device(v, dt)  # noqa: E731
    return VBPriors(
        scalar(1.0 / n_components), scalar(1.0), jnp.mean(x, axis=0), scalar(d), cov.astype(dt)
    )


def fit_variational(
    x,
    n_components: int,
    *,
    covariance_type: str = "full",
    weight_concentration_prior_type: str = "dirichlet_process",
    priors: VBPriors | None = None,
    resp=None,
    key=None,
    init: str = "kmeans",
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    state: VBState | None = None,
    lower_bound: float = -math.inf,
) -> VBResult:
    """Fit a variational Bayesian Gaussian mixture (scikit-learn's algorithm, compiled).

    Runs coordinate ascent on the variational posterior (module docstring) from
    each restart's initial responsibilities, keeps the restart with the highest
    final lower bound, and returns it with the labels of a final E-step. Given the
    same initial responsibilities, the iterates are scikit-learn's
    ``BayesianGaussianMixture`` to rounding (float64).

    Args:
      x: ``(N, D)`` data (the dtype of the fit: float64 needs ``jax_enable_x64``).
      n_components: ``K`` (an upper bound: the priors switch unused components off).
      covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
      weight_concentration_prior_type: ``"dirichlet_process"`` or
        ``"dirichlet_distribution"``.
      priors: a :class:`VBPriors`; ``None`` gives :func:`default_priors`.
      resp: ``(R, N, K)`` (or ``(N, K)``) initial responsibilities of ``R`` restarts;
        ``None`` draws ``n_init`` of them with ``init`` from ``key``
        (:mod:`gmmjax.fit.init`).
      key: PRNG key (needed when neither ``resp`` nor ``state`` is given).
      init: initializer name when ``resp`` is None.
      n_init: restarts when ``resp`` is None.
      max_iter: most iterations per restart (0 returns the initialization).
      tol: stop when the lower bound changes by less than this.
      reg_covar: added to the diagonal of the empirical covariances.
      state: continue from this :class:`VBState` (warm start) instead of restarting.
      lower_bound: the bound ``state`` reached (convergence is measured from it).

    Returns:
      A :class:`VBResult`.

    Raises:
      ValueError: a bad argument, or a scale matrix that stops being positive
        definite (scikit-learn's message).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> k1, k2 = jax.random.split(jax.random.key(0))
      >>> x = jnp.concatenate([jax.random.normal(k1, (200, 2)) - 4.0,
      ...                      jax.random.normal(k2, (200, 2)) + 4.0])
      >>> res = fit_variational(x, 5, key=jax.random.key(1), max_iter=500)
      >>> w = expected_weights(res.state, "dirichlet_process")
      >>> int(jnp.sum(w > 0.05))  # two of the five components carry the mass
      2

    References:
      Bishop (2006), §10.2; Blei & Jordan (2006) (module docstring).
    """
    t, pt = covariance_type, weight_concentration_prior_type
    if t not in _TYPES:
        raise ValueError(f"covariance_type must be one of {_TYPES}, got {t!r}")
    if pt not in PRIOR_TYPES:
        raise ValueError(
            f"weight_concentration_prior_type must be one of {PRIOR_TYPES}, got {pt!r}"
        )
    x = as_float(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, D), got {x.shape}")
    n, d = x.shape
    k = int(n_components)
    if not 1 <= k <= n:
        raise ValueError(f"n_components must be in [1, N={n}], got {n_components}")
    if int(max_iter) < 0:
        raise ValueError(f"max_iter must be nonnegative, got {max_iter}")
    dt = x.dtype
    pri = default_priors(x, k, t) if priors is None else priors
    pri = VBPriors(*(to_device(p, dt) for p in pri))
    c = _chunk_size(n, k, d)
    static = (t, pt, k, _capacity(max_iter))
    reg, tol_ = to_device(reg_covar, dt), to_device(tol, dt)
    mi = to_device(int(max_iter), jnp.int32)
    st0 = None if state is None else VBState(*(to_device(a, dt) for a in state))
    if state is None and resp is not None:
        resp = to_device(resp, dt)
        shape = (1,) + resp.shape if resp.ndim == 2 else resp.shape  # resp[None] in _prep
        if shape[1:] != (n, k):
            raise ValueError(f"resp must have shape (R, {n}, {k}), got {shape}")
    # one program centres and chunks everything (eager, each op compiled its own)
    center = jnp.mean(x, axis=0)
    m0, xc, xs, ws, rs, means = _prep_jit(
        x, center, pri.mean, resp if st0 is None else None, None if st0 is None else st0.means, c
    )
    pri = pri._replace(mean=m0)
    if st0 is not None:
        st0 = st0._replace(means=means)
        out = _warm_jit(st0, to_device(lower_bound, dt), xs, ws, pri, reg, tol_, mi, static)
    else:
        if resp is None:
            if key is None:
                raise ValueError("fit_variational: give resp, state or a PRNG key")
            if init not in INITS:
                raise ValueError(f"init must be one of {INITS}, got {init!r}")
            rs = _init_jit(key, xc, k=k, init=init, n_init=int(n_init), c=c)
        out = _fit_jit(rs, xs, ws, pri, reg, tol_, mi, static)
    st, lb, n_iter, conv, ok, lbs, labels = out
    if not bool(ok):
        msg = FAIL_MSG
        if dt == jnp.float32:
            msg += (
                " The numerical accuracy can also be improved by passing float64 data "
                "instead of float32."
            )
        raise ValueError(msg)
    n_iter = int(n_iter)
    # slices on the host: a dynamic slice of a device array compiles per shape
    lbs, labels = jax.device_put((np.asarray(lbs)[:n_iter], np.asarray(labels).reshape(-1)[:n]))
    return VBResult(_shift(st, center), lb, n_iter, bool(conv), lbs, labels)


def expected_mixture(st: VBState, covariance_type: str, prior_type: str) -> GaussianMixture:
    """The `GaussianMixture` of the posterior-mean weights, the means and the
    ``covariances_`` (scikit-learn's ``weights_``, ``means_``, ``covariances_``)."""
    cov = jnp.asarray(st.covariances)
    if covariance_type in ("full", "tied"):
        scale = cholesky(cov)
    else:
        scale = jnp.sqrt(cov)
    w = expected_weights(st, prior_type)
    return GaussianMixture.from_params(jnp.log(w), jnp.asarray(st.means), scale, covariance_type)
