"""Initialization of EM: k-means (Lloyd in JAX), k-means++ and random starts.

Each initializer returns responsibilities ``(N, K)`` from which one M-step gives
the initial mixture, as in scikit-learn's ``init_params``:

* ``"kmeans"``: k-means++ seeding, then Lloyd iterations; hard labels;
* ``"k-means++"``: the k-means++ seeds only; one point per component;
* ``"random"``: uniform random responsibilities, normalized per point;
* ``"random_from_data"``: ``K`` distinct data points, one per component.

All functions take sample weights ``w`` (zero for padding rows, which are never
chosen) and an explicit ``key``; they are pure and ``jit``/``vmap`` friendly.
:func:`gmmjax.fit_em` runs the initializer of all its restarts as one compiled
function of its own (:data:`initial_assignments`), which does not depend on the
covariance type: fits of every type on the same data share it.

References:
  Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf. Theory 28 (1982).
  Arthur & Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007
  (the D² sampling of their Section 2.2; the greedy variant with ``2 + log K`` local
  trials per step is their Section 6 / scikit-learn's default).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["INITS", "kmeans", "kmeans_plusplus", "initial_responsibilities"]

INITS = ("kmeans", "k-means++", "random", "random_from_data")


def _sq_dist(x, c):
    """``(N, M)`` squared distances by one GEMM (clipped at 0)."""
    d2 = jnp.sum(x * x, 1)[:, None] - 2.0 * x @ c.T + jnp.sum(c * c, 1)[None, :]
    return jnp.maximum(d2, 0.0)


def kmeans_plusplus(key, x, w, n_clusters: int):
    """Greedy k-means++ seeding: indices of ``n_clusters`` distinct-probability seeds.

    Each new seed is drawn with probability ``∝ w_n D(x_n)²`` (``D`` the distance to
    the nearest seed so far); ``2 + ⌊log K⌋`` candidates are drawn and the one that
    lowers the potential ``Σ w D²`` most is kept.

    Args:
      key: PRNG key.
      x: ``(N, D)`` points; ``w``: ``(N,)`` nonnegative weights.
      n_clusters: ``K``.

    Returns:
      ``(K,)`` int indices into ``x``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> x = jnp.array([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]])
      >>> idx = kmeans_plusplus(jax.random.key(0), x, jnp.ones(4), 2)
      >>> sorted(int(i) // 2 for i in idx)  # one seed in each cluster
      [0, 1]
    """
    n_trials = 2 + int(math.log(n_clusters))
    k0, key = jax.random.split(key)
    first = jax.random.categorical(k0, jnp.log(w))
    d2 = _sq_dist(x, x[first][None])[:, 0]
    idx = jnp.zeros((n_clusters,), first.dtype).at[0].set(first)

    def step(i, carry):
        idx, d2, key = carry
        key, sub = jax.random.split(key)
        logits = jnp.log(w * d2)
        # all points coincide with seeds: fall back to the weights alone
        logits = jnp.where(jnp.any(jnp.isfinite(logits)), logits, jnp.log(w))
        cand = jax.random.categorical(sub, logits, shape=(n_trials,))
        d2c = jnp.minimum(d2[None, :], _sq_dist(x[cand], x))  # (T, N)
        pot = jnp.sum(d2c * w[None, :], axis=1)
        best = jnp.argmin(pot)
        return idx.at[i].set(cand[best]), d2c[best], key

    idx, _, _ = jax.lax.fori_loop(1, n_clusters, step, (idx, d2, key))
    return idx


def kmeans(key, x, w, n_clusters: int, *, max_iter: int = 300, tol: float = 1e-4):
    """Weighted k-means by Lloyd's algorithm, seeded by :func:`kmeans_plusplus`.

    Stops when the squared center shift ``Σ_k ‖Δc_k‖²`` falls below
    ``tol · mean_d Var(x_d)`` (scikit-learn's criterion) or after ``max_iter``
    iterations. A cluster that empties keeps its previous center.

    Args:
      key: PRNG key.
      x: ``(N, D)`` points; ``w``: ``(N,)`` nonnegative weights.
      n_clusters: ``K``.
      max_iter: most Lloyd iterations.
      tol: relative tolerance on the center shift.

    Returns:
      ``(centers (K, D), labels (N,))``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> x = jnp.array([[0.0], [0.2], [5.0], [5.2]])
      >>> c, lab = kmeans(jax.random.key(1), x, jnp.ones(4), 2)
      >>> sorted(round(float(v), 2) for v in c[:, 0])
      [0.1, 5.1]
    """
    centers = x[kmeans_plusplus(key, x, w, n_clusters)]
    wsum = jnp.sum(w)
    mean = (w @ x) / wsum
    var = (w @ ((x - mean) ** 2)) / wsum
    thresh = tol * jnp.mean(var)

    def assign(c):
        # ‖x‖² is constant per row: argmin needs only ‖c‖² - 2 x·c
        return jnp.argmin(jnp.sum(c * c, 1)[None, :] - 2.0 * x @ c.T, axis=1)

    def update(c):
        r = jax.nn.one_hot(assign(c), n_clusters, dtype=x.dtype) * w[:, None]
        cnt = jnp.sum(r, axis=0)
        new = (r.T @ x) / jnp.maximum(cnt, 1e-30)[:, None]
        return jnp.where(cnt[:, None] > 0, new, c)

    def cond(s):
        i, _, shift = s
        return (i < max_iter) & (shift > thresh)

    def body(s):
        i, c, _ = s
        new = update(c)
        return i + 1, new, jnp.sum((new - c) ** 2)

    _, centers, _ = jax.lax.while_loop(
        cond, body, (jnp.zeros((), jnp.int32), centers, jnp.asarray(jnp.inf, x.dtype))
    )
    return centers, assign(centers)


def initial_responsibilities(key, x, w, n_components: int, init: str):
    """Responsibilities ``(N, K)`` of the chosen initializer (module docstring).

    Args:
      key: PRNG key.
      x: ``(N, D)`` points; ``w``: ``(N,)`` weights (zero rows are never seeds).
      n_components: ``K``.
      init: one of :data:`INITS`.

    Returns:
      ``(N, K)`` nonnegative responsibilities.
    """
    n = x.shape[0]
    dt = x.dtype
    if init == "kmeans":
        _, labels = kmeans(key, x, w, n_components)
        return jax.nn.one_hot(labels, n_components, dtype=dt)
    if init == "k-means++":
        idx = kmeans_plusplus(key, x, w, n_components)
    elif init == "random_from_data":
        p = (w > 0).astype(dt)
        idx = jax.random.choice(key, n, (n_components,), replace=False, p=p / jnp.sum(p))
    elif init == "random":
        r = jax.random.uniform(key, (n, n_components), dtype=dt)
        return r / jnp.sum(r, axis=1, keepdims=True)
    else:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return jnp.zeros((n, n_components), dt).at[idx, jnp.arange(n_components)].set(1.0)


def _initial_assignments(key, xs, ws, static):
    """Initial assignments of ``n_init`` restarts on chunked data ``xs (n_chunks, C, D)``
    with weights ``ws (n_chunks, C)``; restart ``j`` draws with ``fold_in(key, j)``.

    ``static = (K, init, n_init, as_labels)``. Returns responsibilities ``(n_init,
    n_chunks, C, K)``, or with ``as_labels`` (``"kmeans"`` only) its labels ``(n_init,
    n_chunks, C)`` int32, which never hold ``(N, K)`` at once.
    """
    k, init, n_init, as_labels = static
    x, w = xs.reshape(-1, xs.shape[-1]), ws.reshape(-1)
    keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(n_init))
    if as_labels:
        labels = jax.vmap(lambda kk: kmeans(kk, x, w, k)[1])(keys)
        return labels.astype(jnp.int32).reshape((n_init, *xs.shape[:2]))
    r = jax.vmap(lambda kk: initial_responsibilities(kk, x, w, k, init))(keys)
    return r.reshape((n_init, *xs.shape[:2], k))


initial_assignments = jax.jit(_initial_assignments, static_argnames=("static",))
"""Compiled :func:`_initial_assignments`: one program per data shape, ``K``, ``init`` and
``n_init`` (:func:`gmmjax.fit_em`'s initialization, before its EM program)."""
