"""PRNG keys at the public entries: an integer seed is accepted where a key is expected."""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np

_INT_MIN, _INT_MAX, _UINT_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def as_key(key, *, name: str = "key"):
    """A JAX PRNG key from ``key``: a key (typed or raw ``uint32[2]``) or an integer seed.

    ``as_key(0)`` is ``jax.random.key(0)``; an integer array of shape ``()`` (also a
    traced one under ``jit``) is a seed too. Keys pass through unchanged.

    Args:
      key: a key from ``jax.random.key``/``PRNGKey``, or an integer seed.
      name: the argument's name, for error messages.

    Returns:
      The key.

    Raises:
      TypeError: a float, string or other non-key value.
      ValueError: a seed outside ``[-2**63, 2**64)``.

    Example:
      >>> import jax
      >>> bool((jax.random.key_data(as_key(0)) == jax.random.key_data(jax.random.key(0))).all())
      True
    """
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"{name} must be a JAX PRNG key or an integer seed, got a bool")
    if isinstance(key, (int, np.integer)):
        seed = operator.index(key)
        if not _INT_MIN <= seed <= _UINT_MAX:
            raise ValueError(
                f"{name}: the integer seed {seed} does not fit in 64 bits; use a seed in "
                "[-2**63, 2**64) or pass jax.random.key(seed)"
            )
        # jax.random.key converts a Python int through int64: pass the top half as uint64
        return jax.random.key(np.uint64(seed) if seed > _INT_MAX else seed)
    if isinstance(key, jax.Array):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return key
        if key.shape == () and jnp.issubdtype(key.dtype, jnp.integer):
            return jax.random.key(key)
        if key.shape[-1:] == (2,) and key.dtype == jnp.uint32:
            return key  # a raw key from jax.random.PRNGKey
    raise TypeError(
        f"{name} must be a JAX PRNG key (jax.random.key(0)) or an integer seed, got "
        f"{type(key).__name__}"
        + (f" of dtype {key.dtype} and shape {key.shape}" if hasattr(key, "dtype") else "")
    )
