"""The numbers of the ``gmmjax`` command: fits, Monte Carlo divergences, bounds, and their report.

The Monte Carlo estimators come from :mod:`gmmjax.montecarlo.divergences`, the deterministic
bounds and approximations from :mod:`gmmjax.deterministic.bounds` and the closed forms from
:mod:`gmmjax.deterministic.closed_form`. Large sample counts run in equal chunks (one compiled
shape) whose estimates are combined exactly, so memory stays bounded and a
progress bar can be drawn between chunks.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import jax
import numpy as np

from gmmjax.cli.data import Progress

__all__ = ["CHUNK", "divergence_report", "fit_report", "format_report"]

# Samples per Monte Carlo chunk: large enough to amortize dispatch, small enough to
# bound memory (a few hundred MB for K·D up to ~100) and to update the progress bar.
CHUNK = 1 << 18

# (key, label with {a} and {b} for the two names, estimator names in
# gmmjax.montecarlo.divergences (first found is used), direction). Jeffreys is not
# sampled: it is KL(a‖b) + KL(b‖a) from the two rows above (see divergence_report).
_MC_TABLE = {
    "kl": [
        ("kl_pq", "KL({a}‖{b})", ("kl_estimate",), "pq"),
        ("kl_qp", "KL({b}‖{a})", ("kl_estimate",), "qp"),
    ],
    "js": [("js", "JS({a},{b})", ("js_estimate",), "pq")],
    "extra": [
        ("squared_hellinger", "squared Hellinger", ("squared_hellinger_estimate",), "pq"),
        ("total_variation", "total variation", ("total_variation_estimate", "tv_estimate"), "pq"),
    ],
}


def _divergences_module():
    from gmmjax.montecarlo import divergences  # imported lazily: only the estimates need it

    return divergences


@functools.cache
def _compiled(fn):
    """``fn`` under one ``jit`` (mixtures are pytrees; sample count and method static).

    A whole estimator compiled as one program starts several times faster than the
    same estimator run op by op on its first call, which dominates a CLI run.
    """
    return jax.jit(fn, static_argnames=("num_samples", "method"))


def estimator_methods() -> tuple[str, ...]:
    """The ``method=`` values the Monte Carlo estimators accept."""
    from gmmjax.montecarlo.sampling import METHODS

    return tuple(METHODS)


def chunk_sizes(num_samples: int) -> list[int]:
    """``num_samples`` split into ``⌈N / CHUNK⌉`` chunks that differ by at most one point.

    Example:
      >>> sum(chunk_sizes(1_000_001)) == 1_000_001
      True
    """
    n_chunks = max(1, math.ceil(num_samples / CHUNK))
    base, rem = divmod(num_samples, n_chunks)
    return [base + 1] * rem + [base] * (n_chunks - rem)


def chunked_estimate(fn, p, q, key, num_samples: int, *, label: str, progress: bool, **kw):
    """Run ``fn(p, q, key, num_samples=n, **kw) -> Estimate`` in chunks of at most :data:`CHUNK`.

    Chunk ``i`` uses ``fold_in(key, i)``: the chunks are independent and unbiased, so

        value = Σ_i n_i v_i / N,   stderr = √(Σ_i n_i² s_i²) / N.

    The chunks hold exactly ``num_samples`` points (sizes differ by at most one, so at
    most two compiled shapes). The progress bar shows the running estimate.

    Returns:
      ``{"value", "stderr", "num_samples", "seconds"}`` as Python numbers.
    """
    sizes = chunk_sizes(num_samples)
    bar = Progress(label, num_samples, enabled=progress, unit="sample")
    t0 = time.perf_counter()
    vals, errs, ns = [], [], []
    for i, size in enumerate(sizes):  # host loop over chunks, each one compiled call
        k = key if len(sizes) == 1 else jax.random.fold_in(key, i)
        with bar.ticking():  # the first call compiles: keep the elapsed time moving
            est = fn(p, q, k, num_samples=size, **kw)
        vals.append(float(est.value))
        errs.append(float(est.stderr))
        ns.append(int(est.num_samples))
        n_a = np.array(ns, float)
        run_v = float(np.sum(n_a * vals) / n_a.sum())
        run_e = float(np.sqrt(np.sum((n_a * errs) ** 2)) / n_a.sum())
        bar.step(size, note="{} ± {}".format(*plus_minus(run_v, run_e)))
    bar.close()
    ns_a, v, e = np.array(ns, float), np.array(vals), np.array(errs)
    total = ns_a.sum()
    return {
        "value": float(np.sum(ns_a * v) / total),
        "stderr": float(np.sqrt(np.sum((ns_a * e) ** 2)) / total),
        "num_samples": int(total),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _bounds_dict(b) -> dict[str, float]:
    return {name: float(v) for name, v in b._asdict().items()}


@jax.jit
def _closed_forms(p, q):
    from gmmjax.deterministic.bounds import kl_bounds
    from gmmjax.deterministic.closed_form import cauchy_schwarz_divergence, squared_l2_distance

    return {
        "kl_pq": kl_bounds(p, q),
        "kl_qp": kl_bounds(q, p),
        "cauchy_schwarz": cauchy_schwarz_divergence(p, q),
        "squared_l2": squared_l2_distance(p, q),
    }


def divergence_report(
    p,
    q,
    *,
    kinds: str,
    key,
    num_samples: int,
    method: str | None,
    progress: bool,
    names: tuple[str, str] = ("p", "q"),
) -> dict[str, Any]:
    """Every divergence the command reports for ``p`` and ``q``.

    Args:
      p: first mixture.
      q: second mixture.
      kinds: ``"kl"``, ``"js"`` or ``"all"``.
      key: PRNG key.
      num_samples: Monte Carlo samples per estimate.
      method: estimator ``method=`` (None: the module's default).
      progress: draw progress bars (stderr, TTY only).
      names: what ``p`` and ``q`` are called in the labels (the table, the JSON and
        the progress bars use the same labels).

    Returns:
      ``{"estimates": {key: {label, value, stderr, num_samples, seconds}},
      "bounds": {"kl_pq": {...}, "kl_qp": {...}}, "closed_form": {...}}``.
    """
    mod = _divergences_module()
    rows = list(_MC_TABLE["kl"] if kinds in ("kl", "all") else [])
    rows += _MC_TABLE["js"] if kinds in ("js", "all") else []
    rows += _MC_TABLE["extra"] if kinds == "all" else []
    out: dict[str, Any] = {"estimates": {}}
    kw = {} if method is None else {"method": method}
    a_name, b_name = names
    for i, (name, label, fnames, direction) in enumerate(rows):
        label = label.format(a=a_name, b=b_name)
        fn = next((getattr(mod, f) for f in fnames if hasattr(mod, f)), None)
        if fn is None:  # an optional extra this version of gmmjax.montecarlo.divergences lacks
            continue
        fn = _compiled(fn)
        a, b = (p, q) if direction == "pq" else (q, p)
        r = chunked_estimate(
            fn,
            a,
            b,
            jax.random.fold_in(key, i),
            num_samples,
            label=label,
            progress=progress,
            **kw,
        )
        out["estimates"][name] = {"label": label, **r}
        if name == "kl_qp" and kinds == "all":
            out["estimates"]["jeffreys"] = _jeffreys(out["estimates"], a_name, b_name)
    if kinds in ("kl", "all"):
        closed = _closed_forms(p, q)  # one compiled program for every deterministic number
        out["bounds"] = {
            "kl_pq": _bounds_dict(closed["kl_pq"]),
            "kl_qp": _bounds_dict(closed["kl_qp"]),
        }
        if kinds == "all":
            out["closed_form"] = {
                "cauchy_schwarz": float(closed["cauchy_schwarz"]),
                "squared_l2": float(closed["squared_l2"]),
            }
    return out


def _jeffreys(est: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    """Jeffreys = KL(a‖b) + KL(b‖a) from the two KL estimates (independent draws).

    The sum of two independent unbiased estimates is unbiased and its standard error
    is √(s₁² + s₂²): no third run. ``num_samples`` counts the points per side, as
    :func:`gmmjax.jeffreys_estimate` does.
    """
    ab, ba = est["kl_pq"], est["kl_qp"]
    return {
        "label": f"Jeffreys KL({a}‖{b})+KL({b}‖{a})",
        "value": ab["value"] + ba["value"],
        "stderr": math.hypot(ab["stderr"], ba["stderr"]),
        "num_samples": ab["num_samples"],
        "seconds": 0.0,
    }


def padded_size(*sizes: int, multiple: int = 256) -> int:
    """The common row count the data sets are padded to before fitting.

    EM compiles once per data shape (seconds on a CPU); padding every data set of a
    run to one size, a multiple of ``multiple``, with zero-weight rows lets them
    share that compilation (and the persistent cache across runs).
    """
    return -(-max(sizes) // multiple) * multiple


def fit_report(
    x,
    k: int,
    *,
    key,
    covariance_type: str,
    max_iter: int,
    tol: float,
    n_init: int,
    reg_covar: float,
    label: str,
    progress: bool,
    pad_to: int | None = None,
):
    """Fit a mixture by EM; returns ``(mixture, summary dict)``.

    With ``pad_to`` the data are padded with zero-weight copies of their first row
    (an exact no-op for weighted EM) to share one compiled shape.
    """
    from gmmjax.fit import fit_em

    n = x.shape[0]
    weight = None
    if pad_to is not None and pad_to > n:
        x = np.concatenate([x, np.repeat(x[:1], pad_to - n, axis=0)])
        weight = np.concatenate([np.ones(n), np.zeros(pad_to - n)])
    # fit_em is one compiled program (restarts vmapped, iterations in a while_loop), so
    # the bar ticks with the elapsed time while it runs and then reports the iterations
    bar = Progress(f"fitting {label} (EM, K={k})", None, enabled=progress)
    t0 = time.perf_counter()
    with bar.ticking():
        res = fit_em(
            x,
            k,
            key=key,
            sample_weight=weight,
            covariance_type=covariance_type,
            max_iter=max_iter,
            tol=tol,
            n_init=n_init,
            reg_covar=reg_covar,
        )
    bar.note(f"{int(res.n_iter)} iterations" + ("" if res.converged else ", not converged"))
    bar.close()
    m = res.mixture
    summary = {
        "points": int(n),
        "dim": int(m.dim),
        "n_components": int(m.n_components),
        "covariance_type": m.covariance_type,
        "log_likelihood_per_point": float(res.log_likelihood),
        "n_iter": int(res.n_iter),
        "converged": bool(res.converged),
        "seconds": round(time.perf_counter() - t0, 3),
        "weights": np.asarray(m.weights, float).round(6).tolist(),
    }
    return m, summary


# ------------------------------------------------------------------------ formatting
def _num(v: float) -> str:
    return f"{v:.5g}"


def plus_minus(value: float, stderr: float) -> tuple[str, str]:
    """``value`` rounded to the second significant digit of ``stderr``, and ``stderr``."""
    if not (math.isfinite(stderr) and stderr > 0):
        return _num(value), f"{stderr:.2g}"
    digits = min(max(0, 1 - math.floor(math.log10(stderr))), 12)
    return f"{value:.{digits}f}", f"{stderr:.2g}"


def format_report(rep: dict[str, Any], names: tuple[str, str]) -> str:
    """The human-readable table of :func:`divergence_report` (p, q named ``names``)."""
    a, b = names
    lines = []
    est = rep.get("estimates", {})
    if est:
        lines.append(f"{'Monte Carlo estimate (nats)':<30} {'value':>12} {'± stderr':<11} {'N':>9}")
        for r in est.values():
            v, e = plus_minus(r["value"], r["stderr"])
            label = r["label"]
            lines.append(f"{label:<30} {v:>12} ± {e:<9} {r['num_samples']:>9}")
        lines.append(
            "  Trust these: each is unbiased and |value - truth| <= 3·stderr about 99% of"
            " the time; N = samples per side."
        )
        if "js" in est:
            lines.append("  (JS in nats with the ½ convention: 0 ≤ JS ≤ log 2 ≈ 0.6931)")
    for key, lab in (("kl_pq", f"KL({a}‖{b})"), ("kl_qp", f"KL({b}‖{a})")):
        bd = rep.get("bounds", {}).get(key)
        if bd is None:
            continue
        lines.append(
            f"{lab}: guaranteed bounds [{_num(bd['lower'])}, {_num(bd['upper'])}]\n"
            f"  approximations: variational {_num(bd['variational'])}, "
            f"matched {_num(bd['matched'])}, product {_num(bd['product'])}, "
            f"unscented {_num(bd['unscented'])}, moment-matched Gaussian {_num(bd['gaussian'])}"
        )
    if rep.get("bounds"):
        lines += [
            "  Guaranteed bounds: KL is certainly inside, but the bracket is often wide; a "
            "check, not an estimate.",
            "  Approximations: deterministic, no error bar, can be off by a lot (unscented is "
            "usually closest); prefer the Monte Carlo value.",
        ]
    cf = rep.get("closed_form")
    if cf:
        lines.append(
            f"closed form: Cauchy–Schwarz {_num(cf['cauchy_schwarz'])}, "
            f"squared L2 {_num(cf['squared_l2'])}\n"
            "  (exact, but other divergences: not comparable with KL's numbers)"
        )
    return "\n".join(lines)


def format_fit(label: str, s: dict[str, Any]) -> str:
    """One line about a fit."""
    conv = "converged" if s["converged"] else "NOT converged (raise --max-iter)"
    return (
        f"{label}: {s['points']} points, D={s['dim']} -> K={s['n_components']} "
        f"({s['covariance_type']}), log-likelihood {s['log_likelihood_per_point']:.4f}/point, "
        f"{s['n_iter']} EM iterations, {conv}"
    )
