"""Value checks for `GaussianMixture` (private): simplex, positive definiteness, finiteness.

They follow NumPyro's ``validate_args`` contract (the structural checks in
:mod:`gmmjax._params` always run):

* with validation on (NumPyro's default, ``validate_args=True``, or
  ``numpyro.validation_enabled()``), every check whose inputs are *concrete* runs and
  raises a clear ``ValueError``; that includes constants closed over inside ``jit``
  (evaluated with ``jax.ensure_compile_time_eval``, as NumPyro does);
* traced parameters (arguments of a jitted, vmapped or differentiated function) are
  not checked, unless the computation runs under :func:`checked`, which turns every
  check into a ``jax.experimental.checkify`` check and raises the same message;
* with ``validate_args=False`` or ``numpyro.validation_enabled(False)`` nothing runs.

Every predicate below is written in ``jnp`` so that one definition serves both routes.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from gmmjax.gaussian import cholesky

_STATE = threading.local()


def checkify_mode() -> bool:
    """True while tracing under :func:`checked`."""
    return getattr(_STATE, "checkify", False)


@contextlib.contextmanager
def _checkify_enabled():
    old = checkify_mode()
    _STATE.checkify = True
    try:
        yield
    finally:
        _STATE.checkify = old


def checked(fn, *, jit: bool = True):
    """Run ``fn`` with every `GaussianMixture` value check active, also on traced values.

    Inside ``jit`` NumPyro checks concrete parameters only. ``checked(fn)`` traces ``fn``
    with each check of a mixture built inside it emitted through
    ``jax.experimental.checkify`` (weights on the simplex, finite parameters, positive
    definite covariances, lower-triangular ``scale_tril``), and raises the check's
    ``ValueError`` after the call. Pass the plain function (not an already jitted one,
    whose cached trace would hold no checks).

    Args:
      fn: a function that builds mixtures from its arguments.
      jit: compile the checked function with ``jax.jit`` (default).

    Returns:
      A function with ``fn``'s signature that returns ``fn``'s output or raises
      ``ValueError`` naming the first failed check.

    Example:
      >>> import jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> from gmmjax.mixture import checked
      >>> def f(s):
      ...     return GaussianMixture(jnp.ones(2) / 2, jnp.zeros(2), scale=s).log_prob(0.0)
      >>> f = checked(f)
      >>> f(jnp.array([-1.0, 1.0]))
      Traceback (most recent call last):
      ...
      ValueError: GaussianMixture: `scale` is not positive definite ...
    """

    def traced(*args, **kwargs):
        with _checkify_enabled():
            return fn(*args, **kwargs)

    cf = checkify.checkify(traced, errors=checkify.user_checks)
    if jit:
        cf = jax.jit(cf)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        err, out = cf(*args, **kwargs)
        msg = err.get()
        if msg is not None:
            raise ValueError(msg.split(" (`check` failed)")[0].strip())
        return out

    return run


def _not_pd(name: str, covariance_type: str) -> str:
    return (
        f"GaussianMixture: `{name}` is not positive definite "
        f"(covariance_type={covariance_type!r}); every component covariance must be "
        "symmetric positive definite: add a small multiple of the identity "
        "(as reg_covar does) or check the input"
    )


def _weights_tolerance(dtype) -> float:
    # float32 sums of K weights carry ~K·eps rounding; 1e-4 leaves margin for K ≲ 1000,
    # and float64 users get the tighter 1e-8.
    return 1e-8 if dtype == jnp.float64 else 1e-4


def _upper_max(a):
    return np.abs(np.triu(a, 1)).max()


def _worst_sum(w):
    s = w.sum(-1)
    return s.flat[int(np.argmax(np.abs(s - 1.0)))]


def _checks(raw: dict, covariance_type: str, factor=None):
    """``[(ok, message, detail)]``: ``ok`` a boolean array, ``detail`` a host-side
    function of the concrete inputs that adds numbers to the message (or ``None``).

    ``factor``: the Cholesky factor of a full or tied ``covariance_matrix`` when the
    caller has computed it (the positive-definiteness check then reads its diagonal
    instead of factoring the matrix a second time)."""
    out = []
    for name, a in raw.items():
        if name == "logits":
            out.append(
                (
                    ~jnp.isnan(a) & (a < jnp.inf),
                    "GaussianMixture: `logits` contains NaN or +inf; logits must be "
                    "real (-inf marks a dead component)",
                    None,
                )
            )
            out.append(
                (
                    jnp.max(a, axis=-1) > -jnp.inf,
                    "GaussianMixture: every logit is -inf; at least one component "
                    "must have positive weight",
                    None,
                )
            )
        else:
            out.append(
                (
                    jnp.isfinite(a),
                    f"GaussianMixture: `{name}` contains NaN or infinite values; "
                    "every parameter must be finite",
                    lambda r, n=name: (
                        f"GaussianMixture: `{n}` contains {int(np.sum(~np.isfinite(r[n])))} "
                        "NaN or infinite value(s); every parameter must be finite"
                    ),
                )
            )
    if "weights" in raw:
        w = raw["weights"]
        tol = _weights_tolerance(w.dtype)
        out.append(
            (
                w >= 0,
                "GaussianMixture: weights must be nonnegative; pass probabilities, "
                "or unnormalized log-weights as logits=",
                lambda r: (
                    f"GaussianMixture: weights must be nonnegative, got min "
                    f"{r['weights'].min():.3g}; pass probabilities, or unnormalized "
                    "log-weights as logits="
                ),
            )
        )
        out.append(
            (
                jnp.abs(jnp.sum(w, -1) - 1.0) <= tol,
                f"GaussianMixture: weights must sum to 1 over the last axis (tolerance "
                f"{tol:g}); normalize them with w / w.sum(-1, keepdims=True) or pass "
                "logits= instead",
                lambda r: (
                    f"GaussianMixture: weights must sum to 1 over the last axis "
                    f"(tolerance {tol:g}), got a sum of {_worst_sum(r['weights']):.8g}; "
                    "normalize them with w / w.sum(-1, keepdims=True) or pass "
                    "logits= instead"
                ),
            )
        )
    name = next(n for n in raw if n not in ("weights", "logits", "locs"))
    c = raw[name]
    if covariance_type in ("full", "tied"):
        if name == "scale_tril":
            upper = jnp.abs(jnp.triu(c, 1))
            out.append(
                (
                    upper == 0,
                    "GaussianMixture: `scale_tril` must be lower triangular but its "
                    "strict upper triangle has nonzero entries; pass jnp.tril(L) to drop "
                    "them, or the matrix itself as covariance_matrix=",
                    lambda r: (
                        "GaussianMixture: `scale_tril` must be lower triangular "
                        "but its strict upper triangle has nonzero entries "
                        f"(largest |L_ij| = {_upper_max(r['scale_tril']):.3g}); "
                        "pass jnp.tril(L) to drop them, or the matrix itself as "
                        "covariance_matrix="
                    ),
                )
            )
            diag = jnp.diagonal(c, axis1=-2, axis2=-1)
            out.append((diag > 0, _not_pd(name, covariance_type), None))
        else:
            scale = jnp.maximum(jnp.max(jnp.abs(c), axis=(-1, -2), keepdims=True), 1e-30)
            tol = 1e-10 if c.dtype == jnp.float64 else 1e-5
            asym = jnp.abs(c - jnp.swapaxes(c, -1, -2)) <= tol * scale
            out.append(
                (
                    asym,
                    f"GaussianMixture: `{name}` is not symmetric; pass (C + C.T) / 2 or "
                    "a Cholesky factor as scale_tril=",
                    None,
                )
            )
            chol = factor
            if chol is None:
                chol = cholesky(jnp.where(asym, c, jnp.eye(c.shape[-1], dtype=c.dtype)))
            diag = jnp.diagonal(chol, axis1=-2, axis2=-1)
            out.append((jnp.isfinite(diag) & (diag > 0), _not_pd(name, covariance_type), None))
    else:
        out.append((c > 0, _not_pd(name, covariance_type), None))
    return out


def describe(value) -> str:
    """What a wrong argument is, for a ``TypeError``: an array by its shape (a traced one
    too: the user passed an array), anything else by its qualified class name."""
    if isinstance(value, (np.ndarray, jax.Array)) or _is_tracer(value):
        return f"an array of shape {tuple(np.shape(value))}"
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _is_tracer(a) -> bool:
    return isinstance(a, jax.core.Tracer)


def all_pass(raw: dict, covariance_type: str, factor=None) -> jax.Array:
    """One boolean scalar: every value check passes (traceable, for a compiled build).

    When it is False, :func:`validate` on the same inputs raises the message of the
    first failed check.
    """
    oks = [jnp.all(ok) for ok, _, _ in _checks(raw, covariance_type, factor)]
    return jnp.all(jnp.stack(oks))


_all_pass_compiled = jax.jit(all_pass, static_argnums=1)


def validate(raw: dict, covariance_type: str) -> None:
    """Raise the first failed check among those with concrete inputs; emit the checks on
    traced inputs through checkify while :func:`checked` is active."""
    with jax.ensure_compile_time_eval():
        if not any(_is_tracer(v) for v in raw.values()) and bool(
            _all_pass_compiled(raw, covariance_type)
        ):
            # constants (a mixture built inside the caller's jit from closed-over
            # values): one compiled program checks them all; op by op, each of the
            # checks' few dozen operations would compile on its own for a new shape
            return
        for ok, msg, detail in _checks(raw, covariance_type):
            if _is_tracer(ok):
                if checkify_mode():
                    checkify.check(jnp.all(ok), msg)
                continue
            if not np.all(np.asarray(ok)):
                if detail is not None:
                    msg = detail({n: np.asarray(v) for n, v in raw.items()})
                raise ValueError(msg)


def leaf_checks(logits, locs, scale_param, covariance_type: str, *, strict: bool) -> None:
    """Checks of the stored parameters (``Distribution.validate_args``)."""
    sp = scale_param
    if covariance_type in ("full", "tied"):
        sp = jnp.diagonal(scale_param, axis1=-2, axis2=-1)
    checks = [
        (
            ~jnp.isnan(logits)
            & (logits < jnp.inf)
            & (jnp.max(logits, -1, keepdims=True) > -jnp.inf),
            "GaussianMixture: invalid logits (NaN, +inf, or all -inf)",
        ),
        (jnp.isfinite(locs), "GaussianMixture: `locs` contains NaN or infinite values"),
        (jnp.isfinite(sp) & (sp > 0), _not_pd("scale_param", covariance_type)),
    ]
    with jax.ensure_compile_time_eval():
        for ok, msg in checks:
            if _is_tracer(ok):
                if checkify_mode():
                    checkify.check(jnp.all(ok), msg)
                elif strict:
                    raise RuntimeError("Cannot validate arguments inside jitted code.")
                continue
            if not np.all(np.asarray(ok)):
                raise ValueError(msg)
