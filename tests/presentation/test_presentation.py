"""Tests of miniff.presentation: assertions on the drawn data (Agg backend), never on images."""

import json

import numpy as np
import pytest

import miniff.kernel
from miniff import presentation
from miniff.presentation import (
    plot_adf,
    plot_convergence,
    plot_descriptor_range,
    plot_descriptors_2,
    plot_diagonal,
    plot_error_histogram,
    plot_potential_2,
    plot_rdf,
    plot_strain_profile,
    read_fit_log,
    text_bars,
)

# CODATA 2018 (independent of miniff.units): Bohr radius in Å, Rydberg energy in eV.
BOHR = 0.529177210903
RYDBERG = 13.605693122994

# ---------------------------------------------------------------------------------------------------------------
# Local stand-ins for the kernel and potentials (Contract 2/4 subset used by the plots). The real classes are
# exercised by the tests marked "real" below when they exist.


class FakePairPotential:
    """A pair potential f(r) with a species tag and a cutoff, like a LocalPotential."""

    def __init__(self, f, cutoff, tag=None, family=None, parameters=None):
        self.f, self.cutoff, self.tag = f, cutoff, tag
        self.family, self.parameters = family, parameters or {}

    def copy(self, tag=None):
        return FakePairPotential(self.f, self.cutoff, tag if tag is not None else self.tag, self.family,
                                 self.parameters)


class FakeCell:
    def __init__(self, vectors, coordinates, values, meta=None):
        self.vectors = np.asarray(vectors, dtype=float)
        self.coordinates = np.asarray(coordinates, dtype=float)
        self.values = np.asarray(values)


class FakeNeighborWrapper:
    """Brute-force total energy of a non-periodic structure for tagged pair potentials."""

    def __init__(self, cell, x=None, *, pbc=True, cutoff=None, normalize=True):
        assert pbc is False
        self.cell, self.cutoff = cell, cutoff

    def total(self, potentials, ignore_missing_species=False):
        cart = self.cell.coordinates @ self.cell.vectors
        species = list(self.cell.values)
        energy = 0.0
        for p in potentials:
            a, b = p.tag.split("-")
            for i in range(len(cart)):
                for j in range(len(cart)):
                    d = np.linalg.norm(cart[i] - cart[j])
                    if i != j and species[i] == a and species[j] == b and d < p.cutoff:
                        energy += p.f(d)
        return energy


@pytest.fixture
def fake_kernel(monkeypatch):
    monkeypatch.setattr(miniff.kernel, "Cell", FakeCell, raising=False)
    monkeypatch.setattr(miniff.kernel, "NeighborWrapper", FakeNeighborWrapper, raising=False)


def lj(r, epsilon=0.0104, sigma=3.4):
    return 4 * epsilon * ((sigma / r) ** 12 - (sigma / r) ** 6)


# ---------------------------------------------------------------------------------------------------------------
# text_bars


def test_text_bars_levels():
    assert text_bars([0, 1, 4, 9]) == " ▁▄█"
    assert text_bars([0, 8], mn=0, mx=16) == " ▄"
    assert text_bars([5, 5, 5]) == "   "
    assert text_bars([-10, 100], mn=0, mx=1) == " █"  # clipped
    assert text_bars([0, float("nan"), 1], palette="ab") == "a?b"
    with pytest.raises(ValueError, match="palette"):
        text_bars([1, 2], palette="a")
    with pytest.raises(ValueError, match="mx"):
        text_bars([1, 2], mn=2, mx=1)


# ---------------------------------------------------------------------------------------------------------------
# RDF / ADF


def test_plot_rdf_units_and_labels(pyplot):
    r = np.linspace(0.5, 6, 30)
    data = {"b-b": np.exp(-r), "a-b": r**2 / 10}
    ax = plot_rdf(r, data, length_unit="nm")
    assert ax is pyplot.gca()
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["a-b", "b-b"]  # sorted keys
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(x, r / 10)
    np.testing.assert_allclose(y, r**2 / 10 * 1000)  # atoms/Å³ -> atoms/nm³
    assert ax.get_xlabel() == "r (nm)"
    assert ax.get_ylabel() == "Density (atoms / nm³)"
    assert ax.get_legend() is not None


def test_plot_rdf_bohr_and_legend_options(pyplot):
    r = np.linspace(1, 4, 5)
    fig, ax = pyplot.subplots()
    out = plot_rdf(r, {"x-x": r}, ax=ax, length_unit="bohr", legend=False, xlabel="distance")
    assert out is ax
    np.testing.assert_allclose(ax.lines[0].get_xdata(), r / BOHR)
    assert ax.get_xlabel() == "distance"
    assert ax.get_legend() is None
    plot_rdf(r, {"x-y": r}, ax=ax, legend="labels")
    assert any(t.get_text() == "x-y" for t in ax.texts)
    with pytest.raises(ValueError, match="legend"):
        plot_rdf(r, {"x-x": r}, ax=ax, legend="yes")
    with pytest.raises(ValueError, match="length_unit"):
        plot_rdf(r, {"x-x": r}, ax=ax, length_unit="furlong")
    with pytest.raises(ValueError, match="shape"):
        plot_rdf(r, {"x-x": r[:-1]}, ax=ax)


def test_plot_adf_degrees(pyplot):
    a = np.linspace(0, np.pi, 20)
    ax = plot_adf(a, {"a-[a,a]": np.sin(a)}, angle_unit="deg")
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(x, np.degrees(a))
    np.testing.assert_allclose(y, np.sin(a) * np.pi / 180)
    assert ax.get_xlabel() == "Angle (deg)"
    # the density integrates to the same number in both units
    np.testing.assert_allclose(np.trapezoid(y, x), np.trapezoid(np.sin(a), a))
    with pytest.raises(ValueError, match="angle_unit"):
        plot_adf(a, {}, angle_unit="grad")


# ---------------------------------------------------------------------------------------------------------------
# pair potential and descriptor curves (stand-in kernel)


def test_plot_potential_2_untagged_is_the_pair_function(pyplot, fake_kernel):
    pot = FakePairPotential(lj, cutoff=8.5)
    ax = plot_potential_2(pot, energy_unit="eV")
    x, y = ax.lines[0].get_data()
    assert len(x) == 50
    np.testing.assert_allclose(x, np.linspace(0.85, 8.5, 50))
    expected = lj(x)
    expected[-1] = 0.0  # at r = cutoff the pair is outside the list
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-15)
    assert ax.get_xlabel() == "r (Å)"
    assert ax.get_ylabel() == "Energy (eV)"


def test_plot_potential_2_seed_units_and_conversion(pyplot, fake_kernel):
    pot = FakePairPotential(lj, cutoff=8.5)
    ax = plot_potential_2(pot, energy_unit="1", length_unit="1")
    assert ax.get_xlabel() == "r (1)" and ax.get_ylabel() == "Energy (1)"
    fig, ax2 = pyplot.subplots()
    plot_potential_2(pot, limits=(3.0, 6.0), ax=ax2, energy_unit="Ry", length_unit="bohr", mark_points=[3.4])
    x, y = ax2.lines[0].get_data()
    r = np.linspace(3.0, 6.0, 50)
    np.testing.assert_allclose(x, r / BOHR)
    np.testing.assert_allclose(y, lj(r) / RYDBERG, rtol=1e-12)
    assert ax2.get_ylabel() == "Energy (Ry)" and ax2.get_xlabel() == "r (Bohr)"
    marks = ax2.collections[0].get_offsets()
    np.testing.assert_allclose(marks, [[3.4 / BOHR, lj(3.4) / RYDBERG]], atol=1e-14)


def test_plot_potential_2_homonuclear_doubles_and_origin(pyplot, fake_kernel):
    pot = FakePairPotential(lj, cutoff=8.5, tag="Ar-Ar")
    ax = plot_potential_2(pot, limits=(3.5, 7.0), energy_unit="meV", origin="right")
    x, y = ax.lines[0].get_data()
    twice = 2 * lj(x) * 1000
    np.testing.assert_allclose(y, twice - twice[-1], rtol=1e-12)


def test_plot_potential_2_pair_inference_errors(pyplot, fake_kernel):
    a = FakePairPotential(lj, 8.5, tag="a-b")
    b = FakePairPotential(lj, 8.5, tag="a-c")
    with pytest.raises(ValueError, match="pair"):
        plot_potential_2([a, b])
    with pytest.raises(ValueError, match="pair"):
        plot_potential_2(a, pair="abc")
    ax = plot_potential_2([a, b], pair="a-c", limits=(3.0, 4.0), energy_unit="eV")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), lj(np.linspace(3.0, 4.0, 50)))
    with pytest.raises(ValueError, match="energy_unit"):
        plot_potential_2(a, energy_unit="calories")
    with pytest.raises(ValueError, match="origin"):
        plot_potential_2(a, origin="top")


def test_plot_descriptors_2_draws_each_two_body_descriptor(pyplot, fake_kernel):
    def fc(r, a=5.0):
        return (1 + np.cos(np.pi * r / a)) / 2

    d1 = FakePairPotential(lambda r: np.exp(-0.5 * r**2) * fc(r), 5.0, tag="a-a")
    d2 = FakePairPotential(lambda r: fc(r), 5.0, tag="a-b")
    d3 = FakePairPotential(lambda r: 1.0, 5.0, tag="a-a-b")  # three-body: skipped
    ax = plot_descriptors_2({"a": [d1, d2, d3]}, length_unit="nm")
    assert [line.get_label() for line in ax.lines] == ["a: a-a", "a: a-b"]
    x, y = ax.lines[0].get_data()
    r = np.linspace(0.5, 5.0, 50)
    np.testing.assert_allclose(x, r / 10)
    expected = np.exp(-0.5 * r**2) * fc(r)
    expected[-1] = 0.0
    np.testing.assert_allclose(y, expected, atol=1e-15)  # g(r) itself, not 2 g(r)
    assert ax.get_ylabel() == "Descriptor value" and ax.get_xlabel() == "r (nm)"


# ---------------------------------------------------------------------------------------------------------------
# strain profile (stand-in profile_directed_strain)


def test_plot_strain_profile(pyplot, monkeypatch):
    calls = []

    def fake_profile(potentials, cell, strain, direction, **kwargs):
        calls.append((np.asarray(direction), kwargs))
        return 3.0 * (np.asarray(strain) - 1.0) ** 2 - 2.0  # eV

    monkeypatch.setattr(miniff.kernel, "profile_directed_strain", fake_profile, raising=False)
    cell = FakeCell(np.eye(3), np.zeros((1, 3)), ["a"])
    monkeypatch.setattr(miniff.kernel, "Cell", FakeCell, raising=False)
    ax = plot_strain_profile([], cell, limits=(0.95, 1.05), energy_unit="meV", origin="left", mark_points=[1.0],
                             profile_kwargs={"pbc": True}, direction=(1, 0, 0))
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(x, np.linspace(0.95, 1.05, 50))
    e = (3.0 * (x - 1.0) ** 2 - 2.0) * 1000
    np.testing.assert_allclose(y, e - e[0])
    np.testing.assert_allclose(ax.collections[0].get_offsets(), [[1.0, -2000.0 - e[0]]])
    assert ax.get_ylabel() == "Energy (meV)"
    np.testing.assert_array_equal(calls[0][0], [1, 0, 0])
    assert calls[0][1] == {"pbc": True}


# ---------------------------------------------------------------------------------------------------------------
# convergence


def test_plot_convergence_arrays(pyplot):
    ax = plot_convergence([[1.0, 0.1, 0.01], [2.0, 0.5]], labels=["learn", "test"])
    assert ax.get_yscale() == "log"
    assert [line.get_label() for line in ax.lines] == ["learn", "test"]
    np.testing.assert_allclose(ax.lines[1].get_xdata(), [0, 1])
    assert ax.get_xlabel() == "Step" and ax.get_ylabel() == "Error"
    # append: a longer history replaces the data of the line with the same label
    plot_convergence([[1.0, 0.1, 0.01, 0.001]], labels=["learn"], ax=ax)
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1.0, 0.1, 0.01, 0.001])
    plot_convergence([[5.0]], labels=["learn"], ax=ax, append=False)
    assert len(ax.lines) == 3
    with pytest.raises(ValueError, match="labels"):
        plot_convergence([[1.0]], labels=["a", "b"])


def test_plot_convergence_reads_a_csv_log(pyplot, tmp_path):
    log = tmp_path / "fit.log"
    log.write_text(
        "# epoch,train_energy_rmse,train_energy_max,valid_energy_rmse,valid_energy_max,time\n"
        "0,1.0,3.0,1.2,3.5,0.1\n"
        "1,0.5,1.5,0.7,2.0,0.2\n"
        "# a comment line\n"
        "2,0.1,0.4,0.2,0.6,0.3\n"
    )
    cols = read_fit_log(log)
    np.testing.assert_allclose(cols["valid_energy_max"], [3.5, 2.0, 0.6])
    ax = plot_convergence(log, comment="3 epochs")
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["train_energy_rmse", "train_energy_max", "valid_energy_rmse", "valid_energy_max"]
    lines = dict(zip(labels, ax.lines, strict=True))
    np.testing.assert_allclose(lines["valid_energy_rmse"].get_xdata(), [0, 1, 2])
    np.testing.assert_allclose(lines["valid_energy_rmse"].get_ydata(), [1.2, 0.7, 0.2])
    assert lines["valid_energy_rmse"].get_linestyle() == "--"
    assert lines["train_energy_rmse"].get_linestyle() == "-"
    assert lines["train_energy_rmse"].get_color() == lines["valid_energy_rmse"].get_color()
    assert lines["train_energy_rmse"].get_color() != lines["train_energy_max"].get_color()
    assert ax.get_xlabel() == "Epoch" and ax.get_yscale() == "log"
    assert any(t.get_text() == "3 epochs" for t in ax.texts)
    with pytest.raises(ValueError, match="not in the fit log"):
        plot_convergence(log, columns=["nope"])


def test_plot_convergence_fit_workflow_log(pyplot, tmp_path):
    # the JSON Lines layout written by the fit workflow: errors in eV/atom and eV/Å, loss dimensionless
    records = [
        {"epoch": k, "time": 0.1 * k, "lr": 1.0, "loss": 1.0 / (k + 1), "loss_valid": 2.0 / (k + 1),
         "energy_rmse": 0.1 / (k + 1), "energy_rmse_valid": 0.2 / (k + 1), "energy_max": 0.3 / (k + 1),
         "energy_max_valid": 0.4 / (k + 1), "group_bulk_energy_rmse": 0.5}
        for k in range(4)
    ]
    log = tmp_path / "fit.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    ax = plot_convergence(log)
    labels = [line.get_label() for line in ax.lines]
    assert sorted(labels) == ["energy_max", "energy_max_valid", "energy_rmse", "energy_rmse_valid"]
    line = ax.lines[labels.index("energy_max_valid")]
    np.testing.assert_allclose(line.get_xdata(), [0, 1, 2, 3])
    np.testing.assert_allclose(line.get_ydata(), [0.4 / (k + 1) for k in range(4)])
    assert line.get_linestyle() == "--"
    fig, ax2 = pyplot.subplots()
    plot_convergence(log, ax=ax2, columns=["loss", "loss_valid"])
    assert [line.get_label() for line in ax2.lines] == ["loss", "loss_valid"]


def test_read_fit_log_json_lines_and_whitespace(tmp_path):
    jl = tmp_path / "log.jsonl"
    jl.write_text("\n".join(json.dumps({"epoch": k, "loss": 1 / (k + 1)}) for k in range(3)) + "\n")
    np.testing.assert_allclose(read_fit_log(jl)["loss"], [1, 1 / 2, 1 / 3])
    ws = tmp_path / "log.txt"
    ws.write_text("step loss\n1 0.5\n2 x\n")
    cols = read_fit_log(ws)
    np.testing.assert_allclose(cols["step"], [1, 2])
    assert np.isnan(cols["loss"][1])
    empty = tmp_path / "empty.txt"
    empty.write_text("epoch loss\n")
    with pytest.raises(ValueError, match="no rows"):
        read_fit_log(empty)


# ---------------------------------------------------------------------------------------------------------------
# parity, error histogram, descriptor range


def test_plot_diagonal(pyplot, rng):
    ref = rng.normal(size=40)
    pred = ref + rng.normal(scale=0.1, size=40)
    ax = plot_diagonal(ref, pred, unit_label="eV")
    np.testing.assert_allclose(ax.collections[0].get_offsets(), np.column_stack([ref, pred]))
    diag = [line for line in ax.lines if line.get_gid() == "miniff-diagonal"]
    assert len(diag) == 1
    x, y = diag[0].get_data()
    np.testing.assert_allclose(x, y)
    assert x[0] <= min(ref.min(), pred.min()) and x[1] >= max(ref.max(), pred.max())
    assert ax.get_xlabel() == "Reference (eV)" and ax.get_ylabel() == "Prediction (eV)"

    # nmax keeps the worst points; replace removes the old ones
    plot_diagonal(ref, pred, ax=ax, nmax=5, replace=True)
    assert len(ax.collections) == 1
    kept = ax.collections[0].get_offsets()
    worst = np.sort(np.abs(pred - ref))[-5:]
    np.testing.assert_allclose(np.sort(np.abs(kept[:, 1] - kept[:, 0])), worst)
    assert len([line for line in ax.lines if line.get_gid() == "miniff-diagonal"]) == 1

    # forces [N, 3] are flattened; several pairs give several scatters; window clips
    f = rng.normal(size=(4, 3))
    plot_diagonal(f, 2 * f, f, f, ax=ax, replace=True, window=(-1, 1))
    assert len(ax.collections) == 2
    pts = ax.collections[0].get_offsets()
    assert pts.shape == (12, 2)
    assert np.all(np.abs(pts) <= 1)
    assert ax.get_xlim() == (-1, 1)
    with pytest.raises(ValueError, match="pairs"):
        plot_diagonal(ref)
    with pytest.raises(ValueError, match="nmax"):
        plot_diagonal(ref, pred, nmax=0)


def test_plot_error_histogram(pyplot, rng):
    ref = rng.normal(size=(30, 3))
    pred = ref + rng.normal(scale=0.05, size=(30, 3))
    ax = plot_error_histogram(ref, pred, bins=12, unit_label="eV/Å")
    assert len(ax.patches) == 12
    heights = np.array([p.get_height() for p in ax.patches])
    assert heights.sum() == 90
    counts, _ = np.histogram((pred - ref).ravel(), bins=12)
    np.testing.assert_array_equal(heights, counts)
    assert ax.get_xlabel() == "Error (eV/Å)" and ax.get_ylabel() == "Count"
    rmse = np.sqrt(np.mean((pred - ref) ** 2))
    assert any(f"{rmse:.3g}" in t.get_text() for t in ax.texts)
    with pytest.raises(ValueError, match="prediction"):
        plot_error_histogram(ref, pred[:-1])


class FakePerPoint:
    """Only the attributes a per-point dataset exposes to plot_descriptor_range."""

    def __init__(self, features, mask):
        self.features, self.mask = features, mask


def test_plot_descriptor_range(pyplot, rng):
    import torch

    features = rng.random((5, 4, 3)) * np.array([1.0, 10.0, 100.0])
    mask = np.ones((5, 4), dtype=bool)
    mask[:, 3] = False
    features[:, 3] = 1e6  # padding must be ignored
    ds = FakePerPoint(torch.tensor(features), torch.tensor(mask))
    structure = np.array([[0.5, 5.0, 50.0], [2.0, -1.0, 50.0]])  # two values outside the training range
    ax = plot_descriptor_range(ds, structure, labels=["g1", "g2", "g3"])
    real = features[:, :3].reshape(-1, 3)
    assert len(ax.patches) == 3
    np.testing.assert_allclose([p.get_height() for p in ax.patches], real.max(0) - real.min(0))
    np.testing.assert_allclose([p.get_y() for p in ax.patches], real.min(0))
    red = [c for c in ax.collections if c.get_label() == "outside training range"]
    assert len(red) == 1 and len(red[0].get_offsets()) == 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["g1", "g2", "g3"]
    assert ax.get_ylabel() == "Descriptor value"

    fig, ax2 = pyplot.subplots()
    plot_descriptor_range(real, ax=ax2, normalize=True)
    np.testing.assert_allclose([p.get_height() for p in ax2.patches], 1.0)
    np.testing.assert_allclose([p.get_y() for p in ax2.patches], 0.0, atol=1e-15)
    with pytest.raises(ValueError, match="structure"):
        plot_descriptor_range(real, np.zeros((1, 2)), ax=ax2)


def test_public_names():
    for name in presentation.__all__:
        obj = getattr(presentation, name)
        if callable(obj):
            assert obj.__doc__, name
            assert obj.__module__ == "miniff.presentation", name


# ---------------------------------------------------------------------------------------------------------------
# Against the real kernel and potentials


def _real_lj():
    from miniff import potentials

    return potentials.lj_potential_family(epsilon=0.0104, sigma=3.4, a=2.5)


def test_plot_potential_2_real_lj(pyplot):
    pot = _real_lj()
    ax = plot_potential_2(pot, limits=(3.0, 8.0), energy_unit="eV")
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(y, lj(x), rtol=1e-10, atol=1e-14)


def test_plot_strain_profile_real_lj(pyplot, fcc_ar):
    pot = _real_lj()
    vectors, frac, species, _ = fcc_ar
    cell = miniff.kernel.Cell(vectors, frac, species)
    ax = plot_strain_profile(pot.copy(tag="Ar-Ar"), cell, limits=(0.97, 1.03), energy_unit="eV")
    x, y = ax.lines[0].get_data()
    assert len(x) == 50 and np.all(np.isfinite(y))
    # the same energies from a direct evaluation at the two ends
    for k in (0, -1):
        strained = miniff.kernel.Cell(vectors * x[k], frac, species)
        nw = miniff.kernel.NeighborWrapper(strained, cutoff=pot.cutoff)
        np.testing.assert_allclose(y[k], nw.total(pot.copy(tag="Ar-Ar")), rtol=1e-10)
