"""Across devices: the ``mesh=`` argument of the Monte Carlo estimators (private).

JAX's own runtime is the distributed engine (GSPMD): a call with ``mesh=`` runs the
very same compiled program as without it, with sharding annotations that tell XLA
how to split the work, so the result equals the single-device one for the same key
up to the order of floating-point sums.

* **One estimate** (unbatched ``p`` and ``q``): the points of every chunk are split
  over all devices of the mesh (axis 0 of the points sharded over every mesh axis).
  The annotation sits in the one kernel :func:`gmmjax.log_gaussian_kernel`, which
  reads the active mesh from :data:`_ACTIVE`; XLA's sharding propagation carries it
  back to the draws (``jax.random`` is partitionable, so each device draws its own
  share of the *same* numbers) and forward to the per-component sums, which become
  partial sums plus an all-reduce.
* **A batch of pairs**: the pairs are split over the devices instead (the leading
  batch axis of every batched mixture argument), and each pair's estimate runs on
  one device. Without ``mesh=``, a batch placed with ``jax.device_put(...,
  NamedSharding(mesh, PartitionSpec("pairs")))`` is followed by the compiled call,
  and the results come back with the same sharding.

Multi-host: build the mesh over ``jax.devices()`` after ``jax.distributed.initialize``
and call the estimator with the same arguments in every process
(``examples/multihost.py``). The arguments are made global, replicated arrays first.
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

_ACTIVE: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar("gmmjax_mesh", default=None)


def check_mesh(mesh) -> Mesh | None:
    """``mesh`` itself, or a TypeError that says what to pass."""
    if mesh is None or isinstance(mesh, Mesh):
        return mesh
    raise TypeError(
        f"mesh must be a jax.sharding.Mesh or None, got {type(mesh).__name__}; build one with "
        "jax.sharding.Mesh(jax.devices(), ('samples',))"
    )


@contextlib.contextmanager
def points_sharded_over(mesh: Mesh | None):
    """While tracing: the kernel splits its points over ``mesh`` (no-op for ``None``)."""
    token = _ACTIVE.set(mesh)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def mesh_active() -> bool:
    """Whether a ``mesh=`` call is being traced (the kernel then keeps its points whole)."""
    return _ACTIVE.get() is not None


def constrain_points(x: jax.Array) -> jax.Array:
    """Shard axis 0 of ``x`` over every axis of the active mesh (identity without one)."""
    mesh = _ACTIVE.get()
    if mesh is None or x.ndim == 0:
        return x
    spec = PartitionSpec(tuple(mesh.axis_names), *([None] * (x.ndim - 1)))
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def _is_mixture(v) -> bool:
    from gmmjax.mixture import GaussianMixture

    return isinstance(v, GaussianMixture)


def shard_pairs(dynamic: dict, mesh: Mesh) -> tuple[dict, bool]:
    """Split the leading batch axis of every batched mixture in ``dynamic`` over ``mesh``.

    Returns:
      ``(dynamic, batched)``; ``batched`` is False when no argument has a batch, in
      which case the samples are split instead (:func:`points_sharded_over`).
    """
    batched = False
    out = {}
    for name, v in dynamic.items():
        if _is_mixture(v) and v.batch_shape and math.prod(v.batch_shape) > 1:
            batched = True
            nb = len(v.batch_shape)

            def put(a, nb=nb):
                spec = PartitionSpec(tuple(mesh.axis_names), *([None] * (a.ndim - 1)))
                return jax.lax.with_sharding_constraint(a, NamedSharding(mesh, spec))

            v = jax.tree_util.tree_map(put, v)
        out[name] = v
    return out, batched


def replicate_for(mesh: Mesh, tree):
    """Make the array leaves of ``tree`` global arrays replicated over ``mesh``.

    On one host this is a plain ``device_put``; across hosts every process passes
    the same values and gets its local shards of one global array.
    """
    if jax.process_count() == 1:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())

    def put(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return a
        if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            data = np.asarray(jax.random.key_data(a))
            impl = jax.random.key_impl(a)
            glob = jax.make_array_from_process_local_data(sharding, data, data.shape)
            return jax.random.wrap_key_data(glob, impl=impl)
        if isinstance(a, jax.Array | np.ndarray):
            data = np.asarray(a)
            return jax.make_array_from_process_local_data(sharding, data, data.shape)
        return a

    return jax.tree_util.tree_map(put, tree)
