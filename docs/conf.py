"""Sphinx configuration of the miniff documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors). Notebooks in ``tutorial/`` (through
the ``docs/tutorials`` link) and the gallery page are executed by myst-nb during the build, in a temporary folder
with a time limit per cell, so the pages show their printed results and figures; an error in a notebook fails
the build.
"""

import importlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Document the installed miniff; fall back to the source tree (in-place build) when it is not installed, for
# this process and for the notebook kernels it starts.
try:
    importlib.import_module("miniff")
except ImportError:
    sys.path.insert(0, ROOT)
import miniff  # noqa: E402

if os.path.dirname(os.path.dirname(os.path.abspath(miniff.__file__))) == ROOT:
    # documenting the source tree: the notebook kernels must import the same miniff
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)

project = "miniff"
author = "the miniff developers"
copyright = "the miniff developers"
release = miniff.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "tutorials/README.md"]
root_doc = "index"

# Notebooks and the gallery are executed during the build (tests/integration checks their outputs); the kernels
# draw figures inline, so an MPLBACKEND set for the build itself must not reach them.
os.environ.pop("MPLBACKEND", None)
nb_execution_mode = "force"
nb_execution_timeout = 300  # s per cell
nb_execution_in_temp = True
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# Types are shown as written ("ndarray of shape (n_atoms, 3)"), not turned into cross-references.
napoleon_use_param = False
napoleon_use_keyword = False
# "Attributes" sections become fields, so they do not clash with attributes autodoc documents itself.
napoleon_use_ivar = True

# Relative links in the included benchmarks README point at files of the repository, not at documents.
suppress_warnings = ["myst.xref_missing"]

html_theme = "alabaster"
html_title = f"miniff {release}"


def _append_benchmarks_readme(app, docname, source):
    """Append ``benchmarks/README.md`` (headings one level down) to the benchmarks page when it exists."""
    if docname != "benchmarks":
        return
    path = os.path.join(ROOT, "benchmarks", "README.md")
    if not os.path.exists(path):
        source[0] += "\n\n*The benchmark results (`benchmarks/README.md`) are not in this copy of miniff.*\n"
        return
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and re.match(r"#+ ", line):
            line = "#" + line
        lines.append(line)
    source[0] += "\n\n" + "\n".join(lines) + "\n"


def setup(app):
    app.connect("source-read", _append_benchmarks_readme)
