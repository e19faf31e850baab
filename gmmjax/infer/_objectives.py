"""The objectives of :class:`gmmjax.infer.MixtureELBO` on a direct path (private).

Both draw ``z = μ_a + L_a ε`` for a fixed number of points, evaluate the model's log
joint once (vmapped over all points) and ``log q`` once, with no chunking and no
standard-error bookkeeping: an SVI step needs only a differentiable scalar.

* :func:`_stratified_elbo`: the stratified ELBO estimate (DESIGN.md §3). Counts
  ``n_a`` from :func:`~gmmjax.montecarlo.sampling.systematic_allocation` (every live
  component at least one point, the rest in proportion to ``stop_gradient(w)``), laid
  out component by component, and

      loss = Σ_a w_a (1/n_a) Σ_j [log q(z_aj) - log p̃(z_aj)],

  written per point as ``Σ_i (w_{c_i} / n_{c_i}) f(z_i)`` with the counts constant, so
  the weights get the exact gradient ``Σ_a ∂w_a · mean_j f(z_aj)`` (no score function).
  With ``stl`` the parameters of ``q`` are held constant inside ``log q`` (Roeder et al.
  2017), so the means and scales get the sticking-the-landing pathwise gradient and the
  weights only the term above. The value's expectation is ``KL(q‖p̃)``, the same as
  the general plan's (:func:`gmmjax.kl_divergence` with the target as a density).
* :func:`_siwae_loss`: minus the stratified importance-weighted bound.

References:
  Roeder, Wu & Duvenaud, *Sticking the landing*, NeurIPS 2017, eq. 8;
  Morningstar et al., *Automatic differentiation variational inference with mixtures*,
  AISTATS 2021, eqs. 5 and 7.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from gmmjax._params import factor
from gmmjax.mixture import GaussianMixture
from gmmjax.montecarlo._estimators import log_density
from gmmjax.montecarlo.sampling import systematic_allocation


def _draw_stratified(q: GaussianMixture, key, num_samples: int):
    """``(N, D)`` points, ``(N,)`` component ids and ``(K,)`` counts of the stratified plan.

    Points are sorted by component. The full-covariance transform gathers each point's
    ``D × D`` factor (``N·D²`` floats; small at SVI particle counts): the grouped product
    DESIGN.md §4 suggests, ``lax.ragged_dot``, ran no faster here at N = 256, D = 2 and
    cannot be vmapped in jax 0.10.2 ("ragged_dot vmap over any dim but 0 - NYI"), and a
    vmapped loss (over keys, over chains) must work.
    """
    k, d = q.n_components, q.dim
    counts = systematic_allocation(q.weights, num_samples)  # (K,) int32, no gradient
    comp = jnp.repeat(jnp.arange(k), counts, total_repeat_length=num_samples)
    eps = jax.random.normal(key, (num_samples, d), dtype=q.locs.dtype)
    if q.covariance_type == "full":
        step = jnp.einsum("nde,ne->nd", q.component_scale_tril[comp], eps)
    else:  # "diag"
        step = factor(q.scale_param, "diag")[comp] * eps
    return q.locs[comp] + step, comp, counts


def _stratified_elbo(q: GaussianMixture, log_joint, key, num_samples: int, stl: bool):
    """``Σ_a w_a mean_j [log q(z_aj) - log p̃(z_aj)]`` on the stratified plan (module doc).

    Args:
      q: the guide's unbatched ``"full"`` or ``"diag"`` mixture over ``(D,)`` latents.
      log_joint: ``(N, D)`` unconstrained latents → ``(N,)`` log joint (Jacobian included).
      key: PRNG key.
      num_samples: static ``N >= K``.
      stl: hold ``q``'s parameters constant inside ``log q``.

    Returns:
      The scalar loss (the negative ELBO estimate).
    """
    z, comp, counts = _draw_stratified(q, key, num_samples)
    f = log_density(q, stop=stl)(z) - log_joint(z)
    n = jnp.maximum(counts, 1).astype(z.dtype)  # a dead component has no point to divide
    coef = q.weights[comp] / n[comp]
    return jnp.sum(coef * f)


def _siwae_loss(q: GaussianMixture, log_joint, key, num_samples: int, inner: int):
    """Minus the stratified importance-weighted bound, averaged over replicates.

    ``z_{rat} = μ_a + L_a ε_{rat}``, ``t < T = inner`` draws per component ``a`` in
    each of ``R = max(1, num_samples // (K T))`` replicates ``r``, and
    ``loss = -mean_r log Σ_a w_a (1/T) Σ_t p̃(z_{rat}) / q(z_{rat})``.
    """
    k, d = q.n_components, q.dim
    reps = max(1, num_samples // (k * inner))
    eps = jax.random.normal(key, (reps, k, inner, d), dtype=q.locs.dtype)
    z = q.locs[None, :, None, :] + jnp.einsum("ade,rate->ratd", q.component_scale_tril, eps)
    z = z.reshape(-1, d)
    log_w = (log_joint(z) - q.log_prob(z)).reshape(reps, k, inner)
    bound = logsumexp(log_w + q.log_weights[None, :, None], axis=(1, 2)) - jnp.log(inner)
    return -jnp.mean(bound)


class _LogDensity:
    """An unnormalized log-density seen as a distribution that is only evaluated."""

    def __init__(self, log_prob, event_shape):
        self.log_prob = log_prob
        self.event_shape = tuple(event_shape)
        self.batch_shape = ()
        self.has_rsample = False

    def sample(self, key, sample_shape=()):  # pragma: no cover - never sampled
        raise TypeError("an unnormalized log-density cannot be sampled")
