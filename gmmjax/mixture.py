"""`GaussianMixture`: a finite Gaussian mixture as a NumPyro distribution.

The mixture stores three leaves, `MixtureParams`: normalized log-weights
(``logits``), component means (``locs``) and one Cholesky-type factor per covariance
type (``scale_param``: lower Cholesky factors for ``full``/``tied``, standard
deviations for ``diag``/``spherical``/``univariate``; shapes in `MixtureParams`).
Every log-density goes through :func:`gmmjax.gaussian.log_gaussian_kernel`.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.batch_util import promote_batch_shape, vmap_over
from numpyro.util import find_stack_level

from gmmjax import _params
from gmmjax._moments import MomentsMixin, _compiled_property, mixture_repr
from gmmjax._params import SCALE_NDIM
from gmmjax._reduce import logsumexp_last
from gmmjax._runtime.compile import method_call
from gmmjax._validate import checked, checkify_mode, leaf_checks, validate
from gmmjax.gaussian import COVARIANCE_TYPES, log_gaussian_kernel, precision_cholesky

__all__ = ["GaussianMixture", "MixtureParams", "checked"]


class MixtureParams(NamedTuple):
    """The stored parameters of a `GaussianMixture`: what ``jax.grad`` differentiates.

    Differentiate a function of ``MixtureParams`` (not of a mixture) to get gradients
    with unambiguous names; rebuild with ``p.with_params(params)``.

    Attributes:
      logits: ``(..., K)`` normalized log-weights (``-inf`` for a dead component).
      locs: ``(..., K, D)`` means (``(..., K)`` for a univariate mixture).
      scale_param: the covariance factor of the type: lower Cholesky
        factors ``(..., K, D, D)`` (full) or ``(..., D, D)`` (tied), standard
        deviations ``(..., K, D)`` (diag) or ``(..., K)`` (spherical, univariate).
    """

    logits: jax.Array
    locs: jax.Array
    scale_param: jax.Array


class _ArgConstraints(dict):
    """``arg_constraints``: on an instance, those of its covariance type; on the class,
    those of the default ``"full"`` type (see `GaussianMixture.arg_constraints_for`)."""

    def __get__(self, obj, objtype=None):
        return self if obj is None else _params.arg_constraints_for(obj.covariance_type)


class GaussianMixture(MomentsMixin, Distribution):
    """A mixture ``p(x) = Σ_k w_k N(x; μ_k, Σ_k)`` with one of five covariance types.

    The component covariances are given in one of four ways (exactly one):
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

    Zero weights are allowed (a dead component: never sampled, no mass in
    ``log_prob``). ``arg_constraints`` is keyed by these arguments with their true
    event dimensions (the ``K`` axis included), so NumPyro's ``infer_shapes``,
    ``scan``, ``vmap_over`` and ``expand`` work. Attributes named like arguments
    (``covariance_matrix``, ``precision_matrix``, ``scale_tril``, ``scale``) describe the
    mixture as a whole (its first two moments); component parameters are the
    ``component_*`` properties and `params`.

    Args:
      weights: ``(..., K)`` mixture weights on the simplex. Or pass ``logits=``
        (unnormalized log-weights; ``-inf`` marks a dead component) instead.
      locs: ``(..., K, D)`` component means, or ``(..., K)`` for a 1-D mixture.
      covariance_matrix: component covariances (shapes above).
      logits: ``(..., K)`` unnormalized log-weights, instead of ``weights``.
      precision_matrix: component precisions (shapes above).
      scale_tril: lower Cholesky factors (``full``/``tied``) or standard deviations.
      scale: standard deviations (``diag``, ``spherical``, ``univariate``).
      covariance_type: one of ``"full"``, ``"tied"``, ``"diag"``, ``"spherical"``,
        ``"univariate"``; inferred when omitted.
      validate_args: NumPyro's flag. Shape checks always run. Value checks (simplex,
        positive definiteness, finiteness, a lower-triangular ``scale_tril``) run when
        validation is on (NumPyro's default) on concrete values, including constants
        inside ``jit``; traced values are checked under :func:`checked`.

    Raises:
      ValueError: shapes that disagree; with validation on, weights off the simplex,
        a covariance that is not positive definite, NaN or inf parameters.
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

    arg_constraints = _ArgConstraints(_params.arg_constraints_for("full"))
    pytree_data_fields = ("logits", "locs", "scale_param")
    pytree_aux_fields = ("covariance_type",)
    # the draw is pathwise in these; the component choice is discrete, so (as for
    # NumPyro's MixtureSameFamily) has_rsample is False
    reparametrized_params = ["locs", "covariance_matrix", "precision_matrix", "scale_tril", "scale"]

    def __init_subclass__(cls, **kwargs):
        # a subclass that fixes its own arg_constraints must not turn them into leaves
        cls.pytree_data_fields = cls.__dict__.get("pytree_data_fields", ())
        super().__init_subclass__(**kwargs)

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
        cov_args = dict(
            covariance_matrix=covariance_matrix,
            precision_matrix=precision_matrix,
            scale_tril=scale_tril,
            scale=scale,
        )
        layout, raw = _params.convert(
            weights=weights,
            logits=logits,
            locs=locs,
            cov_args=cov_args,
            covariance_type=covariance_type,
        )
        covariance_type = layout.covariance_type
        flag = type(self)._validate_args if validate_args is None else validate_args
        if checkify_mode():
            validate(raw, covariance_type)
            logits, locs, scale_param = _params.stored(layout, *raw.values())
        else:
            (logits, locs, scale_param), ok = _params.build(tuple(raw.values()), layout, bool(flag))
            if flag and (isinstance(ok, jax.core.Tracer) or not bool(ok)):
                validate(raw, covariance_type)  # raises the first failed check's message
        self.logits, self.locs, self.scale_param = logits, locs, scale_param
        self.covariance_type = covariance_type
        event_shape = () if covariance_type == "univariate" else (locs.shape[-1],)
        super().__init__(logits.shape[:-1], event_shape, validate_args=False)
        self._validate_args = bool(flag)

    @classmethod
    def from_params(
        cls, logits, locs, scale_param, covariance_type: str, *, validate_args=None
    ) -> GaussianMixture:
        """Build from the stored parametrization (`MixtureParams`), safe inside ``jit``.

        No value checks run (except under :func:`checked`); ``validate_args`` sets
        NumPyro's out-of-support warning of ``log_prob``.

        Args:
          logits: ``(..., K)`` log-weights; they are normalized here.
          locs: ``(..., K, D)`` or ``(..., K)`` means.
          scale_param: the factor of ``covariance_type`` (module docstring).
          covariance_type: one of the five types.

        Returns:
          The mixture, with all parameters broadcast to one batch shape.

        Example:
          >>> import jax.numpy as jnp
          >>> p = GaussianMixture.from_params(jnp.zeros(2), jnp.array([-1.0, 1.0]),
          ...                                 jnp.ones(2), "univariate")
          >>> p.weights.tolist()
          [0.5, 0.5]
        """
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}"
            )
        logits = jax.nn.log_softmax(jnp.asarray(logits), axis=-1)
        locs, scale_param = jnp.asarray(locs), jnp.asarray(scale_param)
        univariate = covariance_type == "univariate"
        ev, nsp = (0 if univariate else 1), SCALE_NDIM[covariance_type]
        batch = jnp.broadcast_shapes(
            logits.shape[:-1],
            locs.shape[: locs.ndim - 1 - ev],
            scale_param.shape[: scale_param.ndim - nsp],
        )
        if checkify_mode():
            leaf_checks(logits, locs, scale_param, covariance_type, strict=False)
        self = cls.__new__(cls)
        self.logits = jnp.broadcast_to(logits, batch + logits.shape[-1:])
        self.locs = jnp.broadcast_to(locs, batch + locs.shape[locs.ndim - 1 - ev :])
        self.scale_param = jnp.broadcast_to(
            scale_param, batch + scale_param.shape[scale_param.ndim - nsp :]
        )
        self.covariance_type = covariance_type
        event = () if univariate else locs.shape[-1:]
        Distribution.__init__(self, batch, event, validate_args=False)
        self._validate_args = bool(
            type(self)._validate_args if validate_args is None else validate_args
        )
        return self

    # ------------------------------------------------------- the NumPyro contract
    @classmethod
    def arg_constraints_for(cls, covariance_type: str) -> dict:
        """``arg_constraints`` of a mixture of this covariance type (keyed by argument)."""
        return _params.arg_constraints_for(covariance_type)

    @classmethod
    def infer_shapes(cls, *args, covariance_type: str | None = None, **kwargs):
        """``(batch_shape, event_shape)`` from the shapes of the constructor's arguments.

        Example:
          >>> GaussianMixture.infer_shapes((3,), (3,), (3,))
          ((), ())
          >>> GaussianMixture.infer_shapes((5, 3), (5, 3, 2), (3, 2, 2))
          ((5,), (2,))
        """
        if len(args) > len(_params.POSITIONAL):
            raise TypeError("GaussianMixture.infer_shapes takes at most 3 positional shapes")
        kwargs.update(zip(_params.POSITIONAL, args, strict=False))
        own = cls.arg_constraints  # a subclass may fix its covariance type's constraints
        fixed = None if covariance_type or isinstance(own, _ArgConstraints) else own
        return _params.infer_shapes(kwargs, covariance_type, fixed)

    def get_args(self) -> dict:
        """The parameters by constructor argument name, in the constructor's layout."""
        cov = "scale_tril" if self.covariance_type in ("full", "tied") else "scale"
        return {"logits": self.logits, "locs": self.locs, cov: self.scale_param}

    def validate_args(self, strict: bool = True) -> None:
        """Check the stored parameters (NumPyro's contract: under ``jit`` with
        ``strict``, ``RuntimeError``)."""
        leaf_checks(self.logits, self.locs, self.scale_param, self.covariance_type, strict=strict)

    @property
    def has_rsample(self) -> bool:
        return False

    @property
    def params(self) -> MixtureParams:
        """``MixtureParams(logits, locs, scale_param)``: the leaves, by name."""
        return MixtureParams(self.logits, self.locs, self.scale_param)

    def with_params(self, params: MixtureParams) -> GaussianMixture:
        """The mixture of the same covariance type with these `MixtureParams`."""
        return type(self).from_params(*params, self.covariance_type)

    # ----------------------------------------------------------------- shapes
    @property
    def _ev(self) -> int:
        return 0 if self.covariance_type == "univariate" else 1

    @property
    def batch_shape(self) -> tuple[int, ...]:
        # derived from the leaves so that a mixture stays correct under vmap and scan
        nsp, ev = SCALE_NDIM[self.covariance_type], self._ev
        lg, lc, sp = self.logits, self.locs, self.scale_param
        return tuple(
            jnp.broadcast_shapes(
                lg.shape[:-1], lc.shape[: lc.ndim - 1 - ev], sp.shape[: sp.ndim - nsp]
            )
        )

    def _full_leaves(self):
        """The leaves broadcast to ``batch_shape`` (they may differ after ``vmap_over``),
        the log-weights normalized (`log_weights`), the factor lower (``_params.factor``)."""
        b, nsp, ev = self.batch_shape, SCALE_NDIM[self.covariance_type], self._ev
        lg, lc = jax.nn.log_softmax(self.logits, -1), self.locs
        sp = _params.factor(self.scale_param, self.covariance_type)
        return (
            jnp.broadcast_to(lg, b + lg.shape[-1:]),
            jnp.broadcast_to(lc, b + lc.shape[lc.ndim - 1 - ev :]),
            jnp.broadcast_to(sp, b + sp.shape[sp.ndim - nsp :]),
        )

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

    @_compiled_property
    def precisions_cholesky(self) -> jax.Array:
        """Precision Cholesky factors in the kernel layout (sklearn's ``precisions_cholesky_``)."""
        s = _params.factor(self.scale_param, self.covariance_type)
        return precision_cholesky(s) if self.covariance_type in ("full", "tied") else 1.0 / s

    # ------------------------------------------------------------ the kernel
    def _kernel_batched(self, x: jax.Array) -> jax.Array:
        """``(B..., N, D)`` points → ``(B..., N, K)`` component log-densities."""
        t, batch = self.covariance_type, self.batch_shape
        _, locs, sp = self._full_leaves()
        prec = precision_cholesky(sp) if t in ("full", "tied") else 1.0 / sp
        if not batch:
            return log_gaussian_kernel(x, locs, prec, t)
        nb, ev, nsp = math.prod(batch), self._ev, SCALE_NDIM[t]
        flat = lambda a, nd: a.reshape((nb,) + a.shape[a.ndim - nd :])  # noqa: E731
        out = jax.vmap(lambda xx, m, p: log_gaussian_kernel(xx, m, p, t))(
            flat(x, 1 + ev), flat(locs, 1 + ev), flat(prec, nsp)
        )
        return out.reshape(batch + out.shape[1:])

    def component_log_probs(self, x) -> jax.Array:
        """``log w_k + log N(x; μ_k, Σ_k)``, ``sample + batch + (K,)``: NumPyro's mixtures'
        (weighted; the unweighted ``log N`` is ``component_distribution.log_prob``)."""
        return method_call(self, "_per_point", (x,), ("weighted",))

    def _per_point(self, x, what: str) -> jax.Array:
        """Component log-densities (weighted or not), ``log_prob`` or responsibilities."""
        xb, sample_shape = _params.to_batch_major(x, self.batch_shape, self.event_shape)
        comp = self._kernel_batched(xb)
        if what != "components":
            comp = comp + self._full_leaves()[0][..., None, :]
        if what in ("log_prob", "responsibilities"):
            comp = logsumexp_last(comp) if what == "log_prob" else jax.nn.softmax(comp, -1)
        return _params.from_batch_major(len(self.batch_shape), comp, sample_shape)

    def log_prob(self, value) -> jax.Array:
        """``log p(x) = logsumexp_k (log w_k + log N(x; μ_k, Σ_k))``.

        Args:
          value: ``sample_shape + batch_shape + event_shape`` (broadcastable).

        Returns:
          ``sample_shape + batch_shape`` log-densities (``-inf`` with NumPyro's
          out-of-support warning for NaN or inf values when validating).
        """
        if not self._validate_args:
            return method_call(self, "_per_point", (value,), ("log_prob",))
        traced = any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(self))
        if isinstance(value, jax.core.Tracer) or not traced:  # NumPyro's validate_sample,
            lp, ok = method_call(self, "_log_prob_in_support", (value,))  # in the program
        else:  # data closed over by the caller's jit: checked here; in the program XLA
            # folds the check over the whole constant (+4.5 s to compile at N = 10⁵, D = 64)
            with jax.ensure_compile_time_eval():
                mask = self.support(jnp.asarray(value))
                ok = bool(jnp.all(mask))
            lp = method_call(self, "_per_point", (value,), ("log_prob",))
            lp = lp if ok else jnp.where(mask, lp, -jnp.inf)
        if not isinstance(ok, jax.core.Tracer) and not bool(ok):
            warnings.warn(
                "Out-of-support values provided to log prob method. "
                "The value argument should be within the support.",
                stacklevel=find_stack_level(),
            )
        return lp

    def _log_prob_in_support(self, value):
        mask = self.support(value)
        return jnp.where(mask, self._per_point(value, "log_prob"), -jnp.inf), jnp.all(mask)

    def responsibilities(self, x) -> jax.Array:
        """Posterior component probabilities ``p(k | x)``: ``sample + batch + (K,)``."""
        return method_call(self, "_per_point", (x,), ("responsibilities",))

    # ---------------------------------------------------------------- batching
    def expand(self, batch_shape) -> GaussianMixture:
        """A mixture with parameters broadcast to ``batch_shape`` (still a GaussianMixture).

        Raises:
          ValueError: ``batch_shape`` does not extend the batch shape (NumPyro's
            "Cannot broadcast distribution of shape ..." message).
        """
        batch_shape, old = tuple(batch_shape), self.batch_shape
        bad = len(batch_shape) < len(old) or any(
            o not in (1, n) for o, n in zip(old[::-1], batch_shape[::-1], strict=False)
        )
        if bad:
            raise ValueError(
                f"Cannot broadcast distribution of shape {old} to shape {batch_shape}: "
                "a batch dimension can only be added on the left or grown from size 1"
            )
        logits, locs, sp = self._full_leaves()
        t, ev, nsp = self.covariance_type, self._ev, SCALE_NDIM[self.covariance_type]
        lead = lambda a, nd: jnp.broadcast_to(a, batch_shape + a.shape[a.ndim - nd :])  # noqa: E731
        out = GaussianMixture.from_params(lead(logits, 1), lead(locs, 1 + ev), lead(sp, nsp), t)
        out._validate_args = self._validate_args
        return out

    def __repr__(self) -> str:
        return mixture_repr(self)


@vmap_over.register
def _vmap_over_gaussian_mixture(d: GaussianMixture, **axes_of):
    """Axes of a mixture's leaves from the axes of its constructor arguments (by name)."""
    first = lambda *names: next((axes_of[n] for n in names if axes_of.get(n) is not None), None)  # noqa: E731
    axes = copy.copy(d)
    axes.logits = first("weights", "logits")
    axes.locs = axes_of.get("locs")
    axes.scale_param = first("covariance_matrix", "precision_matrix", "scale_tril", "scale")
    return axes


@promote_batch_shape.register
def _promote_batch_shape_gaussian_mixture(d: GaussianMixture):
    # batch_shape is read from the leaves, so dimensions added by vmap or scan show up
    return copy.copy(d)
