"""Figures (gmmjax.plot): every figure renders to a non-blank PNG with Agg; drawn data are right."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from gmmjax import GaussianMixture  # noqa: E402
from gmmjax.plot import (  # noqa: E402
    plot_contours_2d,
    plot_convergence,
    plot_density_1d,
    plot_kl_curves,
)


class _Est(NamedTuple):
    value: float
    stderr: float
    num_samples: int


def _params(m):
    return (np.exp(np.asarray(m.logits, np.float64)), np.asarray(m.locs, np.float64),
            np.asarray(m.scale_param, np.float64))  # fmt: skip


def _scipy_log_prob(m, x):
    w, mu, sd = _params(m)
    return logsumexp(np.log(w) + stats.norm.logpdf(x[:, None], mu, sd), axis=-1)


def _numpy_kl_estimate(p, q, key, num_samples):
    """Plain iid Monte Carlo KL(p‖q) of 1-D mixtures with NumPy/SciPy (independent code)."""
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    w, mu, sd = _params(p)
    c = rng.choice(len(w), size=num_samples, p=w / w.sum())
    x = rng.normal(mu[c], sd[c])
    h = _scipy_log_prob(p, x) - _scipy_log_prob(q, x)
    return _Est(h.mean(), h.std(ddof=1) / np.sqrt(num_samples), num_samples)


def _assert_not_blank(fig, path):
    fig.savefig(path, dpi=60)
    img = matplotlib.image.imread(path)
    rgb = img[..., :3]
    # a blank (all-white) canvas has zero spread; drawn lines and fills give a clear
    # spread and a few percent of non-white pixels
    assert rgb.std() > 0.05, f"{path} looks blank (pixel std {rgb.std():.3f})"
    assert np.mean(rgb.min(-1) < 0.9) > 0.01


P1 = GaussianMixture(jnp.array([0.2, 0.3, 0.5]), jnp.array([-0.5, -0.1, 0.2]),
                     scale=jnp.array([0.2, 0.07, 0.13]))  # fmt: skip


def test_density_1d_draws_the_mixture_and_its_components(tmp_path):
    data = np.random.default_rng(0).normal(0.0, 0.3, 2000)
    ax = plot_density_1d(P1, data, label="p")
    lines = ax.get_lines()
    assert len(lines) == 1 + 3
    x, y = lines[0].get_data()
    ref = sum(w * stats.norm.pdf(x, m, s) for w, m, s in
              zip([0.2, 0.3, 0.5], [-0.5, -0.1, 0.2], [0.2, 0.07, 0.13], strict=True))  # fmt: skip
    # float32 densities up to ~6: 1e-5 relative, with margin
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    comps = np.sum([ln.get_data()[1] for ln in lines[1:]], axis=0)
    np.testing.assert_allclose(comps, y, rtol=1e-4, atol=1e-5)
    assert x.min() <= data.min() and x.max() >= data.max()  # the grid covers the data
    assert len(ax.patches) > 0  # the histogram
    _assert_not_blank(ax.figure, tmp_path / "density.png")


def test_contours_2d(tmp_path):
    p = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([[0.0, 0.0], [3.0, 1.0]]),
                        jnp.array([[[1.0, 0.5], [0.5, 1.0]], [[0.5, 0.0], [0.0, 0.3]]]))  # fmt: skip
    samples = np.random.default_rng(1).normal(1.0, 1.5, (500, 2))
    ax = plot_contours_2d(p, samples, levels=6)
    assert len(ax.collections) >= 2  # contour set and scatter
    _assert_not_blank(ax.figure, tmp_path / "contours.png")


def test_kl_curves_closed_form_and_monte_carlo(tmp_path):
    fig = plot_kl_curves(_numpy_kl_estimate, key=jax.random.key(2), num_samples=4000,
                         num_mc_points=5, heatmap_points=30)  # fmt: skip
    ax_mu, ax_sd = fig.axes[0], fig.axes[1]
    mu, kl_mu = ax_mu.get_lines()[0].get_data()
    # closed form KL(N(0,1) ‖ N(μ,1)) = μ²/2 and KL(N(0,1) ‖ N(0,σ²)) = ln σ + 1/(2σ²) - ½
    np.testing.assert_allclose(kl_mu, mu**2 / 2, rtol=1e-5, atol=1e-6)
    assert mu.min() == -4.0 and mu.max() == 4.0
    sd, kl_sd = ax_sd.get_lines()[0].get_data()
    np.testing.assert_allclose(kl_sd, np.log(sd) + 0.5 / sd**2 - 0.5, rtol=1e-5, atol=1e-6)
    assert sd.min() == 0.5 and sd.max() == 4.0
    # the Monte Carlo points: error bars drawn at the requested parameters
    assert len(ax_mu.containers) == 1 and len(ax_sd.containers) == 1
    pts = ax_mu.containers[0].lines[0].get_data()
    np.testing.assert_allclose(pts[0], np.linspace(-4, 4, 5))
    # the points agree with the closed form within 5 of their standard errors; the
    # error-bar half-length is 2 SE
    seg = ax_mu.containers[0].lines[2][0].get_segments()
    se = np.array([abs(s[1, 1] - s[0, 1]) / 4 for s in seg])
    assert np.all(np.abs(pts[1] - pts[0] ** 2 / 2) <= 5 * se + 1e-6)
    _assert_not_blank(fig, tmp_path / "kl_curves.png")
    _assert_not_blank(plot_kl_curves(heatmap_points=20), tmp_path / "closed_only.png")


def test_convergence(tmp_path):
    q = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([-0.3, 0.3]), scale=jnp.array([0.3, 0.2]))
    ax = plot_convergence(P1, q, {"iid (numpy)": _numpy_kl_estimate}, key=jax.random.key(3),
                          num_samples=(200, 2000), reference=0.5)  # fmt: skip
    assert len(ax.containers) == 1
    assert ax.get_xscale() == "log"
    _assert_not_blank(ax.figure, tmp_path / "convergence.png")


def test_bad_input_messages():
    batched = P1.expand((2,))
    with pytest.raises(ValueError, match="batch_shape"):
        plot_density_1d(batched)
    p2 = GaussianMixture(jnp.ones(1), jnp.zeros((1, 2)), jnp.eye(2)[None])
    with pytest.raises(ValueError, match="needs a 1-D mixture"):
        plot_density_1d(p2)
    with pytest.raises(ValueError, match="needs a 2-D mixture"):
        plot_contours_2d(P1)
    with pytest.raises(ValueError, match=r"samples must have shape \(N, 2\)"):
        plot_contours_2d(p2, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="at least one estimator"):
        plot_convergence(P1, P1, {})
    with pytest.raises(TypeError, match="expects a GaussianMixture"):
        plot_density_1d("p")


# ------------------------------------------------------------ issue 14, item 9
def test_two_2d_fits_share_limits_name_axes_and_title_the_divergences(tmp_path, monkeypatch):
    # the command's figure: the CSV's column names, one extent for both panels, the
    # estimates in the title
    from gmmjax.cli.commands import _divergence_title, _plot_fits
    from gmmjax.cli.data import column_names

    eye = jnp.broadcast_to(jnp.eye(2), (2, 2, 2))
    pa = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([[0.0, 0.0], [3.0, 1.0]]), eye)
    pb = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([[6.0, 0.0], [9.0, -4.0]]), eye)
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(0.0, 1.0, (50, 2)), rng.normal(6.0, 1.0, (50, 2))
    (tmp_path / "a.csv").write_text("height,weight\n1,2\n3,4\n")
    labels = column_names(str(tmp_path / "a.csv"))
    rep = {"estimates": {"kl_pq": {"label": "KL(a‖b)", "value": 1.2345, "stderr": 0.01}}}
    title = _divergence_title(rep)
    assert title == "KL(a‖b) = 1.234 ± 0.01 nats"  # the value to the SE's 2nd digit
    import matplotlib.figure

    saved = {}
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda f, *a, **k: saved.update(fig=f))
    _plot_fits(str(tmp_path / "fits.png"), (pa, pb), (xa, xb), ("a", "b"), title, labels)
    monkeypatch.undo()
    fig = saved["fig"]
    ax1, ax2 = fig.axes[:2]
    assert ax1.get_xlim() == ax2.get_xlim() and ax1.get_ylim() == ax2.get_ylim()
    # the common extent covers both mixtures' mean ± 4 sd: from a's x-mean to b's
    assert ax1.get_xlim()[0] < 0.0 and ax1.get_xlim()[1] > 9.0
    assert (ax1.get_xlabel(), ax1.get_ylabel()) == ("height", "weight")
    assert fig._suptitle.get_text() == title
    _assert_not_blank(fig, tmp_path / "fits2.png")


def test_heat_map_contours_are_labelled():
    fig = plot_kl_curves(heatmap_points=20)
    texts = {t.get_text() for t in fig.axes[2].texts}
    assert texts & {"KL=0.1", "KL=1", "KL=10"}  # the white lines say which KL they are


def test_convergence_shows_every_method_at_every_size():
    q = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([-0.3, 0.3]), scale=jnp.array([0.3, 0.2]))
    methods = {m: _numpy_kl_estimate for m in ("iid", "stratified", "antithetic", "qmc")}
    ax = plot_convergence(P1, q, methods, num_samples=(100, 300, 1000))
    assert len(ax.containers) == 4
    for c in ax.containers:
        assert len(c.lines[0].get_xdata()) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(methods)
