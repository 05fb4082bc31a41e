"""Sphinx configuration for the smtpclient documentation."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import smtpclient

project = "smtpclient"
author = "The smtpclient developers"
copyright = "2026, The smtpclient developers"
release = smtpclient.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
intersphinx_mapping = {"python": ("https://docs.python.org/3", None)}
# The build must work offline (CI has no internet); intersphinx just warns
# when it cannot fetch, so it stays off unless asked for.
if not os.environ.get("SMTPCLIENT_DOCS_ONLINE"):
    intersphinx_mapping = {}
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "smtpclient"
