"""Sampling plans for Monte Carlo estimates over Gaussian mixtures.

A *plan* decides how many points each component of a mixture
``p = Σ_a w_a N(μ_a, L_a L_aᵀ)`` gets and where the standard normal inputs ``ε``
come from; the points are ``x = μ_a + L_a ε``. Every plan has static shapes, so it
runs under ``jit``, ``vmap`` and ``grad`` with traced weights (DESIGN.md §3):

* ``"iid"``: ancestral sampling. The component counts are ``Multinomial(N, w)``
  (the same law as drawing a component per point, the order of points being
  irrelevant to an average); ``ε`` iid normal.
* ``"stratified"``: every component gets one point, the other ``N - K`` are
  shared in proportion to ``stop_gradient(w)`` by systematic allocation
  (:func:`systematic_allocation`); ``ε`` iid normal.
* ``"antithetic"``: stratified pairs ``(ε, -ε)``; counts are allocated in pairs.
* ``"qmc"``: stratified, with ``R`` independent replicates of a randomly shifted
  Kronecker (``R_d``) lattice sequence mapped through ``Φ⁻¹`` (randomized QMC).

Points are laid out in *blocks* of ``B`` rows that belong to one component, so
the full-covariance transform is one small batched matrix product per block
(``(B, D) · (D, D)``) instead of a ``D × D`` gather per point. A component with
``n_a`` points takes ``⌈n_a / B⌉`` blocks; unused rows are masked. The layout is a
pure function of a block index, so chunks of blocks can be generated inside
``lax.map`` for bounded memory.

Why a Kronecker sequence rather than Sobol: the counts per component are
arbitrary integers that follow the traced weights, so Sobol's net property (at
powers of two) is lost anyway; the ``R_d`` sequence ``u_j = {s + j α}`` with
``α_i = φ_d^{-i}`` (``φ_d`` the positive root of ``x^{d+1} = x + 1``) has low
discrepancy for *every* prefix length, needs no direction-number table, works in
any dimension, and a uniform random shift ``s`` makes each point exactly uniform
(hence unbiased estimates). It is computed in 32-bit fixed point, so the shift
modulo 1 is exact for any index.

References:
  Cranley & Patterson, *Randomization of number theoretic methods for multiple
  integration*, SIAM J. Numer. Anal. 13 (1976) (random shift);
  M. Roberts, *The unreasonable effectiveness of quasirandom sequences* (2018)
  (the ``R_d`` sequence); Owen, *Monte Carlo theory, methods and examples*
  (2013), ch. 8 (stratification, antithetics) and ch. 17 (RQMC).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import erfinv

from gmmjax.mixture import GaussianMixture

__all__ = [
    "METHODS",
    "as_gaussian_mixture",
    "kronecker_alpha",
    "multinomial_counts",
    "systematic_allocation",
]

METHODS = ("iid", "stratified", "antithetic", "qmc", "cv")
"""Plans; ``"cv"`` is antithetic pairs plus regression control variates
(:mod:`gmmjax.montecarlo.control_variates`), for KL, JS, Jeffreys and (cross-)entropy."""


def as_gaussian_mixture(d) -> GaussianMixture | None:
    """A `GaussianMixture` equal to ``d`` when ``d`` is Gaussian, else ``None``.

    Accepts `GaussianMixture`, NumPyro ``Normal`` (a ``K = 1`` univariate
    mixture), ``MultivariateNormal`` (``K = 1``, full) and ``MixtureSameFamily``
    of ``Normal``/``MultivariateNormal`` components. Built with
    ``GaussianMixture.from_params`` so it is safe inside ``jit`` and ``grad``.

    Example:
      >>> import numpyro.distributions as dist
      >>> as_gaussian_mixture(dist.Normal(0.0, 2.0)).n_components
      1
    """
    if isinstance(d, GaussianMixture):
        return d
    if type(d) is dist.Normal:
        loc, scale = jnp.broadcast_arrays(d.loc, d.scale)
        return GaussianMixture.from_params(
            jnp.zeros(loc.shape + (1,), loc.dtype), loc[..., None], scale[..., None], "univariate"
        )
    if type(d) is dist.MultivariateNormal:
        tril = d.scale_tril
        return GaussianMixture.from_params(
            jnp.zeros(tril.shape[:-2] + (1,), tril.dtype),
            jnp.broadcast_to(d.loc, tril.shape[:-1])[..., None, :],
            tril[..., None, :, :],
            "full",
        )
    if isinstance(d, dist.MixtureSameFamily):
        comp = d.component_distribution
        logits = d.mixing_distribution.logits
        if type(comp) is dist.Normal:
            return GaussianMixture.from_params(logits, comp.loc, comp.scale, "univariate")
        if type(comp) is dist.MultivariateNormal:
            return GaussianMixture.from_params(logits, comp.loc, comp.scale_tril, "full")
    return None


def systematic_allocation(weights: jax.Array, total: int, minimum: int = 1) -> jax.Array:
    """Integer counts ``n_a ≥ minimum`` with ``Σ n_a = total``, ``n_a ≈ total · w_a``.

    Every live component (``w_a > 0``) gets ``minimum``; the remaining
    ``total - K_live·minimum`` are shared by systematic allocation with offset ½:
    ``n_a - minimum = ⌊c_a + ½⌋ - ⌊c_{a-1} + ½⌋`` with ``c_a = rest · Σ_{b≤a} w_b``.
    A dead component (``w_a = 0``) gets no point, so estimates stay unbiased and
    never evaluate it. The counts carry no gradient (they use ``stop_gradient(w)``).

    Args:
      weights: ``(K,)`` nonnegative weights summing to 1.
      total: static total count (at least ``K·minimum``).
      minimum: static count every live component gets first.

    Returns:
      ``(K,)`` int32 counts.

    Example:
      >>> import jax.numpy as jnp
      >>> systematic_allocation(jnp.array([0.2, 0.3, 0.5]), 13).tolist()
      [3, 4, 6]
      >>> systematic_allocation(jnp.array([0.5, 0.0, 0.5]), 6).tolist()
      [3, 0, 3]
    """
    w = jax.lax.stop_gradient(weights)
    floor = minimum * (w > 0).astype(jnp.int32)
    rest = total - jnp.sum(floor, axis=-1, keepdims=True)
    cum = jnp.cumsum(w, axis=-1) / jnp.sum(w, axis=-1, keepdims=True)
    edges = jnp.floor(rest * cum + 0.5).astype(jnp.int32)
    edges = jnp.minimum(edges, rest)
    # the last live component closes the sum (trailing dead ones keep their zero)
    live = (w > 0).astype(jnp.int32)
    live_later = jnp.flip(jnp.cumsum(jnp.flip(live, -1), axis=-1), -1) - live
    edges = jnp.where(live_later > 0, edges, rest)
    prev = jnp.concatenate([jnp.zeros_like(edges[..., :1]), edges[..., :-1]], axis=-1)
    return edges - prev + floor


@functools.lru_cache(maxsize=64)
def kronecker_alpha(d: int) -> np.ndarray:
    """``(d,)`` uint32 fixed-point generator ``α_i = φ_d^{-i} mod 1`` of the ``R_d`` sequence.

    ``φ_d`` is the positive root of ``x^{d+1} = x + 1`` (found by Newton's method
    in float64 on the host); ``α`` is stored as ``round(α · 2³²)``.

    Example:
      >>> round(float(kronecker_alpha(1)[0]) / 2**32, 6)  # 1/golden ratio
      0.618034
    """
    x = 2.0
    for _ in range(100):
        x = x - (x ** (d + 1) - x - 1.0) / ((d + 1) * x**d - 1.0)
    alpha = np.mod(x ** -np.arange(1, d + 1, dtype=np.float64), 1.0)
    return np.round(alpha * 2.0**32).astype(np.uint64).astype(np.uint32)


def multinomial_counts(key, n: int, weights: jax.Array, chunk: int = 2**20) -> jax.Array:
    """``Multinomial(n, w)`` counts by inverse-CDF categorical draws, in chunks of ``chunk``.

    (Cheaper to compile than ``jax.random.multinomial``'s sequential binomials, and
    memory stays ``O(chunk)`` for any ``n``.) No gradient flows to ``weights``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> int(multinomial_counts(jax.random.key(0), 1000, jnp.array([0.5, 0.5])).sum())
      1000
    """
    w = jax.lax.stop_gradient(weights)
    k = w.shape[-1]
    cdf = jnp.cumsum(w) / jnp.sum(w)
    # from the last live component on, the cdf is 2 > u: rounding (a float32 sum of
    # 0.99999994) can never send a draw to a trailing dead component
    live_after = jnp.flip(jnp.cumsum(jnp.flip(w > 0))) > 0
    last_live = k - jnp.sum(~live_after) - 1
    cdf = jnp.where(jnp.arange(k) >= last_live, 2.0, cdf)

    def one(c, size):
        u = jax.random.uniform(jax.random.fold_in(key, c), (size,), dtype=w.dtype)
        comp = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), k - 1)
        return jax.ops.segment_sum(jnp.ones(size, jnp.int32), comp, num_segments=k)

    full, rest = divmod(n, chunk)
    total = jnp.zeros(k, jnp.int32)
    if full == 1:
        total = one(0, chunk)
    elif full > 1:
        total = jnp.sum(jax.lax.map(lambda c: one(c, chunk), jnp.arange(full)), axis=0)
    if rest:
        total = total + one(full, rest)
    return total


class Layout(NamedTuple):
    """Where the points of one sampled mixture go (all shapes static).

    ``counts[r, a]`` valid points of component ``a`` in replicate ``r``; each
    ``(r, a)`` cell uses ``⌈counts/B⌉`` consecutive blocks of ``block`` rows inside
    replicate ``r``'s ``blocks_per_rep`` blocks.
    """

    counts: jax.Array  # (R, K) int32
    cum_blocks: jax.Array  # (R, K) int32, inclusive cumulative block counts
    block: int
    blocks_per_rep: int
    replicates: int

    @property
    def num_blocks(self) -> int:
        return self.blocks_per_rep * self.replicates


def block_size(mixture: GaussianMixture, method: str, num_samples: int | None = None) -> int:
    """Rows per block: 32 for full covariances (one small GEMM per block).

    Otherwise no GEMM needs a block, but a block is the unit of the per-chunk
    bookkeeping (its component, its group's sums), so with ``num_samples`` the blocks
    grow to 32 rows while the rows they may leave unfilled (up to ``B - 1`` in each
    replicate × component cell) stay within 1/16 of the points; else 1 (2 for pairs).
    One row per block made that bookkeeping 2/3 of a 1-D estimate at N = 10⁵
    (benchmarks/RESULTS.md, "Short reductions").
    """
    if mixture.covariance_type == "full" and mixture.dim > 1:
        return 32
    b = base = 2 if method == "antithetic" else 1
    if num_samples is not None:
        k = mixture.n_components
        cells = k * (qmc_replicates(k, num_samples) if method == "qmc" else 1)
        b = 32
        while b > base and b * cells > num_samples // 16:
            b //= 2
    return b


def min_samples(k: int, method: str) -> int:
    """The smallest ``num_samples`` a method accepts for ``k`` components."""
    return {"iid": 1, "stratified": k, "antithetic": 2 * k, "qmc": 2 * k, "cv": 2 * k}[method]


def qmc_replicates(k: int, num_samples: int) -> int:
    """Independent randomizations used by ``"qmc"``: ``clip(N // (2K), 2, 32)``."""
    return int(min(32, max(2, num_samples // (2 * k))))


def make_layout(
    mixture: GaussianMixture,
    key,
    num_samples: int,
    method: str,
    minimum: int = 1,
    block: int | None = None,
) -> Layout:
    """Component counts and block layout of one unbatched mixture (see module doc).

    ``minimum``: units (points; antithetic pairs) every live component gets first, for
    the ``"antithetic"`` and ``"stratified"`` plans. ``block``: rows per block, instead
    of :func:`block_size`'s (every component can leave up to a block unfilled).
    """
    k = mixture.n_components
    b = block_size(mixture, method, num_samples) if block is None else block
    if method == "qmc":
        # every point is used: the first N mod R replicates get one point more (the
        # estimator weights replicate r by its share n_r / N, see _estimators)
        r = qmc_replicates(k, num_samples)
        per, rem = divmod(num_samples, r)
        per += rem > 0
        small = systematic_allocation(mixture.weights, num_samples // r)
        big = systematic_allocation(mixture.weights, num_samples // r + 1)
        counts = jnp.where(jnp.arange(r)[:, None] < rem, big, small)
    elif method == "antithetic":
        # pairs (ε, -ε); an odd N adds one unpaired point to the heaviest component
        r, per = 1, num_samples + num_samples % 2
        counts = 2 * systematic_allocation(mixture.weights, num_samples // 2, minimum)
        extra = jax.nn.one_hot(jnp.argmax(jax.lax.stop_gradient(mixture.weights)), k)
        counts = (counts + (num_samples % 2) * extra.astype(counts.dtype))[None]
    elif method == "stratified":
        r, per = 1, num_samples
        counts = systematic_allocation(mixture.weights, per, minimum)[None]
    else:
        r, per = 1, num_samples
        counts = multinomial_counts(key, per, mixture.weights)[None]
    blocks = (counts + b - 1) // b
    per_rep = -(-per // b) + (k if b > 1 else 0)
    return Layout(counts, jnp.cumsum(blocks, axis=-1), b, per_rep, r)


def block_info(layout: Layout, block_ids: jax.Array):
    """For global block indices ``(M,)``: replicate, component, first index, valid rows.

    Blocks past the used ones get component ``K`` clipped to ``K - 1`` and zero
    valid rows.
    """
    k = layout.counts.shape[-1]
    rep = jnp.minimum(block_ids // layout.blocks_per_rep, layout.replicates - 1)
    local = block_ids - rep * layout.blocks_per_rep
    cum = layout.cum_blocks[rep]  # (M, K)
    comp = jnp.sum(cum <= local[:, None], axis=-1)
    used = (comp < k) & (block_ids < layout.num_blocks)
    comp = jnp.minimum(comp, k - 1)
    start = jnp.take_along_axis(cum, comp[:, None], axis=-1)[:, 0]
    count = layout.counts[rep, comp]
    nblk = (count + layout.block - 1) // layout.block
    first = (local - (start - nblk)) * layout.block
    valid = jnp.where(used, jnp.clip(count - first, 0, layout.block), 0)
    return rep, comp, first, valid


def standard_normals(key, method: str, layout: Layout, rep, comp, first, dim: int, dtype):
    """``(M, B, dim)`` inputs ``ε`` for a chunk of ``M`` blocks."""
    m, b = rep.shape[0], layout.block
    if method in ("iid", "stratified"):
        return jax.random.normal(key, (m, b, dim), dtype)
    if method == "antithetic":
        z = jax.random.normal(key, (m, b // 2, 1, dim), dtype)
        return jnp.concatenate([z, -z], axis=2).reshape(m, b, dim)
    # qmc: u = {shift[rep, comp] + (j + 1) α} in 32-bit fixed point, then Φ⁻¹
    alpha = jnp.asarray(kronecker_alpha(dim))
    j = (first[:, None] + jnp.arange(b)[None, :] + 1).astype(jnp.uint32)  # (M, B)
    k = layout.counts.shape[-1]
    shifts = jax.random.bits(key, (layout.replicates, k, dim), jnp.uint32)
    bits = shifts[rep, comp][:, None, :] + j[..., None] * alpha  # wraps modulo 2^32
    # 23 bits: (i + ½) 2⁻²³ ≤ 1 - 2⁻²⁴ is exact in float32, so Φ⁻¹ stays finite (|ε| < 5.3)
    u = ((bits >> 9).astype(dtype) + 0.5) * (2.0**-23)
    # Φ⁻¹(u) = √2 erfinv(2u - 1): the map jax.random.normal itself uses, and cheaper
    # than ndtri's three-branch rational approximation; 2u - 1 is exact for these u
    return jnp.sqrt(2.0).astype(dtype) * erfinv(2.0 * u - 1.0)


def transform(mixture: GaussianMixture, comp: jax.Array, eps: jax.Array) -> jax.Array:
    """Points ``μ_a + L_a ε`` for blocks of component ``comp``: ``(M, B, D)`` or ``(M, B)``."""
    # the leaf as every computation reads it (``_params.factor``): made so once per call
    # at the public entry (``_entry._check_common``), not in every chunk
    t, s, locs = mixture.covariance_type, mixture.scale_param, mixture.locs
    if t == "univariate":
        return locs[comp][:, None] + s[comp][:, None] * eps[..., 0]
    mu = locs[comp][:, None, :]
    if t == "full" and mixture.dim == 1:  # a product, not (B, 1)·(1, 1) batched GEMMs
        return mu + s[comp][:, None, :, 0] * eps
    if t == "full":
        return mu + jnp.einsum("mbe,mde->mbd", eps, s[comp])
    if t == "tied":
        return mu + eps @ s.T
    if t == "diag":
        return mu + s[comp][:, None, :] * eps
    return mu + s[comp][:, None, None] * eps


def dtype_of(mixture: GaussianMixture):
    """Floating dtype of a mixture's parameters."""
    return jnp.result_type(mixture.locs.dtype, jnp.float32)


def padded_points(layout: Layout) -> int:
    """Static number of rows (valid or masked) of a layout."""
    return layout.num_blocks * layout.block


def chunk_plan(num_blocks: int, chunk: int, block: int) -> tuple[int, int]:
    """``(blocks per chunk, chunks)`` for at most ``chunk`` points per chunk.

    The blocks are shared evenly: 100,000 points in chunks of at most 87,381 are two
    chunks of 50,000, not one full chunk and one three-quarters padding (which cost
    1.7x at D = 2, K = 5, benchmarks/RESULTS.md).

    Example:
      >>> chunk_plan(100, 64, 1), chunk_plan(10, 1000, 32)
      ((50, 2), (10, 1))
    """
    n_chunks = ceil_div(num_blocks, max(1, chunk // block))
    return ceil_div(num_blocks, n_chunks), n_chunks


def ceil_div(a: int, b: int) -> int:
    """``⌈a / b⌉`` for positive ints."""
    return -(-a // b)
