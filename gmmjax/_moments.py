"""What `GaussianMixture` derives from its leaves besides the density (private mixin):
moments, dense component parameters, sampling, the 1-D cdf, and the repr."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, logsumexp

from gmmjax._params import SCALE_NDIM, factor
from gmmjax._runtime.compile import method_call
from gmmjax.gaussian import cholesky, tril_inverse

_MOMENTS: dict = {}


def _compiled_property(fn):
    """A property computed by ``fn(self)`` as one compiled program per layout and shape.

    Eagerly, each of its few dozen operations would be compiled on its own for every new
    shape; inside the caller's ``jit``, ``vmap`` or ``grad`` it is traced inline.
    """
    _MOMENTS[fn.__name__] = fn

    @functools.wraps(fn)  # name, docstring and return annotation
    def get(self):
        return method_call(self, "_moment", (), (fn.__name__,))

    return property(get)


class MomentsMixin:
    """Component covariances and the mixture's first two moments (law of total covariance).

    The mixture-level ``covariance_matrix``, ``precision_matrix``, ``scale_tril`` and
    ``scale`` are those of the single Gaussian with the mixture's mean and covariance;
    the constructor's arguments of the same names are *component* parameters (read
    them with ``component_*`` or ``params``).
    """

    @_compiled_property
    def log_weights(self) -> jax.Array:
        """``(..., K)`` normalized log-weights: the ``logits`` leaf minus its logsumexp.

        The leaf is normalized when a mixture is built, but an update of the pytree
        (``optax.apply_updates``, a gradient step on the leaves) shifts it. Densities,
        moments, bounds and exports read the weights here, so they depend on the leaf
        only up to that constant, as NumPyro's ``Categorical`` does with its logits.
        """
        return jax.nn.log_softmax(self.logits, axis=-1)

    @_compiled_property
    def weights(self) -> jax.Array:
        """``(..., K)`` mixture weights (on a gradient pytree: meaningless, read `params`)."""
        return jnp.exp(self.log_weights)

    @_compiled_property
    def component_scale_tril(self) -> jax.Array:
        """``(..., K, D, D)`` dense lower Cholesky factors (``(..., K)`` std devs in 1-D)."""
        t, k = self.covariance_type, self.n_components
        s = factor(self.scale_param, t)
        if t == "full" or t == "univariate":
            return s
        if t == "tied":
            return jnp.broadcast_to(s[..., None, :, :], s.shape[:-2] + (k,) + s.shape[-2:])
        if t == "diag":
            return s[..., :, None] * jnp.eye(self.dim, dtype=s.dtype)
        return s[..., None, None] * jnp.eye(self.dim, dtype=s.dtype)

    @_compiled_property
    def component_covariance_matrix(self) -> jax.Array:
        """``(..., K, D, D)`` component covariances (``(..., K)`` variances in 1-D)."""
        if self.covariance_type == "univariate":
            return self.scale_param**2
        lt = self.component_scale_tril
        return lt @ jnp.swapaxes(lt, -1, -2)

    @_compiled_property
    def component_variances(self) -> jax.Array:
        """``(..., K, D)`` diagonal of each component covariance (``(..., K)`` in 1-D)."""
        t, s = self.covariance_type, factor(self.scale_param, self.covariance_type)
        if t in ("univariate", "diag"):
            return s**2
        if t == "full":
            return jnp.sum(s**2, axis=-1)
        if t == "tied":
            v = jnp.sum(s**2, axis=-1)
            return jnp.broadcast_to(v[..., None, :], s.shape[:-2] + (self.n_components, self.dim))
        return jnp.broadcast_to((s**2)[..., None], s.shape + (self.dim,))

    @_compiled_property
    def mean(self) -> jax.Array:
        """``Σ_k w_k μ_k``: ``batch_shape + event_shape``."""
        if self.covariance_type == "univariate":
            return jnp.sum(self.weights * self.locs, axis=-1)
        return jnp.einsum("...k,...kd->...d", self.weights, self.locs)

    @_compiled_property
    def variance(self) -> jax.Array:
        """Diagonal of the mixture covariance (law of total variance)."""
        w = self.weights
        if self.covariance_type == "univariate":
            dev = self.locs - self.mean[..., None]
            return jnp.sum(w * (self.component_variances + dev * dev), axis=-1)
        dev = self.locs - self.mean[..., None, :]
        return jnp.einsum("...k,...kd->...d", w, self.component_variances + dev * dev)

    @_compiled_property
    def covariance_matrix(self) -> jax.Array:
        """Mixture covariance ``Σ_k w_k (Σ_k + (μ_k - m)(μ_k - m)ᵀ)`` (the variance in 1-D)."""
        if self.covariance_type == "univariate":
            return self.variance
        w = self.weights
        dev = self.locs - self.mean[..., None, :]
        within = jnp.einsum("...k,...kde->...de", w, self.component_covariance_matrix)
        between = jnp.einsum("...k,...kd,...ke->...de", w, dev, dev)
        return within + between

    @_compiled_property
    def scale_tril(self) -> jax.Array:
        """Lower Cholesky factor of the mixture covariance (the std dev in 1-D)."""
        if self.covariance_type == "univariate":
            return jnp.sqrt(self.variance)
        return cholesky(self.covariance_matrix)

    @_compiled_property
    def precision_matrix(self) -> jax.Array:
        """Inverse of the mixture covariance, from its Cholesky factor (no ``inv``)."""
        if self.covariance_type == "univariate":
            return 1.0 / self.variance
        li = tril_inverse(self.scale_tril)
        return jnp.swapaxes(li, -1, -2) @ li

    @_compiled_property
    def scale(self) -> jax.Array:
        """Standard deviation of each coordinate of the mixture: ``sqrt(variance)``."""
        return jnp.sqrt(self.variance)

    def _moment(self, name: str) -> jax.Array:
        return _MOMENTS[name](self)

    def _sample_one(self, key, n: int, logits, locs, scale_param):
        k1, k2 = jax.random.split(key)
        # Gumbel-max: a -inf logit (a dead component) is never drawn
        c = jax.random.categorical(k1, logits, shape=(n,))
        t = self.covariance_type
        if t == "univariate":
            z = jax.random.normal(k2, (n,), dtype=locs.dtype)
            return locs[c] + scale_param[c] * z
        z = jax.random.normal(k2, (n, locs.shape[-1]), dtype=locs.dtype)
        if t == "full":
            return locs[c] + jnp.einsum("nde,ne->nd", scale_param[c], z)
        if t == "tied":
            return locs[c] + z @ scale_param.T
        if t == "diag":
            return locs[c] + scale_param[c] * z
        return locs[c] + scale_param[c][:, None] * z

    def sample(self, key, sample_shape=()) -> jax.Array:
        """Ancestral samples, pathwise in ``locs`` and the scales.

        Returns:
          ``sample_shape + batch_shape + event_shape``.
        """
        return method_call(self, "_sample", (key,), (tuple(sample_shape),))

    def _sample(self, key, sample_shape) -> jax.Array:
        n, batch = math.prod(sample_shape), self.batch_shape
        logits, locs, sp = self._full_leaves()
        if not batch:
            x = self._sample_one(key, n, logits, locs, sp)
            return x.reshape(sample_shape + self.event_shape)
        nb, ev, nsp = math.prod(batch), self._ev, SCALE_NDIM[self.covariance_type]
        x = jax.vmap(lambda kk, lg, m, s: self._sample_one(kk, n, lg, m, s))(
            jax.random.split(key, nb),
            logits.reshape(nb, -1),
            locs.reshape((nb,) + locs.shape[locs.ndim - 1 - ev :]),
            sp.reshape((nb,) + sp.shape[sp.ndim - nsp :]),
        )
        return jnp.moveaxis(x, 1, 0).reshape(sample_shape + batch + self.event_shape)

    def log_cdf(self, value) -> jax.Array:
        """``log P(X ≤ x)`` of a univariate mixture, in log space (``log_ndtr``).

        Raises:
          NotImplementedError: for a multivariate mixture (NumPyro's convention).
        """
        if self.covariance_type != "univariate":
            raise NotImplementedError(
                "cdf is defined only for univariate mixtures (event_shape == ()); "
                f"this mixture has event_shape {self.event_shape}"
            )
        return method_call(self, "_cdf", (value,), (True,))

    def _cdf(self, value, log: bool) -> jax.Array:
        logits, locs, sp = self._full_leaves()
        z = (jnp.asarray(value)[..., None] - locs) / sp
        out = logsumexp(logits + log_ndtr(z), axis=-1)
        return out if log else jnp.exp(out)

    def cdf(self, value) -> jax.Array:
        """``P(X ≤ x) = Σ_k w_k Φ((x - μ_k)/σ_k)`` of a univariate mixture."""
        if self.covariance_type != "univariate":
            return self.log_cdf(value)  # raises NumPyro's NotImplementedError
        return method_call(self, "_cdf", (value,), (False,))

    # ------------------------- NumPyro's mixture interface (``MixtureSameFamily``'s)
    @property
    def mixture_size(self) -> int:
        """``K``, as NumPyro's mixtures name it."""
        return self.n_components

    @property
    def mixture_dim(self) -> int:
        """The component axis of ``component_*`` outputs (``-event_dim - 1``)."""
        return -len(self.event_shape) - 1

    @property
    def mixing_distribution(self):
        """NumPyro ``Categorical`` over the components (``batch_shape``)."""
        return _numpyro_parts(self)[0]

    @property
    def component_distribution(self):
        """NumPyro ``Normal`` (univariate) or ``MultivariateNormal`` with batch
        ``batch_shape + (K,)``: its ``log_prob`` of ``x`` expanded at ``mixture_dim``
        gives the unweighted component log-densities."""
        return _numpyro_parts(self)[1]

    @_compiled_property
    def _read_leaves(self) -> tuple:
        """``(log_weights, locs, factor)`` broadcast to one batch shape, as every
        computation reads them (``_params.factor``): the leaves ``vmap_over`` may leave
        with different batch shapes, after a gradient step too."""
        return self._full_leaves()

    @property
    def component_mean(self) -> jax.Array:
        """``batch + (K,) + event`` component means."""
        return self._read_leaves[1]

    @_compiled_property
    def component_variance(self) -> jax.Array:
        """``batch + (K,) + event`` component variances (covariance diagonals)."""
        return jnp.broadcast_to(self.component_variances, self.component_mean.shape)

    def component_sample(self, key, sample_shape=()) -> jax.Array:
        """One draw from every component: ``sample_shape + batch + (K,) + event``."""
        shape = tuple(sample_shape) + self.batch_shape + (self.n_components,)
        return self.component_distribution.expand(shape).sample(key)

    def component_cdf(self, samples) -> jax.Array:
        """``Φ((x - μ_k)/σ_k)`` of a univariate mixture: ``sample + batch + (K,)``."""
        if self.covariance_type != "univariate":
            return self.log_cdf(samples)  # raises NumPyro's NotImplementedError
        return self.component_distribution.cdf(jnp.expand_dims(samples, -1))


def _numpyro_parts(m):
    from gmmjax.interop import to_numpyro  # interop imports the mixture

    d = to_numpyro(m)
    return d.mixing_distribution, d.component_distribution


def _leaf(a) -> str:
    if a is None or isinstance(a, (int, float, bool)):
        return repr(a)
    shape, dtype = getattr(a, "shape", None), getattr(a, "dtype", None)
    head = f"{dtype}{list(shape)}" if shape is not None else type(a).__name__
    if isinstance(a, jax.core.Tracer) or shape is None:
        return head
    try:
        body = np.array2string(np.asarray(a), precision=4, threshold=12, edgeitems=2)
    except Exception:  # noqa: BLE001 - a repr must never raise
        return head
    return f"{head} {' '.join(body.split())}"


_MEANING = {
    "full": "lower Cholesky factors",
    "tied": "one lower Cholesky factor",
    "diag": "standard deviations",
    "spherical": "standard deviations",
    "univariate": "standard deviations",
}


def mixture_repr(d) -> str:
    """Covariance type and every leaf with its dtype, shape and values; never raises
    (it also serves gradient pytrees, tracers and ``vmap_over`` axes)."""
    t = d.covariance_type
    shape = getattr(d.logits, "shape", None)
    k = shape[-1] if shape else "?"
    return (
        f"GaussianMixture(covariance_type={t!r}, K={k},\n"
        f"  logits={_leaf(d.logits)},\n  locs={_leaf(d.locs)},\n"
        f"  scale_param={_leaf(d.scale_param)})  # scale_param: {_MEANING.get(t, '?')}"
    )
