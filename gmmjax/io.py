"""Saving and loading mixtures: a documented, versioned file format (JSON or ``.npz``).

A mixture file (schema version 1; "Mixture files" in ``docs/guide/cli.md``) holds ``format``
(``"gmmjax.GaussianMixture"``, optional on input), ``schema_version`` (``1``; newer files
are refused by name), ``covariance_type``, ``dtype`` (``"float32"``/``"float64"``,
optional), ``weights`` ``(..., K)``, ``means`` ``(..., K, D)`` (``(..., K)`` univariate)
and ``covariances`` in scikit-learn's ``covariances_`` layout (``(..., K, D, D)`` full,
``(..., D, D)`` tied, ``(..., K, D)`` diag, ``(..., K)`` spherical/univariate variances).
The optional ``exact`` block ``{"log_weights", "scale"}`` holds the stored parametrization
(normalized log-weights; Cholesky factors or std devs), loaded as is (a mixture round-trips
bit for bit); it must agree with the other fields. A zero weight's ``-inf`` is ``"-inf"``.

The first block of fields is exactly scikit-learn's ``weights_``, ``means_`` and
``covariances_``, so a file written by hand from a fitted
``sklearn.mixture.GaussianMixture`` loads too (and :func:`save_mixture` accepts such
an object directly). JSON numbers are written with Python's ``repr``, which
round-trips every float64 exactly; ``.npz`` files hold the same fields as arrays
(strings as 0-d arrays) and are read with ``allow_pickle=False``.

Every malformed file raises :class:`MixtureFileError` (a ``ValueError``) whose
message names the offending field.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gmmjax._params import factor, log_weights_np
from gmmjax.gaussian import COVARIANCE_TYPES
from gmmjax.mixture import GaussianMixture

__all__ = [
    "SCHEMA_VERSION",
    "MixtureFileError",
    "load_mixture",
    "mixture_from_dict",
    "mixture_to_dict",
    "save_mixture",
]

SCHEMA_VERSION = 1
FORMAT_NAME = "gmmjax.GaussianMixture"
_REQUIRED = ("schema_version", "covariance_type", "weights", "means", "covariances")


class MixtureFileError(ValueError):
    """A mixture file (or dict) that does not follow the schema; the message names the field."""


# --------------------------------------------------------------------------- writing
def _sklearn_fields(obj) -> dict[str, Any] | None:
    """The fields of a fitted scikit-learn ``GaussianMixture`` (duck-typed), else None."""
    names = ("weights_", "means_", "covariances_", "covariance_type")
    if not all(hasattr(obj, n) for n in names):
        return None
    return {
        "covariance_type": str(obj.covariance_type),
        "dtype": "float64",
        "weights": np.asarray(obj.weights_, np.float64),
        "means": np.asarray(obj.means_, np.float64),
        "covariances": np.asarray(obj.covariances_, np.float64),
    }


def _covariances_from_scale(scale: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type in ("full", "tied"):
        return scale @ np.swapaxes(scale, -1, -2)
    return scale * scale


def _arrays(mixture) -> dict[str, Any]:
    sk = _sklearn_fields(mixture)
    if sk is not None:
        return sk
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(
            "expected a gmmjax.GaussianMixture or a fitted sklearn.mixture.GaussianMixture, "
            f"got {type(mixture).__name__}"
        )
    logits = np.asarray(mixture.logits)
    scale, t = np.asarray(mixture.scale_param), mixture.covariance_type
    scale = factor(scale, t)  # the leaf as read (lower triangle, signs): loads
    lw = log_weights_np(logits)  # a leaf shifted by a gradient step is saved normalized
    fin = np.isfinite(lw)
    if np.any(np.abs(lw[fin] - logits[fin]) > 1e-6):  # else as is: bit for bit on loading
        logits = lw.astype(logits.dtype)
    return {
        "covariance_type": t,
        "dtype": str(logits.dtype),
        "weights": np.exp(lw),
        "means": np.asarray(mixture.locs).astype(np.float64),
        "covariances": _covariances_from_scale(scale.astype(np.float64), t),
        "exact": {"log_weights": logits, "scale": scale},
    }


def _json_list(a: np.ndarray):
    """``a.tolist()`` with ``-inf`` (the log of a zero weight) as the string ``"-inf"``."""
    if not np.any(np.isneginf(a)):
        return a.tolist()
    return np.where(np.isneginf(a), "-inf", a.astype(object)).tolist()


def mixture_to_dict(mixture) -> dict[str, Any]:
    """The file representation of a mixture, as a JSON-ready dict (lists of floats).

    Args:
      mixture: a `GaussianMixture` (any batch shape) or a fitted
        ``sklearn.mixture.GaussianMixture``.

    Returns:
      A dict with the fields of the module docstring; every number is a Python float.

    Example:
      >>> import jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> p = GaussianMixture(jnp.array([0.25, 0.75]), jnp.array([0.0, 1.0]),
      ...                     scale=jnp.array([1.0, 2.0]))
      >>> d = mixture_to_dict(p)
      >>> d["schema_version"], d["covariance_type"], d["covariances"]
      (1, 'univariate', [1.0, 4.0])
    """
    a = _arrays(mixture)
    out: dict[str, Any] = {"format": FORMAT_NAME, "schema_version": SCHEMA_VERSION}
    for k, v in a.items():
        if k == "exact":
            out[k] = {n: _json_list(np.asarray(x).astype(np.float64)) for n, x in v.items()}
        elif isinstance(v, np.ndarray):
            out[k] = v.tolist()
        else:
            out[k] = v
    return out


def save_mixture(mixture, path: str | os.PathLike) -> None:
    """Write a mixture to ``path``: JSON for ``.json``, NumPy archive for ``.npz``.

    Args:
      mixture: a `GaussianMixture` or a fitted ``sklearn.mixture.GaussianMixture``.
      path: file name ending in ``.json`` or ``.npz``.

    Raises:
      ValueError: another file extension.
      TypeError: ``mixture`` is neither kind of mixture.

    Example:
      >>> import os, tempfile, jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> p = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([-1.0, 1.0]),
      ...                     scale=jnp.array([0.5, 2.0]))
      >>> f = os.path.join(tempfile.mkdtemp(), "p.json")
      >>> save_mixture(p, f)
      >>> q = load_mixture(f)
      >>> bool((q.locs == p.locs).all() and (q.scale_param == p.scale_param).all())
      True
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".json":
        d = mixture_to_dict(mixture)
        # one field per line, each array on one line: readable and diff-friendly
        body = ",\n".join(
            f" {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in d.items()
        )
        with open(path, "w", encoding="utf-8") as f:
            f.write("{\n" + body + "\n}\n")
    elif ext == ".npz":
        a = _arrays(mixture)
        flat: dict[str, np.ndarray] = {
            "format": np.array(FORMAT_NAME),
            "schema_version": np.array(SCHEMA_VERSION),
        }
        for k, v in a.items():
            if k == "exact":
                flat.update({f"exact.{n}": np.asarray(x) for n, x in v.items()})
            else:
                flat[k] = np.asarray(v)
        np.savez(path, **flat)
    else:
        raise ValueError(f"cannot save a mixture as {path!r}: use a .json or .npz file name")


# --------------------------------------------------------------------------- reading
def _field_array(d: dict, name: str, label: str | None = None, *, neg_inf=False) -> np.ndarray:
    label, v = label or name, d[name]
    try:
        if neg_inf and not isinstance(v, np.ndarray):  # JSON spells a log-weight -inf "-inf"
            v = _neg_inf_strings(v)
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError, RecursionError):
        raise MixtureFileError(
            f"field `{label}` must be a number or a (nested, rectangular) list of numbers"
        ) from None
    ok = np.isfinite(a) | (np.isneginf(a) if neg_inf else False)
    if not np.all(ok):
        what = "NaN or +inf" if neg_inf else "NaN or infinite values"
        raise MixtureFileError(f"field `{label}` contains {what}")
    return a


def _neg_inf_strings(v):
    return (
        [_neg_inf_strings(x) for x in v] if isinstance(v, list) else (-np.inf if v == "-inf" else v)
    )


def _expected_cov_shape(t: str, batch: tuple, k: int, d: int) -> tuple:
    shapes = {"full": (k, d, d), "tied": (d, d), "diag": (k, d)}
    return batch + shapes.get(t, (k,))  # spherical, univariate: (k,)


def _check_pd(cov: np.ndarray, t: str, label: str) -> None:
    if t in ("diag", "spherical", "univariate"):
        bad = np.argwhere(~(cov > 0))
        if bad.size:
            idx = ", ".join(str(int(i)) for i in bad[0])
            raise MixtureFileError(
                f"field `{label}` is not positive definite: entry [{idx}] is "
                f"{float(cov[tuple(bad[0])])!r}; variances must be > 0"
            )
        return
    scale = max(float(np.max(np.abs(cov))), 1e-300)
    asym = np.abs(cov - np.swapaxes(cov, -1, -2)).max(axis=(-1, -2))
    mats = cov.reshape((-1,) + cov.shape[-2:])
    for i, m in enumerate(mats):  # host-side check of a file, one matrix at a time
        idx = np.unravel_index(i, cov.shape[:-2]) if cov.ndim > 2 else ()
        where = f"[{', '.join(str(int(j)) for j in idx)}]" if idx else ""
        if asym.reshape(-1)[i] > 1e-6 * scale:
            raise MixtureFileError(f"field `{label}{where}` is not symmetric")
        try:
            np.linalg.cholesky(m)
        except np.linalg.LinAlgError:
            raise MixtureFileError(
                f"field `{label}{where}` is not positive definite; add a small multiple of "
                "the identity (as reg_covar does) or check the file"
            ) from None


def _target_dtype(d: dict):
    want = d.get("dtype", "float64")
    if want not in ("float32", "float64"):
        raise MixtureFileError(f"field `dtype` must be 'float32' or 'float64', got {want!r}")
    # float64 needs x64 enabled; otherwise values are rounded to float32 (JAX's default)
    return jnp.float64 if want == "float64" and jax.config.jax_enable_x64 else jnp.float32


def mixture_from_dict(d: dict) -> GaussianMixture:
    """Build a mixture from the file representation (see the module docstring).

    Args:
      d: a dict as written by :func:`mixture_to_dict` (or by hand from scikit-learn).

    Returns:
      The `GaussianMixture`; with an ``exact`` block its leaves are those numbers
      exactly, in the file's ``dtype`` (float32 unless x64 is enabled).

    Raises:
      MixtureFileError: wrong format or schema version, a missing field, a field of
        the wrong shape, weights off the simplex, or a covariance that is not
        positive definite. The message names the field.

    Example:
      >>> d = {"schema_version": 1, "covariance_type": "diag", "weights": [0.5, 0.5],
      ...      "means": [[0.0, 0.0], [1.0, 1.0]], "covariances": [[1.0, 4.0], [1.0, 1.0]]}
      >>> m = mixture_from_dict(d)
      >>> m.covariance_type, m.event_shape, m.scale_param[0].tolist()
      ('diag', (2,), [1.0, 2.0])
      >>> d["covariances"] = [[1.0, 4.0], [1.0, -1.0]]
      >>> try:
      ...     mixture_from_dict(d)
      ... except MixtureFileError as e:
      ...     print(e)
      field `covariances` is not positive definite: entry [1, 1] is -1.0; variances must be > 0
    """
    if not isinstance(d, dict):
        raise MixtureFileError(f"a mixture file must hold an object, got {type(d).__name__}")
    fmt = d.get("format", FORMAT_NAME)
    if fmt != FORMAT_NAME:
        raise MixtureFileError(f"field `format` must be {FORMAT_NAME!r}, got {fmt!r}")
    missing = [f for f in _REQUIRED if f not in d]
    if missing:
        raise MixtureFileError(
            f"missing field(s) {', '.join(f'`{m}`' for m in missing)}; a mixture file needs "
            f"{', '.join(_REQUIRED)}"
        )
    version = d["schema_version"]
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)):
        raise MixtureFileError(f"field `schema_version` must be an integer, got {version!r}")
    if int(version) != SCHEMA_VERSION:
        raise MixtureFileError(
            f"field `schema_version` is {int(version)}, but this gmmjax reads version "
            f"{SCHEMA_VERSION}; upgrade gmmjax to read newer files"
        )
    t = d["covariance_type"]
    if t not in COVARIANCE_TYPES:
        raise MixtureFileError(
            f"field `covariance_type` must be one of {COVARIANCE_TYPES}, got {t!r}"
        )
    dtype = _target_dtype(d)
    w = _field_array(d, "weights")
    if w.ndim < 1 or w.shape[-1] < 1:
        raise MixtureFileError(f"field `weights` must have shape (..., K), got {w.shape}")
    batch, k = w.shape[:-1], w.shape[-1]
    means = _field_array(d, "means")
    uni = t == "univariate"
    want_ndim = len(batch) + (1 if uni else 2)
    if means.ndim != want_ndim or means.shape[len(batch)] != k:
        want = "(..., K)" if uni else "(..., K, D)"
        raise MixtureFileError(
            f"field `means` must have shape {want} with K={k} (from `weights`) for "
            f"covariance_type={t!r}, got {means.shape}"
        )
    if means.shape[: len(batch)] != batch:
        raise MixtureFileError(
            f"field `means` has batch shape {means.shape[: len(batch)]}, `weights` {batch}"
        )
    dim = 1 if uni else means.shape[-1]
    cov = _field_array(d, "covariances")
    want_cov = _expected_cov_shape(t, batch, k, dim)
    if cov.shape != want_cov:
        raise MixtureFileError(
            f"field `covariances` must have shape {want_cov} for covariance_type={t!r} "
            f"with K={k}, D={dim}, got {cov.shape}"
        )
    if np.any(w < 0) or np.any(np.abs(w.sum(-1) - 1.0) > 1e-5):
        raise MixtureFileError(
            "field `weights` must be nonnegative and sum to 1 (tolerance 1e-5), got sum(s) "
            f"{np.round(w.sum(-1), 8).tolist()}"
        )
    _check_pd(cov, t, "covariances")
    exact = d.get("exact")
    if exact is None:
        m = GaussianMixture(
            jnp.asarray(np.where(np.all(w > 0), w, 1.0 / k), dtype),  # zeros are refused
            jnp.asarray(means, dtype),
            jnp.asarray(cov, dtype),
            covariance_type=t,
        )
        if np.all(w > 0):
            return m
        with np.errstate(divide="ignore"):  # a zero weight is a log-weight of -inf
            lw = np.log(w) - np.log(np.sum(w, axis=-1, keepdims=True))
        return _with_leaves(m, {"logits": lw, "locs": m.locs, "scale_param": m.scale_param}, dtype)
    return _from_exact(exact, t, w, means, cov, dtype)


def _from_exact(exact, t, w, means, cov, dtype) -> GaussianMixture:
    if not isinstance(exact, dict) or {"log_weights", "scale"} - set(exact):
        raise MixtureFileError("field `exact` must hold `log_weights` and `scale`")
    lw = _field_array(exact, "log_weights", "exact.log_weights", neg_inf=True)
    scale = _field_array(exact, "scale", "exact.scale")
    if lw.shape != w.shape:
        raise MixtureFileError(
            f"field `exact.log_weights` must have the shape of `weights` {w.shape}, got {lw.shape}"
        )
    if scale.shape != cov.shape:
        raise MixtureFileError(
            f"field `exact.scale` must have the shape of `covariances` {cov.shape}, "
            f"got {scale.shape}"
        )
    if t in ("full", "tied"):
        if np.any(np.triu(scale, 1) != 0) or np.any(np.diagonal(scale, 0, -2, -1) <= 0):
            raise MixtureFileError(
                "field `exact.scale` must be lower triangular with a positive diagonal"
            )
    elif np.any(scale <= 0):
        raise MixtureFileError("field `exact.scale` must be positive (standard deviations)")
    # The redundant fields must describe the same mixture: these tolerances catch an
    # edited file, far above the float32 rounding (~1e-7 relative) of the saved values.
    if np.max(np.abs(np.exp(lw) - w)) > 1e-5:
        raise MixtureFileError(
            "field `weights` disagrees with `exact.log_weights`; after editing a file, "
            "delete its `exact` block"
        )
    ref = _covariances_from_scale(scale, t)
    if np.max(np.abs(ref - cov)) > 1e-5 * max(float(np.max(np.abs(cov))), 1e-30):
        raise MixtureFileError(
            "field `covariances` disagrees with `exact.scale`; after editing a file, "
            "delete its `exact` block"
        )
    # only the tree structure is taken from the template (finite logits: a zero weight,
    # log-weight -inf, is a valid saved mixture that the constructor's checks refuse)
    template = GaussianMixture.from_params(
        jnp.zeros(lw.shape, dtype), jnp.asarray(means, dtype), jnp.asarray(scale, dtype), t
    )
    # rebuild with the file's numbers as the leaves (from_params renormalizes the logits,
    # which could move their last bit)
    return _with_leaves(template, {"logits": lw, "locs": means, "scale_param": scale}, dtype)


def _with_leaves(template, values, dtype) -> GaussianMixture:
    leaves = [jnp.asarray(values[n], dtype) for n in GaussianMixture.gather_pytree_data_fields()]
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


def load_mixture(path: str | os.PathLike) -> GaussianMixture:
    """Read a mixture written by :func:`save_mixture` (or by hand, see the module docstring).

    Args:
      path: a ``.json`` or ``.npz`` file.

    Returns:
      The `GaussianMixture`.

    Raises:
      MixtureFileError: unreadable content or a schema violation (names the field).
      OSError: the file cannot be opened.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        try:
            # our own handle: a corrupt archive must not leave the file open
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                d: dict[str, Any] = {}
                for name in z.files:
                    v = z[name]
                    if v.ndim == 0 and v.dtype.kind in "USi":
                        v = v.item()
                    if name.startswith("exact."):
                        d.setdefault("exact", {})[name[len("exact.") :]] = v
                    else:
                        d[name] = v
        except FileNotFoundError:
            raise
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
            why = " ".join(str(e).split()) or type(e).__name__  # truncated, corrupt...
            raise MixtureFileError(
                f"{path}: not a readable .npz mixture file (truncated or corrupt: {why})"
            ) from None
        return mixture_from_dict(d)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise MixtureFileError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise MixtureFileError(
            f"{path}: JSON nested too deeply to be a mixture file (a mixture's arrays "
            "have a few levels)"
        ) from None
    return mixture_from_dict(d)
