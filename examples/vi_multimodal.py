"""A bimodal posterior, fitted by a mixture guide and by a single Gaussian.

The model's only latent is ``x ~ GaussianMixture`` in 2-D, so its posterior is that
known mixture. ``AutoGaussianMixture`` (K = 2, ``MixtureELBO``, its default start at the
modes it finds) and NumPyro's ``AutoMultivariateNormal`` (``Trace_ELBO``, from x = 0) are
fitted; the script prints each guide's reverse KL(q‖posterior) (gmmjax's
``kl_estimate``) and draws the posterior with both guides (``vi_multimodal.png``). The
single Gaussian must settle on one mode (or between them); the mixture recovers both.

Run: ``python examples/vi_multimodal.py [--quick] [--out DIR]`` (under a minute).
"""

import argparse
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import optax
from numpyro.infer import SVI, Trace_ELBO, init_to_value
from numpyro.infer.autoguide import AutoMultivariateNormal

from gmmjax import GaussianMixture, kl_estimate
from gmmjax.infer import AutoGaussianMixture, MixtureELBO

TRUTH = GaussianMixture(
    jnp.array([0.4, 0.6]),
    jnp.array([[-2.0, -1.0], [2.0, 1.5]]),
    covariance_matrix=jnp.array([[[0.5, 0.2], [0.2, 0.4]], [[0.3, -0.1], [-0.1, 0.6]]]),
)


def model():
    numpyro.sample("x", TRUTH)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps (CI smoke test)")
    ap.add_argument("--out", default=".", help="folder for vi_multimodal.png")
    args = ap.parse_args()
    steps = 200 if args.quick else 1000
    init = init_to_value(values={"x": jnp.zeros(2)})

    guide = AutoGaussianMixture(model, n_components=2)
    svi = SVI(model, guide, optax.adam(0.05), MixtureELBO(num_samples=64))
    q = guide.get_posterior(svi.run(jax.random.key(0), steps, progress_bar=False).params)
    mvn = AutoMultivariateNormal(model, init_loc_fn=init)
    svi = SVI(model, mvn, optax.adam(0.05), Trace_ELBO(num_particles=16))
    p = svi.run(jax.random.key(0), steps, progress_bar=False).params
    single = GaussianMixture(
        jnp.ones(1), p["auto_loc"][None], scale_tril=p["auto_scale_tril"][None]
    )

    g = np.linspace(-5, 5, 120 if args.quick else 300)
    xx, yy = np.meshgrid(g, g)
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharex=True, sharey=True)
    for ax, (name, d) in zip(
        axes,
        [
            ("posterior", TRUTH),
            ("AutoGaussianMixture (K=2)", q),
            ("AutoMultivariateNormal", single),
        ],
        strict=True,
    ):
        dens = np.exp(np.asarray(d.log_prob(pts))).reshape(xx.shape)
        ax.contourf(xx, yy, dens, levels=20, cmap="viridis")
        title = name
        if d is not TRUTH:
            est = kl_estimate(d, TRUTH, jax.random.key(9), 20_000)
            title += f"\nKL(q‖posterior) = {float(est.value):.4f} ± {float(est.stderr):.1g}"
            print(f"{name}: KL(q‖posterior) = {float(est.value):.5f} ± {float(est.stderr):.1g}")
        ax.set_title(title)
        ax.set_xlabel("x₁")
    axes[0].set_ylabel("x₂")
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "vi_multimodal.png")
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
