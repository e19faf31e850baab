"""The full kernel's derivative through the precisions (gmmjax._kernel_full).

The reference is the Gaussian log-density written from its definition with the
precision matrix ``Λ = P Pᵀ``, differentiated by plain autodiff in float64: no GEMM
form, no custom rule, no row blocks. In float64 both sides agree to rounding; the
tolerance 1e-9 (relative to the largest entry) leaves room for the different
summation orders over up to 5000 points.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gmmjax as g
from gmmjax._kernel_full import full_log_density, gemm_bound, precisions, row_chunk
from gmmjax.gaussian import log_gaussian_kernel
from gmmjax.montecarlo import _estimators

RTOL64 = 1e-9


def _reference(x, locs, prec):
    """``log N(x_n; μ_k, (P_k P_kᵀ)⁻¹)`` from the definition."""
    lam = jnp.einsum("kde,kfe->kdf", prec, prec)
    diff = x[:, None, :] - locs[None]
    maha = jnp.einsum("nkd,kde,nke->nk", diff, lam, diff)
    log_det = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(prec, axis1=-2, axis2=-1))), axis=-1)
    return -0.5 * maha + log_det - 0.5 * x.shape[-1] * jnp.log(2 * jnp.pi)


def _problem(n, k, d, seed=0, dtype=jnp.float64):
    a, b, c, w = jax.random.split(jax.random.key(seed), 4)
    x = 2.0 * jax.random.normal(a, (n, d), dtype)
    locs = jax.random.normal(b, (k, d), dtype)
    prec = jnp.triu(0.3 * jax.random.normal(c, (k, d, d), dtype)) + 1.5 * jnp.eye(d, dtype=dtype)
    weights = jax.random.normal(w, (n, k), dtype)
    return x, locs, prec, weights


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


# (n, k, d): D = 1 and K·D <= 32 (plain autodiff, gemm_bound false); the rule in one
# block; the rule with n >= 2 rows, so the value runs in padded row blocks
CASES = [
    (60, 3, 1),
    (40, 5, 4),
    (50, 5, 7),
    (30, 3, 12),
    (2 * row_chunk((8, 8), "full") + 37, 8, 8),
]
assert [gemm_bound(k, d) for _, k, d in CASES] == [False, False, True, True, True]


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("n,k,d", CASES)
@pytest.mark.parametrize("argnums", [(0, 1, 2), (0,), (1,), (2,), (1, 2)])
def test_gradient_matches_definition(n, k, d, argnums):
    """Every subset of arguments (the rule skips the tangents that are zero)."""
    x, locs, prec, wt = _problem(n, k, d)

    def loss(kernel):
        return lambda *a: jnp.sum(wt * jnp.tanh(kernel(*a) / 10.0))

    ours = jax.jit(jax.grad(loss(lambda *a: log_gaussian_kernel(*a, "full")), argnums))
    ref = jax.grad(loss(_reference), argnums)
    for got, want in zip(ours(x, locs, prec), ref(x, locs, prec), strict=True):
        assert _rel(got, want) < RTOL64


@pytest.mark.parametrize("n,k,d", CASES[1:3])
def test_forward_mode_and_hessian(n, k, d):
    """``custom_jvp``, not ``custom_vjp``: jvp, jacfwd and the Hessian work and agree."""
    x, locs, prec, wt = _problem(n, k, d)
    t = _problem(n, k, d, seed=1)[:3]
    t = (t[0], t[1], jnp.triu(t[2]))
    ours = lambda *a: log_gaussian_kernel(*a, "full")  # noqa: E731
    _, jv = jax.jvp(ours, (x, locs, prec), t)
    _, jv_ref = jax.jvp(_reference, (x, locs, prec), t)
    assert _rel(jv, jv_ref) < RTOL64
    f = lambda m, p, kern: jnp.sum(wt * kern(x, m, p))  # noqa: E731
    for arg in (0, 1):
        h = jax.hessian(f, arg)(locs, prec, ours)
        h_ref = jax.hessian(f, arg)(locs, prec, _reference)
        assert _rel(h, h_ref) < RTOL64


def test_vmap_of_gradient():
    x, locs, prec, wt = _problem(50, 5, 7)
    stack = jnp.stack([locs, locs + 1.0, 2.0 * locs])
    f = lambda m, kern: jnp.sum(wt * kern(x, m, prec))  # noqa: E731
    got = jax.vmap(jax.grad(lambda m: f(m, lambda *a: log_gaussian_kernel(*a, "full"))))(stack)
    want = jax.vmap(jax.grad(lambda m: f(m, _reference)))(stack)
    assert _rel(got, want) < RTOL64


def test_lam_input_is_not_read_by_the_value():
    """The value comes from the factors alone; Λ only carries the derivative."""
    x, locs, prec, _ = _problem(30, 3, 3)
    a = full_log_density(x, locs, prec, precisions(prec), None, "highest")
    b = full_log_density(x, locs, prec, jnp.zeros_like(prec), None, "highest")
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_float32_gradient_of_an_ill_conditioned_component():
    """Λ squares P's condition number. With P's singular values spanning 1 to 100
    (cond(Σ) = 1e4), the float32 gradients in P and x stay within 1e-5 of float64
    (measured 7e-7 and 1e-7; autodiff of the GEMM form: 2e-7 and 1e-7)."""
    x, locs, prec, wt = _problem(200, 6, 6)
    scales = jnp.logspace(0, 2, 6)
    prec = prec * scales[None, None, :]
    x = locs[0] + (x - jnp.mean(x, 0)) / scales[None, :]
    f = lambda x, p, kern: jnp.sum(wt * kern(x, locs, p))  # noqa: E731
    want = jax.grad(lambda x, p: f(x, p, _reference), (0, 1))(x, prec)
    with jax.enable_x64(False):
        c = lambda a: a.astype(jnp.float32)  # noqa: E731
        got = jax.grad(
            lambda x, p: jnp.sum(c(wt) * log_gaussian_kernel(x, c(locs), p, "full")), (0, 1)
        )(c(x), c(prec))
    for a, b in zip(got, want, strict=True):
        assert _rel(a.astype(jnp.float64), b) < 1e-5


def test_kept_kernels_do_not_change_the_gradient(monkeypatch):
    """The chunked estimator's gradient with the kernel matrices kept equals the one
    that recomputes them (the checkpoint policy changes the schedule, not the math)."""
    p = g.GaussianMixture.from_params(
        jnp.log(jnp.array([0.3, 0.7])),
        jnp.stack([jnp.zeros(9), jnp.linspace(-1.0, 1.0, 9)]),
        jnp.stack([jnp.eye(9), 0.5 * jnp.eye(9)]),
        "full",
    )
    q = g.GaussianMixture.from_params(
        jnp.zeros(4), jnp.arange(36.0).reshape(4, 9) / 20, jnp.stack([jnp.eye(9)] * 4), "full"
    )
    assert gemm_bound(4, 9)
    key = jax.random.key(0)

    def grads():
        f = lambda pq: g.kl_divergence(pq[0], pq[1], key, 600, chunk_size=128)  # noqa: E731
        return jax.jit(jax.grad(f))((p, q))

    jax.clear_caches()  # the policy is read when the gradient is traced
    kept = grads()
    monkeypatch.setattr(_estimators, "_KEEP_FLOATS", 0)
    jax.clear_caches()
    recomputed = grads()
    for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(recomputed), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)
