"""Data for the ``gmmjax`` command: reading CSV / ``.npy`` files, the demo data set, progress.

Everything here runs on the host (NumPy); errors are :class:`DataError`, which the
command reports as one line with exit status 1.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

import numpy as np

__all__ = ["DataError", "Progress", "UsageError", "column_names", "demo_data", "read_data"]

# The demo's 1-D data set, three overlapping Gaussians of different sizes (a classic test
# of "KL between two fitted GMMs"): (count, mean, standard deviation).
DEMO_COMPONENTS = ((2000, -0.5, 0.2), (5000, -0.1, 0.07), (10000, 0.2, 0.13))
# The second data set of the demo: the same components, every mean moved by this much.
DEMO_SHIFT = 0.1


class DataError(ValueError):
    """Bad input data (unreadable file, non-numeric values, wrong shape): exit status 1."""


class UsageError(Exception):
    """A bad combination of arguments: exit status 2."""


def demo_data(seed: int = 0, *, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """The demo's 1-D data set: a sample of three overlapping Gaussians of different sizes.

    2000, 5000 and 10000 draws from N(-0.5, 0.2²), N(-0.1, 0.07²) and N(0.2, 0.13²).

    Args:
      seed: NumPy random seed.
      shift: added to every component mean (the demo's second data set uses 0.1).
      scale: multiplies every count (``--quick`` uses 0.1).

    Returns:
      ``(N,)`` float64 samples, shuffled.

    Example:
      >>> demo_data(0).shape
      (17000,)
    """
    rng = np.random.default_rng(seed)
    parts = [
        rng.normal(mu + shift, sd, size=max(int(round(n * scale)), 1))
        for n, mu, sd in DEMO_COMPONENTS
    ]
    x = np.concatenate(parts)
    rng.shuffle(x)
    return x


def _select_columns(header: list[str] | None, ncols: int, columns: str | None, path: str):
    if columns is None:
        return list(range(ncols))
    picks = []
    for item in (c.strip() for c in columns.split(",")):
        if header is not None and item in header:
            picks.append(header.index(item))
            continue
        try:
            i = int(item)
        except ValueError:
            names = ", ".join(header) if header else "none (the file has no header)"
            raise DataError(f"{path}: no column named {item!r}; columns: {names}") from None
        if not -ncols <= i < ncols:
            raise DataError(f"{path}: column index {i} out of range for {ncols} column(s)")
        picks.append(i % ncols)
    return picks


def _read_csv(path: str, columns: str | None) -> np.ndarray:
    with open(path, encoding="utf-8-sig") as f:
        lines = [ln.strip() for ln in f]
    rows = [(i + 1, ln) for i, ln in enumerate(lines) if ln and not ln.startswith("#")]
    if not rows:
        raise DataError(f"{path}: the file holds no data")
    delim = "," if "," in rows[0][1] else None  # comma-separated, else whitespace
    split = lambda s: [c.strip() for c in s.split(delim)]  # noqa: E731
    header = None
    first = split(rows[0][1])
    try:
        [float(c) for c in first]
    except ValueError:
        header = [c.strip("\"'") for c in first]
        rows = rows[1:]
    if not rows:
        raise DataError(f"{path}: the file has a header but no data rows")
    ncols = len(header) if header is not None else len(first)
    picks = _select_columns(header, ncols, columns, path)
    out = np.empty((len(rows), len(picks)))
    for r, (lineno, text) in enumerate(rows):  # host-side parsing, one line at a time
        cells = split(text)
        if len(cells) != ncols:
            raise DataError(f"{path}, line {lineno}: expected {ncols} fields, got {len(cells)}")
        for j, c in enumerate(picks):
            try:
                out[r, j] = float(cells[c])
            except ValueError:
                raise DataError(
                    f"{path}, line {lineno}: {cells[c]!r} is not a number"
                    + (f" (column {header[c]!r})" if header else f" (column {c})")
                ) from None
    return out


def column_names(path: str, columns: str | None = None) -> list[str]:
    """The names of the columns :func:`read_data` returns (header names, else ``column i``).

    Example:
      >>> import os, pathlib, tempfile
      >>> f = os.path.join(tempfile.mkdtemp(), "d.csv")
      >>> _ = pathlib.Path(f).write_text("height,weight\\n1,2\\n3,4\\n")
      >>> column_names(f), column_names(f, "weight")
      (['height', 'weight'], ['weight'])
    """
    header = None
    if not path.lower().endswith(".npy"):
        try:
            with open(path, encoding="utf-8-sig") as f:
                first = next((ln.strip() for ln in f if ln.strip() and not ln.startswith("#")), "")
        except (OSError, UnicodeDecodeError):
            first = ""
        cells = [c.strip() for c in first.split("," if "," in first else None)]
        try:
            [float(c) for c in cells]
        except ValueError:
            header = [c.strip("\"'") for c in cells]
        ncols = len(cells)
    else:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
        ncols = 1 if x.ndim == 1 else x.shape[1]
    picks = _select_columns(header, ncols, columns, path)
    return [header[i] if header else f"column {i}" for i in picks]


def read_data(path: str, columns: str | None = None) -> np.ndarray:
    """Read a data set: CSV (comma or whitespace separated, optional header) or ``.npy``.

    Args:
      path: the file.
      columns: comma-separated column names or 0-based indices (CSV and 2-D ``.npy``);
        all columns by default.

    Returns:
      ``(N,)`` for one column, else ``(N, D)``, float64.

    Raises:
      DataError: unreadable file, non-numeric or non-finite values, ragged rows,
        unknown columns, or fewer than 2 rows.
    """
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if path.lower().endswith(".npy"):
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(f"{path}: not a readable .npy file ({e})") from None
        if x.dtype.kind not in "fiu" or x.ndim not in (1, 2):
            raise DataError(
                f"{path}: expected a 1-D or 2-D numeric array, got {x.ndim}-D of {x.dtype}"
            )
        x = x.astype(np.float64)
        if columns is not None:
            x2 = x.reshape(len(x), -1)
            x = x2[:, _select_columns(None, x2.shape[1], columns, path)]
    else:
        try:
            x = _read_csv(path, columns)
        except UnicodeDecodeError:
            raise DataError(f"{path}: not a text (CSV) file; use .csv or .npy") from None
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if not np.all(np.isfinite(x)):
        raise DataError(f"{path}: contains NaN or infinite values; remove or impute them")
    if len(x) < 2:
        raise DataError(f"{path}: need at least 2 rows of data, got {len(x)}")
    return x


class Progress:
    """A progress bar on stderr (``tqdm``), drawn only when stderr is a terminal.

    ``tqdm`` is already a dependency of NumPyro, so the bar costs no extra install; it
    handles terminal width, rates and the final line. With ``total=None`` the bar shows
    a count and the elapsed time; :meth:`ticking` keeps that time moving while one long
    call (a compiled EM fit) runs.

    Args:
      label: what is running.
      total: number of steps (None: unknown).
      enabled: False silences it (``--quiet``); it is also silent when stderr is not
        a TTY, so redirected output and logs stay clean.
      unit: what a step is.
    """

    def __init__(self, label: str, total: int | None, enabled: bool = True, unit: str = "it"):
        from tqdm import tqdm

        self.enabled = bool(enabled) and sys.stderr.isatty()
        fmt = None if total is not None else "{desc}: {elapsed}{postfix}"
        self.bar = tqdm(
            total=total,
            desc=label,
            unit=unit,
            file=sys.stderr,
            disable=not self.enabled,
            dynamic_ncols=True,
            bar_format=fmt,
            mininterval=0.1,
            unit_scale=total is not None and total >= 10_000,  # 1.00M, not 1000000
        )

    def step(self, n: int = 1, note: str | None = None) -> None:
        """Advance by ``n``; ``note`` is shown after the bar (e.g. the running estimate)."""
        if note is not None:
            self.bar.set_postfix_str(note, refresh=False)
        self.bar.update(n)

    def note(self, text: str) -> None:
        self.bar.set_postfix_str(text)

    @contextlib.contextmanager
    def ticking(self, every: float = 0.25):
        """Redraw (elapsed time) every ``every`` seconds while the body runs."""
        if not self.enabled:
            yield self
            return
        stop = threading.Event()

        def tick():
            while not stop.wait(every):
                self.bar.refresh()

        t = threading.Thread(target=tick, daemon=True)
        t.start()
        try:
            yield self
        finally:
            stop.set()
            t.join()

    def close(self) -> None:
        self.bar.close()
