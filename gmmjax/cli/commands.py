"""The subcommands of ``gmmjax`` (see :mod:`gmmjax.cli` for the parser and exit codes).

Each ``_cmd_*`` takes the parsed arguments, prints its report (a table, or one JSON
object with ``--json``) and returns the exit status; errors are raised as
:class:`~gmmjax.cli.data.DataError` (exit 1) or :class:`~gmmjax.cli.data.UsageError`
(exit 2) and turned into one line by :func:`gmmjax.cli.main`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

from gmmjax.cli.data import DataError, UsageError

__all__ = ["COMMANDS"]


def _note(args, msg: str) -> None:
    if not args.quiet and not args.json:
        print(msg, file=sys.stderr)


def _progress(args) -> bool:
    return not args.quiet


def _check_method(args) -> None:
    if args.method is None:
        return
    from gmmjax.cli.report import estimator_methods

    methods = estimator_methods()
    if args.method not in methods:
        raise UsageError(f"--method must be one of {', '.join(methods)}; got {args.method!r}")


_FIGURE_TYPES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


def _check_plot_path(path: str | None, dim: int | None = None) -> None:
    """Refuse a figure we could not write before any fitting starts."""
    if path is None:
        return
    if os.path.splitext(path)[1].lower() not in _FIGURE_TYPES:
        raise UsageError(f"--plot must end in one of {', '.join(_FIGURE_TYPES)}, got {path!r}")
    if dim is not None and dim > 2:
        raise UsageError(f"--plot draws 1-D or 2-D data; these data are {dim}-D")


def _check_output_path(path: str, flag: str) -> None:
    if os.path.splitext(path)[1].lower() not in (".json", ".npz"):
        raise UsageError(f"{flag} must end in .json or .npz, got {path!r}")


def _fit(args, x, label: str, key, pad_to: int):
    from gmmjax.cli.report import fit_report

    try:
        return fit_report(
            x,
            args.components,
            key=key,
            covariance_type=args.covariance,
            max_iter=args.max_iter,
            tol=args.tol,
            n_init=args.n_init,
            reg_covar=args.reg_covar,
            label=label,
            progress=_progress(args),
            pad_to=pad_to,
        )
    except ValueError as e:
        raise DataError(f"fitting {label}: {e}") from e


def _plot_fits(path: str, mixtures, datas, names, title: str, labels=None) -> None:
    """Both fits on one 1-D panel, or two 2-D panels with the same limits."""
    from gmmjax.plot import _figure, contour_extent, plot_contours_2d, plot_density_1d

    d = mixtures[0].dim
    if mixtures[0].covariance_type == "univariate" or d == 1:
        fig, ax = _figure(None, (8, 4.5))
        for m, x, n, col in zip(mixtures, datas, names, ("C0", "C1"), strict=True):
            plot_density_1d(m, x, ax=ax, label=n, color=col)
        if labels:
            ax.set_xlabel(labels[0])
        ax.set_title(title, fontsize=9)
    elif d == 2:
        fig, axes = _figure(None, (11, 5), ncols=2)
        extent = contour_extent(mixtures, datas)  # one extent: the panels compare
        for ax, m, x, n in zip(axes, mixtures, datas, names, strict=True):
            plot_contours_2d(m, x, ax=ax, extent=extent, labels=labels or ("x1", "x2"))
            ax.set_title(f"{n}: log p(x)")
        fig.suptitle(title, fontsize=9)
    else:  # refused earlier by _check_plot_path
        raise UsageError(f"--plot draws 1-D or 2-D data; these data are {d}-D")
    fig.savefig(path, dpi=110)


def _divergence_title(rep, a: str = "a", b: str = "b") -> str:
    """The estimates of a report as a figure title: ``KL(a‖b) = v ± se, ...``."""
    from gmmjax.cli.report import plus_minus

    parts = []
    for key in ("kl_pq", "kl_qp", "js"):
        r = rep["estimates"].get(key)
        if r is not None:
            parts.append("{} = {} ± {}".format(r["label"], *plus_minus(r["value"], r["stderr"])))
    return ",  ".join(parts) + " nats"


def _finite(obj):
    """Replace NaN and ±inf (not valid JSON) by None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _emit(args, payload: dict, text: str) -> None:
    if args.json:
        print(json.dumps(_finite(payload), indent=2, allow_nan=False))
    else:
        print(text)


def _cmd_demo(args) -> int:
    import jax

    from gmmjax.cli.data import DEMO_SHIFT, demo_data
    from gmmjax.cli.report import (
        divergence_report,
        format_fit,
        format_report,
        padded_size,
    )
    from gmmjax.io import mixture_to_dict

    _check_method(args)
    _check_plot_path(None if args.no_plot else args.plot)
    t0 = time.perf_counter()
    scale = 0.1 if args.quick else 1.0
    samples = min(args.samples, 20_000) if args.quick else args.samples
    xa = demo_data(args.seed, scale=scale)
    xb = demo_data(args.seed + 1, shift=DEMO_SHIFT, scale=scale)
    key = jax.random.key(args.seed)
    ka, kb, kd = jax.random.split(key, 3)
    pad = padded_size(len(xa), len(xb))
    pa, sa = _fit(args, xa, "a", ka, pad)
    pb, sb = _fit(args, xb, "b", kb, pad)
    rep = divergence_report(
        pa,
        pb,
        kinds="all",
        key=kd,
        num_samples=samples,
        method=args.method,
        progress=_progress(args),
        names=("a", "b"),
    )
    payload = {
        "data": {
            "a": "2000/5000/10000 draws of N(-0.5,0.2²), N(-0.1,0.07²), N(0.2,0.13²)",
            "b": f"the same with every mean shifted by {DEMO_SHIFT:+g}",
            "scale": scale,
        },
        "fits": {"a": sa, "b": sb},
        "mixtures": {"a": mixture_to_dict(pa), "b": mixture_to_dict(pb)},
        **rep,
    }
    lines = [
        "gmmjax demo: (a) 17,000 points from three overlapping Gaussians, N(-0.5, 0.2²), "
        "N(-0.1, 0.07²), N(0.2, 0.13²)",
        f"  in proportions 2:5:10; (b) the same with every mean shifted by {DEMO_SHIFT:+g}"
        + (" (--quick: a tenth of the points)" if args.quick else ""),
        format_fit("a", sa),
        format_fit("b", sb),
        "",
        format_report(rep, ("a", "b")),
    ]
    if not args.no_plot:
        title = _divergence_title(rep)
        try:
            _plot_fits(args.plot, (pa, pb), (xa, xb), ("a", "b"), title)
        except ImportError as e:
            _note(args, f"note: no figure written: {e}")
        else:
            payload["figure"] = args.plot
            lines.append(f"figure: {args.plot}")
    payload["seconds"] = round(time.perf_counter() - t0, 2)
    lines.append(f"done in {payload['seconds']:.1f} s")
    _emit(args, payload, "\n".join(lines))
    return 0


def _cmd_compare(args) -> int:
    import jax

    from gmmjax.cli.data import read_data
    from gmmjax.cli.report import divergence_report, format_fit, format_report, padded_size
    from gmmjax.io import mixture_to_dict

    _check_method(args)
    if args.save:
        for p in args.save:
            _check_output_path(p, "--save")
    xa = read_data(args.a, args.column)
    xb = read_data(args.b, args.column)
    if xa.shape[1:] != xb.shape[1:]:
        da, db = (1 if x.ndim == 1 else x.shape[1] for x in (xa, xb))
        raise DataError(
            f"{args.a} has {da} column(s) but {args.b} has {db}; choose the same columns "
            "with --column"
        )
    _check_plot_path(args.plot, 1 if xa.ndim == 1 else xa.shape[1])
    ka, kb, kd = jax.random.split(jax.random.key(args.seed), 3)
    pad = padded_size(len(xa), len(xb))
    pa, sa = _fit(args, xa, args.a, ka, pad)
    pb, sb = _fit(args, xb, args.b, kb, pad)
    rep = divergence_report(
        pa,
        pb,
        kinds=args.kind,
        key=kd,
        num_samples=args.samples,
        method=args.method,
        progress=_progress(args),
        names=("a", "b"),
    )
    payload = {
        "a": args.a,
        "b": args.b,
        "fits": {"a": sa, "b": sb},
        "mixtures": {"a": mixture_to_dict(pa), "b": mixture_to_dict(pb)},
        **rep,
    }
    lines = [format_fit("a", sa), format_fit("b", sb), "", format_report(rep, ("a", "b"))]
    lines.insert(0, f"a = {args.a}, b = {args.b}")
    if args.save:
        from gmmjax.io import save_mixture

        for m, path in zip((pa, pb), args.save, strict=True):
            save_mixture(m, path)
        payload["saved"] = list(args.save)
        lines.append(f"saved: {', '.join(args.save)}")
    if args.plot:
        from gmmjax.cli.data import column_names

        title = f"a = {args.a}, b = {args.b}\n" + _divergence_title(rep)
        labels = column_names(args.a, args.column)
        _plot_fits(args.plot, (pa, pb), (xa, xb), ("a", "b"), title, labels)
        payload["figure"] = args.plot
        lines.append(f"figure: {args.plot}")
    _emit(args, payload, "\n".join(lines))
    return 0


def _cmd_fit(args) -> int:
    import jax

    from gmmjax.cli.data import read_data
    from gmmjax.cli.report import format_fit, padded_size
    from gmmjax.io import save_mixture

    _check_output_path(args.output, "-o/--output")
    x = read_data(args.data, args.column)
    m, s = _fit(args, x, args.data, jax.random.key(args.seed), padded_size(len(x)))
    save_mixture(m, args.output)
    payload = {"data": args.data, "output": args.output, "fit": s}
    _emit(args, payload, format_fit(args.data, s) + f"\nsaved: {args.output}")
    return 0


def _cmd_divergence(args) -> int:
    import jax

    from gmmjax.cli.report import divergence_report, format_report
    from gmmjax.io import load_mixture

    _check_method(args)
    p, q = load_mixture(args.p), load_mixture(args.q)
    if p.event_shape != q.event_shape:
        raise DataError(
            f"{args.p} is a mixture over {p.dim}-D points but {args.q} over {q.dim}-D points"
        )
    if p.batch_shape or q.batch_shape:
        raise DataError("divergence compares two single mixtures; these files hold batches")
    rep = divergence_report(
        p,
        q,
        kinds=args.kind,
        key=jax.random.key(args.seed),
        num_samples=args.samples,
        method=args.method,
        progress=_progress(args),
        names=("p", "q"),
    )
    payload = {"p": args.p, "q": args.q, **rep}
    _emit(args, payload, f"p = {args.p}, q = {args.q}\n" + format_report(rep, ("p", "q")))
    return 0


COMMANDS = {
    "demo": _cmd_demo,
    "compare": _cmd_compare,
    "fit": _cmd_fit,
    "divergence": _cmd_divergence,
}
