"""Every tutorial notebook runs top to bottom without warnings, and its rendered page shows its outputs.

The notebooks are stored without outputs and executed by the documentation build (myst-nb, in a scratch
folder, with a time limit per cell): the tests read the executed copies and the HTML pages of that build.
"""

import importlib
import re

import nbformat
import pytest
from support import REPO_ROOT

TUTORIALS = REPO_ROOT / "tutorial"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))

# What each notebook needs from miniff: (module, attribute or None).
REQUIREMENTS = {
    "1_fitting_a_function": [("miniff.ml", "SequentialSoleEnergyNN"), ("miniff.ml_util", "simple_energy_closure")],
    "2_computing_descriptors": [("miniff.kernel", "NeighborWrapper"), ("miniff.potentials", "eval_descriptors"),
                                ("miniff.potentials", "behler5_descriptor_family")],
    "3_classical_potentials": [("miniff.kernel", "profile_directed_strain"),
                               ("miniff.potentials", "stillinger_weber_si")],
    "4_neural_network_potential": [("miniff.ml_util", "FitWorkflow"), ("miniff.ml_util", "example_data_path"),
                                   ("miniff.io", "read_cells"), ("miniff.calculator", "MiniffCalculator")],
}


def _missing(name):
    for module, attr in REQUIREMENTS.get(name, []):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            return module
        if attr is not None and not hasattr(mod, attr):
            return f"{module}.{attr}"
    return None


def test_there_are_four_tutorials():
    assert [nb.stem for nb in NOTEBOOKS] == sorted(REQUIREMENTS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


# Figures each tutorial draws (counted from its code), and a printed result its page must show.
FIGURES = {"1_fitting_a_function": 4, "2_computing_descriptors": 6, "3_classical_potentials": 4,
           "4_neural_network_potential": 7}
PRINTED = {"1_fitting_a_function": "100 samples", "2_computing_descriptors": "pairs (both directions)",
           "3_classical_potentials": "bulk modulus:", "4_neural_network_potential": "least influential"}


def _executed(docs_build, path):
    executed = docs_build.executed / "tutorials" / f"{path.stem}.ipynb"
    assert executed.is_file(), f"the documentation build did not execute {path.name}"
    return nbformat.read(executed, as_version=4)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_without_warnings(path, docs_build):
    assert not _missing(path.stem), f"{path.name} needs {_missing(path.stem)}"
    nb = _executed(docs_build, path)
    stored = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert [c.source for c in nb.cells if c.cell_type == "code"] == stored  # this version of the notebook
    for k, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{path.name}, cell {k}: {out}"
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                assert "Warning" not in out["text"], f"{path.name}, cell {k}: {out['text']}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_tutorial_page_shows_its_figures_and_results(path, docs_build):
    nb = _executed(docs_build, path)
    images = sum(1 for c in nb.cells for out in c.get("outputs", []) if "image/png" in out.get("data", {}))
    assert images == FIGURES[path.stem], f"{path.name} drew {images} figures, expected {FIGURES[path.stem]}"
    page = (docs_build.html / "tutorials" / f"{path.stem}.html").read_text(encoding="utf-8")
    shown = re.findall(r'<img[^>]+src="([^"]+\.png)"', page)
    assert len(shown) == images, f"{path.stem}.html shows {len(shown)} of {images} figures"
    for src in shown:
        assert (docs_build.html / "tutorials" / src).is_file(), src
    assert PRINTED[path.stem] in page
