"""``fit_em(..., mesh=)``: the data split over devices, E-step statistics summed across them.

The chunked data ``(n_chunks, C, D)`` are placed with every chunk's ``C`` rows split
over all devices of the mesh (rows padded with zero-weight points so each device
holds the same number). The compiled fit is then partitioned by XLA (GSPMD): each
device evaluates the kernel and the sufficient statistics ``(n_k, Σ r x, Σ r x xᵀ)``
of its rows, and the sums over a chunk become an all-reduce. The M-step is tiny and
replicated. Zero-weight rows contribute nothing, so the fit equals the single-device
fit up to the order of floating-point sums.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gmmjax._runtime.sharding import check_mesh


def shard_data(xs: jax.Array, ws: jax.Array, mesh: Mesh | None):
    """Place ``xs (n_chunks, C, D)`` and ``ws (n_chunks, C)`` with ``C`` split over ``mesh``.

    Returns:
      ``(xs, ws)``, unchanged when ``mesh`` is None; otherwise padded along ``C`` to a
      multiple of the device count with zero-weight rows and sharded.

    Raises:
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``.
    """
    mesh = check_mesh(mesh)
    if mesh is None:
        return xs, ws
    n_dev = mesh.devices.size
    pad = -xs.shape[1] % n_dev
    if pad:
        xs = jnp.concatenate([xs, jnp.zeros(xs.shape[:1] + (pad,) + xs.shape[2:], xs.dtype)], 1)
        ws = jnp.concatenate([ws, jnp.zeros((ws.shape[0], pad), ws.dtype)], 1)
    axes = tuple(mesh.axis_names)
    xs = jax.device_put(xs, NamedSharding(mesh, PartitionSpec(None, axes, None)))
    ws = jax.device_put(ws, NamedSharding(mesh, PartitionSpec(None, axes)))
    return xs, ws
