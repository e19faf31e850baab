"""Compiled by default: the public estimators, bounds and fits run as one cached ``jit``.

:func:`compiled` wraps a public function so that a plain call runs the whole
function as a single XLA program, compiled once per *static configuration* and
reused afterwards. The arguments are split at call time:

* **static** (part of the cache key, hashed): Python scalars (``bool``, ``int``,
  ``float``, ``str``), ``None``, callables that are not pytrees (an ``f`` of
  :func:`gmmjax.f_divergence`), a :class:`jax.sharding.Mesh`, and tuples of these;
* **traced**: everything else (mixtures and other NumPyro distributions, arrays,
  PRNG keys), keyed by its shapes, dtypes and pytree structure, as ``jax.jit`` does;
  and the numeric arguments a function names in ``traced=`` (a kernel bandwidth, a
  mass), which are values a user sweeps: they become weakly typed arrays, so a new
  value reuses the compiled program instead of compiling another. An integer seed
  given as ``key`` becomes ``jax.random.key(seed)`` before the call, for the same reason.

So ``kl_estimate(p, q, key, 1000)`` compiles once for ``num_samples=1000``, the
method, the covariance type and the shapes of ``p`` and ``q``, and later calls with
new parameter values or keys dispatch straight to the compiled program.

Composition: inside the user's own ``jit``, ``vmap``, ``grad`` or ``lax.map`` the
inner ``jax.jit`` is traced inline (a nested ``jit`` is a call, not a new program),
so the wrapper never breaks a trace. Argument checks still run, at trace time; a
check that needs concrete values (a NaN in a parameter, say) runs where the value is
created (``GaussianMixture(...)`` checks its arguments eagerly), not here.

Escape hatches: ``jax.disable_jit()`` runs everything op by op (for debugging);
an argument the splitter cannot classify (an unhashable Python object such as a
list) makes the call run eagerly, exactly as before this wrapper existed.

Persistent cache: :func:`enable_compilation_cache` points JAX's on-disk compilation
cache at a directory, so a *second run* of a script loads its programs instead of
compiling them (measured in ``benchmarks/RESULTS.md``). Setting the environment
variable ``GMMJAX_COMPILATION_CACHE`` (a directory, or ``1`` for the default one)
turns it on at import.
"""

from __future__ import annotations

import functools
import inspect
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from gmmjax import gaussian as _gaussian
from gmmjax._runtime import keys as _keys
from gmmjax._runtime import sharding as _sharding

__all__ = ["compiled", "method_call", "enable_compilation_cache", "DEFAULT_CACHE_DIR"]

DEFAULT_CACHE_DIR = (
    pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    / "gmmjax"
    / "jax"
)

_PRECISION_KEY = "__gmmjax_matmul_precision__"
_STATIC_TYPES = (bool, int, float, complex, str, bytes, type(None), Mesh, np.dtype)


def _is_static(v) -> bool:
    if isinstance(v, _STATIC_TYPES) or isinstance(v, np.integer | np.floating):
        return True
    if isinstance(v, tuple):
        return all(_is_static(a) for a in v)
    if callable(v) and not isinstance(v, jax.Array):
        # a plain function (not a pytree holding arrays, e.g. a distribution)
        leaves = jax.tree_util.tree_leaves(v)
        return len(leaves) == 1 and leaves[0] is v
    return False


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _traceable(tree) -> bool:
    for leaf in jax.tree_util.tree_leaves(tree):
        if not isinstance(leaf, jax.Array | np.ndarray | np.generic | bool | int | float | complex):
            return False
    return True


class _Static:
    """Hashable bag of the static arguments (sorted by name)."""

    __slots__ = ("items", "_hash")

    def __init__(self, items: tuple):
        self.items = items
        self._hash = hash(items)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return isinstance(other, _Static) and _same(self.items, other.items)


def _same(a, b) -> bool:
    # 1 == 1.0 == True in Python; keep them apart so a retrace sees the right type
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def compiled(fn=None, *, post=None, traced=(), check=None):
    """Decorator: run ``fn`` as one ``jax.jit`` program cached on its static arguments.

    Args:
      fn: a public function whose array-valued arguments may be traced and whose
        other arguments (sizes, method names, flags, callables) select the program.
      post: applied to the concrete result of a compiled call (not when ``fn`` is
        traced inline under the caller's own transformation); ``@compiled(post=f)``.
      traced: names of numeric arguments that are traced even when given as Python
        or NumPy scalars (``fn`` must not branch on them in Python).
      check: called with the bound arguments (a dict, values as the user passed them)
        before anything is traced, to reject bad concrete values with a clear message.

    Returns:
      A function with ``fn``'s signature, docstring and results. The undecorated
      function stays reachable as ``wrapper.__wrapped__``.

    Example:
      >>> import jax.numpy as jnp
      >>> @compiled
      ... def scaled_sum(x, *, scale=2.0):
      ...     return scale * jnp.sum(x)
      >>> float(scaled_sum(jnp.ones(3), scale=0.5))
      1.5
    """
    if fn is None:
        return functools.partial(compiled, post=post, traced=tuple(traced), check=check)
    sig = inspect.signature(fn)
    traced = frozenset(traced)

    def _run(dynamic, static):
        kwargs = dict(static.items)
        with _gaussian.matmul_precision(kwargs.pop(_PRECISION_KEY)):
            return _run_sharded(dynamic, kwargs)

    def _run_sharded(dynamic, kwargs):
        mesh = _sharding.check_mesh(kwargs.get("mesh"))
        if mesh is None:
            return fn(**dynamic, **kwargs)
        dynamic, batched = _sharding.shard_pairs(dynamic, mesh)
        with _sharding.points_sharded_over(None if batched else mesh):
            return fn(**dynamic, **kwargs)

    # the program carries the public name (compile logs, profiles, dumps): jit(kl_estimate)
    _run.__name__, _run.__qualname__ = fn.__name__, fn.__qualname__
    jitted = jax.jit(_run, static_argnums=(1,))

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            return fn(*args, **kwargs)  # let Python report the bad call
        for name, value in bound.arguments.items():
            if _is_sklearn_mixture(value):  # a fitted scikit-learn mixture, in one call
                from gmmjax.interop import from_sklearn

                with jax.ensure_compile_time_eval():  # concrete also in the caller's jit
                    bound.arguments[name] = from_sklearn(value)
        args, kwargs = bound.args, bound.kwargs
        if check is not None:
            check(bound.arguments)
        dynamic, static = {}, []
        for name, value in bound.arguments.items():
            kind = sig.parameters[name].kind
            if kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                return fn(*args, **kwargs)
            if name == "key" and _is_int(value):
                # an integer seed is a key (made here, outside the program): a new seed
                # reuses the compiled program instead of compiling one per value
                dynamic[name] = _keys.as_key(value)
            elif name in traced and _is_number(value):
                # a float (an int counts as one) becomes a weakly typed array, like the
                # Python scalar it replaces: it follows the mixture's precision
                dynamic[name] = jnp.asarray(float(value) if _is_int(value) else value)
            elif _is_static(value):
                static.append((name, value))
            else:
                dynamic[name] = value
        if not _traceable(dynamic):
            return fn(*args, **kwargs)
        static.append((_PRECISION_KEY, _gaussian.get_matmul_precision()))
        try:
            key = _Static(tuple(static))
        except TypeError:  # unhashable static value
            return fn(*args, **kwargs)
        mesh = dict(static).get("mesh")
        if isinstance(mesh, Mesh):
            dynamic = _sharding.replicate_for(mesh, dynamic)
        out = jitted(dynamic, key)
        # a check that needs concrete outputs (e.g. a warning on an infinite estimate)
        return out if post is None else post(out)

    wrapper.__wrapped__ = fn
    return wrapper


def _is_sklearn_mixture(value) -> bool:
    """A scikit-learn mixture estimator (``GaussianMixture``, ``BayesianGaussianMixture``,
    ``gmmjax.sklearn``'s): public functions convert it with ``from_sklearn``, which
    raises a clear ``ValueError`` when it is not fitted."""
    return all(hasattr(value, a) for a in ("fit", "covariance_type", "n_components"))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _jit_method(name: str, static: tuple, precision: str, obj, dynamic: tuple):
    with _gaussian.matmul_precision(precision):
        return getattr(obj, name)(*dynamic, *static)


def method_call(obj, name: str, dynamic: tuple, static: tuple = ()):
    """``getattr(obj, name)(*dynamic, *static)`` as one compiled program.

    For a distribution's own methods (``log_prob``, ``sample``): run eagerly, each of
    their few dozen operations would be compiled on its own for every new shape.
    ``obj`` (a pytree) and ``dynamic`` are traced, ``static`` (hashable) is part of the
    cache key, and so is the kernel's matmul precision. Inside the caller's own
    ``jit``, ``vmap`` or ``grad`` the nested ``jit`` is traced inline. Arguments that
    are not arrays or numbers (a list of points, say) run eagerly, as before.
    """
    if not _traceable(dynamic):
        return getattr(obj, name)(*dynamic, *static)
    return _jit_method(name, tuple(static), _gaussian.get_matmul_precision(), obj, dynamic)


def enable_compilation_cache(path: str | os.PathLike | None = None) -> pathlib.Path:
    """Turn on JAX's persistent compilation cache, so later runs reuse compiled programs.

    Every program is cached (JAX's default keeps only those that took over a second
    to compile, which would miss most of a typical script's programs). The cache key
    includes the program, the JAX version and the device, so a stale entry is never
    used. Call it once, before the first computation; it affects every ``jit`` of the
    process, not only gmmjax's. The environment variable ``GMMJAX_COMPILATION_CACHE``
    does the same at import.

    Args:
      path: a directory (created if needed); default ``~/.cache/gmmjax/jax``
        (``$XDG_CACHE_HOME/gmmjax/jax`` when that is set).

    Returns:
      The cache directory.

    Example:
      >>> import gmmjax, tempfile
      >>> d = gmmjax.enable_compilation_cache(tempfile.mkdtemp())  # doctest: +SKIP
    """
    p = pathlib.Path(path) if path is not None else DEFAULT_CACHE_DIR
    p = p.expanduser()
    p.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(p))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return p


def _cache_from_env() -> None:
    value = os.environ.get("GMMJAX_COMPILATION_CACHE", "")
    if value and value.lower() not in ("0", "false", "no", "off"):
        enable_compilation_cache(None if value.lower() in ("1", "true", "yes", "on") else value)


_cache_from_env()
