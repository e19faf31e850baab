"""Monte Carlo f-divergences and Rényi divergences between mixtures.

Total variation, squared Hellinger and the general ``f_divergence`` are written
as expectations under ``m = ½(p + q)`` and estimated from ``num_samples`` points
of *each* of ``p`` and ``q`` (a stratified draw from ``m``). With
``Δ = log p(x) - log q(x)``:

* ``TV(p, q) = ½ ∫|p - q| = E_m[|tanh(Δ/2)|]`` (terms in ``[0, 1]``);
* ``H²(p, q) = 1 - ∫√(pq) = E_m[1 - sech(Δ/2)]`` (terms in ``[0, 1]``);
* ``D_f(p‖q) = ∫ q f(p/q) = E_m[2 σ(-Δ) f(e^Δ)]``.

The Rényi divergence samples ``p``:
``D_α(p‖q) = log E_p[exp((α - 1) Δ)] / (α - 1)``, estimated in log space. Its
standard error comes from the delta method; the log of a mean is biased by
``O(1/N)``, which is below the reported error for the sample sizes used here.

References:
  Ali & Silvey (1966) and Csiszár (1967) (f-divergences); Rényi, *On measures of
  entropy and information* (1961), eq. 3.3; Gibbs & Su, *On choosing and bounding
  probability metrics* (2002) (TV and Hellinger conventions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gmmjax._runtime.compile import compiled
from gmmjax.montecarlo._entry import _batched, _estimate, _log_ratio, _one_side, _two_sides
from gmmjax.montecarlo._estimators import Estimate
from gmmjax.montecarlo.divergences import DEFAULT_METHOD, DEFAULT_NUM_SAMPLES

__all__ = [
    "f_divergence",
    "f_divergence_estimate",
    "renyi_divergence",
    "renyi_estimate",
    "squared_hellinger",
    "squared_hellinger_estimate",
    "total_variation",
    "total_variation_estimate",
]


def _m_expectation(term, p, q, key, num_samples, method, chunk_size):
    def fn(p, q, key, n, method, chunk):
        d = _log_ratio(p, q)
        h = lambda x: term(d(x))  # noqa: E731
        return _estimate(*_two_sides(p, q, key, n, method, chunk, h, h, 0.5, 0.5))

    return _batched(fn, (p, q), key, num_samples, method, chunk_size)


@compiled
def total_variation_estimate(
    p,
    q,
    key,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method=DEFAULT_METHOD,
    chunk_size=None,
    mesh=None,
) -> Estimate:
    """Total variation distance ``½ ∫|p - q| dx`` in ``[0, 1]``, samples from both sides.

    Args:
      p, q, key, num_samples, method, chunk_size: as :func:`gmmjax.kl_estimate`.

    Returns:
      `Estimate` with ``value`` in ``[0, 1]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gmmjax import GaussianMixture, total_variation_estimate
      >>> p = GaussianMixture(jnp.array([1.0]), jnp.array([0.0]), scale=jnp.array([1.0]))
      >>> q = GaussianMixture(jnp.array([1.0]), jnp.array([60.0]), scale=jnp.array([1.0]))
      >>> float(total_variation_estimate(p, q, jax.random.key(0), 1000).value)
      1.0
    """
    term = lambda d: jnp.abs(jnp.tanh(0.5 * d))  # noqa: E731
    return _m_expectation(term, p, q, key, num_samples, method, chunk_size)


def total_variation(p, q, key, num_samples: int = DEFAULT_NUM_SAMPLES, **kwargs) -> jax.Array:
    """``½ ∫|p - q|``; :func:`total_variation_estimate`'s value."""
    return total_variation_estimate(p, q, key, num_samples, **kwargs).value


def _sech(y):
    a = jnp.abs(y)
    e = jnp.exp(-a)
    return 2.0 * e / (1.0 + e * e)


@compiled
def squared_hellinger_estimate(
    p,
    q,
    key,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method=DEFAULT_METHOD,
    chunk_size=None,
    mesh=None,
) -> Estimate:
    """Squared Hellinger distance ``H² = 1 - ∫√(p q) = ½ ∫(√p - √q)²`` in ``[0, 1]``.

    Args:
      p, q, key, num_samples, method, chunk_size: as :func:`gmmjax.kl_estimate`.

    Returns:
      `Estimate` with ``value`` in ``[0, 1]``.
    """
    term = lambda d: 1.0 - _sech(0.5 * d)  # noqa: E731
    return _m_expectation(term, p, q, key, num_samples, method, chunk_size)


def squared_hellinger(p, q, key, num_samples: int = DEFAULT_NUM_SAMPLES, **kwargs) -> jax.Array:
    """``1 - ∫√(pq)``; :func:`squared_hellinger_estimate`'s value."""
    return squared_hellinger_estimate(p, q, key, num_samples, **kwargs).value


@compiled
def f_divergence_estimate(
    p,
    q,
    key,
    f,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method=DEFAULT_METHOD,
    chunk_size=None,
    mesh=None,
) -> Estimate:
    """``D_f(p‖q) = ∫ q(x) f(p(x)/q(x)) dx`` for a convex ``f`` with ``f(1) = 0``.

    Estimated as ``E_m[2 σ(-Δ) f(e^Δ)]`` from both sides (module docstring). ``f``
    receives the ratio ``t = p/q`` as an array and must be written with ``jnp``.
    Where ``e^Δ`` overflows (``|Δ| ≳ 88`` in float32) a term becomes ``nan`` unless
    ``f`` grows at most linearly; use the dedicated functions (``kl_estimate``,
    ``total_variation_estimate`` ...) for such extreme pairs.

    Args:
      p, q, key, num_samples, method, chunk_size: as :func:`gmmjax.kl_estimate`.
      f: ``t -> f(t)``, elementwise.

    Returns:
      `Estimate`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gmmjax import GaussianMixture, f_divergence_estimate
      >>> p = GaussianMixture(jnp.array([1.0]), jnp.array([0.0]), scale=jnp.array([1.0]))
      >>> tv = f_divergence_estimate(p, p, jax.random.key(0), lambda t: 0.5 * jnp.abs(t - 1))
      >>> float(tv.value)
      0.0
    """
    if not callable(f):
        raise TypeError(f"f must be a callable t -> f(t), got {type(f).__name__}")
    term = lambda d: 2.0 * jax.nn.sigmoid(-d) * f(jnp.exp(d))  # noqa: E731
    return _m_expectation(term, p, q, key, num_samples, method, chunk_size)


def f_divergence(p, q, key, f, num_samples: int = DEFAULT_NUM_SAMPLES, **kwargs) -> jax.Array:
    """``∫ q f(p/q)``; :func:`f_divergence_estimate`'s value."""
    return f_divergence_estimate(p, q, key, f, num_samples, **kwargs).value


@compiled
def renyi_estimate(
    p,
    q,
    key,
    alpha: float,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    *,
    method=DEFAULT_METHOD,
    chunk_size=None,
    mesh=None,
) -> Estimate:
    """Rényi divergence ``D_α(p‖q) = log ∫ p^α q^{1-α} dx / (α - 1)``, samples from ``p``.

    ``α → 1`` is the KL divergence (returned for ``alpha == 1``); ``α = ½`` gives
    ``-2 log ∫√(pq)``. For ``α > 1`` the integral is finite only when ``q`` has
    heavier tails than ``p`` in every direction (for Gaussians: ``αΣ_q - (α-1)Σ_p``
    positive definite); otherwise the estimate does not converge.

    Args:
      p, q, key, num_samples, method, chunk_size: as :func:`gmmjax.kl_estimate`.
      alpha: the order, a positive Python float.

    Returns:
      `Estimate`; ``stderr`` by the delta method.

    Raises:
      ValueError: ``alpha <= 0``, NaN, or infinite (the max-divergence is a supremum,
        not an expectation).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gmmjax import GaussianMixture, renyi_estimate
      >>> p = GaussianMixture(jnp.array([1.0]), jnp.array([0.0]), scale=jnp.array([1.0]))
      >>> q = GaussianMixture(jnp.array([1.0]), jnp.array([1.0]), scale=jnp.array([1.0]))
      >>> est = renyi_estimate(p, q, jax.random.key(0), 0.5, 20_000)
      >>> bool(abs(est.value - 0.25) < 4 * est.stderr)  # α (μ_p - μ_q)² / 2
      True
    """
    alpha = float(alpha)
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if alpha == float("inf"):
        raise ValueError(
            "renyi_estimate: alpha=inf is the max-divergence D_∞ = log sup_x p(x)/q(x), a "
            "supremum that sampling cannot estimate (no mean, no standard error); pass a "
            "finite alpha (D_α increases to D_∞ as alpha grows) or maximise log p - log q "
            "with an optimizer"
        )
    if alpha == 1.0:
        from gmmjax.montecarlo.divergences import kl_estimate

        return kl_estimate(p, q, key, num_samples, method=method, chunk_size=chunk_size)

    def fn(p, q, key, n, method, chunk):
        d = _log_ratio(p, q)
        h = lambda x: (alpha - 1.0) * d(x)  # noqa: E731
        v, se, used = _one_side(p, key, n, method, chunk, h, log_mode=True)
        return _estimate(v / (alpha - 1.0), se / abs(alpha - 1.0), used)

    return _batched(fn, (p, q), key, num_samples, method, chunk_size)


def renyi_divergence(
    p, q, key, alpha: float, num_samples: int = DEFAULT_NUM_SAMPLES, **kwargs
) -> jax.Array:
    """``D_α(p‖q)``; :func:`renyi_estimate`'s value."""
    return renyi_estimate(p, q, key, alpha, num_samples, **kwargs).value
