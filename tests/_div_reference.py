"""Float64 references for the divergence tests: scipy quadrature (1-D) and fine grids (2-D).

Nothing here calls gmmjax: mixtures are plain numpy tuples ``(w, mu, sd)`` (1-D) or
``(w, mu, cov)`` (2-D) evaluated with scipy.stats.
"""

from __future__ import annotations

import numpy as np
from scipy import integrate, stats
from scipy.special import logsumexp

SEED_W = np.array([2000.0, 5000.0, 10000.0]) / 17000.0
SEED_MU = np.array([-0.5, -0.1, 0.2])
SEED_SD = np.array([0.2, 0.07, 0.13])
_LOG_2PI = np.log(2 * np.pi)


def logpdf_1d(x, mix):
    """log Σ_k w_k N(x; μ_k, σ_k²) in float64 (numpy only: quad calls it ~10⁴ times)."""
    w, mu, sd = (np.asarray(a, np.float64) for a in mix)
    z = (np.asarray(x, np.float64)[..., None] - mu) / sd
    with np.errstate(divide="ignore"):  # a zero weight is a -inf term
        terms = np.log(w) - np.log(sd) - 0.5 * (z * z + _LOG_2PI)
    top = np.max(terms, axis=-1)
    return top + np.log(np.sum(np.exp(terms - top[..., None]), axis=-1))


def _quad(f, mixes):
    """∫ f(x) dx over the union of ±40σ windows, split at every component mean."""
    lo = min(float(np.min(m[1] - 40 * m[2])) for m in mixes)
    hi = max(float(np.max(m[1] + 40 * m[2])) for m in mixes)
    pts = sorted({float(v) for m in mixes for v in m[1]} | {lo, hi})
    total = 0.0
    for a, b in zip(pts[:-1], pts[1:], strict=False):
        if b > a:
            total += integrate.quad(f, a, b, limit=400, epsabs=1e-13, epsrel=1e-11)[0]
    return total


def references_1d(p, q, alpha=0.5):
    """Every estimated quantity for a 1-D pair, by adaptive quadrature in float64."""

    def lpq(x):
        return logpdf_1d(x, p), logpdf_1d(x, q)

    def kl(x):
        a, b = lpq(x)
        return np.exp(a) * (a - b)

    def klqp(x):
        a, b = lpq(x)
        return np.exp(b) * (b - a)

    def js(x):
        a, b = lpq(x)
        m = np.logaddexp(a, b) - np.log(2)
        return 0.5 * (np.exp(a) * (a - m) + np.exp(b) * (b - m))

    def tv(x):
        a, b = lpq(x)
        return 0.5 * abs(np.exp(a) - np.exp(b))

    def bc(x):
        a, b = lpq(x)
        return np.exp(0.5 * (a + b))

    def ren(x):
        a, b = lpq(x)
        return np.exp(alpha * a + (1 - alpha) * b)

    def ce(x):
        a, b = lpq(x)
        return -np.exp(a) * b

    def ent(x):
        a, _ = lpq(x)
        return -np.exp(a) * a

    mixes = (p, q)
    kl_pq, kl_qp = _quad(kl, mixes), _quad(klqp, mixes)
    return {
        "kl": kl_pq,
        "js": _quad(js, mixes),
        "jeffreys": kl_pq + kl_qp,
        "tv": _quad(tv, mixes),
        "hellinger": 1.0 - _quad(bc, mixes),
        "renyi": np.log(_quad(ren, mixes)) / (alpha - 1.0),
        "cross_entropy": _quad(ce, mixes),
        "entropy": _quad(ent, mixes),
    }


def logpdf_2d(xy, mix):
    w, mu, cov = mix
    comps = [
        np.log(wk) + stats.multivariate_normal(mk, ck).logpdf(xy)
        for wk, mk, ck in zip(w, mu, cov, strict=True)
    ]
    return logsumexp(np.stack(comps, -1), axis=-1)


def references_2d_grid(p, q, n=801, half_width=9.0):
    """KL, JS, TV on an ``n × n`` grid (trapezoid rule) covering ±``half_width`` around 0."""
    g = np.linspace(-half_width, half_width, n)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    xy = np.stack([xx, yy], -1)
    a, b = logpdf_2d(xy, p), logpdf_2d(xy, q)
    m = np.logaddexp(a, b) - np.log(2)

    def integ(f):
        return integrate.trapezoid(integrate.trapezoid(f, g, axis=1), g)

    return {
        "kl": integ(np.exp(a) * (a - b)),
        "js": integ(0.5 * (np.exp(a) * (a - m) + np.exp(b) * (b - m))),
        "tv": integ(0.5 * np.abs(np.exp(a) - np.exp(b))),
        "mass_p": integ(np.exp(a)),
    }
