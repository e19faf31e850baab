"""A mixture density is the weighted sum of normalized component densities.

``p(x) = Σ_k w_k N(x; μ_k, Σ_k)`` with ``Σ_k w_k = 1`` and each ``N`` integrating to 1,
so p integrates to 1 too. This script checks that for a 1-D and a 2-D mixture:

* ``GaussianMixture.log_prob`` equals the log of the explicit weighted sum, written
  here from the textbook formula with NumPy;
* it equals scikit-learn's ``score_samples`` for the same parameters (``to_sklearn``);
* the density integrates to 1 on a grid (trapezoid rule);

and draws both densities (``mixture_density.png``).

Run: ``python examples/mixture_density.py [--quick] [--out DIR]`` (a few seconds).
"""

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

import gmmjax
from gmmjax.plot import plot_contours_2d, plot_density_1d


def normal_pdf_1d(x, mu, sd):
    return np.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))


def normal_pdf_nd(x, mu, cov):
    d = len(mu)
    diff = x - mu
    maha = np.einsum("nd,nd->n", diff, np.linalg.solve(cov, diff.T).T)
    return np.exp(-0.5 * maha) / np.sqrt((2 * np.pi) ** d * np.linalg.det(cov))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="coarser grids (CI smoke test)")
    ap.add_argument("--out", default=".", help="directory for the figure")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    grid_n = 400 if args.quick else 2000

    # ---- 1-D: three overlapping components, weights 2000 : 5000 : 10000
    w = np.array([2000.0, 5000.0, 10000.0]) / 17000.0
    mu = np.array([-0.5, -0.1, 0.2])
    sd = np.array([0.2, 0.07, 0.13])
    p1 = gmmjax.GaussianMixture(jnp.asarray(w), jnp.asarray(mu), scale=jnp.asarray(sd))
    x = np.linspace(-2.0, 1.5, grid_n)
    ours = np.exp(np.asarray(p1.log_prob(jnp.asarray(x)), dtype=np.float64))
    parts = w * normal_pdf_1d(x[:, None], mu, sd)  # (N, K) weighted components
    by_hand = parts.sum(-1)
    print(f"1-D: max |p(x) - Σ_k w_k N(x; μ_k, σ_k²)| = {np.max(np.abs(ours - by_hand)):.2e}")
    print(
        f"     ∫ p dx = {np.trapezoid(ours, x):.6f};  ∫ N_k dx = "
        f"{np.round(np.trapezoid(parts / w, x, axis=0), 6).tolist()}"
    )

    # ---- 2-D, full covariances
    rng = np.random.default_rng(0)
    w2 = np.array([0.5, 0.3, 0.2])
    mu2 = np.array([[0.0, 0.0], [2.5, 1.0], [-1.5, 2.0]])
    a = rng.normal(size=(3, 2, 2)) * 0.6
    cov2 = a @ a.transpose(0, 2, 1) + 0.3 * np.eye(2)
    p2 = gmmjax.GaussianMixture(jnp.asarray(w2), jnp.asarray(mu2), jnp.asarray(cov2))
    g = np.linspace(-6, 7, 150 if args.quick else 400)
    xx, yy = np.meshgrid(g, g)
    pts = np.stack([xx.ravel(), yy.ravel()], -1)
    ours2 = np.exp(np.asarray(p2.log_prob(jnp.asarray(pts)), dtype=np.float64))
    by_hand2 = sum(w2[k] * normal_pdf_nd(pts, mu2[k], cov2[k]) for k in range(3))
    integral = np.trapezoid(np.trapezoid(ours2.reshape(xx.shape), g, axis=1), g)
    print(f"2-D: max |p(x) - Σ_k w_k N(x; μ_k, Σ_k)| = {np.max(np.abs(ours2 - by_hand2)):.2e}")
    print(f"     ∫∫ p dx = {integral:.5f}")

    try:
        sk = gmmjax.to_sklearn(p2)
    except ImportError:
        print("(scikit-learn not installed: skipping the comparison with score_samples)")
    else:
        diff = np.max(np.abs(np.asarray(p2.log_prob(jnp.asarray(pts))) - sk.score_samples(pts)))
        print(f"     max |log p - sklearn score_samples| = {diff:.2e}")

    from matplotlib.figure import Figure  # the plot extra: pip install 'gmmjax[plot]'

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    samples = np.asarray(p1.sample(jax.random.key(0), (4000,)))
    plot_density_1d(p1, samples, ax=axes[0], label="p = Σ_k w_k N_k")
    axes[0].set_title("1-D: mixture (solid) = sum of weighted components (dashed)")
    plot_contours_2d(p2, np.asarray(p2.sample(jax.random.key(1), (600,))), ax=axes[1])
    fig.savefig(os.path.join(args.out, "mixture_density.png"), dpi=100)
    print(f"wrote mixture_density.png in {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
