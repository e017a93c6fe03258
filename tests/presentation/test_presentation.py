"""Tests of miniff.presentation: assertions on the drawn data (Agg backend), never on images."""

import json

import numpy as np
import pytest

import miniff.kernel
from miniff import presentation
from miniff.presentation import (
    parity_statistics,
    plot_adf,
    plot_convergence,
    plot_descriptor_range,
    plot_descriptors_2,
    plot_diagonal,
    plot_error_histogram,
    plot_parity,
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


def test_plot_descriptors_2_labels_parameters_and_explains_the_dots(pyplot):
    from miniff.potentials import behler2_descriptor_family

    centred = behler2_descriptor_family(a=5.0, eta=0.5, r_sphere=0.0, tag="Cu-Cu")
    shifted = behler2_descriptor_family(a=5.0, eta=4.0, r_sphere=2.5, tag="Cu-Pt")
    ax = plot_descriptors_2({"Cu": [centred, shifted]})
    curves = [line for line in ax.lines if line.get_gid() is None]
    assert [line.get_label() for line in curves] == ["Cu: Cu-Cu η=0.5 r_s=0", "Cu: Cu-Pt η=4 r_s=2.5"]
    # one dot, at the inflection point of exp(-eta r^2) f_c(r) (found here by brute force on a fine grid)
    (dot,) = [line for line in ax.lines if line.get_gid() == "miniff-turning-point"]
    r = np.linspace(0.01, 2.5, 200001)
    g = np.exp(-0.5 * r**2) * 0.5 * (1 + np.cos(np.pi * r / 5.0))
    second = np.gradient(np.gradient(g, r), r)
    r_turn = r[np.flatnonzero(np.diff(np.sign(second)))[0]]
    assert dot.get_xdata()[0] == pytest.approx(r_turn, abs=1e-3)
    assert dot.get_ydata()[0] == pytest.approx(np.interp(r_turn, r, g), abs=1e-4)
    assert dot.get_color() == curves[0].get_color()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "Cu: Cu-Cu η=0.5 r_s=0", "Cu: Cu-Pt η=4 r_s=2.5", "turning point (inflection)"]


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
    assert labels == ["training energy RMSE", "training energy max |error|", "validation energy RMSE",
                      "validation energy max |error|"]
    lines = dict(zip(labels, ax.lines, strict=True))
    np.testing.assert_allclose(lines["validation energy RMSE"].get_xdata(), [0, 1, 2])
    np.testing.assert_allclose(lines["validation energy RMSE"].get_ydata(), [1.2, 0.7, 0.2])
    assert lines["validation energy RMSE"].get_linestyle() == "--"
    assert lines["training energy RMSE"].get_linestyle() == "-"
    assert lines["training energy RMSE"].get_color() == lines["validation energy RMSE"].get_color()
    assert lines["training energy RMSE"].get_color() != lines["training energy max |error|"].get_color()
    assert ax.get_xlabel() == "Epoch" and ax.get_yscale() == "log"
    assert ax.get_ylabel() == "Energy error (eV/atom)"
    assert any(t.get_text() == "3 epochs" for t in ax.texts)
    with pytest.raises(ValueError, match="not in the fit log"):
        plot_convergence(log, columns=["nope"])


def _workflow_log(tmp_path, forces=True):
    """A fit log in the JSON Lines layout of the fit workflow; validation loss lowest at epoch 2."""
    loss_valid = [2.0, 1.0, 0.5, 0.7]
    records = []
    for k in range(4):
        r = {"epoch": k, "time": 0.1 * k, "lr": 1.0, "loss": 1.0 / (k + 1), "loss_valid": loss_valid[k],
             "energy_rmse": 0.1 / (k + 1), "energy_rmse_valid": 0.2 / (k + 1), "energy_max": 0.3 / (k + 1),
             "energy_max_valid": 0.4 / (k + 1), "group_bulk_energy_rmse": 0.5}
        if forces:
            r.update(force_rmse=1.0 / (k + 1), force_rmse_valid=1.5 / (k + 1))
        records.append(r)
    log = tmp_path / "fit.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    return log


def test_plot_convergence_fit_workflow_log_one_panel_per_unit(pyplot, tmp_path):
    pyplot.subplots()  # a figure made earlier must stay untouched
    before = pyplot.gca()
    log = _workflow_log(tmp_path)
    axes = plot_convergence(log)
    assert len(axes) == 2 and before not in axes and not before.lines
    energy, force = axes
    assert energy.get_ylabel() == "Energy error (eV/atom)" and force.get_ylabel() == "Force error (eV/Å)"
    assert force.get_xlabel() == "Epoch" and all(a.get_yscale() == "log" for a in axes)
    curves = {line.get_label(): line for a in axes for line in a.lines if line.get_gid() is None}
    assert sorted(curves) == ["training energy RMSE", "training energy max |error|", "training force RMSE",
                              "validation energy RMSE", "validation energy max |error|", "validation force RMSE"]
    assert {line.get_label() for line in force.lines if line.get_gid() is None} == {
        "training force RMSE", "validation force RMSE"}
    np.testing.assert_allclose(curves["validation force RMSE"].get_ydata(), [1.5 / (k + 1) for k in range(4)])
    np.testing.assert_allclose(curves["validation energy max |error|"].get_xdata(), [0, 1, 2, 3])
    # the kept epoch (lowest validation loss: epoch 2) is marked on every panel, with a dot on every curve
    for a in axes:
        marks = [line for line in a.lines if line.get_gid() == "miniff-best"]
        vline = [m for m in marks if len(m.get_xdata()) == 2]
        assert len(vline) == 1 and list(vline[0].get_xdata()) == [2, 2]
        dots = [m for m in marks if len(m.get_xdata()) == 1]
        assert len(dots) == len([line for line in a.lines if line.get_gid() is None])
        assert any("kept: epoch 2" in t.get_text() for t in a.texts)
        # the legend sits outside the data, to the right of the panel
        legend = a.get_legend()
        assert legend is not None and legend._loc == 2 and legend.get_bbox_to_anchor().x0 >= a.bbox.x1
    dot = next(m for m in force.lines if m.get_gid() == "miniff-best" and len(m.get_xdata()) == 1)
    assert dot.get_ydata()[0] in (1.0 / 3, 1.5 / 3)
    # a single Axes for two units is refused; a log of one unit fits one Axes; best=None marks nothing
    fig, ax1 = pyplot.subplots()
    with pytest.raises(ValueError, match="one per panel"):
        plot_convergence(log, ax=ax1)
    plot_convergence(log, ax=ax1, columns=["loss", "loss_valid"], best=None)
    assert [line.get_label() for line in ax1.lines] == ["training loss", "validation loss"]
    assert ax1.get_ylabel() == "Loss (normalised)"
    assert not [line for line in ax1.lines if line.get_gid() == "miniff-best"]


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


def test_plot_diagonal_statistics_square_and_transparent(pyplot, rng):
    ref = rng.normal(size=50)
    pred = ref + rng.normal(scale=0.2, size=50)
    ref2 = rng.normal(size=20)
    pred2 = ref2 + 0.3
    ax = plot_diagonal(ref, pred, unit_label="eV/atom", label="training")
    plot_diagonal(ref2, pred2, ax=ax, unit_label="eV/atom", label="validation", marker="^")
    assert ax.get_xlabel() == "Reference (eV/atom)" and ax.get_ylabel() == "Prediction (eV/atom)"
    # square: the same limits on both axes, equal aspect, covering every point and the diagonal
    assert ax.get_xlim() == ax.get_ylim() and ax.get_aspect() == 1.0
    lo = min(ref.min(), pred.min(), ref2.min(), pred2.min())
    hi = max(ref.max(), pred.max(), ref2.max(), pred2.max())
    assert ax.get_xlim()[0] < lo and ax.get_xlim()[1] > hi
    # both series semi-transparent, so neither hides the other
    assert [c.get_alpha() for c in ax.collections] == [0.5, 0.5]
    assert [c.get_label() for c in ax.collections] == ["training", "validation"]
    # one statistics box with RMSE, MAE and N of each series
    (box,) = [t for t in ax.texts if t.get_gid() == "miniff-parity-stats"]
    rmse, mae = np.sqrt(np.mean((pred - ref) ** 2)), np.mean(np.abs(pred - ref))
    assert box.get_text().splitlines() == ["training: N = 50", f"  RMSE {rmse:.3g}, MAE {mae:.3g} eV/atom",
                                           "validation: N = 20", "  RMSE 0.3, MAE 0.3 eV/atom"]
    st = parity_statistics(ref, pred)
    assert st["n"] == 50 and st["rmse"] == pytest.approx(rmse) and st["mae"] == pytest.approx(mae)


def test_plot_diagonal_groups_keep_their_colour(pyplot):
    ref = np.array([0.0, 1.0, 2.0, 3.0])
    forces = np.arange(12.0).reshape(4, 3)
    ax = plot_diagonal(ref, ref + 0.1, groups=[["bulk", "slab", "bulk", "slab"]], label="training")
    plot_diagonal(ref, ref - 0.1, ax=ax, groups=[["slab", "slab", "bulk", "bulk"]], label="validation")
    by_label = {c.get_label(): c for c in ax.collections}
    assert sorted(by_label) == ["training: bulk", "training: slab", "validation: bulk", "validation: slab"]
    np.testing.assert_allclose(by_label["training: bulk"].get_offsets(), [[0, 0.1], [2, 2.1]])
    np.testing.assert_allclose(by_label["validation: slab"].get_offsets(), [[0, -0.1], [1, 0.9]])
    color = {k: tuple(c.get_facecolor()[0][:3]) for k, c in by_label.items()}
    assert color["training: bulk"] == color["validation: bulk"] != color["training: slab"]
    # one group per force row is repeated over the three components
    ax2 = plot_diagonal(forces, forces, groups=[["a", "b", "a", "b"]])
    pts = {c.get_label(): c.get_offsets() for c in ax2.collections}
    np.testing.assert_allclose(pts["a"][:, 0], [0, 1, 2, 6, 7, 8])
    with pytest.raises(ValueError, match="groups"):
        plot_diagonal(ref, ref, groups=[["a", "b"]])


def test_plot_parity_of_a_fit(pyplot, rng):
    learn = {"energy_ref": rng.normal(size=8), "forces_ref": rng.normal(size=30)}
    learn.update(energy_pred=learn["energy_ref"] + 0.01, forces_pred=learn["forces_ref"] * 1.1)
    test = {"energy_ref": rng.normal(size=3), "forces_ref": rng.normal(size=12)}
    test.update(energy_pred=test["energy_ref"] - 0.02, forces_pred=test["forces_ref"])
    energy, force = plot_parity({"training": learn, "validation": test})
    assert energy.get_xlabel() == "Reference (eV/atom)" and force.get_ylabel() == "Prediction (eV/Å)"
    assert energy.get_title() == "Energy per atom" and force.get_title() == "Force components"
    np.testing.assert_allclose(force.collections[0].get_offsets()[:, 1], learn["forces_pred"])
    np.testing.assert_allclose(energy.collections[1].get_offsets()[:, 0], test["energy_ref"])
    text = next(t.get_text() for t in energy.texts if t.get_gid() == "miniff-parity-stats")
    assert "training: N = 8\n  RMSE 0.01, MAE 0.01 eV/atom\nvalidation: N = 3\n  RMSE 0.02, MAE 0.02 eV/atom" == text
    assert [t.get_text() for t in energy.get_legend().get_texts()] == ["training", "validation"]
    only_energy = plot_parity({"training": {k: v for k, v in learn.items() if k.startswith("energy")}})
    assert only_energy.get_xlabel() == "Reference (eV/atom)"
    with pytest.raises(ValueError, match="energy_ref"):
        plot_parity({"training": {"forces_ref": 1}})


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
    # every mark is named in the legend; the dot below zero is inside the y range, not on its edge
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "training range (min to max)", "training mean", "structure, inside the training range",
        "outside training range"]
    means = next(line for line in ax.lines if line.get_label() == "training mean")
    np.testing.assert_allclose(means.get_ydata(), real.mean(0))
    assert ax.get_ylim()[0] < -1.0

    fig, ax2 = pyplot.subplots()
    plot_descriptor_range(real, ax=ax2, normalize=True)
    np.testing.assert_allclose([p.get_height() for p in ax2.patches], 1.0)
    np.testing.assert_allclose([p.get_y() for p in ax2.patches], 0.0, atol=1e-15)
    assert ax2.get_ylim()[0] < 0 < ax2.get_ylim()[1] and ax2.get_ylim()[1] > 1  # the span's ends stay visible
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
