"""Mixture files (gmmjax.io): bit-exact round trips, the sklearn route, and clear errors."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmmjax import GaussianMixture
from gmmjax.io import (
    SCHEMA_VERSION,
    MixtureFileError,
    load_mixture,
    mixture_from_dict,
    mixture_to_dict,
    save_mixture,
)
from tests._helpers import X64, random_spd

pytestmark = pytest.mark.numerics

K, D = 3, 2


def _mixture(covariance_type, rng, batch=()):
    w = rng.dirichlet(np.ones(K), size=batch)
    if covariance_type == "univariate":
        locs = rng.normal(size=batch + (K,))
        cov = rng.uniform(0.2, 2.0, size=batch + (K,))
    else:
        locs = rng.normal(size=batch + (K, D))
        cov = {
            "full": lambda: random_spd(rng, int(np.prod(batch + (K,))), D).reshape(
                batch + (K, D, D)
            ),
            "tied": lambda: random_spd(rng, int(np.prod(batch + (1,))), D).reshape(batch + (D, D)),
            "diag": lambda: rng.uniform(0.2, 2.0, size=batch + (K, D)),
            "spherical": lambda: rng.uniform(0.2, 2.0, size=batch + (K,)),
        }[covariance_type]()
    m = GaussianMixture(
        jnp.asarray(w), jnp.asarray(locs), jnp.asarray(cov), covariance_type=covariance_type
    )
    return m, cov


def _same_leaves(p, q):
    for name in ("logits", "locs", "scale_param"):
        a, b = np.asarray(getattr(p, name)), np.asarray(getattr(q, name))
        assert a.dtype == b.dtype, name
        assert a.shape == b.shape, name
        # bit for bit: compare the raw bytes, not values within a tolerance
        assert a.tobytes() == b.tobytes(), name
    assert p.covariance_type == q.covariance_type


TYPES = ["full", "tied", "diag", "spherical", "univariate"]


@pytest.mark.parametrize("ext", ["json", "npz"])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_round_trip_bit_exact(tmp_path, rng, covariance_type, ext):
    p, _ = _mixture(covariance_type, rng)
    f = tmp_path / f"p.{ext}"
    save_mixture(p, f)
    q = load_mixture(f)
    _same_leaves(p, q)
    # and the file format stays stable: saving the loaded mixture gives the same bytes
    if ext == "json":
        f2 = tmp_path / "again.json"
        save_mixture(q, f2)
        assert f.read_text() == f2.read_text()


@pytest.mark.parametrize("ext", ["json", "npz"])
def test_round_trip_float64_bit_exact(tmp_path, rng, ext):
    # float64 even in the default (float32) run: the schema must carry every bit
    with jax.enable_x64(True):
        p, _ = _mixture("full", rng, batch=(2,))
        assert p.locs.dtype == jnp.float64
        f = tmp_path / f"p.{ext}"
        save_mixture(p, f)
        q = load_mixture(f)
        _same_leaves(p, q)


def test_float64_file_loads_as_float32_without_x64(tmp_path, rng):
    if X64:
        pytest.skip("checks the float32 fallback")
    with jax.enable_x64(True):
        p, _ = _mixture("diag", rng)
        save_mixture(p, tmp_path / "p.json")
    q = load_mixture(tmp_path / "p.json")
    assert q.locs.dtype == jnp.float32
    # the float64 values rounded once to float32 (round-to-nearest: 2^-24 relative)
    np.testing.assert_allclose(np.asarray(q.locs), np.asarray(p.locs), rtol=2**-24)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_file_fields_are_documented_layout(tmp_path, rng, covariance_type):
    p, cov = _mixture(covariance_type, rng)
    save_mixture(p, tmp_path / "p.json")
    d = json.loads((tmp_path / "p.json").read_text())
    assert d["format"] == "gmmjax.GaussianMixture"
    assert d["schema_version"] == SCHEMA_VERSION == 1
    assert d["covariance_type"] == covariance_type
    # covariances in sklearn's covariances_ layout equal the input ones; float32 storage
    # of the Cholesky factor limits agreement to a few float32 ulps (rtol 1e-5 there)
    tol = 1e-12 if X64 else 1e-5
    np.testing.assert_allclose(np.array(d["covariances"]), cov, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.array(d["weights"]).sum(), 1.0, rtol=tol)


def test_batched_mixture_round_trip(tmp_path, rng):
    p, _ = _mixture("spherical", rng, batch=(2, 3))
    save_mixture(p, tmp_path / "p.json")
    q = load_mixture(tmp_path / "p.json")
    assert q.batch_shape == (2, 3)
    _same_leaves(p, q)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_sklearn_mixture_saved_and_loaded(tmp_path, rng, covariance_type):
    from sklearn.mixture import GaussianMixture as SkGMM

    x = np.concatenate([rng.normal(-2, 0.5, (80, D)), rng.normal(2, 1.0, (120, D))])
    sk = SkGMM(2, covariance_type=covariance_type, random_state=0).fit(x)
    save_mixture(sk, tmp_path / "sk.json")
    q = load_mixture(tmp_path / "sk.json")
    assert q.covariance_type == covariance_type
    # a float32 log-density of O(5) nats carries ~1e-6 relative rounding; 1e-4 is margin
    tol = 1e-9 if X64 else 1e-4
    np.testing.assert_allclose(np.asarray(q.log_prob(jnp.asarray(x))), sk.score_samples(x),
                               rtol=tol, atol=tol)  # fmt: skip
    # a hand-written file with only sklearn's fields loads too
    by_hand = {
        "schema_version": 1,
        "covariance_type": sk.covariance_type,
        "weights": sk.weights_.tolist(),
        "means": sk.means_.tolist(),
        "covariances": sk.covariances_.tolist(),
    }
    q2 = mixture_from_dict(json.loads(json.dumps(by_hand)))
    np.testing.assert_allclose(np.asarray(q2.log_prob(jnp.asarray(x))), sk.score_samples(x),
                               rtol=tol, atol=tol)  # fmt: skip


def _valid(rng):
    p, _ = _mixture("full", rng)
    return mixture_to_dict(p)


def _bad_cases():
    def drop(field):
        return lambda d: d.pop(field)

    def setv(field, value):
        return lambda d: d.__setitem__(field, value)

    def not_pd(d):
        c = np.array(d["covariances"])
        c[1] = [[1.0, 2.0], [2.0, 1.0]]  # eigenvalues 3 and -1
        d["covariances"] = c.tolist()
        del d["exact"]

    def asym(d):
        c = np.array(d["covariances"])
        c[0, 0, 1] += 0.5
        d["covariances"] = c.tolist()
        del d["exact"]

    def edited(d):
        d["covariances"] = (np.array(d["covariances"]) * 2).tolist()

    def short_means(d):
        d["means"] = d["means"][:2]

    return [
        (drop("means"), r"missing field\(s\) `means`"),
        (drop("covariance_type"), r"missing field\(s\) `covariance_type`"),
        (setv("schema_version", 2), r"`schema_version` is 2, but this gmmjax reads version 1"),
        (setv("schema_version", "1"), r"`schema_version` must be an integer"),
        (setv("format", "other"), r"`format` must be 'gmmjax.GaussianMixture'"),
        (setv("covariance_type", "banded"), r"`covariance_type` must be one of"),
        (setv("dtype", "int8"), r"`dtype` must be"),
        (setv("weights", [0.5, 0.6, 0.1]), r"`weights` must be nonnegative and sum to 1"),
        (setv("weights", [0.5, "a", 0.5]), r"`weights` must be a number or"),
        (setv("weights", [0.5, float("nan"), 0.5]), r"`weights` contains NaN"),
        (short_means, r"`means` must have shape \(\.\.\., K, D\) with K=3"),
        (
            setv("covariances", [[1.0, 0.0], [0.0, 1.0]]),
            r"`covariances` must have shape \(3, 2, 2\)",
        ),
        (not_pd, r"`covariances\[1\]` is not positive definite"),
        (asym, r"`covariances\[0\]` is not symmetric"),
        (edited, r"`covariances` disagrees with `exact.scale`"),
        (setv("exact", {"log_weights": [0, 0, 0]}), r"`exact` must hold `log_weights` and `scale`"),
    ]


@pytest.mark.parametrize("edit,match", _bad_cases())
def test_bad_file_names_the_field(rng, edit, match):
    d = _valid(rng)
    edit(d)
    with pytest.raises(MixtureFileError, match=match):
        mixture_from_dict(d)


def test_diag_zero_variance_and_not_an_object():
    d = {
        "schema_version": 1,
        "covariance_type": "diag",
        "weights": [0.5, 0.5],
        "means": [[0.0], [1.0]],
        "covariances": [[1.0], [0.0]],
    }
    with pytest.raises(
        MixtureFileError, match=r"`covariances` is not positive definite: entry \[1, 0\]"
    ):
        mixture_from_dict(d)
    with pytest.raises(MixtureFileError, match="must hold an object"):
        mixture_from_dict([1, 2])


def test_unreadable_files(tmp_path, rng):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(MixtureFileError, match="not valid JSON"):
        load_mixture(tmp_path / "bad.json")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(MixtureFileError, match=r"not a readable \.npz mixture file"):
        load_mixture(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        load_mixture(tmp_path / "absent.json")
    p, _ = _mixture("diag", rng)
    with pytest.raises(ValueError, match=r"use a \.json or \.npz file name"):
        save_mixture(p, tmp_path / "p.txt")
    with pytest.raises(TypeError, match="expected a gmmjax.GaussianMixture"):
        save_mixture({"weights": [1.0]}, tmp_path / "p.json")


def test_npz_missing_field(tmp_path, rng):
    p, _ = _mixture("diag", rng)
    save_mixture(p, tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as z:
        fields = {k: z[k] for k in z.files if k != "weights"}
    np.savez(tmp_path / "q.npz", **fields)
    with pytest.raises(MixtureFileError, match=r"missing field\(s\) `weights`"):
        load_mixture(tmp_path / "q.npz")


# ------------------------------------------------ issue 16: what is saved loads back
@pytest.mark.parametrize("covariance_type", ["univariate", "full", "diag"])
@pytest.mark.parametrize("ext", [".json", ".npz"])
def test_zero_weight_component_round_trips_bit_for_bit(tmp_path, covariance_type, ext):
    # a zero weight is a log-weight of -inf; NumPyro's constructor checks refuse it, so
    # the mixture is built as a user's jit-compiled code would build it
    rng = np.random.default_rng(5)
    m0, _ = _mixture(covariance_type, rng)
    import numpyro

    with numpyro.validation_enabled(False):
        lw = jnp.log(jnp.array([0.4, 0.0, 0.6], m0.logits.dtype))
        m = GaussianMixture.from_params(lw, m0.locs, m0.scale_param, covariance_type)
    assert np.isneginf(np.asarray(m.logits)[1])
    f = tmp_path / f"z{ext}"
    save_mixture(m, f)
    back = load_mixture(f)
    _same_leaves(m, back)
    # the sklearn-style fields alone (no `exact` block) load too, with weight exactly 0
    d = mixture_to_dict(m)
    del d["exact"]
    assert float(jnp.exp(mixture_from_dict(d).logits)[1]) == 0.0


def test_unreadable_files_name_the_problem(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(MixtureFileError, match="nested too deeply"):
        load_mixture(deep)
    m = GaussianMixture(jnp.array([0.5, 0.5]), jnp.zeros(2), scale=jnp.ones(2))
    save_mixture(m, tmp_path / "m.npz")
    raw = (tmp_path / "m.npz").read_bytes()
    for cut in (len(raw) // 2, len(raw) - 30, 10):
        (tmp_path / "t.npz").write_bytes(raw[:cut])
        with pytest.raises(MixtureFileError, match="truncated or corrupt"):
            load_mixture(tmp_path / "t.npz")
    with pytest.raises(MixtureFileError, match="exact.log_weights` contains NaN or \\+inf"):
        d = mixture_to_dict(m)
        d["exact"]["log_weights"][0] = float("inf")
        mixture_from_dict(d)
