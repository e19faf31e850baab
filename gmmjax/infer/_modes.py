"""Multi-start mode finding: the ``init_strategy="modes"`` start of ``AutoGaussianMixture``.

Multi-start local optimization (Martí, Resende & Ribeiro, *Multi-start methods for
combinatorial optimization*, EJOR 226 (2013), for the general scheme), then one mixture
component per distinct mode found: the "find the modes, then put a mixture component at
each" recipe of mixture-of-normal approximations (Gelman et al., *Bayesian Data
Analysis*, 3rd ed., ch. 13: finding posterior modes, then normal mixture approximations).
Farthest-point selection: Gonzalez, *Clustering to minimize the maximum intercluster
distance*, TCS 38 (1985).
"""

from __future__ import annotations

from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np

_MODE_TOL = 3.0  # endpoints closer than 3 local standard deviations are one mode


def _latin_hypercube_normal(k: int, d: int, seed: int) -> np.ndarray:
    """``(k, d)`` offsets: per coordinate a random permutation of the ``k`` normal quantiles."""
    dist = NormalDist()
    quantiles = np.array([dist.inv_cdf((i + 0.5) / k) for i in range(k)])
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(quantiles) for _ in range(d)], axis=1)


def _ascend(u_of, potential, unpack, starts, steps: int):
    """Adam descent of the potential from every start at once; ends, energies, local scales.

    A start that has not converged (its Newton step exceeds half a local standard
    deviation) gets energy ``inf``: it is no mode, and is dropped.

    The local scale is ``1/sqrt|∂²U/∂z_d²|`` per coordinate at the end point (the
    curvature from ``D`` Hessian-vector products), the posterior's standard deviation
    there under a Laplace approximation.
    """
    import optax

    opt = optax.adam(optax.cosine_decay_schedule(0.1, steps))
    loss = lambda z: jnp.sum(u_of(z))  # noqa: E731  (starts are independent)

    @jax.jit
    def run(z):
        def step(carry, _):
            z, s = carry
            g = jax.grad(loss)(z)
            g = jnp.where(jnp.isfinite(g), g, 0.0)
            upd, s = opt.update(g, s, z)
            return (optax.apply_updates(z, upd), s), None

        z = jax.lax.scan(step, (z, opt.init(z)), None, steps)[0][0]
        u = lambda x: potential(unpack(x))  # noqa: E731
        eye = jnp.eye(z.shape[1], dtype=z.dtype)

        def diag_hess(x):
            hvp = lambda v: jax.jvp(jax.grad(u), (x,), (v,))[1]  # noqa: E731
            return jnp.diagonal(jax.vmap(hvp)(eye))

        curv = jnp.abs(jax.vmap(diag_hess)(z))
        scale = 1.0 / jnp.sqrt(jnp.maximum(curv, 1e-12))
        # converged: the Newton step |g_d|/h_d is under half a local sd in every coordinate
        newton = jnp.max(jnp.abs(jax.grad(loss)(z)) * scale, axis=1)
        return z, jnp.where(newton < 0.5, u_of(z), jnp.inf), scale

    return run(starts)


def _pick_modes(ends, energy, scale, k: int, spread: float, seed: int) -> np.ndarray:
    """K starting means from the multi-start end points (host-side, at setup).

    Distinct modes: end points in order of increasing energy, each kept unless it lies
    within ``_MODE_TOL`` local standard deviations (max norm) of one already kept.
    Then farthest-point selection (Gonzalez 1985): the lowest-energy mode first, then
    repeatedly the mode farthest (scaled distance) from those chosen. With fewer than
    K distinct modes, the rest start at the best mode plus Latin-hypercube offsets of
    ``spread`` local standard deviations (never zero), so they can still move apart.
    """
    ok = np.isfinite(energy) & np.all(np.isfinite(ends), axis=1)
    if not ok.any():
        raise ValueError(
            'AutoGaussianMixture(init_strategy="modes"): no start converged to a finite mode; '
            "raise init_steps or n_starts, check the model's log density, or use "
            "init_strategy='draws'"
        )
    ends, energy, scale = ends[ok], energy[ok], scale[ok]
    order = np.argsort(energy)
    modes, scales = [], []
    for i in order:
        pairs = zip(modes, scales, strict=True)
        if all(np.max(np.abs(ends[i] - m) / s) >= _MODE_TOL for m, s in pairs):
            modes.append(ends[i])
            scales.append(scale[i])
    modes, scales = np.array(modes), np.array(scales)
    chosen = [0]
    while len(chosen) < min(k, len(modes)):
        dist = np.min(
            [np.max(np.abs(modes - modes[c]) / scales[c], axis=1) for c in chosen], axis=0
        )
        dist[chosen] = -1.0
        chosen.append(int(np.argmax(dist)))
    out = modes[chosen]
    if len(out) < k:
        n = k - len(out)  # an even-size layout has no zero quantile: no fill on the mode
        offsets = _latin_hypercube_normal(2 * n, modes.shape[1], seed)[:n]
        fill = modes[0] + offsets * (spread * scales[0])
        out = np.concatenate([out, fill])
    return out
