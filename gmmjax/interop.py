"""Conversions between `GaussianMixture` and other libraries' mixtures.

NumPyro: ``MixtureSameFamily(Categorical, MultivariateNormal | Normal)``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro.distributions as dist

from gmmjax._params import factor, log_weights_np
from gmmjax.mixture import GaussianMixture

__all__ = ["from_numpyro", "from_sklearn", "to_numpyro", "to_sklearn"]


def to_numpyro(mixture: GaussianMixture) -> dist.MixtureSameFamily:
    """Convert to NumPyro's ``MixtureSameFamily``.

    Univariate mixtures become ``MixtureSameFamily(Categorical, Normal)``; every
    other covariance type becomes ``MixtureSameFamily(Categorical,
    MultivariateNormal(scale_tril=...))`` with dense factors (NumPyro has no
    diagonal or tied Gaussian family, so the cheap layouts are expanded here).

    Args:
      mixture: a `GaussianMixture` of any batch shape.

    Returns:
      A ``MixtureSameFamily`` with equal ``log_prob``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gmmjax import GaussianMixture, to_numpyro
      >>> p = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([0.0, 1.0]),
      ...                     scale=jnp.ones(2))
      >>> type(to_numpyro(p)).__name__
      'MixtureSameFamily'
    """
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"to_numpyro expects a GaussianMixture, got {type(mixture).__name__}")
    logits, locs, _ = mixture._read_leaves  # one batch shape (vmap_over may leave more)
    tril = mixture.component_scale_tril
    mixing = dist.Categorical(logits=logits)
    if mixture.covariance_type == "univariate":
        comp = dist.Normal(locs, jnp.broadcast_to(tril, locs.shape))
    else:
        comp = dist.MultivariateNormal(
            locs, scale_tril=jnp.broadcast_to(tril, locs.shape + locs.shape[-1:])
        )
    return dist.MixtureSameFamily(mixing, comp)


def from_numpyro(mixture: dist.MixtureSameFamily) -> GaussianMixture:
    """Convert NumPyro's ``MixtureSameFamily`` of ``Normal`` or ``MultivariateNormal``.

    Args:
      mixture: ``MixtureSameFamily(Categorical, Normal | MultivariateNormal)``.

    Returns:
      A `GaussianMixture` (``"univariate"`` for ``Normal`` components, ``"full"``
      for ``MultivariateNormal``) with equal ``log_prob``.

    Raises:
      TypeError: the mixture is not a ``MixtureSameFamily`` of Gaussians.
    """
    if not isinstance(mixture, dist.MixtureSameFamily):
        raise TypeError(
            f"from_numpyro expects numpyro.distributions.MixtureSameFamily, got "
            f"{type(mixture).__name__}"
        )
    mixing = mixture.mixing_distribution
    comp = mixture.component_distribution
    logits = mixing.logits
    if isinstance(comp, dist.Normal):
        return GaussianMixture(logits=logits, locs=comp.loc, scale=comp.scale)
    if isinstance(comp, dist.MultivariateNormal):
        return GaussianMixture(logits=logits, locs=comp.loc, scale_tril=comp.scale_tril)
    raise TypeError(
        f"from_numpyro supports components Normal or MultivariateNormal, got {type(comp).__name__}"
    )


# ----------------------------------------------------------------------------- sklearn
_SK_TYPES = ("full", "tied", "diag", "spherical")
_SK_ATTR = "gmmjax_params_"  # exact source leaves kept on an estimator made by to_sklearn


def _sklearn_cls():
    try:
        from sklearn.mixture import GaussianMixture as SkGaussianMixture
    except ImportError as e:  # pragma: no cover - sklearn is installed in the test env
        raise ImportError(
            "from_sklearn/to_sklearn need scikit-learn, an optional dependency: "
            "pip install scikit-learn"
        ) from e
    return SkGaussianMixture


def _np(a):
    import numpy as np

    return np.asarray(a, dtype=np.float64)


def _sk_arrays(logits, locs, scale, covariance_type):
    """sklearn's public arrays from the stored leaves (numpy float64)."""
    import numpy as np

    logits, locs, scale = _np(logits), _np(locs), _np(scale)
    t = covariance_type
    scale = factor(scale, t)  # the leaf as read (lower triangle, signs)
    weights = np.exp(log_weights_np(logits))  # the leaf may be shifted by a gradient step
    if t == "univariate":
        locs, t = locs[:, None], "spherical"
    if t in ("full", "tied"):
        cov = scale @ np.swapaxes(scale, -1, -2)
        d = scale.shape[-1]
        eye = np.broadcast_to(np.eye(d), scale.shape)
        # P = L⁻ᵀ: one small solve per component
        prec_chol = np.swapaxes(np.linalg.solve(scale, eye), -1, -2)
        prec = prec_chol @ np.swapaxes(prec_chol, -1, -2)
    else:
        cov = scale * scale
        prec_chol = 1.0 / scale
        prec = prec_chol * prec_chol
    return t, dict(
        weights_=weights,
        means_=locs,
        covariances_=cov,
        precisions_cholesky_=prec_chol,
        precisions_=prec,
    )


def to_sklearn(mixture: GaussianMixture):
    """Convert to a fitted ``sklearn.mixture.GaussianMixture``.

    Sets ``weights_``, ``means_``, ``covariances_``, ``precisions_cholesky_`` and
    ``precisions_`` (float64) so that ``score``, ``predict``, ``sample``, ``bic``… work.
    A univariate mixture becomes a 1-feature ``"spherical"`` model.

    The estimator also remembers the exact float64 leaves it came from, so that
    ``from_sklearn(to_sklearn(m))`` returns ``m``'s parameters bit for bit as long as
    the public arrays are unchanged (the arithmetic conversions alone agree to
    about one unit in the last place).

    Args:
      mixture: an unbatched `GaussianMixture`.

    Returns:
      A fitted ``sklearn.mixture.GaussianMixture``.

    Raises:
      ImportError: scikit-learn is not installed.
      ValueError: a batched mixture.

    Example:
      >>> import jax.numpy as jnp
      >>> from gmmjax import GaussianMixture, to_sklearn
      >>> p = GaussianMixture(jnp.array([0.5, 0.5]), jnp.zeros((2, 2)),
      ...                     scale=jnp.ones((2, 2)), covariance_type="diag")
      >>> to_sklearn(p).covariance_type
      'diag'
    """
    sk_cls = _sklearn_cls()
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"to_sklearn expects a GaussianMixture, got {type(mixture).__name__}")
    if mixture.batch_shape:
        raise ValueError(
            f"to_sklearn converts one mixture; got batch_shape {mixture.batch_shape}: "
            "index the batch first"
        )
    leaves = (_np(mixture.logits), _np(mixture.locs), _np(mixture.scale_param))
    src = getattr(mixture, "_sklearn_source", None)
    if src is not None and all(
        (a == b).all() and a.shape == b.shape for a, b in zip(src[0], leaves, strict=True)
    ):
        t, arrays = src[1], {k: v.copy() for k, v in src[2].items()}
    else:
        t, arrays = _sk_arrays(*leaves, mixture.covariance_type)
    gm = sk_cls(n_components=mixture.n_components, covariance_type=t)
    for name, value in arrays.items():
        setattr(gm, name, value)
    gm.converged_, gm.n_iter_, gm.lower_bound_ = True, 0, float("nan")
    gm.n_features_in_ = arrays["means_"].shape[1]
    setattr(
        gm, _SK_ATTR, (leaves, mixture.covariance_type, {k: v.copy() for k, v in arrays.items()})
    )
    return gm


def from_sklearn(fitted, *, univariate: bool = False) -> GaussianMixture:
    """Convert a fitted ``sklearn.mixture.GaussianMixture`` (any covariance type).

    The covariance type is kept; full and tied covariances are stored as their
    Cholesky factors, diag and spherical ones as standard deviations. The mixture
    remembers the estimator's arrays, so ``to_sklearn(from_sklearn(gm))`` restores
    them bit for bit while the mixture's parameters are unchanged.

    Args:
      fitted: a fitted sklearn ``GaussianMixture`` (``BayesianGaussianMixture``
        works too: its ``weights_``, ``means_`` and ``covariances_`` are used).
      univariate: for a 1-feature model, return a univariate mixture (scalar events).

    Returns:
      A `GaussianMixture` in float64 when ``jax_enable_x64`` is on (else float32).

    Raises:
      ImportError: scikit-learn is not installed.
      ValueError: the estimator is not fitted, or ``univariate=True`` with D > 1.
    """
    import numpy as np

    _sklearn_cls()
    if not hasattr(fitted, "means_") or not hasattr(fitted, "covariances_"):
        raise ValueError(
            f"from_sklearn needs a fitted scikit-learn mixture; this {type(fitted).__name__} "
            "is not fitted (call .fit(X) first)"
        )
    t = fitted.covariance_type
    if t not in _SK_TYPES:
        raise ValueError(f"unknown sklearn covariance_type {t!r}")
    weights, means, cov = _np(fitted.weights_), _np(fitted.means_), _np(fitted.covariances_)
    names = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")
    arrays = {n: _np(getattr(fitted, n)).copy() for n in names}
    cached = getattr(fitted, _SK_ATTR, None)
    if cached is not None and all(
        arrays[n].shape == cached[2][n].shape and (arrays[n] == cached[2][n]).all() for n in names
    ):
        logits, locs, scale = cached[0]
        out_t = cached[1]
    else:
        if univariate and means.shape[1] != 1:
            raise ValueError(
                f"univariate=True needs a 1-feature model, this one has {means.shape[1]}"
            )
        logits = np.log(weights)
        locs = means
        scale = np.linalg.cholesky(cov) if t in ("full", "tied") else np.sqrt(cov)
        out_t = t
        if univariate:
            out_t, locs = "univariate", means[:, 0]
            scale = {
                "full": scale[:, 0, 0],
                "tied": np.broadcast_to(scale[0, 0], weights.shape),
                "diag": scale[:, 0],
                "spherical": scale,
            }[t]
    mixture = GaussianMixture.from_params(logits, locs, scale, out_t)
    # from_params renormalizes the logits; keep the exact values read here
    mixture.logits = jnp.asarray(logits, mixture.logits.dtype)
    leaves = (_np(mixture.logits), _np(mixture.locs), _np(mixture.scale_param))
    mixture._sklearn_source = (leaves, t, arrays)
    return mixture
