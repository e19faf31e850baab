"""The ``gmmjax`` command end to end (subprocesses), and its error paths (in process).

Every subprocess starts JAX afresh (seconds), so the end-to-end calls are few and
share one persistent compilation cache: the demo, ``compare`` and ``fit`` use data
of the same size, so EM compiles once. Reference values come from SciPy
quadrature on the mixtures the command reports, never from gmmjax itself.
"""

import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import logsumexp

from gmmjax import cli
from gmmjax.cli.data import DataError, Progress, demo_data, read_data

GMMJAX = Path(sys.executable).with_name("gmmjax")  # the console script of this environment
SAMPLES = "4000"


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch):
    # in-process main() must not switch this test process to a persistent cache
    monkeypatch.setenv("GMMJAX_CACHE_DIR", "off")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    env = dict(os.environ)
    env.update(
        JAX_COMPILATION_CACHE_DIR=str(d / "jax-cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.2",
        MPLBACKEND="Agg",
    )
    env.pop("GMMJAX_CACHE_DIR", None)
    # the demo's --quick size (1700 points), so every EM fit shares one compiled shape
    a = demo_data(10, scale=0.1)
    b = demo_data(11, shift=0.1, scale=0.1)
    with open(d / "a.csv", "w") as f:
        f.write("x,y\n")
        np.savetxt(f, np.c_[a, a * 2], delimiter=",")
    np.save(d / "b.npy", np.c_[b, b * 2])
    return d, env


def _run(work, *args, script=True):
    d, env = work
    cmd = [str(GMMJAX)] if script else [sys.executable, "-m", "gmmjax"]
    return subprocess.run(cmd + list(args), cwd=d, env=env, capture_output=True, text=True,
                          timeout=240)  # fmt: skip


def _logpdf(m, x):
    """log density of a univariate mixture file dict, with SciPy."""
    w, mu, var = (np.asarray(m[k], float) for k in ("weights", "means", "covariances"))
    return logsumexp(np.log(w) + stats.norm.logpdf(np.asarray(x)[..., None], mu, np.sqrt(var)), -1)


def _kl_quad(p, q):
    f = lambda x: math.exp(_logpdf(p, x)) * (_logpdf(p, x) - _logpdf(q, x))  # noqa: E731
    # the mixtures live in [-1.5, 1.5]; beyond ±3 the integrand is below 1e-30
    val, err = integrate.quad(f, -3.0, 3.0, limit=400, epsabs=1e-10)
    return val


def _check_estimate(e, truth, what):
    # calibrated standard errors: 4 SE is a >99.99% band for a normal error; the small
    # absolute term covers float32 rounding of the summed log-ratios
    assert abs(e["value"] - truth) <= 4 * e["stderr"] + 2e-4, (what, e, truth)


def _not_blank_png(path):
    import matplotlib.image

    rgb = matplotlib.image.imread(path)[..., :3]
    assert rgb.std() > 0.05


def test_demo_json_end_to_end(work):
    r = _run(work, "demo", "--quick", "--json", "--samples", SAMPLES, "--plot", "demo.png")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # not a terminal: no progress, and --json keeps notes off stderr
    out = json.loads(r.stdout)
    est, mix = out["estimates"], out["mixtures"]
    assert set(est) >= {"kl_pq", "kl_qp", "js", "jeffreys"}
    assert out["fits"]["a"]["points"] == 1700 and out["fits"]["a"]["n_components"] == 3
    kl_ab, kl_ba = _kl_quad(mix["a"], mix["b"]), _kl_quad(mix["b"], mix["a"])
    _check_estimate(est["kl_pq"], kl_ab, "KL(a‖b)")
    _check_estimate(est["kl_qp"], kl_ba, "KL(b‖a)")
    _check_estimate(est["jeffreys"], kl_ab + kl_ba, "Jeffreys")
    assert 0.0 <= est["js"]["value"] <= math.log(2)
    for side, truth in (("kl_pq", kl_ab), ("kl_qp", kl_ba)):
        b = out["bounds"][side]
        # guaranteed bounds, up to float32 rounding (1e-4 relative)
        assert b["lower"] - 1e-4 <= truth <= b["upper"] * (1 + 1e-4) + 1e-6
    assert out["closed_form"]["cauchy_schwarz"] > 0
    _not_blank_png(work[0] / "demo.png")


def test_compare_text_save_and_plot(work):
    r = _run(work, "compare", "a.csv", "b.npy", "--column", "0", "-k", "3", "--samples",
             SAMPLES, "--save", "pa.json", "pb.npz", "--plot", "cmp.png", script=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # progress only on a terminal
    text = r.stdout
    for needle in ("KL(a‖b)", "KL(b‖a)", "JS(a,b)", "±", "guaranteed bounds", "Cauchy–Schwarz"):
        assert needle in text, needle
    assert "1700 points, D=1 -> K=3 (univariate)" in text
    _not_blank_png(work[0] / "cmp.png")
    # the saved mixtures reproduce the reported KL: divergence on the files, vs quadrature
    r2 = _run(work, "divergence", "pa.json", "pb.npz", "--kind", "kl", "--json",
              "--samples", SAMPLES)  # fmt: skip
    assert r2.returncode == 0, r2.stderr
    out = json.loads(r2.stdout)
    assert set(out["estimates"]) == {"kl_pq", "kl_qp"}  # --kind kl: no JS
    pa = json.loads((work[0] / "pa.json").read_text())
    with np.load(work[0] / "pb.npz") as z:
        pb = {k: z[k] for k in ("weights", "means", "covariances")}
    _check_estimate(out["estimates"]["kl_pq"], _kl_quad(pa, pb), "divergence KL(p‖q)")


def test_fit_writes_a_loadable_model(work):
    r = _run(work, "fit", "a.csv", "--column", "x", "-k", "3", "-o", "m.json", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)["fit"]
    m = json.loads((work[0] / "m.json").read_text())
    assert m["schema_version"] == 1 and m["covariance_type"] == "univariate"
    x = np.loadtxt(work[0] / "a.csv", delimiter=",", skiprows=1)[:, 0]
    # the reported log-likelihood is the model's mean log density on the data (float32
    # arithmetic on 1700 terms: 1e-4 absolute), and EM reached sklearn's optimum
    ll = _logpdf(m, x).mean()
    assert abs(s["log_likelihood_per_point"] - ll) < 1e-4
    from sklearn.mixture import GaussianMixture as SkGMM

    sk = SkGMM(3, n_init=3, random_state=0).fit(x[:, None])
    assert ll >= sk.score(x[:, None]) - 5e-3  # both stop at tol=1e-3 per point


def test_bad_files_and_usage_exit_codes(work):
    d = work[0]
    bad = {"schema_version": 2, "covariance_type": "univariate", "weights": [1.0],
           "means": [0.0], "covariances": [1.0]}  # fmt: skip
    (d / "bad.json").write_text(json.dumps(bad))
    r = _run(work, "divergence", "bad.json", "bad.json")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "`schema_version` is 2" in r.stderr
    r = _run(work, "compare", "a.csv")
    assert r.returncode == 2 and "usage: gmmjax compare" in r.stderr


# ------------------------------------------------------------------ in process
def _main(capsys, *argv):
    code = cli.main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_bad_data_in_process(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("x\n1.0\n2.0\nabc\n")
    code, out, err = _main(capsys, "fit", str(tmp_path / "t.csv"), "-k", "2", "-o", "m.json")
    assert code == 1 and "line 4: 'abc' is not a number (column 'x')" in err
    assert err.count("\n") == 1
    code, _, err = _main(capsys, "fit", str(tmp_path / "none.csv"), "-k", "2", "-o", "m.json")
    assert code == 1 and "no such file" in err
    code, _, err = _main(capsys, "fit", str(tmp_path / "t.csv"), "-k", "2", "-o", "m.txt")
    assert code == 2 and "must end in .json or .npz" in err
    np.save(tmp_path / "d3.npy", np.zeros((5, 3)))
    code, _, err = _main(capsys, "compare", str(tmp_path / "d3.npy"), str(tmp_path / "d3.npy"),
                         "--plot", "out.png")  # fmt: skip
    assert code == 2 and "--plot draws 1-D or 2-D data; these data are 3-D" in err
    code, _, err = _main(capsys, "demo", "--plot", "out.txt")
    assert code == 2 and "--plot must end in one of .png" in err
    notpd = {"schema_version": 1, "covariance_type": "full", "weights": [1.0],
             "means": [[0.0, 0.0]], "covariances": [[[1.0, 2.0], [2.0, 1.0]]]}  # fmt: skip
    (tmp_path / "n.json").write_text(json.dumps(notpd))
    code, _, err = _main(capsys, "divergence", str(tmp_path / "n.json"), str(tmp_path / "n.json"))
    assert code == 1 and "`covariances[0]` is not positive definite" in err
    code, _, err = _main(capsys, "divergence", str(tmp_path / "n.json"), "x.json", "--debug")
    assert code == 1 and "Traceback" in err
    code, _, err = _main(capsys, "divergence", "p.json", "q.json", "--method", "magic")
    assert code == 2 and "--method must be one of iid, stratified, antithetic, qmc" in err


@pytest.mark.parametrize(
    "argv,match",
    [
        (["demo", "--samples", "0"], "expected a positive whole number"),
        (["demo", "--samples", "lots"], "expected a number like"),
        (["fit", "data.csv", "-o", "m.json"], "the following arguments are required: -k"),
        (["divergence", "p.json", "q.json", "--kind", "bogus"], "invalid choice: 'bogus'"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
)
def test_bad_usage_exits_2(capsys, argv, match):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert match in capsys.readouterr().err


def test_read_data_columns_and_formats(tmp_path):
    (tmp_path / "h.csv").write_text("# comment\na, b ,c\n1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(read_data(str(tmp_path / "h.csv"), "c,a"), [[3, 1], [6, 4]])
    np.testing.assert_array_equal(read_data(str(tmp_path / "h.csv"), "b"), [2, 5])
    (tmp_path / "w.txt").write_text("1 2\n3 4\n5 6\n")
    assert read_data(str(tmp_path / "w.txt")).shape == (3, 2)
    np.save(tmp_path / "v.npy", np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(read_data(str(tmp_path / "v.npy"), "1"), [1, 3, 5])
    with pytest.raises(DataError, match="no column named 'z'; columns: a, b, c"):
        read_data(str(tmp_path / "h.csv"), "z")
    (tmp_path / "r.csv").write_text("1,2\n3\n")
    with pytest.raises(DataError, match="line 2: expected 2 fields, got 1"):
        read_data(str(tmp_path / "r.csv"))
    (tmp_path / "n.csv").write_text("1\nnan\n")
    with pytest.raises(DataError, match="NaN or infinite"):
        read_data(str(tmp_path / "n.csv"))
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(DataError, match="numeric array"):
        read_data(str(tmp_path / "s.npy"))


def test_demo_data_is_the_seed_mixture():
    x = demo_data(0)
    assert x.shape == (17000,)
    # the mean of the 2000/5000/10000 mixture is (2000·-0.5 + 5000·-0.1 + 10000·0.2)/17000;
    # its sampling sd is below 0.3/√17000 ≈ 0.0023, so 0.01 is a > 4 SE band
    assert abs(x.mean() - (-1000 - 500 + 2000) / 17000) < 0.01


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_terminal(monkeypatch, capsys):
    # item 5: tqdm bars, silent off a terminal and with enabled=False (--quiet)
    bar = Progress("quiet", 3)
    bar.step()
    bar.close()
    assert capsys.readouterr().err == ""  # pytest's stderr is not a TTY
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    bar = Progress("work", 2, unit="chunk")
    bar.step(note="0.5 ± 0.1")
    bar.step()
    bar.close()
    assert "work: 100%" in tty.getvalue() and "2/2" in tty.getvalue()
    assert "0.5 ± 0.1" in tty.getvalue()
    timer = Progress("fit", None)
    with timer.ticking(every=0.01):
        time.sleep(0.1)  # a long call: the elapsed time is redrawn meanwhile
    timer.close()
    assert tty.getvalue().count("fit: 00:00") >= 3
    n = len(tty.getvalue())
    Progress("off", 2, enabled=False).close()
    assert len(tty.getvalue()) == n


def test_progress_shows_em_and_monte_carlo_as_they_go(monkeypatch, tmp_path):
    # items 4 and 5 in process, on a terminal: the EM timer and its iterations, the
    # Monte Carlo chunks with the running estimate, under the same labels as the table
    from gmmjax.cli import report as _cli_report

    monkeypatch.setattr(_cli_report, "CHUNK", 1000)
    x = demo_data(3, scale=0.05)
    np.savetxt(tmp_path / "a.csv", x)
    np.savetxt(tmp_path / "b.csv", x + 0.1)
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    argv = [str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--kind", "kl", "-k", "2"]
    assert cli.main(["compare", *argv, "--samples", "3000", "--method", "iid"]) == 0
    err = tty.getvalue()
    assert "(EM, K=2)" in err and "iterations" in err
    assert "KL(a‖b):  33%" in err and "KL(b‖a): 100%" in err and "±" in err
    tty.seek(0)
    tty.truncate()
    assert cli.main(["compare", *argv, "--samples", "3000", "--method", "iid", "--quiet"]) == 0
    assert tty.getvalue() == ""


def test_chunked_estimate_combines_chunks(monkeypatch):
    import jax
    import jax.numpy as jnp

    from gmmjax import GaussianMixture
    from gmmjax.cli import report as _cli_report

    monkeypatch.setattr(_cli_report, "CHUNK", 1000)
    p = GaussianMixture(jnp.ones(1), jnp.zeros(1), scale=jnp.ones(1))
    q = GaussianMixture(jnp.ones(1), jnp.ones(1), scale=jnp.full(1, 2.0))
    fn = _cli_report._compiled(_cli_report._divergences_module().kl_estimate)
    r = _cli_report.chunked_estimate(fn, p, q, jax.random.key(0), 4000, label="t",
                                     progress=False, method="iid")  # fmt: skip
    assert r["num_samples"] == 4000
    # closed form KL(N(0,1) ‖ N(1,4)) = ln 2 + (1 + 1)/8 - ½
    truth = math.log(2.0) + 2.0 / 8.0 - 0.5
    _check_estimate(r, truth, "chunked KL")
    # four chunks of 1000: the combined SE is that of 4000 iid samples; the SD of the
    # log-ratio is about 0.6 here, so SE ≈ 0.6/√4000 ≈ 0.0095 (factor-1.5 band)
    assert 0.006 < r["stderr"] < 0.015


# ------------------------------------------------------ issue 14 and 16, in process
def test_fit_help_says_k_is_required(capsys):
    # item 2: `fit` requires -k, so its help must not promise a default
    with pytest.raises(SystemExit):
        cli.main(["fit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "mixture components (required)" in out
    assert "mixture components (default" not in out
    with pytest.raises(SystemExit):
        cli.main(["compare", "--help"])
    assert "mixture components (default 3)" in " ".join(capsys.readouterr().out.split())


def test_tol_default_is_fit_em_default():
    # item 7: the command and the library share one converging default
    import inspect

    from gmmjax.fit import fit_em

    params = inspect.signature(fit_em).parameters
    for sub in (["demo"], ["fit", "d.csv", "-k", "2", "-o", "m.json"], ["compare", "a", "b"]):
        args = cli.build_parser().parse_args(sub)
        assert args.tol == params["tol"].default
        assert args.max_iter == params["max_iter"].default
    # and that default converges: far below sklearn's 1e-3, which stops the demo's EM
    # after 4 iterations short of the optimum (issue 14, item 7)
    assert params["tol"].default <= 1e-5


def _two_kls(*names):
    import jax
    import jax.numpy as jnp

    from gmmjax import GaussianMixture
    from gmmjax.cli.report import divergence_report, format_report

    p = GaussianMixture(jnp.array([0.3, 0.7]), jnp.array([-1.0, 1.0]), scale=jnp.ones(2))
    q = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([0.0, 2.0]), scale=jnp.ones(2))
    rep = divergence_report(p, q, kinds="all", key=jax.random.key(0), num_samples=2000,
                            method="iid", progress=False, names=names)  # fmt: skip
    return rep, format_report(rep, names)


def test_labels_agree_between_table_and_json_and_jeffreys_reuses_the_kls():
    # item 4: one label per row, used by the table and the JSON alike
    rep, table = _two_kls("a", "b")
    est = rep["estimates"]
    assert est["kl_pq"]["label"] == "KL(a‖b)" and est["kl_qp"]["label"] == "KL(b‖a)"
    assert est["js"]["label"] == "JS(a,b)"
    rows = [ln.split("  ")[0].strip() for ln in table.splitlines()[1:]]
    for r in est.values():
        assert r["label"] in rows
    assert not any("p‖q" in r["label"] or "q‖p" in r["label"] for r in est.values())
    # Jeffreys is KL(a‖b) + KL(b‖a) of the two rows above (no fresh sampling): exactly
    # their sum, with the SE of a sum of independent estimates
    j, ab, ba = est["jeffreys"], est["kl_pq"], est["kl_qp"]
    assert j["value"] == ab["value"] + ba["value"]
    assert j["stderr"] == pytest.approx(math.hypot(ab["stderr"], ba["stderr"]), rel=1e-12)
    assert j["label"] == "Jeffreys KL(a‖b)+KL(b‖a)"


def test_table_says_what_to_trust():
    # item 6: one line each on the Monte Carlo rows, the bounds and the approximations
    _, table = _two_kls("a", "b")
    assert "Trust these: each is unbiased" in table
    assert "Guaranteed bounds: KL is certainly inside" in table
    assert "Approximations: deterministic, no error bar" in table


@pytest.mark.parametrize(
    "argv,match",
    [
        (["compare", "a.csv", "b.csv", "--samples", "inf"], "expected a finite number"),
        (["compare", "a.csv", "b.csv", "--samples", "nan"], "expected a finite number"),
        (["demo", "--samples", "1e300"], "expected at most 1e12 samples"),
        (["demo", "--seed", str(2**70)], "expected a seed in [0, 2**63)"),
        (["demo", "--seed", "2**70"], "expected a whole number, got '2**70'"),
        (["demo", "--tol", "nan"], "expected a finite number >= 0"),
    ],
)
def test_extreme_arguments_are_one_line_usage_errors(capsys, argv, match):
    # issue 16, "The command": no traceback, no "internal error", exit 2
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and match in err
    assert "Traceback" not in err and "internal error" not in err


def test_unreadable_mixture_files_are_one_line_data_errors(tmp_path, capsys):
    # issue 16: a deeply nested JSON and a truncated .npz name their problem, exit 1
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    import jax.numpy as jnp

    from gmmjax import GaussianMixture, save_mixture

    save_mixture(GaussianMixture(jnp.ones(1), jnp.zeros(1), scale=jnp.ones(1)), tmp_path / "m.npz")
    raw = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) // 2])
    for name, match in (("deep.json", "nested too deeply"), ("t.npz", "truncated or corrupt")):
        f = str(tmp_path / name)
        code, _, err = _main(capsys, "divergence", f, f)
        assert code == 1 and match in err, err
        assert err.count("\n") == 1 and "internal error" not in err
