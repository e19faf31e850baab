"""Sphinx configuration for the gmmjax documentation site.

Sphinx (autodoc + napoleon) because the docstrings are Google style with
reStructuredText roles (:func:, :class:, ``literals``), which Sphinx renders natively;
the prose pages are Markdown through MyST, so README sections are shared, not copied.
Built in CI with warnings as errors: ``sphinx-build -W --keep-going -b html docs <out>``.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import gmmjax  # noqa: E402

project = "gmmjax"
author = "The gmmjax authors"
copyright = "2026, The gmmjax authors"
release = gmmjax.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields, not duplicate object entries
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
html_theme = "furo"
html_title = f"gmmjax {release}"
exclude_patterns = ["_build"]
# README sections are included with their relative links to repository files
# (benchmarks/RESULTS.md, examples/); those are not pages of this site.
suppress_warnings = ["myst.xref_missing"]
