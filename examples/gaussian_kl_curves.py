"""The closed-form study: KL(N(0,1) ‖ N(μ,σ²)) against μ and σ, with Monte Carlo checks.

For single Gaussians KL has a closed form,

    KL(N(μ₁,σ₁²) ‖ N(μ₂,σ₂²)) = ln(σ₂/σ₁) + (σ₁² + (μ₁-μ₂)²)/(2σ₂²) - ½,

(``gmmjax.gaussian_kl``). This script sweeps q's mean from -4 to 4 and its standard
deviation from 0.5 to 4 with p = N(0, 1), draws the curves with Monte Carlo points
and error bars and a heat map over (μ, σ) (``kl_curves.png``), checks every Monte
Carlo estimate against the closed form, and draws how the estimate converges with the
number of samples for each sampling method (``kl_convergence.png``).

Run: ``python examples/gaussian_kl_curves.py [--quick] [--out DIR]`` (about 30 s).
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp

import gmmjax
from gmmjax.montecarlo.divergences import kl_estimate
from gmmjax.plot import plot_convergence, plot_kl_curves


def normal(mu, sd):
    """N(μ, σ²) as a one-component univariate mixture."""
    return gmmjax.GaussianMixture(jnp.ones(1), jnp.array([mu]), scale=jnp.array([sd]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (CI smoke test)")
    ap.add_argument("--out", default=".", help="directory for the figures")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    n = 2_000 if args.quick else 20_000
    # compile the estimator once for this sample count; every (μ, σ) reuses it
    kl = jax.jit(kl_estimate, static_argnames=("num_samples", "method"))
    estimator = lambda p, q, key, num_samples: kl(p, q, key, num_samples=num_samples)  # noqa: E731

    p = normal(0.0, 1.0)
    print(f"{'μ':>5} {'σ':>5} {'closed form':>12} {'Monte Carlo':>22}  |error|/SE")
    worst = 0.0
    for i, (mu, sd) in enumerate(
        [(0.0, 1.0), (1.0, 1.0), (-3.0, 1.0), (0.0, 0.5), (0.0, 4.0), (2.0, 2.0)]
    ):
        exact = float(gmmjax.gaussian_kl(0.0, 1.0, mu, sd))
        est = estimator(p, normal(mu, sd), jax.random.key(i), n)
        z = abs(float(est.value) - exact) / max(float(est.stderr), 1e-12)
        worst = max(worst, z if exact > 0 else 0.0)
        print(
            f"{mu:5.1f} {sd:5.1f} {exact:12.5f} {float(est.value):12.5f} ± "
            f"{float(est.stderr):.5f}  {z:5.2f}"
        )
    print(f"largest |error| / standard error: {worst:.2f} (calibrated SEs keep this below ~3)")

    fig = plot_kl_curves(
        estimator,
        key=jax.random.key(10),
        num_samples=n,
        num_mc_points=5 if args.quick else 9,
        heatmap_points=40 if args.quick else 120,
    )
    fig.savefig(os.path.join(args.out, "kl_curves.png"), dpi=100)

    # convergence of the four sampling plans on KL(N(0,1) ‖ N(1, 2²)), all four at every
    # size; QMC is a randomly shifted R_d lattice. Each (method, size) pair is a program
    # of its own, so --quick uses just two small sizes
    q = normal(1.0, 2.0)
    methods = ("iid", "stratified", "antithetic", "qmc")
    estimators = {
        m: (lambda p, q, key, num_samples, m=m: kl(p, q, key, num_samples=num_samples, method=m))
        for m in methods
    }
    sizes = (128, 2048) if args.quick else (128, 512, 2048, 8192, 32768)
    ax = plot_convergence(
        p,
        q,
        estimators,
        key=jax.random.key(11),
        num_samples=sizes,
        reference=float(gmmjax.gaussian_kl(0.0, 1.0, 1.0, 2.0)),
        reference_label="closed form",
    )
    ax.set_title("KL(N(0,1) ‖ N(1,2²)): estimate ± 1 SE")
    ax.figure.savefig(os.path.join(args.out, "kl_convergence.png"), dpi=100)
    print(f"wrote kl_curves.png and kl_convergence.png in {os.path.abspath(args.out)}")
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
