"""Figures for mixtures and divergences (needs matplotlib: ``pip install 'gmmjax[plot]'``).

Every function draws on a given matplotlib ``Axes`` (``ax=``) or creates a new
``matplotlib.figure.Figure`` without pyplot, so it runs with no display; save
with ``fig.savefig("out.png")`` (or ``ax.figure.savefig``).

* :func:`plot_density_1d`: a 1-D mixture density, its weighted components and
  a histogram of data.
* :func:`plot_contours_2d`: log-density contours of a 2-D mixture, with samples.
* :func:`plot_kl_curves`: KL(p‖q) for p = N(0, 1) and q = N(μ, σ²) against μ and
  σ, the closed form (:func:`gmmjax.gaussian_kl`) with Monte Carlo points and error
  bars, and a heat map over (μ, σ).
* :func:`plot_convergence`: estimate ± standard error against the number of
  samples, one curve per estimator.

Monte Carlo estimators are passed in as functions
``estimator(p, q, key, num_samples) -> Estimate`` (anything with ``value`` and
``stderr``), so this module depends on nothing but the mixture and matplotlib.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gmmjax.gaussian import gaussian_kl
from gmmjax.mixture import GaussianMixture

__all__ = [
    "contour_extent",
    "plot_contours_2d",
    "plot_convergence",
    "plot_density_1d",
    "plot_kl_curves",
]


# one compiled program per call signature instead of dozens of eager ops
_log_prob = jax.jit(lambda m, x: m.log_prob(x))
_weighted_components = jax.jit(lambda m, x: m.component_log_probs(x))
_moments = jax.jit(lambda m: (m.mean, m.variance))
_closed_kl = jax.jit(lambda mu, sd: gaussian_kl(0.0, 1.0, mu, sd))  # KL(N(0,1) ‖ N(μ,σ²))


def _figure(ax, figsize, ncols: int = 1):
    """``(fig, axes)``: the given axes, or a fresh pyplot-free figure."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "gmmjax.plot needs matplotlib; install it with pip install 'gmmjax[plot]'"
        ) from None
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(1, ncols)


def _check_unbatched(mixture, event_ndim: int, name: str) -> None:
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"{name} expects a GaussianMixture, got {type(mixture).__name__}")
    if mixture.batch_shape:
        raise ValueError(
            f"{name} draws one mixture; got batch_shape {mixture.batch_shape}: index it first"
        )
    if event_ndim == 0 and mixture.event_shape not in ((), (1,)):
        raise ValueError(
            f"{name} needs a 1-D mixture, got event_shape {mixture.event_shape}; "
            "use plot_contours_2d for 2-D mixtures"
        )
    if event_ndim == 1 and mixture.event_shape != (2,):
        raise ValueError(f"{name} needs a 2-D mixture, got event_shape {mixture.event_shape}")


def plot_density_1d(
    mixture: GaussianMixture,
    data=None,
    *,
    ax=None,
    bins: int = 80,
    components: bool = True,
    label: str | None = None,
    color: str | None = None,
    grid=None,
    num_points: int = 500,
):
    """Density of a 1-D mixture, its weighted components, and a histogram of data.

    Draws ``p(x) = Σ_k w_k N(x; μ_k, σ_k²)`` (solid) and each ``w_k N(x; μ_k, σ_k²)``
    (dashed); the components sum to the mixture.

    Args:
      mixture: a univariate mixture (or ``event_shape == (1,)``), no batch shape.
      data: optional ``(N,)`` (or ``(N, 1)``) samples shown as a density histogram.
      ax: axes to draw on; a new figure when omitted.
      bins: histogram bins.
      components: also draw the weighted components.
      label: legend label of the density.
      color: matplotlib color for this mixture.
      grid: ``(M,)`` x values; by default spans the data and ``mean ± 4 sd``.
      num_points: grid size when ``grid`` is omitted.

    Returns:
      The matplotlib ``Axes``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> p = GaussianMixture(jnp.array([0.4, 0.6]), jnp.array([-1.0, 1.0]),
      ...                     scale=jnp.array([0.5, 0.7]))
      >>> ax = plot_density_1d(p, label="p")
      >>> len(ax.lines)  # the mixture and its two components
      3
    """
    _check_unbatched(mixture, 0, "plot_density_1d")
    fig, ax = _figure(ax, (7, 4))
    if data is not None:
        data = np.asarray(data, dtype=np.float64).reshape(-1)
    if grid is None:
        mean, var = _moments(mixture)
        m = float(np.asarray(mean).reshape(()))
        s = float(np.sqrt(np.asarray(var).reshape(())))
        lo, hi = m - 4 * s, m + 4 * s
        if data is not None and data.size:
            lo, hi = min(lo, data.min()), max(hi, data.max())
        grid = np.linspace(lo, hi, num_points)
    grid = np.asarray(grid, dtype=np.float64)
    x = jnp.asarray(grid)
    if mixture.event_shape == (1,):
        x = x[:, None]
    if data is not None:
        ax.hist(data, bins=bins, density=True, alpha=0.3, color=color, label=None)
    dens = np.exp(np.asarray(_log_prob(mixture, x), dtype=np.float64))
    (line,) = ax.plot(grid, dens, color=color, lw=2, label=label)
    if components:
        comp = np.exp(np.asarray(_weighted_components(mixture, x), dtype=np.float64))
        for k in range(comp.shape[-1]):  # one line per component, host-side drawing
            ax.plot(grid, comp[:, k], color=line.get_color(), lw=1, ls="--", alpha=0.8)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    if label is not None:
        ax.legend()
    return ax


def plot_contours_2d(
    mixture: GaussianMixture,
    samples=None,
    *,
    ax=None,
    levels: int = 10,
    num_points: int = 150,
    cmap: str = "viridis",
    extent: Sequence[float] | None = None,
    labels: Sequence[str] = ("x1", "x2"),
):
    """Contours of ``log p(x)`` for a 2-D mixture, with optional samples on top.

    Args:
      mixture: a mixture with ``event_shape == (2,)``, no batch shape.
      samples: optional ``(N, 2)`` points to scatter.
      ax: axes to draw on; a new figure when omitted.
      levels: number of contour levels.
      num_points: grid points per axis.
      cmap: colormap of the contours.
      extent: ``(xmin, xmax, ymin, ymax)``; by default the mixture's ``mean ± 4 sd``
        and the samples (:func:`contour_extent`; pass one extent to several panels
        to give them the same limits).
      labels: the axis labels (e.g. a CSV file's column names).

    Returns:
      The matplotlib ``Axes``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> p = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([[0.0, 0.0], [2.0, 1.0]]),
      ...                     jnp.broadcast_to(jnp.eye(2), (2, 2, 2)))
      >>> ax = plot_contours_2d(p)
      >>> ax.get_xlabel()
      'x1'
    """
    _check_unbatched(mixture, 1, "plot_contours_2d")
    fig, ax = _figure(ax, (5.5, 5))
    if samples is not None:
        samples = np.asarray(samples, dtype=np.float64)
        if samples.ndim != 2 or samples.shape[1] != 2:
            raise ValueError(f"samples must have shape (N, 2), got {samples.shape}")
    if extent is None:
        extent = contour_extent([mixture], [samples])
    gx = np.linspace(extent[0], extent[1], num_points)
    gy = np.linspace(extent[2], extent[3], num_points)
    xx, yy = np.meshgrid(gx, gy)
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], axis=-1))
    lp = np.asarray(_log_prob(mixture, pts), dtype=np.float64).reshape(xx.shape)
    # levels in log space from the peak down 12 nats: the tails stay visible
    top = lp.max()
    cs = ax.contour(xx, yy, lp, levels=np.linspace(top - 12.0, top, levels), cmap=cmap)
    ax.clabel(cs, fontsize=7, fmt="%.1f")
    if samples is not None:
        ax.scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.35, color="k", lw=0)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_title("log p(x)")
    return ax


def contour_extent(mixtures: Sequence[GaussianMixture], samples: Sequence = ()):
    """``(xmin, xmax, ymin, ymax)`` covering every 2-D mixture (``mean ± 4 sd``) and sample.

    Example:
      >>> import jax.numpy as jnp
      >>> from gmmjax import GaussianMixture
      >>> p = GaussianMixture(jnp.ones(1), jnp.zeros((1, 2)), jnp.eye(2)[None])
      >>> [float(v) for v in contour_extent([p])]
      [-4.0, 4.0, -4.0, 4.0]
    """
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for m in mixtures:
        mean, var = _moments(m)
        c = np.asarray(mean, dtype=np.float64)
        sd = np.sqrt(np.asarray(var, dtype=np.float64))
        lo, hi = np.minimum(lo, c - 4 * sd), np.maximum(hi, c + 4 * sd)
    for x in samples:
        if x is not None and len(x):
            x = np.asarray(x, dtype=np.float64)
            lo, hi = np.minimum(lo, x.min(0)), np.maximum(hi, x.max(0))
    return (lo[0], hi[0], lo[1], hi[1])


def _normal(loc: float, sd: float) -> GaussianMixture:
    return GaussianMixture(jnp.ones(1), jnp.array([loc]), scale=jnp.array([sd]))


def _mc_points(estimator, params, key, num_samples):
    """Monte Carlo KL(N(0,1) ‖ N(μ, σ²)) at each ``(μ, σ)``: arrays of values and stderrs."""
    p = _normal(0.0, 1.0)
    vals, errs = [], []
    for i, (mu, sd) in enumerate(params):  # a handful of points, host-side loop
        est = estimator(p, _normal(mu, sd), jax.random.fold_in(key, i), num_samples)
        vals.append(float(est.value))
        errs.append(float(est.stderr))
    return np.array(vals), np.array(errs)


def plot_kl_curves(
    estimator: Callable | None = None,
    *,
    key=None,
    num_samples: int = 2000,
    num_mc_points: int = 9,
    mean_range: tuple[float, float] = (-4.0, 4.0),
    sd_range: tuple[float, float] = (0.5, 4.0),
    heatmap_points: int = 80,
):
    """KL(p‖q) for p = N(0, 1) and q = N(μ, σ²): closed form, Monte Carlo, heat map.

    Three panels: KL against μ (σ = 1), KL against σ (μ = 0), both with the closed
    form ``ln σ + (1 + μ²)/(2σ²) - ½`` and, when an estimator is given, Monte Carlo
    points with ±2 standard-error bars; and a heat map of log₁₀ KL over (μ, σ).

    Args:
      estimator: ``estimator(p, q, key, num_samples) -> Estimate`` for KL(p‖q),
        e.g. ``gmmjax.kl_estimate``; None draws the closed form only.
      key: PRNG key of the Monte Carlo points (default ``jax.random.key(0)``).
      num_samples: samples per Monte Carlo point.
      num_mc_points: Monte Carlo points per curve.
      mean_range: the sweep of μ.
      sd_range: the sweep of σ.
      heatmap_points: grid points per axis of the heat map.

    Returns:
      The matplotlib ``Figure``.

    Example:
      >>> fig = plot_kl_curves()
      >>> len(fig.axes)  # two curves, the heat map and its colorbar
      4
    """
    fig, axes = _figure(None, (14, 4), ncols=3)
    key = jax.random.key(0) if key is None else key
    k1, k2 = jax.random.split(key)
    mus = np.linspace(*mean_range, 200)
    sds = np.linspace(*sd_range, 200)
    hm = np.linspace(*mean_range, heatmap_points)
    hs = np.linspace(*sd_range, heatmap_points)
    mm, ss = np.meshgrid(hm, hs)
    # every closed-form value of the figure in one call: (μ, σ) for both curves and the map
    allm = np.concatenate([mus, np.zeros_like(sds), mm.ravel()])
    alls = np.concatenate([np.ones_like(mus), sds, ss.ravel()])
    kl_all = np.asarray(_closed_kl(jnp.asarray(allm), jnp.asarray(alls)), dtype=np.float64)
    kl_mu, kl_sd, kl_map = np.split(kl_all, [len(mus), len(mus) + len(sds)])
    axes[0].plot(mus, kl_mu, lw=2, label="closed form")
    axes[1].plot(sds, kl_sd, lw=2, label="closed form")
    if estimator is not None:
        pm = np.linspace(*mean_range, num_mc_points)
        ps = np.linspace(*sd_range, num_mc_points)
        for ax, xs, params, kk in (
            (axes[0], pm, [(m, 1.0) for m in pm], k1),
            (axes[1], ps, [(0.0, s) for s in ps], k2),
        ):
            v, e = _mc_points(estimator, params, kk, num_samples)
            ax.errorbar(
                xs,
                v,
                yerr=2 * e,
                fmt="o",
                ms=4,
                capsize=3,
                label=f"Monte Carlo ±2 SE (N={num_samples})",
            )
    axes[0].set(xlabel="mean μ of q (σ = 1)", ylabel="KL(p‖q) [nats]", title="p = N(0,1)")
    axes[1].set(xlabel="std σ of q (μ = 0)", ylabel="KL(p‖q) [nats]", title="p = N(0,1)")
    for ax in axes[:2]:
        ax.legend(fontsize=8)
    # log10 with a floor: KL is 0 at (0, 1) and grows quadratically in μ
    z = np.log10(np.maximum(kl_map.reshape(mm.shape), 1e-4))
    im = axes[2].pcolormesh(mm, ss, z, shading="auto", cmap="magma")
    cs = axes[2].contour(mm, ss, z, levels=[-2, -1, 0, 1], colors="w", linewidths=0.8)
    # the white lines are KL = 0.01, 0.1, 1 and 10 nats: say so on each line
    axes[2].clabel(cs, fmt={-2: "KL=0.01", -1: "KL=0.1", 0: "KL=1", 1: "KL=10"}, fontsize=7)
    fig.colorbar(im, ax=axes[2], label="log10 KL(p‖q)")
    axes[2].set(xlabel="mean μ of q", ylabel="std σ of q", title="KL(N(0,1) ‖ N(μ,σ²))")
    return fig


def plot_convergence(
    p: GaussianMixture,
    q: GaussianMixture,
    estimators: Mapping[str, Callable],
    *,
    key=None,
    num_samples: Sequence[int] = (100, 300, 1000, 3000, 10000),
    reference: float | None = None,
    reference_label: str = "reference",
    ax=None,
    ylabel: str = "KL(p‖q) [nats]",
):
    """Estimate ± standard error against the number of samples, one curve per method.

    Args:
      p: first mixture.
      q: second mixture.
      estimators: ``{name: estimator(p, q, key, num_samples) -> Estimate}``.
      key: PRNG key (default ``jax.random.key(0)``); each call gets its own fold.
      num_samples: the sample sizes (x axis, log scale).
      reference: optional exact or high-precision value drawn as a horizontal line.
      reference_label: its legend label.
      ax: axes to draw on; a new figure when omitted.
      ylabel: y-axis label.

    Returns:
      The matplotlib ``Axes``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gmmjax import GaussianMixture, gaussian_kl
      >>> from gmmjax.montecarlo.divergences import kl_estimate
      >>> p = GaussianMixture(jnp.ones(1), jnp.zeros(1), scale=jnp.ones(1))
      >>> q = GaussianMixture(jnp.ones(1), jnp.ones(1), scale=jnp.full(1, 2.0))
      >>> ax = plot_convergence(p, q, {"qmc": kl_estimate}, num_samples=(256, 1024),
      ...                       reference=float(gaussian_kl(0.0, 1.0, 1.0, 2.0)))
      >>> len(ax.containers)  # one error-bar series per estimator
      1
    """
    if not estimators:
        raise ValueError("plot_convergence needs at least one estimator: {name: function}")
    fig, ax = _figure(ax, (7, 4.5))
    key = jax.random.key(0) if key is None else key
    ns = np.asarray(num_samples, dtype=np.int64)
    width = len(estimators)
    for j, (name, fn) in enumerate(estimators.items()):
        vals, errs = [], []
        for i, n in enumerate(ns):  # a handful of sizes, host-side loop
            est = fn(p, q, jax.random.fold_in(key, j * len(ns) + i), int(n))
            vals.append(float(est.value))
            errs.append(float(est.stderr))
        # offset the methods slightly along x so error bars do not hide each other
        shift = 1.0 + 0.04 * (j - (width - 1) / 2)
        ax.errorbar(ns * shift, vals, yerr=errs, fmt="o-", ms=4, capsize=3, label=name)
    if reference is not None:
        ax.axhline(reference, color="k", ls=":", lw=1, label=reference_label)
    ax.set_xscale("log")
    ax.set(xlabel="number of samples", ylabel=ylabel, title="estimate ± 1 standard error")
    ax.legend(fontsize=8)
    return ax
