"""Every Monte Carlo plan uses exactly the ``num_samples`` asked for (issue 14, item 3).

The ``"qmc"`` plan used to round ``N`` down to a multiple of its replicate count
(10,000 -> 9,984). Now the first ``N mod R`` replicates get one point more and the
replicates are weighted by their sizes; ``"antithetic"`` adds one unpaired point for an
odd ``N``. The reference KL is SciPy quadrature, independent of gmmjax.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import logsumexp

import gmmjax as g
from gmmjax.montecarlo.sampling import METHODS, make_layout

W_P, MU_P, SD_P = [0.2, 0.3, 0.5], [-1.0, 0.0, 2.0], [0.5, 1.0, 0.7]
W_Q, MU_Q, SD_Q = [0.5, 0.5], [0.0, 1.5], [1.0, 1.0]
P = g.GaussianMixture(jnp.array(W_P), jnp.array(MU_P), scale=jnp.array(SD_P))
Q = g.GaussianMixture(jnp.array(W_Q), jnp.array(MU_Q), scale=jnp.array(SD_Q))


def _logpdf(w, mu, sd, x):
    return logsumexp(np.log(w) + stats.norm.logpdf(x, mu, sd))


def _kl_truth() -> float:
    f = lambda x: (
        math.exp(_logpdf(W_P, MU_P, SD_P, x))
        * (  # noqa: E731
            _logpdf(W_P, MU_P, SD_P, x) - _logpdf(W_Q, MU_Q, SD_Q, x)
        )
    )
    # the integrand is below 1e-20 beyond [-12, 12]
    return integrate.quad(f, -12.0, 12.0, limit=400, epsabs=1e-12)[0]


_SIZES = (10_000, 1001, 999_937)


@jax.jit
def _layout_counts(p, key):
    # every plan and size in one program (one program compiles faster than twelve)
    return {(m, n): make_layout(p, key, n, m).counts for m in METHODS for n in _SIZES}


@pytest.fixture(scope="module")
def layout_counts():
    return _layout_counts(P, jax.random.key(0))


@pytest.mark.parametrize("n", _SIZES)
@pytest.mark.parametrize("method", METHODS)
def test_every_point_is_placed(method, n, layout_counts):
    # compiled: the library only calls make_layout traced (eagerly its operations, the
    # chunked multinomial draw's above all, would compile one by one for each N)
    counts = layout_counts[(method, n)]
    assert int(np.asarray(counts).sum()) == n


@jax.jit
def _counts_1001():
    # N = 1001 is odd and not a multiple of qmc's 32 replicates; one compiled program
    return {
        m: (
            g.kl_estimate(P, Q, jax.random.key(1), 1001, method=m).num_samples,
            g.js_estimate(P, Q, jax.random.key(2), 1001, method=m).num_samples,
        )
        for m in METHODS
    }


def test_num_samples_returned_is_the_number_asked_for():
    got = jax.tree.map(int, _counts_1001())
    assert got == {m: (1001, 1001) for m in METHODS}


_kl_many = jax.jit(
    jax.vmap(lambda k, method, n: g.kl_estimate(P, Q, k, n, method=method), (0, None, None)),
    static_argnums=(1, 2),
)


@pytest.mark.slow  # bias and calibration over many keys: CI runs it in its own step
@pytest.mark.parametrize("method", ["qmc", "antithetic", "cv"])
def test_uneven_plans_stay_unbiased_and_calibrated(method):
    # N = 1001: qmc has 32 replicates of 32 or 31 points; antithetic 500 pairs plus one
    # unpaired point (cv: the same pairs with control variates). Over 400 independent keys the estimate must be unbiased and its
    # stderr calibrated.
    truth = _kl_truth()
    est = _kl_many(jax.random.split(jax.random.key(3), 400), method, 1001)
    err = np.asarray(est.value, float) - truth
    z = err / np.asarray(est.stderr, float)
    assert np.all(np.asarray(est.num_samples) == 1001)
    # unbiased: the mean error is within 4 standard errors of its own mean (the spread
    # of 400 independent errors divided by √400)
    assert abs(err.mean()) <= 4 * err.std(ddof=1) / math.sqrt(400)
    # calibrated: |error| <= 3 SE for ~99% of keys (97% is 4 binomial SDs below 99% with
    # 400 draws), and E z² ≈ 1 (a t-like z with ≥ 30 degrees of freedom has E z² ≤ 1.07;
    # the sampling SD of the mean of 400 z² is about 0.08, hence the band)
    assert np.mean(np.abs(z) <= 3) >= 0.97
    assert 0.7 <= np.mean(z * z) <= 1.45
