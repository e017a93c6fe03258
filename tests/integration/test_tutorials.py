"""Every tutorial notebook runs top to bottom (nbclient), in a scratch folder, without warnings."""

import importlib

import nbclient
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


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    assert not _missing(path.stem), f"{path.name} needs {_missing(path.stem)}"
    # The kernel inherits this environment: one OpenMP thread (the machine is shared with torch), no GUI.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    for k, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                assert "Warning" not in out["text"], f"{path.name}, cell {k}: {out['text']}"
