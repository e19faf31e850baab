"""The full-covariance log-density kernel and its derivative through the precisions.

The value is the precision-Cholesky form of :mod:`gmmjax.gaussian` (DESIGN.md §4):
with ``P_k = L_k⁻ᵀ`` and points and means shifted by a centre ``c``,

    log N(x; μ_k, Σ_k) = -½ ‖(x - c)ᵀ P_k - (μ_k - c)ᵀ P_k‖² + log|P_k| - (D/2) log 2π,

one ``(N, D) @ (D, K·D)`` GEMM in cache-sized row blocks, then a sum of squares.

Its derivative is written through the precision matrices ``Λ_k = P_k P_kᵀ``:

    d log N = -(x - μ_k)ᵀ [Λ_k (dx - dμ_k) + ½ dΛ_k (x - μ_k)] + d log|P_k|,

with ``dΛ_k = dP_k P_kᵀ + P_k dP_kᵀ``. Linear in the tangents, with coefficients
``x - μ_k``, ``Λ_k`` and ``x - c`` only, so the reverse pass (JAX transposes this
rule) is two GEMMs against the cotangent ``G`` of the output,

    ∂x_n = -Σ_k G_nk Λ_k (x_n - μ_k),    ∂Λ_k = -½ Σ_n G_nk (x_n - μ_k)(x_n - μ_k)ᵀ,

and needs no product ``(x - μ_k)ᵀ P_k`` of the forward pass. Autodiff of the GEMM
form needs that product in the reverse pass: where the chunked estimators recompute
their chunks there (``jax.checkpoint``), it cost a third GEMM, and ``value_and_grad``
ran at 3.5-4.2× the value at D ≥ 16 (``benchmarks/RESULTS.md``). The estimators keep
the kernel's ``(N, K)`` output (:data:`KERNEL_NAME`) and recompute only the
elementwise ``x - μ_k``. As a ``custom_jvp`` (not ``custom_vjp``), the rule keeps
``jax.jvp``, ``jax.hessian`` and forward mode working.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name
from jax.custom_derivatives import SymbolicZero

from gmmjax._reduce import sum_last

__all__ = [
    "KERNEL_NAME",
    "full_log_density",
    "full_parts",
    "full_block",
    "gemm_bound",
    "in_blocks",
    "log_det_triangular",
    "precisions",
    "row_chunk",
]

#: ``jax.ad_checkpoint.checkpoint_name`` of every kernel output: the chunked estimators'
#: ``jax.checkpoint`` saves these ``(N, K)`` matrices rather than recompute their GEMMs.
KERNEL_NAME = "gmmjax_kernel"

_LOG_2PI = math.log(2.0 * math.pi)

# ~4 MiB of float32: the (rows, K, D) block of the full type. 1 MiB was the best size on
# the earlier CPU; on this box's (2 MiB L2, 480 MiB L3) 4 MiB reaches 58-60% of GEMM at
# D = K = 64 against 48% (benchmarks/RESULTS.md, "Larger blocks and chunks")
_CACHE_FLOATS = 1 << 20


def gemm_bound(k: int, d: int) -> bool:
    """Whether the full kernel's cost is its GEMMs (else the elementwise work is)."""
    return k * d > 32 and d > 1


def row_chunk(locs_shape, covariance_type) -> int | None:
    """Rows per block for the full type (a power of two in [64, 4096], or 2^16 where the
    kernel is elementwise-bound); None otherwise."""
    if covariance_type != "full":
        return None
    k, d = locs_shape
    if not gemm_bound(k, d):
        # elementwise-bound, not GEMM-bound: XLA spreads one large loop over the CPU's
        # threads but not a loop inside lax.map (2-3x at D = 2, K = 5 and D = 1, K = 64,
        # benchmarks/RESULTS.md); blocks of 2^16 rows only bound the memory
        return 1 << 16
    rows = max(64, min(4096, _CACHE_FLOATS // max(1, k * d)))
    return 1 << (rows.bit_length() - 1)


def log_det_triangular(prec):
    """``log|P|`` of triangular factors ``(..., D, D)``: the sum of the logs of the diagonal."""
    return jnp.sum(jnp.log(jnp.diagonal(prec, axis1=-2, axis2=-1)), axis=-1)


def full_parts(locs, prec):
    """Parameter-only arrays of the full kernel: centre, (D, K·D) factors, μ_kᵀP_k, log|P|."""
    k, d = locs.shape
    center = jax.lax.stop_gradient(jnp.mean(locs, axis=0))
    p_flat = jnp.transpose(prec, (1, 0, 2)).reshape(d, k * d)
    m = jnp.einsum("kd,kde->ke", locs - center, prec)
    return center, p_flat, m, log_det_triangular(prec)


def full_block(x, parts):
    """The full type on ``(N, D)`` points: one GEMM ``(N, D) @ (D, K·D)`` and a reduction."""
    center, p_flat, m, log_det = parts
    n, d = x.shape
    y = ((x - center) @ p_flat).reshape(n, m.shape[0], d) - m[None]
    return -0.5 * sum_last(y * y) + log_det - 0.5 * d * _LOG_2PI


def precisions(prec):
    """``Λ_k = P_k P_kᵀ``, ``(K, D, D)``: the extra input of :func:`full_log_density`."""
    return jnp.einsum("kde,kfe->kdf", prec, prec)


@functools.partial(jax.custom_jvp, nondiff_argnums=(4, 5))
def full_log_density(x, locs, prec, lam, rows: int | None, precision: str):
    """``(N, K)`` log-densities of ``(N, D)`` points under full-covariance components.

    Args:
      x: ``(N, D)`` points.
      locs: ``(K, D)`` means.
      prec: ``(K, D, D)`` upper precision Cholesky factors ``P_k``.
      lam: ``(K, D, D)`` :func:`precisions` of ``prec``, computed by the caller once
        (outside any loop over chunks of points): the value does not read it, the
        derivative takes the quadratic's tangent from it (module docstring).
      rows: static rows per block (None: one block).
      precision: the matmul precision of the products (value and derivative alike).
    """
    del lam
    with jax.default_matmul_precision(precision):
        return in_blocks(x, locs, prec, rows)


def in_blocks(x, locs, prec, rows: int | None):
    """The full kernel's value in blocks of ``rows`` points (one block if None), by the
    GEMM form; plain autodiff differentiates it (``gemm_bound`` false)."""
    parts = full_parts(locs, prec)
    n, d = x.shape
    if rows is None or n < 2 * rows:
        return full_block(x, parts)
    # cache-sized row blocks: the (rows, K, D) intermediate stays in cache, so the GEMM
    # stays compute-bound (7x faster than one (N, K, D) pass at D = K = 32, measured
    # in benchmarks/RESULTS.md); pad with copies of a real point to stay finite
    pad = -n % rows
    xp = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad, d))]) if pad else x
    out = jax.lax.map(lambda xc: full_block(xc, parts), xp.reshape(-1, rows, d))
    return out.reshape(-1, locs.shape[0])[:n]


def _flat(a):
    """``(K, D, D) -> (D, K·D)``: ``(x @ _flat(a))[n, k·D + e] = Σ_d x_nd a_kde``."""
    k, d, _ = a.shape
    return jnp.transpose(a, (1, 0, 2)).reshape(d, k * d)


def _full_jvp(rows, precision, primals, tangents):
    x, locs, prec, lam = primals
    dx, dlocs, dprec, dlam = (None if isinstance(t, SymbolicZero) else t for t in tangents)
    out = full_log_density(x, locs, prec, lam, rows, precision)
    n, d = x.shape
    k = locs.shape[0]
    tangent = jnp.zeros((1, k), out.dtype)
    with jax.default_matmul_precision(precision):
        center = jax.lax.stop_gradient(jnp.mean(locs, axis=0))
        xc, mc = x - center, locs - center
        # the point terms -(x - μ_k)ᵀ V_nk, V_nk = Λ_k dx_n + ½ dΛ_k (x_n - c): one (N, K, D)
        # product whose transpose feeds the two GEMMs of the reverse pass
        v = None
        if dx is not None:
            v = (dx @ _flat(lam)).reshape(n, k, d)
        if dlam is not None:
            w = (xc @ _flat(0.5 * dlam)).reshape(n, k, d)
            v = w if v is None else v + w
        if v is not None:
            tangent = tangent - sum_last((xc[:, None, :] - mc[None]) * v)
        # the component terms (x - μ_k)ᵀ c_k, c_k = Λ_k dμ_k + ½ dΛ_k (μ_k - c): an
        # (N, D) @ (D, K) product, so the reverse pass reduces no (N, K, D) array
        c = None
        if dlocs is not None:
            c = jnp.einsum("kd,kde->ke", dlocs, lam)
        if dlam is not None:
            w = jnp.einsum("kd,kde->ke", mc, 0.5 * dlam)
            c = w if c is None else c + w
        if c is not None:
            tangent = tangent + (xc @ c.T - sum_last(mc * c)[None])
        if dprec is not None:  # d log|P_k|
            tangent = tangent + jnp.sum(
                jnp.diagonal(dprec, axis1=-2, axis2=-1) / jnp.diagonal(prec, axis1=-2, axis2=-1),
                axis=-1,
            )
    return out, jnp.broadcast_to(tangent, out.shape)


full_log_density.defjvp(_full_jvp, symbolic_zeros=True)


def named(out):
    """Tag a kernel output with :data:`KERNEL_NAME` (for the estimators' checkpoints)."""
    return checkpoint_name(out, KERNEL_NAME)
