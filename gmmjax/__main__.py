"""``python -m gmmjax``: the same as the ``gmmjax`` command (see :mod:`gmmjax.cli`)."""

import sys

from gmmjax.cli import main

if __name__ == "__main__":
    sys.exit(main())
