"""Control variates with exact Gaussian expectations: the ``"cv"`` method.

For a stratum ``a`` of the sampled mixture ``s`` (points ``x = μ_a + L_a ε``,
``ε ~ N(0, I)``) and an evaluated mixture ``e = Σ_c v_c N(m_c, P_c^{-T} P_c^{-1})``
(``e`` is ``p`` or ``q``), the *surrogate* of ``log e`` is its soft linearisation
around fixed responsibilities ``R^e_{ac}``:

    z^e_a(x) = Σ_c R^e_{ac} ℓ^e_c(x),      ℓ^e_c(x) = log N(x; m_c, Σ^e_c).

``log e(x) = logsumexp_c(log v_c + ℓ^e_c(x))`` equals ``z^e_a(x)`` plus a constant
wherever the responsibilities of ``e`` at ``x`` are ``R^e_a``, and every ``ℓ^e_c``
is a quadratic in ``ε`` whose Gaussian expectation is closed-form (minus a
Gaussian cross-entropy):

    E_a[ℓ^e_c] = -½ (‖L_aᵀ P_c‖²_F + ‖(μ_a - m_c)ᵀ P_c‖²) + log|P_c| - (D/2) log 2π.

We take ``R^e_{ac} = softmax_c(log v_c + E_a[ℓ^e_c])`` (the variational
approximation of Hershey & Olsen 2007), so ``z^e_a`` follows ``log e`` where the
points of stratum ``a`` actually fall (a shell at radius ``√D``, not at ``μ_a``).
The features ``f = z - E_a[z]`` then have mean exactly zero, and the estimator of
``E_a[h]`` for an integrand ``h(log p, log q)`` is

    β0ᵀ E_a[z] + mean(y) - δ_aᵀ mean(f),    y = h - β0ᵀ z,

with a fixed prior ``β0`` (``(1, -1)`` for ``log p - log q``: the surrogate's own
coefficients) and ``δ_a`` fitted per stratum by ridge regression of ``y`` on
``f``. Whatever ``δ_a``, the estimator is unbiased when ``δ_a`` does not depend on
the points it is applied to, so it is fitted by **two-fold cross-fitting**: the
points of each stratum alternate between two folds, and each fold's residuals use
the ``δ`` fitted on the other fold (Chernozhukov et al. 2018). The bias of an
in-sample fit is ``O(p/n_a)`` per stratum; cross-fitting removes it and keeps
``stderr`` honest (it is computed from out-of-fold residuals).

Where the points of one stratum split between two or three components of an
evaluated mixture that is not ``s`` itself (mixtures that overlap, in high
dimension), ``log e`` is a smooth maximum of quadratics that no fixed ``R^e_a``
follows. *Switching features* cover that case: for the :data:`RIVALS` components
next in responsibility to the main one, the standardized log-ratios ``u_j`` of
their weighted densities, ``u_j²`` and ``u_i u_j``. Each log-ratio is a quadratic
form in ``ε``, so these features have closed-form expectations
(:func:`gmmjax.montecarlo._surrogates.switch`); they carry no gradient. Measured
on 13 pairs from D = 8 to 64 (``benchmarks/bench_cv.py``), they save 1.3-6× (median
3×) more samples than the surrogates alone; the surrogates alone saved 4.1× on the
digits pair at D = 64, with these features 9.3× (``benchmarks/RESULTS.md``).

Stratification over components (DESIGN.md §3) keeps the estimate exactly
differentiable in the weights; ``δ`` and the responsibilities carry no gradient, the
expectations ``E_a[ℓ^e_c]`` are differentiable closed forms, so the gradient is
pathwise in the means and factors. Antithetic pairs ``(ε, -ε)`` remove the odd part
of the residual that the surrogate misses; a stratum's unit is then a pair.

Jensen–Shannon does not use these surrogates: its ``"cv"`` method is importance
sampling on the overlap of ``p`` and ``q`` (:mod:`gmmjax.montecarlo._overlap`); the
surrogates with a binary-entropy feature saved only 2-5× there. Measured
(``benchmarks/bench_cv.py``): KL needs 5-130× (median 47×) fewer samples than iid from
D = 8 to 64.

The features cost ``O(N·K)`` on top of the kernel matrices that ``log p`` and
``log q`` need anyway (they are reused), plus a once-per-call ``O(K_s K_e D³)`` for
the expectations.

References:
  Hershey & Olsen, *Approximating the Kullback Leibler divergence between Gaussian
  mixture models*, ICASSP 2007, eq. 18 (variational responsibilities); Owen, *Monte
  Carlo theory, methods and examples* (2013), §8.9 (control variates, regression
  estimator); Chernozhukov et al., *Double/debiased machine learning*, Econometrics
  J. 21 (2018), §3 (cross-fitting).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gmmjax.gaussian import cholesky_factors, kernel_function
from gmmjax.mixture import GaussianMixture
from gmmjax.montecarlo._estimators import (
    expectation,
    fold_sums,
    log_density,
    sum_over_chunks,
)
from gmmjax.montecarlo._surrogates import (
    expected_log_components,
    surrogate,
    switch,
    switch_features,
)
from gmmjax.montecarlo.sampling import (
    block_info,
    chunk_plan,
    dtype_of,
    make_layout,
    standard_normals,
    transform,
)

__all__ = [
    "AUTO_METHODS",
    "auto_method",
    "cv_expectation",
    "cv_or_plain",
    "expected_log_components",
]

RIVALS = 2  # rivals of each stratum's main component with switching features
_MIN_FIT = 8  # units a fold needs before its regression coefficients are used


# The default ``method="auto"``, by dimension, from benchmarks/bench_div_efficiency.py
# (RESULTS.md, "Sample efficiency"): randomized QMC wins in 1-D and 2-D, the control
# variate from D = 3 on, for every quantity it covers.
AUTO_METHODS = ((2, "qmc"), (None, "cv"))


def auto_method(dim: int, quantity: str | None = None) -> str:
    """The method ``"auto"`` stands for at event dimension ``dim`` (1 for univariate).

    ``"qmc"`` up to D = 2, ``"cv"`` from D = 3 for every quantity. For JS ``"cv"`` is
    importance sampling on the overlap of p and q (:mod:`gmmjax.montecarlo._overlap`);
    ``benchmarks/bench_js_auto.py`` measured it against ``"antithetic"`` (JS's default
    before 0.2.0) on random pairs from nearly equal to barely overlapping at D = 3, 8
    and 16: it needs fewer samples for the same error in 15 of 15 cases, and less time
    to a given error in 13 (``benchmarks/RESULTS.md``). It loses where p and q nearly
    coincide (JS below ~0.07 at D ≤ 8), by up to 1.35x in time to a given error.
    ``quantity`` is accepted for callers that name it; no quantity changes the choice.

    Example:
      >>> auto_method(1), auto_method(16), auto_method(16, "js")
      ('qmc', 'cv', 'cv')
    """
    for upto, method in AUTO_METHODS:
        if upto is None or dim <= upto:
            return method
    raise AssertionError("unreachable")  # pragma: no cover


def cv_expectation(
    s: GaussianMixture,
    evals: tuple[GaussianMixture, ...],
    key,
    num_samples: int,
    g,
    beta0: tuple[float, ...],
    *,
    chunk: int,
    antithetic: bool = True,
    rivals: int | tuple[int, ...] = RIVALS,
):
    """``E_s[h]`` with ``h = g(log e_1(x), ..., log e_J(x))``, by regression control variates.

    Args:
      s: unbatched `GaussianMixture` to sample.
      evals: ``J`` unbatched `GaussianMixture` whose log-densities ``h`` needs (pass
        ``stop_gradient``-ed copies for "sticking the landing").
      key: PRNG key.
      num_samples: static number of points drawn from ``s``.
      g: ``(J arrays of shape (C,)) -> (C,)`` the integrand from the log-densities.
      beta0: ``J`` fixed prior coefficients of the surrogates (module docstring).
      chunk: static points per chunk.
      antithetic: draw pairs ``(ε, -ε)``.
      rivals: in each stratum, the ``rivals`` components of each evaluated mixture
        next in responsibility to the main one get switching features
        (:func:`gmmjax.montecarlo._surrogates.switch`); 0 for none; a tuple gives one
        number per evaluated mixture.

    Returns:
      ``(value, stderr, used)``: traced scalars and the static number of points used.
    """
    method = "antithetic" if antithetic else "stratified"
    k_layout, k_eps = jax.random.split(key)
    layout = make_layout(s, k_layout, num_samples, method)
    k = s.n_components
    unit = 2 if antithetic else 1
    sur = [surrogate(s, e) for e in evals]
    means = [sr.mean for sr in sur]
    b0 = list(beta0)
    # switching features: where a stratum's points split between components of an
    # evaluated mixture, polynomials of the log-ratios of the rival components
    # (exact expectations, no gradient) follow what no fixed quadratic does
    rv = rivals if isinstance(rivals, tuple) else (rivals,) * len(evals)
    sws = [
        switch(s, e, sr, min(r, e.n_components - 1)) if r and e.n_components > 1 else None
        for e, sr, r in zip(evals, sur, rv, strict=True)
    ]
    for sw in sws:
        if sw is not None:
            means.extend(sw.mean.T)
            b0.extend([0.0] * sw.mean.shape[-1])
    nf = len(means)
    zmean = jnp.stack(means, axis=-1)  # (K, nf)
    b0 = jnp.asarray(b0, dtype_of(s))
    bsz = layout.block
    per_chunk, n_chunks = chunk_plan(layout.num_blocks, chunk, bsz)
    univariate = s.covariance_type == "univariate"

    # the precision factors once, outside the chunk loop: inside it, every chunk (and,
    # under `grad`, its rematerialization and backward pass) would redo the triangular
    # inversions (value_and_grad / value 4.5x -> 3.5x at D = 16, K = 32, measured)
    kernels = [kernel_function(e.locs, e.precisions_cholesky, e.covariance_type) for e in evals]

    def features(x, comp):
        """``y`` ``(B, R)`` and centred features ``(B, R, nf)`` at blocks of ``R`` points
        ``x`` of strata ``comp`` ``(B,)``: per-block products, no per-point gathers."""
        nb, r = x.shape[:2]
        flat = x.reshape((nb * r,) + x.shape[2:])
        ker = [kernel(flat).reshape(nb, r, -1) for kernel in kernels]
        logd = [jax.nn.logsumexp(kk + e.logits, axis=-1) for kk, e in zip(ker, evals, strict=True)]
        z = [jnp.einsum("brk,bk->br", kk, sr.resp[comp]) for kk, sr in zip(ker, sur, strict=True)]
        for kk, e, sw in zip(ker, evals, sws, strict=True):
            if sw is not None:
                t = jax.lax.stop_gradient(kk + e.logits)
                z.extend(jnp.moveaxis(switch_features(t, sw, comp), -1, 0))
        z = jnp.stack(z, axis=-1)
        return g(*logd) - z @ b0, z - zmean[comp][:, None]

    # a per-stratum shift (the residual at the component means, no gradient) keeps the
    # float32 sums of squares accurate when the residual's mean is large
    y_ref, _ = features(s.locs[:, None], jnp.arange(k))
    y_ref = jax.lax.stop_gradient(y_ref[:, 0])

    def one_chunk(c):
        ids = c * per_chunk + jnp.arange(per_chunk)
        rep, comp, first, valid = block_info(layout, ids)
        eps = standard_normals(
            jax.random.fold_in(k_eps, c), method, layout, rep, comp, first, s.dim, dtype_of(s)
        )
        x = transform(s, comp, eps)
        x = x.reshape((per_chunk, bsz) + (() if univariate else (s.dim,)))
        y, f = features(x, comp)
        y, f = (y - y_ref[comp][:, None]).reshape(-1), f.reshape(-1, nf)
        mask = (jnp.arange(bsz)[None, :] < valid[:, None]).reshape(-1)
        if antithetic:  # pair means; an odd N's one unpaired point stands alone
            whole = mask[1::2]
            y2, f2 = y.reshape(-1, 2), f.reshape(-1, 2, nf)
            y = jnp.where(whole, jnp.mean(y2, -1), y2[:, 0])
            f = jnp.where(whole[:, None], jnp.mean(f2, 1), f2[:, 0])
            mask = mask[::2]
        v = jnp.where(mask[:, None], jnp.concatenate([f, y[:, None]], axis=-1), 0.0)
        return fold_sums(v, mask, comp, first // unit, bsz // unit, k)

    n, sv, svv = sum_over_chunks(one_chunk, n_chunks)
    value, se = _combine(n, sv, svv, nf, k, s.logits, zmean @ b0, y_ref)
    return value, se, num_samples  # make_layout places exactly num_samples points


def cv_or_plain(s, evals, key, num_samples: int, g, beta0, *, chunk: int, own: int | None = None):
    """:func:`cv_expectation` when every distribution is a `GaussianMixture`.

    ``evals[own]`` is ``s`` itself (or its ``stop_gradient``-ed copy): it gets no
    switching features, since a stratum's points rarely leave their own component
    (measured at D = 8 and 64: they saved at most 10% more samples and cost 5-10% more
    time); every other evaluated mixture gets :data:`RIVALS` rivals.

    Otherwise (a NumPyro distribution with no closed-form surrogate) the plain
    estimator of :mod:`gmmjax.montecarlo._estimators` runs on ``h = g(log e_j)``:
    antithetic pairs when ``s`` is a mixture, iid draws otherwise.
    """
    if all(isinstance(d, GaussianMixture) for d in (s, *evals)):
        rivals = tuple(0 if j == own else RIVALS for j in range(len(evals)))
        return cv_expectation(
            s, tuple(evals), key, num_samples, g, beta0, chunk=chunk, rivals=rivals
        )
    lds = [log_density(e) for e in evals]
    return expectation(s, key, num_samples, "cv", lambda x: g(*[ld(x) for ld in lds]), chunk=chunk)


def _combine(n, sv, svv, nf, k, logits, zbar, y_ref):
    """Cross-fitted regression estimate and its standard error from per-fold sums."""
    svs = jax.lax.stop_gradient(sv)
    nn = jnp.maximum(n, 1.0)
    cov = svv - svs[:, :, None] * svs[:, None, :] / nn[:, None, None]  # (2K, J+1, J+1)
    cff, cfy, cyy = cov[:, :nf, :nf], cov[:, :nf, nf], cov[:, nf, nf]
    # a relative ridge of 1e-4: features can be collinear (in 1-D, after antithetic
    # pairing, every surrogate is a function of ε² alone); any δ keeps the estimate unbiased
    ridge = 1e-4 * jnp.trace(cff, axis1=-2, axis2=-1)[:, None, None] / nf + 1e-30
    # normal equations by the LAPACK-free Cholesky (no batched getrf/trsm in the program)
    _, linv = cholesky_factors(cff + ridge * jnp.eye(nf, dtype=cff.dtype))
    delta = jnp.einsum("gji,gj->gi", linv, jnp.einsum("gij,gj->gi", linv, cfy))
    ok = (n >= _MIN_FIT)[:, None] & jnp.all(jnp.isfinite(delta), axis=-1, keepdims=True)
    delta = jnp.where(ok, delta, 0.0)
    # fold 2a uses fold 2a+1's coefficients and vice versa
    other = delta.reshape(k, 2, nf)[:, ::-1].reshape(2 * k, nf)
    res_sum = sv[:, nf] - jnp.sum(other * sv[:, :nf], axis=-1)  # (2K,)
    m2 = cyy - 2.0 * jnp.sum(other * cfy, axis=-1) + jnp.einsum("gi,gij,gj->g", other, cff, other)
    m2 = jnp.maximum(m2, 0.0)
    n_a = jnp.sum(n.reshape(k, 2), axis=-1)
    res_mean = jnp.sum(res_sum.reshape(k, 2), axis=-1) / jnp.maximum(n_a, 1.0)
    m2_a = jnp.sum(m2.reshape(k, 2), axis=-1)
    pooled = jnp.sum(m2_a) / jnp.maximum(jnp.sum(n_a - 2.0), 1.0)
    var = jnp.where(n_a >= 3, m2_a / jnp.maximum(n_a - 2.0, 1.0), pooled)
    w = jnp.exp(logits)
    value = jnp.sum(w * (zbar + y_ref + res_mean))
    wsg = jax.lax.stop_gradient(w)
    se = jnp.sqrt(jnp.sum(wsg * wsg * var / jnp.maximum(n_a, 1.0)))
    return value, se
