"""Independent float64 numpy/scipy references for the deterministic-divergence tests.

Nothing here calls gmmjax: the densities come from ``scipy.stats`` and the integrals
from ``scipy.integrate.quad`` or from uniform grids (the trapezoid rule on a uniform grid
is spectrally accurate for smooth integrands that decay to ~0 at the edges).
"""

import jax.numpy as jnp
import numpy as np
from scipy import integrate, stats
from scipy.special import logsumexp

from gmmjax import GaussianMixture


class NpGMM:
    """A mixture in numpy float64: weights (K,), means (K, D), covariances (K, D, D)."""

    def __init__(self, w, m, c):
        self.w = np.asarray(w, float)
        self.m = np.asarray(m, float)
        self.c = np.asarray(c, float)

    @property
    def dim(self):
        return self.m.shape[1]

    def logpdf(self, x):
        """``x``: (N, D) → (N,)."""
        comps = [
            stats.multivariate_normal.logpdf(x, self.m[k], self.c[k]).reshape(-1)
            for k in range(len(self.w))
        ]
        return logsumexp(np.log(self.w)[None] + np.stack(comps, -1), axis=-1)

    def logpdf1(self, x):
        """1-D: ``x`` any shape → same shape."""
        x = np.asarray(x, float)
        s = np.sqrt(self.c[:, 0, 0])
        return logsumexp(np.log(self.w) + stats.norm.logpdf(x[..., None], self.m[:, 0], s), -1)

    def to_jax(self, covariance_type="full"):
        w = jnp.asarray(self.w)
        if covariance_type == "univariate":
            return GaussianMixture(w, jnp.asarray(self.m[:, 0]), scale=jnp.sqrt(self.c[:, 0, 0]))
        if covariance_type == "diag":
            d = np.diagonal(self.c, axis1=1, axis2=2)
            return GaussianMixture(w, jnp.asarray(self.m), jnp.asarray(d), covariance_type="diag")
        return GaussianMixture(w, jnp.asarray(self.m), jnp.asarray(self.c))

    def support(self, width=12.0):
        sd = np.sqrt(np.diagonal(self.c, axis1=1, axis2=2))
        return (self.m - width * sd).min(0), (self.m + width * sd).max(0)


def random_gmm(rng, k, d, *, spread=2.0, smin=0.3, smax=1.5, diag=False):
    w = rng.dirichlet(np.full(k, 2.0))
    m = rng.normal(0.0, spread, (k, d))
    if diag or d == 1:
        sd = np.exp(rng.uniform(np.log(smin), np.log(smax), (k, d)))
        c = np.einsum("kd,de->kde", sd**2, np.eye(d))
    else:
        a = rng.normal(size=(k, d, d))
        q, _ = np.linalg.qr(a)
        ev = np.exp(rng.uniform(np.log(smin), np.log(smax), (k, d))) ** 2
        c = np.einsum("kij,kj,klj->kil", q, ev, q)
    return NpGMM(w, m, c)


def kl_quad_1d(p, q):
    """KL(p‖q) in 1-D with scipy.integrate.quad (log-space integrand)."""
    lo = min(p.support()[0][0], q.support()[0][0])
    hi = max(p.support()[1][0], q.support()[1][0])

    def f(x):
        lp = p.logpdf1(x)
        return np.exp(lp) * (lp - q.logpdf1(x))

    pts = np.sort(np.concatenate([p.m[:, 0], q.m[:, 0]]))
    return integrate.quad(f, lo, hi, points=pts, limit=500, epsabs=1e-13, epsrel=1e-12)[0]


def quad_1d(fn, p, q):
    """``∫ fn(log p, log q) dx`` in 1-D with scipy.integrate.quad."""
    lo = min(p.support()[0][0], q.support()[0][0])
    hi = max(p.support()[1][0], q.support()[1][0])
    pts = np.sort(np.concatenate([p.m[:, 0], q.m[:, 0]]))
    g = lambda x: fn(p.logpdf1(x), q.logpdf1(x))  # noqa: E731
    return integrate.quad(g, lo, hi, points=pts, limit=500, epsabs=1e-14, epsrel=1e-12)[0]


def grid_2d(p, q, n=401):
    """A uniform 2-D grid covering both supports: (points (n², 2), cell area)."""
    lo = np.minimum(p.support()[0], q.support()[0])
    hi = np.maximum(p.support()[1], q.support()[1])
    xs = [np.linspace(lo[i], hi[i], n) for i in range(2)]
    g = np.stack(np.meshgrid(*xs, indexing="ij"), -1).reshape(-1, 2)
    area = (xs[0][1] - xs[0][0]) * (xs[1][1] - xs[1][0])
    return g, area


def kl_grid_2d(p, q, n=401):
    g, area = grid_2d(p, q, n)
    lp = p.logpdf(g)
    return float(np.sum(np.exp(lp) * (lp - q.logpdf(g))) * area)


def gaussian_kl_np(m1, c1, m2, c2):
    d = len(m1)
    sol = np.linalg.solve(c2, c1)
    diff = m2 - m1
    _, ld1 = np.linalg.slogdet(c1)
    _, ld2 = np.linalg.slogdet(c2)
    return 0.5 * (np.trace(sol) + diff @ np.linalg.solve(c2, diff) - d + ld2 - ld1)
