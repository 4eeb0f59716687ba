"""Sphinx configuration of the sklearn-walloc documentation.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (offline). Links to
the scikit-learn, NumPy, PyTorch and PyWavelets docs (intersphinx) need the
network: set ``WALLOC_DOCS_INTERSPHINX=1`` to enable them. The gallery runs every
``examples/plot_*.py``; ``WALLOC_DOCS_QUICK=1`` makes the examples use fewer data
(the CI build sets it).
"""

import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))

from _build_helpers import write_api_lists, write_dataflow_figure  # noqa: E402

import sklearn_walloc  # noqa: E402

project = "sklearn-walloc"
author = "sklearn-walloc developers"
copyright = "sklearn-walloc developers"
version = release = sklearn_walloc.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_templates", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# --------------------------------------------------------------------- API
autosummary_generate = True
autodoc_default_options = {}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
write_api_lists(DOCS / "_generated")

# ------------------------------------------------------------- Markdown pages
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3


def _repo_links(app, docname, source):
    """Repository files are not pages: links to them become their path."""
    source[0] = re.sub(
        r"\[([^\]]*)\]\(\.\./(benchmarks/results/[^)]+\.(?:md|csv|json))\)",
        lambda m: m.group(1) if "`" in m.group(1) else f"`{m.group(2)}`",
        source[0],
    )


# -------------------------------------------------------------------- gallery
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "doc_module": ("sklearn_walloc",),
    "backreferences_dir": "_generated/backreferences",
}

# ---------------------------------------------------------------- intersphinx
# Off by default so that ``sphinx -W`` passes without network access.
intersphinx_mapping = {}
if os.environ.get("WALLOC_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "pywt": ("https://pywavelets.readthedocs.io/en/latest", None),
    }

# ----------------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-walloc {release}"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
}
html_sidebars = {"index": []}


def setup(app):
    write_dataflow_figure(DOCS / "_generated" / "dataflow.svg")
    app.connect("source-read", _repo_links)
