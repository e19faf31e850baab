"""The Monte Carlo engine behind :mod:`gmmjax.montecarlo.divergences` (private).

:func:`expectation` estimates ``E_d[h(x)]`` (or ``log E_d[exp h(x)]``) for one
sampled distribution ``d`` with a sampling plan from :mod:`gmmjax.montecarlo.sampling`,
in chunks of points evaluated by ``lax.map`` so memory stays bounded. Per chunk
it keeps, for every group (a component, or a replicate × component cell), the
count, the mean and the sum of squared deviations; chunks are merged with Chan's
pairwise formulas, which stay accurate in float32 when the values are large
(``KL ≈ 10³``) and their spread is small.

Combination per method (``w_a`` the traced weights, ``n_a`` units, ``s_a²`` the
sample variance):

* iid: ``mean``; ``SE = s / √n``. The weights get the score-function gradient
  ``(h - b) ∇ log w_c`` (``b`` the chunk mean, a baseline), through the
  "magic box" ``h + (h - b)(log w_c - stop_gradient(log w_c))``, whose value is ``h``.
* stratified, antithetic: ``Σ_a w_a mean_a``; ``SE² = Σ_a w_a² s_a² / n_a``
  (antithetic units are pair averages; a cell with one unit uses the pooled
  variance). Exact in ``w``: no score function.
* qmc: replicate values ``v_r = Σ_a w_a mean_{r,a}``; the estimate is their mean
  weighted by the replicate sizes ``n_r / N`` (equal up to one point, so every one of
  the ``N`` points is used) and ``SE`` the standard error of that weighted mean.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gmmjax._kernel_full import KERNEL_NAME
from gmmjax._reduce import logsumexp_last
from gmmjax.gaussian import kernel_function
from gmmjax.mixture import GaussianMixture
from gmmjax.montecarlo.sampling import (
    block_info,
    chunk_plan,
    dtype_of,
    make_layout,
    standard_normals,
    transform,
)


class Estimate(NamedTuple):
    """A Monte Carlo estimate with its standard error (a pytree).

    Attributes:
      value: the estimate, ``batch_shape``.
      stderr: its standard error, ``batch_shape``; ``|value - truth| ≤ 3·stderr``
        about 99% of the time.
      num_samples: points used per sampled distribution (int32, ``batch_shape``).
    """

    value: jax.Array
    stderr: jax.Array
    num_samples: jax.Array


class _Stats(NamedTuple):
    n: jax.Array  # (G,) units
    a: jax.Array  # (G,) mean (linear) or logsumexp of h (log mode)
    b: jax.Array  # (G,) sum of squared deviations (linear) or logsumexp of 2h


def _mixture_or_none(d) -> GaussianMixture | None:
    return d if isinstance(d, GaussianMixture) else None


def log_density(d, *, stop: bool = False):
    """``x -> log d(x)``; Gaussians go through the one kernel with a precomputed factor.

    ``d`` is a `GaussianMixture` (inputs were converted once at the public entry) or any
    other NumPyro distribution, whose own ``log_prob`` is used.
    """
    m = _mixture_or_none(d)
    if stop:
        m = None if m is None else jax.tree_util.tree_map(jax.lax.stop_gradient, m)
        d = jax.tree_util.tree_map(jax.lax.stop_gradient, d)
    if m is None:
        return d.log_prob
    kernel = kernel_function(m.locs, m.precisions_cholesky, m.covariance_type)
    return lambda x: logsumexp_last(kernel(x) + m.logits)


def kernel_cost(d) -> int:
    """Floats per point in a kernel evaluation of ``d`` (for chunk sizing)."""
    m = _mixture_or_none(d)
    if m is None:
        return 16
    return m.n_components * (m.dim if m.covariance_type == "full" else 1) + m.dim


def auto_chunk(cost: int) -> int:
    """Points per chunk: about 2²² floats (16 MiB) of kernel intermediates, within [256, 2¹⁷].

    (2²⁰ before: at D = K = 64 that made chunks of 256 points, and KL took 1.02 s
    against 0.70 s now at N = 10⁵, benchmarks/RESULTS.md.)
    """
    return int(min(2**17, max(256, 2**22 // max(cost, 1))))


def _safe_lse(x, axis):
    mx = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    mx = jnp.where(jnp.isfinite(mx), mx, 0.0)
    s = jnp.sum(jnp.exp(x - mx), axis=axis)
    ok = s > 0
    return jnp.where(ok, jnp.log(jnp.where(ok, s, 1.0)) + jnp.squeeze(mx, axis), -jnp.inf)


def _chunk_stats(h, mask, g, num_groups: int, log_mode: bool) -> _Stats:
    """Per-group stats of one chunk: ``h``, ``mask`` ``(M·U,)`` in ``M`` blocks of ``U``
    units, the block ``b`` all in group ``g[b]`` (``g`` is ``(M,)``).

    Each block is summed first and only the ``M`` block sums are scattered to the groups:
    XLA's CPU scatter-add is serial, and one per unit cost more than the rest of a 1-D
    estimate (benchmarks/RESULTS.md, "Short reductions").
    """
    m = g.shape[0]
    h, mask = h.reshape(m, -1), mask.reshape(m, -1)
    seg = lambda v: jax.ops.segment_sum(v, g, num_segments=num_groups)  # noqa: E731
    n = seg(jnp.sum(mask.astype(h.dtype), axis=-1))
    if log_mode:
        top = jnp.max(jnp.where(mask, h, -jnp.inf), axis=-1)
        mx = jax.ops.segment_max(top, g, num_segments=num_groups)
        mx = jax.lax.stop_gradient(jnp.where(n > 0, mx, 0.0))
        shifted = h - mx[g][:, None]
        e1 = seg(jnp.sum(jnp.where(mask, jnp.exp(shifted), 0.0), axis=-1))
        e2 = seg(jnp.sum(jnp.where(mask, jnp.exp(2.0 * shifted), 0.0), axis=-1))
        e2 = jax.lax.stop_gradient(e2)
        ok = n > 0
        lse1 = jnp.where(ok, mx + jnp.log(jnp.where(ok, e1, 1.0)), -jnp.inf)
        lse2 = jnp.where(ok, 2.0 * mx + jnp.log(jnp.where(ok, e2, 1.0)), -jnp.inf)
        return _Stats(n, lse1, lse2)
    mean = seg(jnp.sum(jnp.where(mask, h, 0.0), axis=-1)) / jnp.maximum(n, 1.0)
    dev = jax.lax.stop_gradient(jnp.where(mask, h - mean[g][:, None], 0.0))
    return _Stats(n, mean, seg(jnp.sum(dev * dev, axis=-1)))


def _merge(st: _Stats, log_mode: bool) -> _Stats:
    """Merge stacked per-chunk stats ``(C, G)`` into ``(G,)`` (Chan et al. 1979)."""
    n = jnp.sum(st.n, axis=0)
    if log_mode:
        return _Stats(n, _safe_lse(st.a, 0), _safe_lse(st.b, 0))
    mean = jnp.sum(st.n * st.a, axis=0) / jnp.maximum(n, 1.0)
    dev = jax.lax.stop_gradient(st.a - mean)
    return _Stats(n, mean, jnp.sum(st.b, axis=0) + jnp.sum(st.n * dev * dev, axis=0))


def _to_linear(st: _Stats):
    """Log-mode stats → (n, mean, M2, log_scale) with means scaled by ``exp(-log_scale)``."""
    ok = st.n > 0
    logn = jnp.log(jnp.maximum(st.n, 1.0))
    lm = jnp.where(ok, st.a - logn, -jnp.inf)
    scale = jax.lax.stop_gradient(jnp.max(jnp.where(ok, lm, -jnp.inf)))
    mean = jnp.where(ok, jnp.exp(lm - scale), 0.0)
    second = jax.lax.stop_gradient(jnp.where(ok, jnp.exp(st.b - logn - 2.0 * scale), 0.0))
    m2 = jnp.maximum(second - jax.lax.stop_gradient(mean) ** 2, 0.0) * st.n
    return st.n, mean, m2, scale


def _combine(method, n, mean, m2, logits, replicates):
    """Per-group stats → (value, stderr) for a plan (module docstring)."""
    m2 = jax.lax.stop_gradient(m2)
    if method == "iid":
        var = m2[0] / jnp.maximum(n[0] - 1.0, 1.0)
        return mean[0], jnp.sqrt(var / jnp.maximum(n[0], 1.0))
    k = logits.shape[-1]
    w = jnp.exp(logits)
    n, mean, m2 = (a.reshape(replicates, k) for a in (n, mean, m2))
    v = jnp.sum(w * mean, axis=-1)  # (R,)
    if method == "qmc":
        # replicates differ in size by at most one point (all N are used): weight each
        # by its share n_r / N (constants, so still unbiased); SE of a weighted mean of
        # R independent replicates, Σ ω_r² (v_r - v̄)² R / (R - 1), which is
        # Σ (v_r - v̄)² / (R (R - 1)) for equal sizes
        nr = jax.lax.stop_gradient(jnp.sum(n, axis=-1))
        omega = nr / jnp.sum(nr)
        value = jnp.sum(omega * v)
        dev = jax.lax.stop_gradient(v - value)
        var = jnp.sum(omega * omega * dev * dev) * replicates / (replicates - 1)
        return value, jnp.sqrt(var)
    pooled = jnp.sum(m2) / jnp.maximum(jnp.sum(n - 1.0), 1.0)
    var = jnp.where(n >= 2, m2 / jnp.maximum(n - 1.0, 1.0), pooled)
    wsg = jax.lax.stop_gradient(w)
    se2 = jnp.sum(wsg * wsg * var / jnp.maximum(n, 1.0))
    return v[0], jnp.sqrt(se2)


# the kernel matrices a chunked gradient keeps: at most 2²⁵ floats (128 MiB) each, over
# all chunks; past that, memory stays bounded and the reverse pass recomputes them
_KEEP_FLOATS = 1 << 25


@dataclasses.dataclass(frozen=True)
class _KeepKernels:
    """``jax.checkpoint`` policy: save the kernel outputs (:data:`KERNEL_NAME`) of a chunk
    when ``n_chunks`` copies of each stay within :data:`_KEEP_FLOATS`; nothing else."""

    n_chunks: int

    def __call__(self, prim, *avals, **params):
        # the primitive of jax.ad_checkpoint.checkpoint_name is called "name"
        if prim.name != "name" or params.get("name") != KERNEL_NAME:
            return False
        return math.prod(avals[0].shape) * self.n_chunks <= _KEEP_FLOATS


def map_chunks(one_chunk, n_chunks: int):
    """``lax.map`` of the checkpointed ``one_chunk`` over ``c < n_chunks`` (``n_chunks > 1``).

    The reverse pass recomputes a chunk rather than store its intermediates (memory
    stays bounded), except its ``(C, K)`` kernel matrices while they fit the budget of
    :class:`_KeepKernels`: with them, and the full kernel's derivative through the
    precisions (:mod:`gmmjax._kernel_full`), no GEMM of the forward pass runs twice.
    ``value_and_grad`` / value of KL: 4.3× -> 3.4× at D = K = 64, 3.4× -> 2.7× at D = 16,
    K = 32 (``benchmarks/RESULTS.md``).
    """
    policy = _KeepKernels(n_chunks)
    return jax.lax.map(jax.checkpoint(one_chunk, policy=policy), jnp.arange(n_chunks))


def sum_over_chunks(one_chunk, n_chunks: int):
    """Sum the pytree ``one_chunk(c)`` over ``c < n_chunks`` (:func:`map_chunks`)."""
    if n_chunks == 1:
        return one_chunk(0)
    return jax.tree_util.tree_map(lambda a: jnp.sum(a, axis=0), map_chunks(one_chunk, n_chunks))


def fold_sums(v, mask, comp, first_unit, per_block: int, k: int):
    """Per-(component, fold) counts, sums and second-moment sums of unit values.

    The units of each component alternate between two folds by their index (for
    cross-fitting). Rows are ``2a + φ`` for component ``a`` and fold ``φ``.

    Args:
      v: ``(B·U, F)`` unit values, zero where ``mask`` is False (``U = per_block``
        units in each of ``B`` blocks).
      mask: ``(B·U,)`` valid units.
      comp: ``(B,)`` each block's component.
      first_unit: ``(B,)`` index, within its component, of each block's first unit
        (even when ``per_block`` is: blocks start at even units).
      per_block: static units per block.
      k: static number of components.

    Returns:
      ``(n (2K,), Σ v (2K, F), Σ v vᵀ (2K, F, F))``; the second moments carry no gradient.
    """
    m = mask.astype(v.dtype)
    vs = jax.lax.stop_gradient(v)
    if per_block % 2:  # fold by each unit's index
        unit = (first_unit[:, None] + jnp.arange(per_block)[None, :]).reshape(-1)
        grp = 2 * jnp.repeat(comp, per_block) + unit % 2
        seg = lambda a: jax.ops.segment_sum(a, grp, num_segments=2 * k)  # noqa: E731
        return seg(m), seg(v), seg(vs[:, :, None] * vs[:, None, :])
    # the units of a block alternate between the folds: per-block, per-fold sums first
    # (a batched product for the second moments), then one segment sum over the blocks
    nv = v.shape[-1]
    shape = (comp.shape[0], per_block // 2, 2)
    vb, vsb = v.reshape(shape + (nv,)), vs.reshape(shape + (nv,))

    def seg(a):
        return jax.ops.segment_sum(a, comp, num_segments=k).reshape((2 * k,) + a.shape[2:])

    return (
        seg(jnp.sum(m.reshape(shape), axis=1)),
        seg(jnp.sum(vb, axis=1)),
        seg(jnp.einsum("bpfi,bpfj->bfij", vsb, vsb)),
    )


def expectation(d, key, num_samples: int, method: str, h_fn, *, chunk: int, log_mode: bool = False):
    """Estimate ``E_d[h(x)]`` (``log E_d[exp h(x)]`` with ``log_mode``).

    Args:
      d: an unbatched `GaussianMixture` or any NumPyro distribution (iid only).
      key: PRNG key.
      num_samples: static number of points drawn from ``d``.
      method: one of :data:`gmmjax.montecarlo.sampling.METHODS` (ignored for non-Gaussian ``d``).
      h_fn: ``(C,) + event_shape`` points → ``(C,)`` values.
      chunk: static points per chunk.
      log_mode: estimate the log of the mean of ``exp h``.

    Returns:
      ``(value, stderr, used)``: traced scalars and the static number of points used.
    """
    if method == "cv":  # quantities without a control variate use its point set alone
        method = "antithetic"
    m = _mixture_or_none(d)
    k_layout, k_eps = jax.random.split(key)
    if m is None:
        return _generic_expectation(d, k_eps, num_samples, h_fn, chunk, log_mode)
    layout = make_layout(m, k_layout, num_samples, method)
    k = m.n_components
    bsz = layout.block
    # never pad past the layout: a small estimate is one chunk of exactly its own blocks
    per_chunk, n_chunks = chunk_plan(layout.num_blocks, chunk, bsz)
    groups = 1 if method == "iid" else k * layout.replicates
    dtype = dtype_of(m)
    univariate = m.covariance_type == "univariate"

    def one_chunk(c):
        ids = c * per_chunk + jnp.arange(per_chunk)
        rep, comp, first, valid = block_info(layout, ids)
        ke = k_eps if method == "qmc" else jax.random.fold_in(k_eps, c)
        eps = standard_normals(ke, method, layout, rep, comp, first, m.dim, dtype)
        x = transform(m, comp, eps)
        x = x.reshape((per_chunk * bsz,) + (() if univariate else (m.dim,)))
        h = h_fn(x)
        mask = (jnp.arange(bsz)[None, :] < valid[:, None]).reshape(-1)
        g = rep * k + comp if groups > 1 else jnp.zeros_like(comp)  # per block
        if method == "iid":
            # blocks past the used ones take component K - 1, which may be dead (-inf)
            lw = jnp.repeat(jnp.where(valid > 0, m.logits[comp], 0.0), bsz)
            box = lw - jax.lax.stop_gradient(lw)
            if log_mode:
                h = h + box
            else:
                base = jnp.sum(jnp.where(mask, h, 0.0)) / jnp.maximum(jnp.sum(mask), 1)
                h = h + (h - jax.lax.stop_gradient(base)) * box
        if method == "antithetic":
            pair = h.reshape(-1, 2)
            if log_mode:  # the unit is the pair's mean of exp(h)
                h = jnp.logaddexp(pair[:, 0], pair[:, 1]) - jnp.log(2.0)
            else:
                h = jnp.mean(pair, axis=-1)
            h = jnp.where(mask[1::2], h, pair[:, 0])  # an odd N's one unpaired point
            mask = mask[::2]  # a pair (or the unpaired point) is valid with its first
        return _chunk_stats(h, mask, g, groups, log_mode)

    if n_chunks == 1:
        st = one_chunk(0)
    else:
        st = _merge(map_chunks(one_chunk, n_chunks), log_mode)
    # every plan uses exactly the points asked for (see make_layout)
    return _finish(st, method, m.logits, layout.replicates, log_mode) + (num_samples,)


def _finish(st, method, logits, replicates, log_mode):
    if log_mode:
        n, mean, m2, scale = _to_linear(st)
        value, se = _combine(method, n, mean, m2, logits, replicates)
        return scale + jnp.log(value), se / value
    return _combine(method, st.n, st.a, st.b, logits, replicates)


def _generic_expectation(d, key, num_samples, h_fn, chunk, log_mode):
    if d.batch_shape:
        raise ValueError(
            f"a non-Gaussian distribution must have batch_shape (), got {d.batch_shape}; "
            "vmap over the batch instead"
        )
    chunk = min(chunk, num_samples)
    n_chunks = -(-num_samples // chunk)

    def one_chunk(c):
        x = d.sample(jax.random.fold_in(key, c), (chunk,))
        if not d.has_rsample:
            x = jax.lax.stop_gradient(x)
        h = h_fn(x)
        mask = c * chunk + jnp.arange(chunk) < num_samples
        return _chunk_stats(h, mask, jnp.zeros(1, jnp.int32), 1, log_mode)

    if n_chunks == 1:
        st = one_chunk(0)
    else:
        st = _merge(map_chunks(one_chunk, n_chunks), log_mode)
    return _finish(st, "iid", None, 1, log_mode) + (num_samples,)
