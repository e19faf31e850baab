"""The ``gmmjax`` command (also ``python -m gmmjax``).

Subcommands:

* ``gmmjax demo``: fits a built-in 1-D data set (three overlapping Gaussians) and a shifted copy,
  prints KL both ways and JS (value ± standard error) next to the guaranteed bounds
  and the deterministic approximations, and writes a figure.
* ``gmmjax compare a.csv b.csv -k 3``: fits a mixture to each data set (CSV or
  ``.npy``) and reports every divergence between them.
* ``gmmjax fit data.csv -k 3 -o model.json``: fits and saves a mixture
  (:mod:`gmmjax.io` format, ``.json`` or ``.npz``).
* ``gmmjax divergence p.json q.json --kind kl|js|all``: divergences between saved
  mixtures.

Exit status: 0 success, 2 bad usage (arguments), 1 bad data (unreadable or
malformed files, failed fits). Errors are one line on stderr; ``--debug`` adds
the traceback. ``--json`` prints one JSON object on stdout instead of the tables.
Progress goes to stderr, only when stderr is a terminal and ``--quiet`` is off.
"""

from gmmjax.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
