"""NumPyro variational inference with a Gaussian-mixture family.

* :class:`AutoGaussianMixture`: an autoguide that puts a `GaussianMixture` over
  the model's whole unconstrained latent vector, for multimodal posteriors that
  a single Gaussian (``AutoNormal``, ``AutoMultivariateNormal``) must collapse
  onto one mode.
* :class:`MixtureELBO`: the ELBO of such a guide, estimated with gmmjax's
  stratified plan (a direct path, ``gmmjax/infer/_objectives.py``):
  ``ELBO = -KL(q‖p̃)`` with ``p̃`` the model's unnormalized posterior over the
  unconstrained latents,

      ELBO = Σ_a w_a E_ε[log p̃(μ_a + L_a ε) - log q(μ_a + L_a ε)].

  It is pathwise in the means and scales and *exactly* differentiable in the
  mixture weights (no score function), and uses the sticking-the-landing
  gradient by default. ``objective="siwae"`` uses the stratified importance-weighted
  bound of Morningstar et al. (2021) instead.

What NumPyro's ``Trace_ELBO`` does with this guide, precisely: it draws one
``z ~ q`` (a component ``c`` from the weights, then ``z = μ_c + L_c ε``) and
differentiates ``log q(z) - log p̃(z)`` at that draw. ``z`` depends on the means and
scales (pathwise) but not on the weights: the discrete draw of ``c`` carries no
gradient, and ``Trace_ELBO`` adds no score-function term for it. So the weights'
gradient is *not* zero: it is ``∂/∂logits log q(z) = r(z) - w`` (responsibilities
minus weights) at the draw, whose mean under ``q`` is exactly zero (the score
identity) whatever the target. The true weight gradient, the missing term
``E_q[(log q - log p̃) ∂ log w_c]``, is absent: the weights get zero-mean noise, not a
signal. Adam rescales that noise to steps of about the learning rate, so the weights
random-walk (0.5/0.5 drifted to 0.98/0.02 in 2000 steps at 0.02). ``MixtureELBO``
gives the exact gradient instead. ``tests/test_infer.py`` checks both halves.

Mode collapse (issue 10): on the label-switching model of ``benchmarks/bench_vi.py``,
components started from ``init_loc_fn`` draws plus offsets (``init_strategy="draws"``)
collapse K = 2 onto one mode in most seeds with either objective (1 of 10 seeds covered
both modes with ``"elbo"``): components that start in the same basin of attraction stay
there, since no local objective lets a component sense a mode its samples never reach.
The default start, ``init_strategy="modes"``, puts them at distinct modes found by a
multi-start descent of the log density (``gmmjax/infer/_modes.py``) and, with the
``"elbo"`` objective, covered both modes in 10 of 10 seeds (``benchmarks/RESULTS.md``).
SIWAE is not the default: its bound is flat in the weights once the components separate
(``q(z_a) ≈ w_a q_a(z_a)`` cancels ``w_a``), so its weights random-walk instead of
learning (4 of 10 seeds in the weight window even from the modes).

References:
  Kucukelbir et al., *Automatic Differentiation Variational Inference*, JMLR 18
  (2017) (the unconstrained latent space);
  Roeder, Wu & Duvenaud, *Sticking the landing*, NeurIPS 2017, eq. 8;
  Morningstar et al., *Automatic differentiation variational inference with
  mixtures*, AISTATS 2021 (stratified mixture ELBO, their eq. 5).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.elbo import ELBO
from numpyro.infer.initialization import init_to_median
from numpyro.infer.util import initialize_model, potential_energy

from gmmjax._params import to_device
from gmmjax.infer._modes import _ascend, _latin_hypercube_normal, _pick_modes
from gmmjax.infer._objectives import _LogDensity, _siwae_loss, _stratified_elbo
from gmmjax.mixture import GaussianMixture
from gmmjax.montecarlo.divergences import kl_divergence

__all__ = ["AutoGaussianMixture", "MixtureELBO"]

_GUIDE_TYPES = ("full", "diag")
_INIT_STRATEGIES = ("draws", "modes")
_OBJECTIVES = ("elbo", "siwae")


class AutoGaussianMixture(AutoContinuous):
    """A mixture-of-Gaussians guide over the model's unconstrained latent vector.

    Parameters (NumPyro ``param`` sites, named with ``prefix``):
    ``{prefix}_logits`` ``(K,)``, ``{prefix}_locs`` ``(K, D)`` and
    ``{prefix}_scale_tril`` ``(K, D, D)`` (``covariance_type="full"``) or
    ``{prefix}_scale`` ``(K, D)`` (``"diag"``). The weights start equal and every
    component with standard deviation ``init_scale``.

    Where the component means start (``init_strategy``):

    * ``"modes"`` (the default): at distinct posterior modes. ``n_starts`` prior draws
      (in the unconstrained space) each descend the potential energy for
      ``init_steps`` Adam steps, all in one ``jit(vmap)``; end points that have not
      converged (Newton step over half a local sd) are dropped, end points within 3
      local standard deviations (``1/sqrt`` of the Hessian diagonal) are merged, and
      ``K`` modes are picked by farthest-point selection from the most probable one.
      With fewer than ``K`` modes found, the rest start at the best mode plus
      Latin-hypercube offsets of ``init_spread`` local standard deviations. No offsets
      are added to found modes. Cost: ``n_starts × init_steps`` gradients of the log
      joint plus ``n_starts × D`` Hessian-vector products, once, at ``svi.init``
      (1.5-2.7 s with its compile on the label-switching model below, against 10-16 s
      for the 2000-step fit). It finds only modes that some of the ``n_starts`` draws
      reach; a mode whose basin no draw falls in stays unfound.
    * ``"draws"``: each component at its own ``init_loc_fn`` draw (``K`` draws; with
      ``init_to_median`` they nearly coincide) plus offsets of scale ``init_spread``
      laid out as a Latin hypercube (each coordinate takes the K normal quantiles
      ``Φ⁻¹((k + ½)/K)`` in an order drawn from ``seed``). Cheap, but components that
      start in one basin of attraction end on one mode.

    Measured (``benchmarks/bench_vi.py``, label-switching model, K = 2, 2000 steps,
    ``MixtureELBO(256)``): both modes covered in 10 of 10 seeds with ``"modes"``, 1 of
    10 with ``"draws"`` (``benchmarks/RESULTS.md``); with the ``"siwae"`` objective the
    components land one per mode but the weights drift (4 of 10).

    Train it with :class:`MixtureELBO`; ``Trace_ELBO`` also runs, but its weight
    gradient is zero-mean noise (see the module docstring), so the weights drift
    instead of learning.

    Choosing ``K`` (measured on a label-switching model, ``benchmarks/bench_vi.py``):
    at least the number of modes you expect. Surplus components did not find more
    modes from the ``"draws"`` start (K = 4 covered both of two modes in 0 of 6 seeds),
    so keep the ``"modes"`` start, or remove symmetry-only modes from the model (ordered
    means).

    Args:
      model: a NumPyro model with continuous latent variables (no local latents).
      n_components: ``K``.
      covariance_type: ``"full"`` or ``"diag"``.
      prefix: the name prefix of the parameter sites.
      init_loc_fn: NumPyro init strategy for the model's initial point (and, with
        ``"draws"``, for each component's start).
      init_scale: initial standard deviation of every component.
      init_spread: scale of the initial offsets of the means (``"draws"``: in
        unconstrained units; ``"modes"``: in local sds, for components beyond the modes
        found).
      seed: seed of those offsets.
      init_strategy: ``"modes"`` (multi-start mode finding, the default) or ``"draws"``
        (``init_loc_fn`` draws plus offsets), above.
      n_starts: ``"modes"`` only: the number of prior draws that descend.
      init_steps: ``"modes"`` only: Adam steps per start (rate 0.1, cosine-decayed).

    Raises:
      ValueError: an unknown ``covariance_type`` or ``init_strategy``, ``n_components < 1``,
        ``init_scale <= 0``, ``init_spread < 0``, ``n_starts`` or ``init_steps < 1``, or
        (``"modes"``) no start converging to a finite mode.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro, optax
      >>> from numpyro.infer import SVI
      >>> from gmmjax import GaussianMixture
      >>> from gmmjax.infer import AutoGaussianMixture, MixtureELBO
      >>> def model():
      ...     numpyro.sample("x", GaussianMixture(jnp.array([0.5, 0.5]),
      ...                    jnp.array([-3.0, 3.0]), scale=jnp.array([0.5, 0.5])))
      >>> guide = AutoGaussianMixture(model, n_components=2)
      >>> svi = SVI(model, guide, optax.adam(0.05), MixtureELBO(num_samples=64))
      >>> state = svi.init(jax.random.key(0))  # finds the modes
      >>> q = guide.get_posterior(svi.get_params(state))
      >>> q.n_components, q.event_shape, sorted(round(float(m), 2) for m in q.locs[:, 0])
      (2, (1,), [-3.0, 3.0])

    ``svi.run(key, 300)`` then fits the scales and weights (``tests/test_infer.py``
    checks a fit from the ``"draws"`` start).
    """

    def __init__(
        self,
        model,
        *,
        n_components: int = 4,
        covariance_type: str = "full",
        prefix: str = "auto",
        init_loc_fn=init_to_median,
        init_scale: float = 0.1,
        init_spread: float = 1.0,
        seed: int = 0,
        init_strategy: str = "modes",
        n_starts: int = 32,
        init_steps: int = 500,
    ):
        if covariance_type not in _GUIDE_TYPES:
            raise ValueError(
                f"AutoGaussianMixture: covariance_type must be one of {_GUIDE_TYPES}, "
                f"got {covariance_type!r}"
            )
        if init_strategy not in _INIT_STRATEGIES:
            raise ValueError(
                f"AutoGaussianMixture: init_strategy must be one of {_INIT_STRATEGIES}, "
                f"got {init_strategy!r}"
            )
        if init_strategy == "modes" and (int(n_starts) < 1 or int(init_steps) < 1):
            raise ValueError(
                "AutoGaussianMixture: n_starts and init_steps must be >= 1 for "
                f'init_strategy="modes", got {n_starts} and {init_steps}'
            )
        if int(n_components) < 1:
            raise ValueError(f"AutoGaussianMixture: n_components must be >= 1, got {n_components}")
        if init_scale <= 0 or init_spread < 0:
            raise ValueError(
                "AutoGaussianMixture: init_scale must be > 0 and init_spread >= 0, got "
                f"{init_scale} and {init_spread}"
            )
        self.n_components = int(n_components)
        self.covariance_type = covariance_type
        self._init_scale = float(init_scale)
        self._init_spread = float(init_spread)
        self._seed = int(seed)
        self.init_strategy = init_strategy
        self._n_starts = int(n_starts)
        self._init_steps = int(init_steps)
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        if self.init_strategy == "modes":
            key = numpyro.prng_key()
            with handlers.block():  # the model runs here: hide it from outer handlers
                self._init_latents = self._find_modes(key, args, kwargs)
            return
        # one init_loc_fn draw per component (the first is the prototype's own point)
        k = self.n_components
        draws = [self._init_latent]
        if k > 1:
            keys = jax.random.split(numpyro.prng_key(), k - 1)
            for key in keys:
                with handlers.block():
                    params = initialize_model(
                        key,
                        self.model,
                        init_strategy=self.init_loc_fn,
                        dynamic_args=False,
                        model_args=args,
                        model_kwargs=kwargs,
                    )[0][0]
                draws.append(to_device([params[n] for n in self._init_locs], op=_ravel))
        self._init_latents = to_device(draws, op=lambda xp, ds: xp.stack(ds))

    def _find_modes(self, key, args, kwargs):
        """``(K, D)`` starting means: K distinct local modes of the posterior (multi-start).

        ``n_starts`` prior draws (mapped to the unconstrained space) each run
        ``init_steps`` Adam steps (cosine-decayed rate 0.1) down the potential energy,
        all in one ``jit(vmap)``; the end points are then reduced to distinct modes
        and K of them are picked by farthest-point selection (:func:`_pick_modes`).
        """
        from numpyro.distributions import biject_to
        from numpyro.infer import Predictive

        m, dtype = self._n_starts, jnp.result_type(self._init_latent)
        draws = Predictive(self.model, num_samples=m)(key, *args, **kwargs)
        cols = [
            biject_to(self.prototype_trace[name]["fn"].support).inv(draws[name])
            for name in self._init_locs
        ]

        def joined(xp, us):  # (m, D): the draws' latent vectors
            return xp.concatenate([xp.reshape(xp.asarray(u), (m, -1)) for u in us], axis=1)

        starts = to_device(cols, dtype, op=joined)
        potential = self._potential_fn
        u_of = jax.vmap(lambda z: potential(self._unpack_latent(z)))
        ends, energy, scale = _ascend(u_of, potential, self._unpack_latent, starts,
                                      self._init_steps)  # fmt: skip
        return jnp.asarray(
            _pick_modes(
                np.asarray(ends),
                np.asarray(energy),
                np.asarray(scale),
                self.n_components,
                self._init_spread,
                self._seed,
            ),  # fmt: skip
            dtype,
        )

    def _names(self):
        p = self.prefix
        scale = f"{p}_scale_tril" if self.covariance_type == "full" else f"{p}_scale"
        return f"{p}_logits", f"{p}_locs", scale

    def _get_posterior(self):
        k, d = self.n_components, self.latent_dim
        n_logits, n_locs, n_scale = self._names()
        offsets = _latin_hypercube_normal(k, d, self._seed) * self._init_spread
        if self.init_strategy == "modes":  # the modes' own spread is in _init_latents
            offsets = np.zeros((k, d))
        dtype = jnp.result_type(self._init_latent)

        def shifted(xp, z):  # the starting means (jnp only when _init_latents is traced)
            return xp.asarray(z, dtype) + xp.asarray(offsets, dtype)

        # initial values on the host (exact elementwise float arithmetic, the same bits as
        # jnp's), so that setting up a guide compiles no program per operation
        logits = numpyro.param(n_logits, to_device(np.zeros(k, dtype)))
        locs = numpyro.param(n_locs, to_device(self._init_latents, dtype, op=shifted))
        if self.covariance_type == "full":
            init = np.broadcast_to(np.eye(d, dtype=dtype) * self._init_scale, (k, d, d))
            scale = numpyro.param(n_scale, to_device(init),
                                  constraint=constraints.scaled_unit_lower_cholesky)  # fmt: skip
        else:
            init = np.full((k, d), self._init_scale, dtype)
            scale = numpyro.param(n_scale, to_device(init),
                                  constraint=constraints.softplus_positive)  # fmt: skip
        return GaussianMixture.from_params(logits, locs, scale, self.covariance_type)

    def get_posterior(self, params) -> GaussianMixture:
        """The fitted mixture over the unconstrained latent vector.

        Args:
          params: constrained parameters, as from ``SVI.get_params`` or ``svi.run(...).params``.
        """
        n_logits, n_locs, n_scale = self._names()
        return GaussianMixture.from_params(
            params[n_logits], params[n_locs], params[n_scale], self.covariance_type
        )

    def get_base_dist(self):
        raise NotImplementedError("a mixture guide is not a transformed base distribution")

    def get_transform(self, params):
        raise NotImplementedError("a mixture guide is not a transformed base distribution")

    def median(self, params):
        """The constrained latents at the mean of the heaviest component (a mode proxy)."""
        q = self.get_posterior(params)
        return self._unpack_and_constrain(q.locs[jnp.argmax(q.logits)], params)

    def quantiles(self, params, quantiles):
        raise NotImplementedError(
            "quantiles of a mixture guide have no closed form; draw with "
            "guide.sample_posterior(key, params, sample_shape=(n,)) and use jnp.quantile"
        )


def _ravel(xp, arrays):
    """The arrays flattened and joined into one latent vector (``xp``: np or jnp)."""
    return xp.concatenate([xp.reshape(xp.asarray(a), (-1,)) for a in arrays])


class MixtureELBO(ELBO):
    """The ELBO of an :class:`AutoGaussianMixture`, with exact weight gradients.

    ``loss = KL(q‖p̃) = E_q[log q(z) - log p̃(z)]`` (the negative ELBO), where
    ``log p̃(z) = -potential_energy(z)`` is the model's log joint at the
    unconstrained latents ``z``, Jacobian included. The default estimate is
    stratified over the components (DESIGN.md §3), on a direct path: ``n_a`` points
    per component (every component at least one, the rest in proportion to the
    weights, a fixed total), ``z = μ_a + L_a ε``, one vmapped log joint over all
    points and ``log q`` once, then

        loss = Σ_a w_a (1/n_a) Σ_j [log q(z_aj) - log p̃(z_aj)].

    The weights' gradient is exact (no score function) and, with ``stl=True``, the
    zero-mean score term of ``log q`` is dropped (the sticking-the-landing gradient for
    the means and scales). Measured at 256 particles on CPU: 242 SVI steps/s against
    262 for ``AutoMultivariateNormal`` + ``Trace_ELBO`` (``benchmarks/RESULTS.md``).

    Args:
      num_samples: points per step (static), shared among the components.
      objective: ``"elbo"`` (the stratified ELBO above) or ``"siwae"``: minus the
        stratified importance-weighted bound
        ``E log Σ_a w_a (1/T) Σ_t p̃(z_at)/q(z_at)``, ``z_at ~ q_a``, averaged over
        ``num_samples // (K·inner)`` replicates (Morningstar et al. 2021, eq. 7);
        reparameterized gradients, exact in the weights. About as fast per step as
        ``"elbo"``, but flat in the weights once components separate, and no better
        against mode collapse (module docstring), so not the default.
      inner: ``T``, the draws per component inside one SIWAE bound.
      method: the sampling plan for ``"elbo"``: ``"stratified"`` (the default, the
        direct path above), or ``"qmc"``, ``"antithetic"``, ``"iid"``, ``"cv"``,
        ``"auto"``, which run through :func:`gmmjax.kl_divergence`'s general plan
        (the target seen as an unnormalized density; chunked, with standard-error
        bookkeeping): the same expected loss and gradient, 22× slower per step at
        256 particles (11 steps/s).
      stl: sticking-the-landing gradients for ``"elbo"`` (default on).

    Raises:
      ValueError: an unknown ``objective`` or ``inner < 1``; (at the first step)
        ``num_samples`` below ``n_components`` with ``method="stratified"``.
      TypeError: the guide is not an :class:`AutoGaussianMixture`.
    """

    def __init__(
        self,
        num_samples: int = 256,
        *,
        objective: str = "elbo",
        inner: int = 1,
        method: str = "stratified",
        stl: bool = True,
    ):
        if objective not in _OBJECTIVES:
            raise ValueError(
                f"MixtureELBO: objective must be one of {_OBJECTIVES}, got {objective!r}"
            )
        if int(inner) < 1:
            raise ValueError(f"MixtureELBO: inner must be >= 1, got {inner}")
        super().__init__(num_particles=1)
        self.num_samples = int(num_samples)
        self.objective = objective
        self.inner = int(inner)
        self.method = method
        self.stl = bool(stl)

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        return self.loss_with_mutable_state(rng_key, param_map, model, guide, *args, **kwargs)[
            "loss"
        ]

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        if not isinstance(guide, AutoGaussianMixture):
            raise TypeError(
                "MixtureELBO needs an AutoGaussianMixture guide, got "
                f"{type(guide).__name__}; use numpyro.infer.Trace_ELBO for other guides"
            )
        if guide.prototype_trace is None:
            guide._setup_prototype(*args, **kwargs)
        q = guide.get_posterior(param_map)
        sub_model = handlers.substitute(model, data=param_map)

        def log_joint(z):  # z: (D,) unconstrained latents
            return -potential_energy(sub_model, args, kwargs, guide._unpack_latent(z))

        if self.objective == "siwae":
            loss = _siwae_loss(q, jax.vmap(log_joint), rng_key, self.num_samples, self.inner)
            return {"loss": loss, "mutable_state": None}
        if self.method == "stratified":  # the direct path (gmmjax/infer/_objectives.py)
            if self.num_samples < q.n_components:
                raise ValueError(
                    f"MixtureELBO: num_samples must be >= n_components ({q.n_components}) "
                    f"(one point per component at least), got {self.num_samples}"
                )
            loss = _stratified_elbo(q, jax.vmap(log_joint), rng_key, self.num_samples, self.stl)
            return {"loss": loss, "mutable_state": None}
        target = _LogDensity(jax.vmap(log_joint), (guide.latent_dim,))
        loss = kl_divergence(q, target, rng_key, self.num_samples, method=self.method, stl=self.stl)
        return {"loss": loss, "mutable_state": None}
