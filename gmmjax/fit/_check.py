"""Input checks of :func:`gmmjax.fit.fit_em`: the data and the initial parameters; and
the data and initial assignments prepared on the host for the compiled fit.

The checks of ``weights_init``, ``means_init`` and ``precisions_init`` raise the very
messages of ``sklearn.mixture.GaussianMixture`` (``"The parameter 'weights' should
..."``, ``"'full precision' should be symmetric, positive-definite"``), so code and
tests written against scikit-learn see the same errors from :func:`fit_em` and from
:class:`gmmjax.sklearn.GaussianMixture`. They run on the host (NumPy), once per fit,
before the fit is compiled.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gmmjax.fit.init import INITS

PRECISION_SHAPES = {
    "full": lambda k, d: (k, d, d),
    "tied": lambda k, d: (d, d),
    "diag": lambda k, d: (k, d),
    "spherical": lambda k, d: (k,),
}


def as_data(x, sample_weight):
    """Validate the data; returns ``(x (N, D) float, w (N,), univariate)`` as NumPy arrays.

    Everything stays on the host (a ``jnp`` copy or reshape would compile a small
    program per new shape); ``x`` has JAX's dtype for it (float32 unless x64 is on).
    """
    x = np.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jax.dtypes.canonicalize_dtype(x.dtype), copy=False)
    else:
        x = x.astype(jnp.result_type(float))
    if x.ndim not in (1, 2):
        raise ValueError(
            f"fit_em: x must have shape (N,) for 1-D data or (N, D), got shape {x.shape}"
        )
    univariate = x.ndim == 1
    if univariate:
        x = x[:, None]
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.all(np.isfinite(x), axis=1)))
        raise ValueError(
            f"fit_em: x contains NaN or infinite values in {bad} point(s); remove or "
            "impute them before fitting"
        )
    if sample_weight is None:
        w = np.ones(x.shape[0], x.dtype)
    else:
        w = np.asarray(sample_weight).astype(x.dtype)
        if w.shape != (x.shape[0],):
            raise ValueError(
                f"fit_em: sample_weight must have shape ({x.shape[0]},), one weight per "
                f"point, got {w.shape}"
            )
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
            raise ValueError(
                "fit_em: sample_weight must be finite and nonnegative with a positive sum"
            )
    return x, w, univariate


def _host_array(name, value):
    """The user's array on the host, float32 kept, anything else as float64."""
    v = np.asarray(value)
    if v.dtype != np.float32:
        v = v.astype(np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"fit_em: {name} contains NaN or infinite values")
    return v


def _check_shape(v, shape, name):
    if v.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got {v.shape}"
        )


def check_weights(weights, k):
    """``weights_init``: shape ``(K,)``, entries in [0, 1], sum 1 (sklearn's tolerance)."""
    w = _host_array("weights_init", weights)
    _check_shape(w, (k,), "weights")
    if np.any(w < 0.0) or np.any(w > 1.0):
        # scikit-learn's wording, values in scikit-learn's order (its tests match it)
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got "
            f"max value {np.min(w):.5f}, min value {np.max(w):.5f}"
        )
    atol = 1e-6 if w.dtype == np.float32 else 1e-8
    if not abs(1.0 - float(np.sum(w))) <= atol:
        raise ValueError(
            "The parameter 'weights' should be normalized, but got sum(weights) = "
            f"{np.sum(w):.5f}; divide weights_init by its sum"
        )
    return w


def check_means(means, k, d):
    """``means_init``: shape ``(K, D)``."""
    m = _host_array("means_init", means)
    _check_shape(m, (k, d), "means")
    return m


def check_precisions(precisions, covariance_type, k, d):
    """``precisions_init``: sklearn's shape per type; positive, or symmetric positive definite.

    A matrix is accepted when it equals its transpose to ``np.isclose`` and its
    eigenvalues are positive (scikit-learn's test, so the same inputs pass).
    """
    t = covariance_type
    p = _host_array("precisions_init", precisions)
    _check_shape(p, PRECISION_SHAPES[t](k, d), f"{t} precision")
    if t in ("diag", "spherical"):
        if np.any(p <= 0.0):
            raise ValueError(f"'{t} precision' should be positive")
        return p
    mats = p if t == "full" else p[None]
    sym = np.all(np.isclose(mats, np.swapaxes(mats, -1, -2)))
    if not sym or not np.all(np.linalg.eigvalsh(mats) > 0.0):
        raise ValueError(f"'{t} precision' should be symmetric, positive-definite")
    return p


def check_counts(n_pos, k, max_iter, n_init, tol, reg_covar):
    """The scalar arguments: enough points for ``K`` components, ranges."""
    if k < 1:
        raise ValueError(f"fit_em: n_components must be at least 1, got {k}")
    if n_pos < 2:
        raise ValueError(
            f"fit_em: too few points: got {n_pos} with positive weight, need at least 2"
        )
    if k > n_pos:
        raise ValueError(
            "Expected n_samples >= n_components but got n_components = "
            f"{k}, n_samples = {n_pos}; use fewer components or more data"
        )
    if int(max_iter) < 0 or int(n_init) < 1:
        raise ValueError(
            f"fit_em: max_iter must be at least 0 and n_init at least 1, got "
            f"max_iter={max_iter}, n_init={n_init}"
        )
    if not tol >= 0 or not reg_covar >= 0:
        raise ValueError("fit_em: tol and reg_covar must be nonnegative")


def check_init_array(init, n, k):
    """An array ``init``: labels ``(R, N)`` ints, or responsibilities ``(R, N, K)``.

    A label of -1 means "no component" (the point starts with no responsibility, as
    the points that are not seeds in scikit-learn's ``k-means++`` initialization).

    Returns ``(array with a leading restart axis, is_labels)``.
    """
    a = np.asarray(init)
    if np.issubdtype(a.dtype, np.integer):
        a = a[None] if a.ndim == 1 else a
        if a.ndim != 2 or a.shape[1] != n:
            raise ValueError(
                f"fit_em: integer init (labels) must have shape ({n},) or (n_init, {n}), "
                f"got {np.shape(init)}"
            )
        if a.size and (a.min() < -1 or a.max() >= k):
            raise ValueError(
                f"fit_em: init labels must lie in [0, {k}) (or -1 for none), one per point"
            )
        return a, True
    a = a.astype(np.float64) if a.dtype != np.float32 else a
    a = a[None] if a.ndim == 2 else a
    if a.ndim != 3 or a.shape[1:] != (n, k):
        raise ValueError(
            f"fit_em: init responsibilities must have shape ({n}, {k}) or "
            f"(n_init, {n}, {k}), got {np.shape(init)}"
        )
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("fit_em: init responsibilities must be finite and nonnegative")
    return a, False


@jax.jit
def _center(x, w):
    """The weighted mean ``(D,)`` of ``x (N, D)``: one small program per data shape."""
    return (w @ x) / jnp.sum(w)


def prepare_data(x, w, n_pad, c):
    """Center ``x (N, D)`` (the means are shifted back at the end), pad it and its weights
    ``w (N,)`` with ``n_pad`` zero-weight rows and split into chunks of ``c``.

    Only the mean is compiled; the rest is NumPy on the host (eager ``jnp`` would
    compile a program per op and shape). The subtraction stays outside the compiled
    mean on purpose: fused with it, XLA contracts it into a multiply-add.
    """
    d, dt = x.shape[1], x.dtype
    center = np.asarray(_center(x, w))
    xc = np.concatenate([x - center, np.zeros((n_pad, d), dt)])
    wp = np.concatenate([w, np.zeros((n_pad,), dt)])
    return center, xc.reshape(-1, c, d), wp.reshape(-1, c)


ONE_HOT_MAX = 1 << 24  # elements of one-hot initial labels built on the host


def prepare_init(init, n, k, n_init, n_pad, c, dtype):
    """``(static init kind, per-restart array or None, n_init)`` for ``init``."""
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"fit_em: init must be one of {INITS} or an array, got {init!r}")
        return init, None, int(n_init)
    a, labels = check_init_array(init, n, k)
    if int(n_init) not in (1, a.shape[0]):
        raise ValueError(
            f"fit_em: n_init={n_init} but init holds {a.shape[0]} initialization(s); "
            "pass one per restart (or leave n_init at 1)"
        )
    r = a.shape[0]
    if labels:
        # padding rows get label -1: no component (their weight is zero anyway)
        a = np.concatenate([a, np.full((r, n_pad), -1, a.dtype)], axis=1)
        if a.size * k > ONE_HOT_MAX:  # one-hot per chunk inside the fit, never (N, K)
            return "resp", a.reshape(r, -1, c).astype(np.int32), r
        # one-hot on the host: the same compiled program as given responsibilities
        # (the statistics are identical; label -1 is a zero row)
        return "resp", (a[..., None] == np.arange(k)).astype(dtype).reshape(r, -1, c, k), r
    a = np.concatenate([a, np.zeros((r, n_pad, k), a.dtype)], axis=1)
    return "resp", a.astype(dtype).reshape(r, -1, c, k), r
