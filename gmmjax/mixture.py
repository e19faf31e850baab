"""`GaussianMixture`: a finite Gaussian mixture as a NumPyro distribution.

The mixture stores normalized log-weights (``logits``), component means
(``locs``) and one Cholesky-type factor per covariance type (``scale_param``):

=============  =========================  ==============================
type           ``scale_param`` shape      meaning
=============  =========================  ==============================
``full``       ``(..., K, D, D)``         lower Cholesky factor ``L_k``
``tied``       ``(..., D, D)``            one lower factor for all ``k``
``diag``       ``(..., K, D)``            standard deviations
``spherical``  ``(..., K)``               one standard deviation per ``k``
``univariate`` ``(..., K)``               standard deviations, scalar events
=============  =========================  ==============================

Every log-density goes through :func:`gmmjax.gaussian.log_gaussian_kernel`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr, logsumexp
from numpyro.distributions import Distribution, constraints

from gmmjax._validate import SCALE_NDIM, check_mixture_params
from gmmjax.gaussian import COVARIANCE_TYPES, log_gaussian_kernel, precision_cholesky

__all__ = ["GaussianMixture"]


class GaussianMixture(Distribution):
    """A mixture ``p(x) = Σ_k w_k N(x; μ_k, Σ_k)`` with one of five covariance types.

    The component covariances can be given in one of four ways (exactly one):
    ``covariance_matrix``, ``precision_matrix``, ``scale_tril`` or ``scale``. Their
    shape follows ``covariance_type``, as scikit-learn's ``covariances_`` do:

    * ``"full"`` (default for vector events): ``(..., K, D, D)`` matrices;
    * ``"tied"``: ``(..., D, D)``, one matrix shared by all components;
    * ``"diag"``: ``(..., K, D)`` variances (``covariance_matrix``), precisions
      (``precision_matrix``) or standard deviations (``scale``/``scale_tril``);
    * ``"spherical"``: ``(..., K)``, one variance (or precision, or standard
      deviation) per component;
    * ``"univariate"``: ``(..., K)``, for scalar events; chosen automatically when
      ``locs`` has the same number of dimensions as ``weights``.

    Args:
      weights: ``(..., K)`` mixture weights on the simplex. Or pass ``logits=``
        (unnormalized log-weights) instead.
      locs: ``(..., K, D)`` component means, or ``(..., K)`` for a 1-D mixture.
      covariance_matrix: component covariances (shapes above).
      logits: ``(..., K)`` unnormalized log-weights, instead of ``weights``.
      precision_matrix: component precisions (shapes above).
      scale_tril: lower Cholesky factors (``full``/``tied``) or standard deviations.
      scale: standard deviations (``diag``, ``spherical``, ``univariate``).
      covariance_type: one of ``"full"``, ``"tied"``, ``"diag"``, ``"spherical"``,
        ``"univariate"``; inferred when omitted.
      validate_args: NumPyro's flag. The parameter checks below always run when
        the arguments are concrete (outside ``jit``), whatever this flag says.

    Raises:
      ValueError: weights off the simplex, shapes that disagree, a covariance that
        is not positive definite, NaN or inf parameters.
      TypeError: no covariance or several covariances given.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> p = GaussianMixture(jnp.array([0.3, 0.7]), jnp.array([-1.0, 2.0]),
      ...                     scale=jnp.array([0.5, 1.0]))
      >>> p.event_shape, p.batch_shape
      ((), ())
      >>> p.sample(jax.random.key(0), (5,)).shape
      (5,)
      >>> q = GaussianMixture(jnp.ones(3) / 3, jnp.zeros((3, 2)),
      ...                     covariance_matrix=jnp.broadcast_to(jnp.eye(2), (3, 2, 2)))
      >>> q.log_prob(jnp.zeros((4, 2))).shape
      (4,)
    """

    arg_constraints = {
        "logits": constraints.real_vector,
        "locs": constraints.real,
        "scale_param": constraints.real,
    }
    pytree_data_fields = ("logits", "locs", "scale_param")
    pytree_aux_fields = ("covariance_type",)
    reparametrized_params = ["locs", "scale_param"]

    @classmethod
    def gather_pytree_data_fields(cls) -> tuple[str, ...]:
        # NumPyro gathers the fields in a set, whose order follows PYTHONHASHSEED; a sorted
        # order keeps the compiled programs (and the persistent cache keys) equal across runs
        return tuple(sorted(super().gather_pytree_data_fields()))

    @classmethod
    def gather_pytree_aux_fields(cls) -> tuple[str, ...]:
        return tuple(sorted(super().gather_pytree_aux_fields()))

    def __init__(
        self,
        weights=None,
        locs=None,
        covariance_matrix=None,
        *,
        logits=None,
        precision_matrix=None,
        scale_tril=None,
        scale=None,
        covariance_type: str | None = None,
        validate_args=None,
    ):
        logits, locs, scale_param, covariance_type = check_mixture_params(
            weights=weights,
            logits=logits,
            locs=locs,
            covariance_matrix=covariance_matrix,
            precision_matrix=precision_matrix,
            scale_tril=scale_tril,
            scale=scale,
            covariance_type=covariance_type,
        )
        self.logits = logits
        self.locs = locs
        self.scale_param = scale_param
        self.covariance_type = covariance_type
        event_shape = () if covariance_type == "univariate" else (locs.shape[-1],)
        super().__init__(
            batch_shape=logits.shape[:-1], event_shape=event_shape, validate_args=validate_args
        )

    @classmethod
    def from_params(cls, logits, locs, scale_param, covariance_type: str) -> "GaussianMixture":
        """Build from the stored parametrization without checks (safe inside ``jit``).

        Args:
          logits: ``(..., K)`` log-weights; they are normalized here.
          locs: ``(..., K, D)`` or ``(..., K)`` means.
          scale_param: the factor of ``covariance_type`` (module docstring).
          covariance_type: one of the five types.

        Returns:
          The mixture, with all parameters broadcast to one batch shape.
        """
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}"
            )
        logits = jax.nn.log_softmax(jnp.asarray(logits), axis=-1)
        locs = jnp.asarray(locs)
        scale_param = jnp.asarray(scale_param)
        univariate = covariance_type == "univariate"
        ev = 0 if univariate else 1
        nsp = SCALE_NDIM[covariance_type]
        batch = jnp.broadcast_shapes(
            logits.shape[:-1],
            locs.shape[: locs.ndim - 1 - ev],
            scale_param.shape[: scale_param.ndim - nsp],
        )
        d = 1 if univariate else locs.shape[-1]
        k = logits.shape[-1]
        self = cls.__new__(cls)
        self.logits = jnp.broadcast_to(logits, batch + (k,))
        self.locs = jnp.broadcast_to(locs, batch + locs.shape[locs.ndim - 1 - ev :])
        self.scale_param = jnp.broadcast_to(
            scale_param, batch + scale_param.shape[scale_param.ndim - nsp :]
        )
        self.covariance_type = covariance_type
        Distribution.__init__(self, batch_shape=batch, event_shape=() if univariate else (d,))
        return self

    # ----------------------------------------------------------------- shapes
    @property
    def batch_shape(self) -> tuple[int, ...]:
        # derived from the leaves so that a mixture stays correct under vmap
        return tuple(self.logits.shape[:-1])

    @property
    def support(self):
        return constraints.real if self.covariance_type == "univariate" else constraints.real_vector

    @property
    def n_components(self) -> int:
        """The number of components ``K``."""
        return self.logits.shape[-1]

    @property
    def dim(self) -> int:
        """The event dimension ``D`` (1 for a univariate mixture)."""
        return 1 if self.covariance_type == "univariate" else self.locs.shape[-1]

    # -------------------------------------------------------------- parameters
    @property
    def weights(self) -> jax.Array:
        """``(..., K)`` mixture weights."""
        return jnp.exp(self.logits)

    @property
    def precisions_cholesky(self) -> jax.Array:
        """Precision Cholesky factors in the kernel layout (sklearn's ``precisions_cholesky_``)."""
        if self.covariance_type in ("full", "tied"):
            return precision_cholesky(self.scale_param)
        return 1.0 / self.scale_param

    @property
    def component_scale_tril(self) -> jax.Array:
        """``(..., K, D, D)`` dense lower Cholesky factors (``(..., K)`` std devs in 1-D)."""
        t, s, k = self.covariance_type, self.scale_param, self.n_components
        if t == "full" or t == "univariate":
            return s
        if t == "tied":
            return jnp.broadcast_to(s[..., None, :, :], s.shape[:-2] + (k,) + s.shape[-2:])
        if t == "diag":
            return s[..., :, None] * jnp.eye(self.dim, dtype=s.dtype)
        return s[..., None, None] * jnp.eye(self.dim, dtype=s.dtype)

    @property
    def component_covariance_matrix(self) -> jax.Array:
        """``(..., K, D, D)`` component covariances (``(..., K)`` variances in 1-D)."""
        if self.covariance_type == "univariate":
            return self.scale_param**2
        lt = self.component_scale_tril
        return lt @ jnp.swapaxes(lt, -1, -2)

    @property
    def component_variances(self) -> jax.Array:
        """``(..., K, D)`` diagonal of each component covariance (``(..., K)`` in 1-D)."""
        t, s = self.covariance_type, self.scale_param
        if t == "univariate":
            return s**2
        if t == "full":
            return jnp.sum(s**2, axis=-1)
        if t == "tied":
            v = jnp.sum(s**2, axis=-1)
            return jnp.broadcast_to(v[..., None, :], s.shape[:-2] + (self.n_components, self.dim))
        if t == "diag":
            return s**2
        return jnp.broadcast_to((s**2)[..., None], s.shape + (self.dim,))

    # ------------------------------------------------------------ the kernel
    def _kernel_batched(self, x: jax.Array) -> jax.Array:
        """``(B..., N, D)`` points → ``(B..., N, K)`` component log-densities."""
        prec = self.precisions_cholesky
        t = self.covariance_type
        batch = self.batch_shape
        if not batch:
            return log_gaussian_kernel(x, self.locs, prec, t)
        nb = math.prod(batch)
        flat = lambda a, nd: a.reshape((nb,) + a.shape[a.ndim - nd :])  # noqa: E731
        ev = 0 if t == "univariate" else 1
        nsp = SCALE_NDIM[t]
        out = jax.vmap(lambda xx, m, p: log_gaussian_kernel(xx, m, p, t))(
            flat(x, 1 + ev), flat(self.locs, 1 + ev), flat(prec, nsp)
        )
        return out.reshape(batch + out.shape[1:])

    def _to_batch_major(self, x) -> tuple[jax.Array, tuple[int, ...]]:
        x = jnp.asarray(x)
        ev = self.event_shape
        if ev:
            if x.ndim == 0 or x.shape[-1] != ev[0]:
                got = x.shape[-1] if x.ndim else "a scalar"
                raise ValueError(
                    f"x has last dimension {got} but the mixture is {ev[0]}-dimensional; "
                    f"pass points of shape (..., {ev[0]})"
                )
        batch = self.batch_shape
        x_batch = x.shape[: x.ndim - len(ev)]
        try:
            full = jnp.broadcast_shapes(x_batch, batch)
        except ValueError:
            raise ValueError(
                f"x of shape {x.shape} does not broadcast against the batch shape {batch} "
                f"and event shape {ev}; pass shape sample_shape + {batch} + {ev}"
            ) from None
        sample_shape = full[: len(full) - len(batch)]
        x = jnp.broadcast_to(x, full + ev).reshape((math.prod(sample_shape),) + batch + ev)
        return jnp.moveaxis(x, 0, len(batch)), sample_shape

    def _from_batch_major(self, out: jax.Array, sample_shape) -> jax.Array:
        nb = len(self.batch_shape)
        out = jnp.moveaxis(out, nb, 0)
        return out.reshape(tuple(sample_shape) + out.shape[1:])

    def component_log_probs(self, x) -> jax.Array:
        """``log N(x; μ_k, Σ_k)`` for every component.

        Args:
          x: ``sample_shape + batch_shape + event_shape`` (broadcastable).

        Returns:
          ``sample_shape + batch_shape + (K,)``.
        """
        xb, sample_shape = self._to_batch_major(x)
        return self._from_batch_major(self._kernel_batched(xb), sample_shape)

    def log_prob(self, value) -> jax.Array:
        """``log p(x) = logsumexp_k (log w_k + log N(x; μ_k, Σ_k))``.

        Args:
          value: ``sample_shape + batch_shape + event_shape`` (broadcastable).

        Returns:
          ``sample_shape + batch_shape`` log-densities.
        """
        xb, sample_shape = self._to_batch_major(value)
        comp = self._kernel_batched(xb)
        lp = logsumexp(comp + self.logits[..., None, :], axis=-1)
        return self._from_batch_major(lp, sample_shape)

    def responsibilities(self, x) -> jax.Array:
        """Posterior component probabilities ``p(k | x)``: ``sample + batch + (K,)``."""
        xb, sample_shape = self._to_batch_major(x)
        comp = self._kernel_batched(xb) + self.logits[..., None, :]
        return self._from_batch_major(jax.nn.softmax(comp, axis=-1), sample_shape)

    # --------------------------------------------------------------- sampling
    def _sample_one(self, key, n: int, logits, locs, scale_param):
        k1, k2 = jax.random.split(key)
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

        Args:
          key: a JAX PRNG key.
          sample_shape: leading shape of the draw.

        Returns:
          ``sample_shape + batch_shape + event_shape``.
        """
        sample_shape = tuple(sample_shape)
        n = math.prod(sample_shape)
        batch = self.batch_shape
        if not batch:
            x = self._sample_one(key, n, self.logits, self.locs, self.scale_param)
            return x.reshape(sample_shape + self.event_shape)
        nb = math.prod(batch)
        t = self.covariance_type
        ev = 0 if t == "univariate" else 1
        nsp = SCALE_NDIM[t]
        keys = jax.random.split(key, nb)
        x = jax.vmap(lambda kk, lg, m, s: self._sample_one(kk, n, lg, m, s))(
            keys,
            self.logits.reshape(nb, -1),
            self.locs.reshape((nb,) + self.locs.shape[self.locs.ndim - 1 - ev :]),
            self.scale_param.reshape((nb,) + self.scale_param.shape[self.scale_param.ndim - nsp :]),
        )
        x = jnp.moveaxis(x, 1, 0)  # (n, nb, ev)
        return x.reshape(sample_shape + batch + self.event_shape)

    # ---------------------------------------------------------------- moments
    @property
    def mean(self) -> jax.Array:
        """``Σ_k w_k μ_k``: ``batch_shape + event_shape``."""
        if self.covariance_type == "univariate":
            return jnp.sum(self.weights * self.locs, axis=-1)
        return jnp.einsum("...k,...kd->...d", self.weights, self.locs)

    @property
    def variance(self) -> jax.Array:
        """Diagonal of the mixture covariance (law of total variance)."""
        w = self.weights
        if self.covariance_type == "univariate":
            dev = self.locs - self.mean[..., None]
            return jnp.sum(w * (self.component_variances + dev * dev), axis=-1)
        dev = self.locs - self.mean[..., None, :]
        return jnp.einsum("...k,...kd->...d", w, self.component_variances + dev * dev)

    @property
    def covariance_matrix(self) -> jax.Array:
        """Mixture covariance ``Σ_k w_k (Σ_k + (μ_k - m)(μ_k - m)ᵀ)`` (the variance in 1-D)."""
        if self.covariance_type == "univariate":
            return self.variance
        w = self.weights
        dev = self.locs - self.mean[..., None, :]
        within = jnp.einsum("...k,...kde->...de", w, self.component_covariance_matrix)
        between = jnp.einsum("...k,...kd,...ke->...de", w, dev, dev)
        return within + between

    # --------------------------------------------------------------- 1-D only
    def log_cdf(self, value) -> jax.Array:
        """``log P(X ≤ x)`` of a univariate mixture, in log space (``log_ndtr``)."""
        if self.covariance_type != "univariate":
            raise ValueError(
                "cdf is defined only for univariate mixtures (event_shape == ()); "
                f"this mixture has event_shape {self.event_shape}"
            )
        x = jnp.asarray(value)[..., None]
        z = (x - self.locs) / self.scale_param
        return logsumexp(self.logits + log_ndtr(z), axis=-1)

    def cdf(self, value) -> jax.Array:
        """``P(X ≤ x) = Σ_k w_k Φ((x - μ_k)/σ_k)`` of a univariate mixture."""
        return jnp.exp(self.log_cdf(value))

    # ---------------------------------------------------------------- batching
    def expand(self, batch_shape) -> "GaussianMixture":
        """A mixture with parameters broadcast to ``batch_shape`` (still a GaussianMixture)."""
        batch_shape = tuple(batch_shape)
        try:
            jnp.broadcast_shapes(batch_shape, self.batch_shape)
        except ValueError:
            raise ValueError(
                f"cannot expand batch shape {self.batch_shape} to {batch_shape}"
            ) from None
        lead = lambda a, nd: jnp.broadcast_to(a, batch_shape + a.shape[a.ndim - nd :])  # noqa: E731
        t = self.covariance_type
        ev = 0 if t == "univariate" else 1
        nsp = SCALE_NDIM[t]
        return GaussianMixture.from_params(
            lead(self.logits, 1), lead(self.locs, 1 + ev), lead(self.scale_param, nsp), t
        )

    def __repr__(self) -> str:
        return (
            f"GaussianMixture(K={self.n_components}, event_shape={self.event_shape}, "
            f"batch_shape={self.batch_shape}, covariance_type={self.covariance_type!r})"
        )
