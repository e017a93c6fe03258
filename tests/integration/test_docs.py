"""The Sphinx documentation builds without warnings and covers every public module and tutorial."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest
from support import REPO_ROOT

ROOT = REPO_ROOT
DOCS = ROOT / "docs"
PUBLIC_MODULES = ["kernel", "potentials", "ml", "ml_util", "presentation", "calculator", "io", "util", "units",
                  "numerical", "ewald"]



@pytest.fixture(scope="module")
def html(docs_build):
    return docs_build.html


def test_docs_build_without_warnings(html):
    for page in ["index", "install", "quickstart", "concepts", "tutorials", "gallery", "formats", "units",
                 "threading", "benchmarks", "api/index", "electrostatics", "many-elements"]:
        assert (html / f"{page}.html").is_file(), page


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_module_has_an_api_page(html, module):
    assert importlib.util.find_spec(f"miniff.{module}") is not None, f"miniff.{module} is missing"
    page = html / "api" / f"{module}.html"
    assert page.is_file(), f"docs/api/{module}.rst is missing (add it and list it in docs/api/index.md)"
    text = page.read_text(encoding="utf-8")
    assert f'id="module-miniff.{module}"' in text


def test_presentation_functions_are_documented(html):
    from miniff import presentation

    text = (html / "api" / "presentation.html").read_text(encoding="utf-8")
    for name in presentation.__all__:
        if callable(getattr(presentation, name)):
            assert f'id="miniff.presentation.{name}"' in text, name


def test_every_tutorial_is_rendered(html):
    notebooks = sorted((ROOT / "tutorial").glob("*.ipynb"))
    for nb in notebooks:
        assert (html / "tutorials" / f"{nb.stem}.html").is_file(), nb.name


@pytest.mark.parametrize("page", ["quickstart.md", "threading.md", "electrostatics.md", "uncertainty.md",
                                  "store.md", "many-elements.md"])
def test_python_examples_of_a_page_run(page, tmp_path):
    # the code blocks of a page, run in order as one script outside the source tree, as a reader would
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, f"{page} has no python examples"
    script = tmp_path / "example.py"
    prelude = {"threading.md": QUICKSTART_SETUP}.get(page, "")
    script.write_text(prelude + "\n".join(blocks), encoding="utf-8")
    # one OpenMP thread: the examples are tiny and the test machine is shared
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{page} examples failed:\n{proc.stderr}"


# threading.md uses `nw` and `potentials` defined by the reader's own script; give it a small one.
QUICKSTART_SETUP = """
import numpy as np
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials import lj_potential_family
potentials = lj_potential_family(epsilon=0.0104, sigma=3.4, a=2.5, tag="Ar-Ar")
nw = NeighborWrapper(Cell(np.eye(3) * 5.26, [[0, 0, 0], [.5, .5, 0]], ["Ar"] * 2), cutoff=potentials.cutoff)
"""


def test_benchmarks_readme_is_included(html):
    readme = ROOT / "benchmarks" / "README.md"
    text = (html / "benchmarks.html").read_text(encoding="utf-8")
    if readme.is_file():
        first_heading = next(line for line in readme.read_text(encoding="utf-8").splitlines()
                             if line.startswith("#"))
        assert first_heading.lstrip("#").strip().split()[0] in text
    else:
        assert "not in this copy" in text


def test_job_file_examples_in_the_docs_are_valid():
    """Every YAML block of ``docs/formats.md`` passes the job-file validation (names of stages and keys)."""
    import yaml

    from miniff.ml_util import validate_description

    text = (DOCS / "formats.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        validate_description(yaml.safe_load(block), where="docs/formats.md")


# Figures the gallery draws, by the function named in the heading above each call.
GALLERY_FUNCTIONS = ["plot_convergence", "plot_parity", "plot_diagonal", "plot_error_histogram", "plot_descriptors_2",
                     "plot_descriptor_range", "plot_descriptor_sensitivity", "plot_potential_2", "plot_strain_profile",
                     "plot_rdf", "plot_adf", "plot_spread_vs_error"]


def test_gallery_shows_every_figure_with_its_call(html):
    from miniff import presentation

    text = (html / "gallery.html").read_text(encoding="utf-8")
    drawing = [n for n in presentation.__all__ if n.startswith("plot_")]
    assert sorted(drawing) == sorted(GALLERY_FUNCTIONS), "add the new plotting function to docs/gallery.md"
    for name in drawing:
        assert f"presentation</span><span class=\"o\">.</span><span class=\"n\">{name}" in text or \
            f"{name}</span><span class=\"p\">(" in text, f"the gallery shows no call of {name}"
    assert text.count("<img") >= 12
