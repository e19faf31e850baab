"""How `GaussianMixture`'s constructor arguments map to its stored parameters (private).

Three things live here, all about *structure* (shapes, covariance types), never values:

* :func:`arg_constraints_for`: NumPyro constraints keyed by the constructor's
  arguments, with their true event dimensions (the component axis ``K`` is part of
  every argument's event), as NumPyro's ``infer_shapes``, ``promote_batch_shape`` and
  test battery read them.
* :func:`infer_shapes`: ``(batch_shape, event_shape)`` from argument shapes.
* :func:`convert`: the always-on structural checks (clear ``TypeError``/``ValueError``)
  and the conversion to the stored ``(logits, locs, scale_param)``. Value checks
  (simplex, positive definiteness, finiteness) are in :mod:`gmmjax._validate` and
  follow ``validate_args``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from gmmjax._validate import all_pass
from gmmjax.gaussian import COVARIANCE_TYPES, cholesky, scale_tril_from_precision

# number of trailing (non-batch) dimensions of the stored scale factor
SCALE_NDIM = {"full": 3, "tied": 2, "diag": 2, "spherical": 1, "univariate": 1}
COV_ARGS = ("covariance_matrix", "precision_matrix", "scale_tril", "scale")
POSITIONAL = ("weights", "locs", "covariance_matrix")


def factor(scale_param, covariance_type: str):
    """The leaf ``scale_param`` as every computation reads it (numpy or jax arrays).

    A gradient step on the pytree moves the leaf freely. Read this way, it still means
    one covariance for sampling, density, moments and exports alike:

    * only the lower triangle of a full or tied factor counts (its upper triangle gets a
      zero gradient everywhere and stays as it was);
    * signs do not count: column ``j`` of ``L`` is multiplied by the sign of ``L_jj``
      (``(LS)(LS)ᵀ = LLᵀ``) and standard deviations are taken absolute, so a step that
      overshoots a diagonal through zero gives the mirrored factor of the same
      covariance, not ``log`` of a negative number (NaN).

    For a leaf built by the constructor (positive diagonal, lower triangular) it returns
    the leaf's own values.
    """
    xp = np if isinstance(scale_param, np.ndarray) else jnp
    if covariance_type not in ("full", "tied"):
        return xp.abs(scale_param)
    low = xp.tril(scale_param)
    return low * xp.sign(xp.diagonal(low, axis1=-2, axis2=-1))[..., None, :]


def log_weights_np(logits) -> np.ndarray:
    """``GaussianMixture.log_weights`` on the host, in float64 (exports and files)."""
    lw = np.asarray(logits, np.float64)
    return lw - np.logaddexp.reduce(lw, axis=-1, keepdims=True)


def arg_constraints_for(covariance_type: str) -> dict:
    """Constraints keyed by constructor argument for one covariance type.

    Event dimensions count the component axis: ``weights`` ``(..., K)`` is a simplex
    (event_dim 1), ``locs`` ``(..., K, D)`` is ``independent(real_vector, 1)`` (2), a
    full ``covariance_matrix`` ``(..., K, D, D)`` is ``independent(positive_definite, 1)``
    (3), a tied one ``(..., D, D)`` is ``positive_definite`` (2), and so on.
    ``scale=`` exists for the diagonal types only.
    """
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}"
        )
    c = constraints
    uni = covariance_type == "univariate"
    out = {
        "weights": c.simplex,
        "logits": c.real_vector,
        "locs": c.real_vector if uni else c.independent(c.real_vector, 1),
    }
    if covariance_type == "full":
        pd, tril = c.independent(c.positive_definite, 1), c.independent(c.lower_cholesky, 1)
    elif covariance_type == "tied":
        pd, tril = c.positive_definite, c.lower_cholesky
    else:
        pd = tril = c.independent(c.positive, SCALE_NDIM[covariance_type])
    out.update(covariance_matrix=pd, precision_matrix=pd, scale_tril=tril)
    if covariance_type not in ("full", "tied"):
        out["scale"] = pd
    return out


def default_type(weights_ndim: int, locs_ndim: int) -> str:
    """The constructor's rule: ``univariate`` when ``locs`` has the weights' rank, else ``full``."""
    return "univariate" if locs_ndim == weights_ndim else "full"


def infer_shapes(shapes: dict, covariance_type: str | None, constraint_dict: dict | None):
    """``(batch_shape, event_shape)`` of a mixture built from arguments of these shapes.

    Args:
      shapes: argument name → shape tuple (or ``None``).
      covariance_type: as for the constructor; inferred like the constructor when ``None``.
      constraint_dict: constraints to read event dims from (a subclass with a fixed
        covariance type); ``None`` to derive them from the covariance type.
    """
    shapes = {k: tuple(v) for k, v in shapes.items() if v is not None}
    unknown = set(shapes) - set(POSITIONAL) - {"logits", *COV_ARGS}
    if unknown:
        raise TypeError(f"GaussianMixture.infer_shapes: unknown arguments {sorted(unknown)}")
    w = shapes.get("weights", shapes.get("logits"))
    if w is None or "locs" not in shapes:
        raise TypeError(
            "GaussianMixture.infer_shapes needs the shapes of weights (or logits) and locs"
        )
    if constraint_dict is None:
        t = covariance_type or default_type(len(w), len(shapes["locs"]))
        constraint_dict = arg_constraints_for(t)
    batch = []
    for name, shape in shapes.items():
        ev = constraint_dict[name].event_dim
        if len(shape) < ev:
            raise ValueError(
                f"GaussianMixture.infer_shapes: `{name}` of shape {shape} has fewer than "
                f"its {ev} event dimensions"
            )
        batch.append(shape[: len(shape) - ev])
    event = () if constraint_dict["locs"].event_dim == 1 else shapes["locs"][-1:]
    return jax.lax.broadcast_shapes(*batch) if batch else (), event


def to_device(x, dtype=None, op=None) -> jax.Array:
    """``jnp.asarray(x, dtype)`` (or of ``op(jnp, x)``), computed with NumPy on the host.

    Eagerly every ``jnp`` call compiles a small program per shape and dtype, even
    ``jnp.asarray`` of a NumPy array; NumPy gives the same bits for casts, reshapes,
    concatenations and exact elementwise arithmetic without one, and
    ``jax.device_put`` moves the result. So concrete values go ``op(np, x)`` →
    ``np.asarray(·, dtype)`` → ``jax.device_put``: the dtype is canonicalized as JAX
    does (float64 is float32 without ``jax_enable_x64``), and the result stays a
    concrete array even inside ``jit``, so checks can read it.

    Two cases stay on the device, as ``jnp.asarray``: ``x`` holding a tracer (called
    inside the caller's ``jit``, ``vmap`` or ``grad``: ``op(jnp, x)``), and a JAX array
    without ``op``, returned as is, or cast on its device when ``dtype`` differs (a
    device cast flushes subnormals to zero, a host cast keeps them).

    Args:
      x: an array, a scalar, or a (nested) list or tuple of them.
      dtype: the result's dtype; ``None`` keeps ``x``'s (canonicalized).
      op: ``op(xp, x)`` with ``xp`` NumPy or ``jax.numpy``: the array to convert.
    """
    with jax.ensure_compile_time_eval():
        if op is None and isinstance(x, jax.Array):
            keep = dtype is None or (x.dtype == dtype and not x.weak_type)
            return x if keep else jnp.asarray(x, dtype)
        if any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(x)):
            return jnp.asarray(x if op is None else op(jnp, x), dtype)
        if op is None and dtype is None and isinstance(x, bool | int | float | complex):
            return jax.device_put(x)  # weakly typed, as jnp.asarray makes a Python scalar
        return jax.device_put(np.asarray(x if op is None else op(np, x), dtype))


def as_float(a) -> jax.Array:
    """``a`` as a floating JAX array (integers go to the default float type).

    Constants stay concrete inside ``jit`` so that the value checks can read them.
    """
    a = to_device(a)
    if jnp.issubdtype(a.dtype, jnp.floating):
        return a
    return to_device(a, jnp.result_type(float))


def _safe_log(w):
    """``log w`` with ``-inf`` at zero and a zero (not NaN) derivative there."""
    pos = w > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, w, 1.0)), -jnp.inf)


def _expected_scale_shape(covariance_type: str, k: int, d: int) -> tuple[int, ...]:
    return {
        "full": (k, d, d),
        "tied": (d, d),
        "diag": (k, d),
        "spherical": (k,),
        "univariate": (k,),
    }[covariance_type]


def to_scale_param(covariance_type: str, name: str, value: jax.Array) -> jax.Array:
    """The stored factor from one covariance argument (no checks)."""
    if covariance_type in ("full", "tied"):
        if name == "covariance_matrix":
            return cholesky(value)
        if name == "precision_matrix":
            return scale_tril_from_precision(value)
        return jnp.tril(value)
    if name == "covariance_matrix":
        return jnp.sqrt(value)
    if name == "precision_matrix":
        return jax.lax.rsqrt(value)
    return value


def convert(*, weights, logits, locs, cov_args: dict, covariance_type):
    """Structural checks, then ``(layout, raw)``.

    ``raw`` maps the given argument names to their (float) arrays; `stored` turns them
    into the stored parameters, and the value checks read them.
    """
    if (weights is None) == (logits is None):
        raise TypeError("GaussianMixture: pass exactly one of weights or logits=")
    if locs is None:
        raise TypeError("GaussianMixture: locs is required, shape (..., K, D) or (..., K)")
    given = [n for n in COV_ARGS if cov_args.get(n) is not None]
    if len(given) != 1:
        raise TypeError(
            "GaussianMixture: pass exactly one of covariance_matrix=, precision_matrix=, "
            f"scale_tril= or scale=; got {given or 'none'}"
        )
    name = given[0]
    wname = "weights" if weights is not None else "logits"
    wv = as_float(weights if weights is not None else logits)
    locs = as_float(locs)
    cov = as_float(cov_args[name])
    raw = {wname: wv, "locs": locs, name: cov}
    if wv.ndim == 0:
        raise ValueError(f"GaussianMixture: {wname} must have shape (..., K), got a scalar")
    k = wv.shape[-1]
    if covariance_type is None:
        covariance_type = default_type(wv.ndim, locs.ndim)
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"GaussianMixture: covariance_type must be one of {COVARIANCE_TYPES}, "
            f"got {covariance_type!r}"
        )
    uni = covariance_type == "univariate"
    ev = 0 if uni else 1
    if locs.ndim < 1 + ev or locs.shape[locs.ndim - 1 - ev] != k:
        want = "(..., K)" if uni else "(..., K, D)"
        raise ValueError(
            f"GaussianMixture: locs must have shape {want} with K={k} components "
            f"(from the {wname}), got {locs.shape}"
        )
    d = 1 if uni else locs.shape[-1]
    if name == "scale" and covariance_type in ("full", "tied"):
        raise TypeError(
            f"scale= is for diag, spherical and univariate mixtures; for "
            f"covariance_type={covariance_type!r} pass scale_tril= (a lower Cholesky factor)"
        )
    nsp = SCALE_NDIM[covariance_type]
    want = _expected_scale_shape(covariance_type, k, d)
    if cov.ndim < nsp or cov.shape[cov.ndim - nsp :] != want:
        hint = ""
        if covariance_type == "spherical" and cov.shape[-2:] == (k, d):
            hint = "; for one variance per component and dimension use covariance_type='diag'"
        raise ValueError(
            f"GaussianMixture: `{name}` must have shape (...,) + {want} for "
            f"covariance_type={covariance_type!r} with K={k}, D={d}; got {cov.shape}{hint}"
        )
    w_batch, l_batch = wv.shape[:-1], locs.shape[: locs.ndim - 1 - ev]
    c_batch = cov.shape[: cov.ndim - nsp]
    if covariance_type == "spherical" and len(c_batch) > max(len(w_batch), len(l_batch)):
        # (K, D) variances read as spherical would silently become a batch of K mixtures
        raise ValueError(
            f"GaussianMixture: covariance_type='spherical' takes one variance per component, "
            f"shape (..., K) = (..., {k}); `{name}` of shape {cov.shape} would add batch "
            f"dimensions {c_batch} that weights and locs do not have. For per-dimension "
            "variances of shape (K, D) use covariance_type='diag'; for a batch of mixtures "
            "give locs (or weights) the batch dimensions too"
        )
    try:
        batch = jnp.broadcast_shapes(w_batch, l_batch, c_batch)
    except ValueError:
        raise ValueError(
            f"GaussianMixture: the batch shapes of {wname} {w_batch}, locs {l_batch} and "
            f"{name} {c_batch} do not broadcast"
        ) from None
    layout = Layout(covariance_type, name, weights is not None, batch, k, ev, want)
    return layout, raw


class Layout(NamedTuple):
    """What :func:`convert` learns from the argument shapes (hashable: a jit key)."""

    covariance_type: str
    name: str  # the covariance argument given
    from_weights: bool  # weights= (else logits=)
    batch: tuple[int, ...]
    k: int
    ev: int  # 0 for univariate, else 1
    want: tuple[int, ...]  # the stored factor's non-batch shape


def raw_names(layout: Layout) -> tuple[str, str, str]:
    """The keys of ``raw``, in order: the weights argument, ``locs``, the covariance."""
    return ("weights" if layout.from_weights else "logits", "locs", layout.name)


def stored(layout: Layout, wv, locs, cov, factor=None):
    """``(logits, locs, scale_param)`` from the converted arguments (traceable).

    ``factor`` is the Cholesky factor of ``cov`` when the caller has it already (a
    full or tied ``covariance_matrix``), so that each matrix is factored once.
    """
    lg = _safe_log(wv) if layout.from_weights else wv
    lg = jax.nn.log_softmax(lg, axis=-1)
    if factor is None:
        factor = to_scale_param(layout.covariance_type, layout.name, cov)
    b, ev = layout.batch, layout.ev
    return (
        jnp.broadcast_to(lg, b + (layout.k,)),
        jnp.broadcast_to(locs, b + locs.shape[locs.ndim - 1 - ev :]),
        jnp.broadcast_to(factor, b + layout.want),
    )


def to_batch_major(x, batch: tuple[int, ...], ev: tuple[int, ...]):
    """Points ``sample + batch + event`` → ``(batch..., N, event)`` and the sample shape."""
    x = jnp.asarray(x)
    if ev and (x.ndim == 0 or x.shape[-1] != ev[0]):
        got = x.shape[-1] if x.ndim else "a scalar"
        raise ValueError(
            f"x has last dimension {got} but the mixture is {ev[0]}-dimensional; "
            f"pass points of shape (..., {ev[0]})"
        )
    try:
        full = jnp.broadcast_shapes(x.shape[: x.ndim - len(ev)], batch)
    except ValueError:
        raise ValueError(
            f"x of shape {x.shape} does not broadcast against the batch shape {batch} "
            f"and event shape {ev}; pass shape sample_shape + {batch} + {ev}"
        ) from None
    sample_shape = full[: len(full) - len(batch)]
    x = jnp.broadcast_to(x, full + ev).reshape((math.prod(sample_shape),) + batch + ev)
    return jnp.moveaxis(x, 0, len(batch)), sample_shape


def from_batch_major(nbatch: int, out: jax.Array, sample_shape) -> jax.Array:
    """The inverse of :func:`to_batch_major` for a per-point output ``(batch..., N, ...)``."""
    out = jnp.moveaxis(out, nbatch, 0)
    return out.reshape(tuple(sample_shape) + out.shape[1:])


@functools.partial(jax.jit, static_argnums=(1, 2))
def build(arrays: tuple, layout: Layout, check: bool):
    """The stored parameters and (when ``check``) whether every value check passes, as
    one compiled program per argument layout: run eagerly, building a mixture would
    compile each of its few dozen operations on its own for every new shape."""
    raw = dict(zip(raw_names(layout), arrays, strict=True))
    cov = raw[layout.name]
    factor = None
    if layout.covariance_type in ("full", "tied") and layout.name == "covariance_matrix":
        factor = cholesky(cov)  # stored, and read by the positive-definiteness check
    leaves = stored(layout, *arrays, factor=factor)
    return leaves, (all_pass(raw, layout.covariance_type, factor) if check else jnp.bool_(True))
