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

from gmmjax._kernel_full import KERNEL_NAME, full_log_density, gemm_bound, precisions, row_chunk
from gmmjax.gaussian import kernel_function, log_gaussian_kernel
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


ALL = (0, 1, 2)
# every case with all arguments; one case of the rule with each subset
GRAD_CASES = [(c, ALL) for c in CASES] + [(CASES[2], a) for a in [(0,), (1,), (2,), (1, 2)]]


@pytest.mark.parametrize("case,argnums", GRAD_CASES)
def test_gradient_matches_definition(case, argnums):
    """Every subset of arguments (the rule skips the tangents that are zero)."""
    x, locs, prec, wt = _problem(*case)

    def loss(kernel):
        return lambda *a: jnp.sum(wt * jnp.tanh(kernel(*a) / 10.0))

    ours = jax.jit(jax.grad(loss(lambda *a: log_gaussian_kernel(*a, "full")), argnums))
    ref = jax.grad(loss(_reference), argnums)
    for got, want in zip(ours(x, locs, prec), ref(x, locs, prec), strict=True):
        assert _rel(got, want) < RTOL64


@pytest.mark.parametrize("n,k,d", [(12, 9, 4)])
def test_forward_mode_and_hessian(n, k, d):
    """``custom_jvp``, not ``custom_vjp``: jvp, jacfwd and the Hessian work and agree."""
    x, locs, prec, wt = _problem(n, k, d)
    t = _problem(n, k, d, seed=1)[:3]
    t = (t[0], t[1], jnp.triu(t[2]))
    ours = lambda *a: log_gaussian_kernel(*a, "full")  # noqa: E731
    _, jv = jax.jvp(ours, (x, locs, prec), t)
    _, jv_ref = jax.jvp(_reference, (x, locs, prec), t)
    assert _rel(jv, jv_ref) < RTOL64
    for arg in (0, 1):
        h, h_ref = (
            jax.jit(jax.hessian(lambda m, p, kern=kern: jnp.sum(wt * kern(x, m, p)), arg))(
                locs, prec
            )
            for kern in (ours, _reference)
        )
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
    x, locs, prec, wt = _problem(100, 6, 6)
    scales = jnp.logspace(0, 2, 6)
    prec = prec * scales[None, None, :]
    x = locs[0] + (x - jnp.mean(x, 0)) / scales[None, :]
    f = lambda x, p, kern: jnp.sum(wt * kern(x, locs, p))  # noqa: E731
    want = jax.grad(lambda x, p: f(x, p, _reference), (0, 1))(x, prec)
    with jax.enable_x64(False):
        c = lambda a: a.astype(jnp.float32)  # noqa: E731
        got = jax.jit(
            jax.grad(
                lambda x, p: jnp.sum(c(wt) * log_gaussian_kernel(x, c(locs), p, "full")), (0, 1)
            )
        )(c(x), c(prec))
    for a, b in zip(got, want, strict=True):
        assert _rel(a.astype(jnp.float64), b) < 1e-5


def test_kept_kernels_do_not_change_the_gradient(monkeypatch):
    """The chunked gradient with the kernel matrices kept (the checkpoint policy of
    ``map_chunks``) equals the one that recomputes them: the policy changes the
    schedule, not the math. Both are traced afresh, so each reads its own budget."""
    x, locs, prec, _ = _problem(4 * 64, 5, 7)
    assert gemm_bound(5, 7)

    def loss(locs, prec):
        kernel = kernel_function(locs, prec, "full")
        chunk = lambda c: jnp.sum(  # noqa: E731
            jax.nn.logsumexp(kernel(jax.lax.dynamic_slice_in_dim(x, c * 64, 64)), -1) ** 2
        )
        return jnp.sum(_estimators.map_chunks(chunk, 4))

    kept = jax.grad(loss, (0, 1))(locs, prec)
    monkeypatch.setattr(_estimators, "_KEEP_FLOATS", 0)
    recomputed = jax.grad(loss, (0, 1))(locs, prec)
    want = jax.grad(lambda m, p: jnp.sum(jax.nn.logsumexp(_reference(x, m, p), -1) ** 2), (0, 1))(
        locs, prec
    )
    for a, b, w in zip(kept, recomputed, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)
        assert _rel(a, w) < RTOL64


def test_keep_policy_saves_only_named_kernels_within_budget():
    policy = _estimators._KeepKernels(n_chunks=4)
    small = jax.core.ShapedArray((64, 5), jnp.float32)
    big = jax.core.ShapedArray((_estimators._KEEP_FLOATS // 4 + 1,), jnp.float32)
    name_p = type("P", (), {"name": "name"})()
    other_p = type("P", (), {"name": "mul"})()
    assert policy(name_p, small, name=KERNEL_NAME)
    assert not policy(name_p, big, name=KERNEL_NAME)
    assert not policy(name_p, small, name="something else")
    assert not policy(other_p, small, small)
