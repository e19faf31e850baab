"""Parsing the ``gmmjax`` command line and running a subcommand (:func:`main`)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback

from gmmjax.cli.data import DataError, UsageError

__all__ = ["build_parser", "main"]


# ------------------------------------------------------------------------- parsing
_MAX_COUNT = 10**12  # more samples than any run could draw (a typo guard, not a limit)


def _count(text: str) -> int:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number like 100000 or 1e6, got {text!r}"
        ) from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number of samples, got {text!r}")
    if not (v >= 1 and v == int(v)):
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    if v > _MAX_COUNT:
        raise argparse.ArgumentTypeError(f"expected at most 1e12 samples, got {text!r}")
    return int(v)


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, 2**63), got {text!r}")
    return v


def _nonnegative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return v


def _fit_em_default(name: str):
    """The command uses the library's defaults, so the two cannot disagree."""
    import inspect

    from gmmjax.fit import fit_em

    return inspect.signature(fit_em).parameters[name].default


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _common() -> argparse.ArgumentParser:
    c = argparse.ArgumentParser(add_help=False)
    g = c.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress or notes")
    g.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    g.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    return c


def _fit_options(sp: argparse.ArgumentParser, k_required: bool, column: bool = True) -> None:
    g = sp.add_argument_group("fitting (EM)")
    g.add_argument(
        "-k",
        "--components",
        type=_positive_int,
        required=k_required,
        default=None if k_required else 3,
        help="mixture components (required)" if k_required else "mixture components (default 3)",
    )
    g.add_argument(
        "--covariance",
        default="full",
        choices=("full", "tied", "diag", "spherical"),
        help="covariance type (default full; 1-D data always fit univariate)",
    )
    max_iter = _fit_em_default("max_iter")
    g.add_argument(
        "--max-iter",
        type=_positive_int,
        default=max_iter,
        help=f"most EM iterations (default {max_iter}, fit_em's; EM stops at --tol first)",
    )
    g.add_argument("--n-init", type=_positive_int, default=3, help="EM restarts (default 3)")
    tol = _fit_em_default("tol")
    g.add_argument(
        "--tol",
        type=_nonnegative,
        default=tol,
        help=f"EM stops when the mean log-likelihood per point gains less (default {tol:g}, "
        "fit_em's)",
    )
    g.add_argument("--reg-covar", type=_nonnegative, default=1e-6, help="added to covariances")
    if not column:
        return
    g.add_argument(
        "--column",
        default=None,
        help="CSV columns to use: names or 0-based indices, comma separated",
    )


def _mc_options(sp: argparse.ArgumentParser, default_samples: int, kind: bool) -> None:
    g = sp.add_argument_group("divergences")
    if kind:
        g.add_argument(
            "--kind",
            default="all",
            choices=("kl", "js", "all"),
            help="which divergences (default all)",
        )
    g.add_argument(
        "--samples",
        type=_count,
        default=default_samples,
        help=f"Monte Carlo samples per estimate (default {default_samples:g})",
    )
    g.add_argument(
        "--method",
        default=None,
        help="Monte Carlo sampling plan: iid, stratified, antithetic or qmc (default qmc)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``gmmjax`` command."""
    from gmmjax import __version__

    common = _common()
    parser = argparse.ArgumentParser(
        prog="gmmjax",
        description="Gaussian mixtures in JAX: fit them and measure KL / JS divergences.",
        epilog="Exit status: 0 ok, 1 bad data, 2 bad usage. File format: docs/guide/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"gmmjax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = sub.add_parser("demo", parents=[common], help="end-to-end demo on built-in data")
    d.add_argument("--quick", action="store_true", help="10x less data and samples")
    d.add_argument("--plot", default="gmmjax_demo.png", help="figure path (gmmjax_demo.png)")
    d.add_argument("--no-plot", action="store_true", help="do not write the figure")
    _fit_options(d, k_required=False, column=False)
    _mc_options(d, 1_000_000, kind=False)

    c = sub.add_parser("compare", parents=[common], help="fit two data sets and compare them")
    c.add_argument("a", help="first data set (.csv or .npy)")
    c.add_argument("b", help="second data set (.csv or .npy)")
    _fit_options(c, k_required=False)
    _mc_options(c, 1_000_000, kind=True)
    c.add_argument("--plot", default=None, help="write a figure of both fits (1-D or 2-D)")
    c.add_argument(
        "--save",
        nargs=2,
        metavar=("A_OUT", "B_OUT"),
        default=None,
        help="also save both mixtures (.json or .npz)",
    )

    f = sub.add_parser("fit", parents=[common], help="fit a mixture to data and save it")
    f.add_argument("data", help="data set (.csv or .npy)")
    f.add_argument("-o", "--output", required=True, help="mixture file (.json or .npz)")
    _fit_options(f, k_required=True)

    v = sub.add_parser("divergence", parents=[common], help="divergences between saved mixtures")
    v.add_argument("p", help="first mixture (.json or .npz)")
    v.add_argument("q", help="second mixture (.json or .npz)")
    _mc_options(v, 1_000_000, kind=True)
    return parser


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg


def _enable_compilation_cache() -> None:
    """Keep compiled programs on disk so later runs skip most of JAX's compile time.

    The cache lives in ``$GMMJAX_CACHE_DIR`` (default ``~/.cache/gmmjax/jax``); set
    ``GMMJAX_CACHE_DIR=off`` to disable it. A ``JAX_COMPILATION_CACHE_DIR`` already in
    the environment wins (JAX reads it itself).
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    path = os.environ.get("GMMJAX_CACHE_DIR")
    if path is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "gmmjax", "jax")
    if path.lower() in ("", "0", "off", "none"):
        return
    import jax

    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return  # an unwritable cache location only costs time
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 1 bad data, 2 bad usage).

    Args:
      argv: the arguments (default ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 on bad usage
    prog = f"gmmjax {args.command}"
    try:
        _enable_compilation_cache()
        from gmmjax.cli.commands import COMMANDS

        return COMMANDS[args.command](args)
    except UsageError as e:
        if args.debug:
            traceback.print_exc()
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except ImportError as e:  # an optional dependency (matplotlib for --plot)
        if args.debug:
            traceback.print_exc()
        print(f"{prog}: error: {_one_line(e)}; pip install 'gmmjax[plot]'", file=sys.stderr)
        return 1
    except (DataError, ValueError, OSError) as e:
        # bad data: unreadable files, schema violations, failed fits
        if args.debug:
            traceback.print_exc()
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line unless --debug
        if args.debug:
            traceback.print_exc()
        print(
            f"{prog}: internal error: {type(e).__name__}: {_one_line(e)} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
