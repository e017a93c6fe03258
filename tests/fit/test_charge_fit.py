"""Charge fitting: the charge loss against numpy and finite differences, ChargeFitWorkflow recovering known
charges, its summary, job-file stage, saved potentials and errors."""

import math

import numpy as np
import pytest
import torch

from miniff import ml, ml_util
from miniff.kernel import Cell, NeighborWrapper
from miniff.potentials import behler2_descriptor_family, ewald_total_potential_family
from miniff.util import central_differences

from ..support import fc, reference_pair

#: The known charge model: q_i = bias[s] + sum_f weight[s][f] * G_f(i), G_f Behler-2 functions
#: exp(-eta (r - r_s)^2) f_c(r; a) summed over the neighbours of the tag's species.
DESCRIPTORS = {"a": [("a-b", 4.0, 0.3, 2.0), ("a-a", 4.0, 0.5, 1.5)],
               "b": [("b-a", 4.0, 0.3, 2.0), ("b-b", 4.0, 0.4, 1.0)]}
WEIGHTS = {"a": np.array([0.08, -0.05]), "b": np.array([-0.06, 0.03])}
BIAS = {"a": 0.9, "b": -0.7}
#: Tolerance of the recovered parameters (relative to the largest weight) and charges (e).
TOLERANCE = 1e-6


def descriptor_set():
    return {s: [behler2_descriptor_family(a=a, eta=eta, r_sphere=rs, tag=tag) for tag, a, eta, rs in v]
            for s, v in DESCRIPTORS.items()}


def known_charges(vectors, frac, species):
    """The known model evaluated by brute force in numpy (independent of miniff's descriptor kernels)."""
    system = (vectors, frac, species, (True, True, True))
    q = np.zeros(len(species))
    for s, items in DESCRIPTORS.items():
        q[species == s] += BIAS[s]
        for w, (tag, a, eta, rs) in zip(WEIGHTS[s], items, strict=True):
            q += w * reference_pair(system, a, tag, lambda r, a=a, eta=eta, rs=rs: math.exp(-eta * (r - rs) ** 2)
                                    * fc(r, a))
    return q


def synthetic_cells(n_cells, seed, n=8, size=6.0):
    """Rattled triclinic binary cells whose charges come from the known model; energies from the Ewald sum of
    those charges."""
    rng = np.random.default_rng(seed)
    ewald = ewald_total_potential_family(a=6.0, eta=0.55, accuracy=1e-8)
    cells = []
    while len(cells) < n_cells:
        vectors = np.eye(3) * size + rng.uniform(-0.2, 0.2, (3, 3)) * size
        frac = rng.uniform(0, 1, (n, 3))
        d = (frac[:, None] - frac[None]).reshape(-1, 3)
        d = (d - np.round(d)) @ vectors
        if (np.linalg.norm(d, axis=1).reshape(n, n) + 10 * np.eye(n)).min() < 1.3:
            continue
        species = np.array(["a", "b"] * (n // 2))
        cell = Cell(vectors, frac, species, meta={"charges": known_charges(vectors, frac, species)})
        cell.meta["total-energy"] = NeighborWrapper(cell, cutoff=6.0).total(ewald)
        cells.append(cell)
    return cells


def linear_coefficients(potential):
    """(weights [F], bias) of a charge potential whose network is one linear map (raw descriptors -> e)."""
    layers = [m for m in potential.nn.modules() if isinstance(m, torch.nn.Linear)]
    assert len(layers) == 1
    return layers[0].weight.detach().numpy()[0], float(layers[0].bias.detach()[0])


@pytest.fixture(scope="module")
def fitted():
    wf = ml_util.ChargeFitWorkflow(seed=0)
    wf.prepare(synthetic_cells(20, seed=1), descriptors=descriptor_set(), nn_kwargs={"n_layers": 1}, test_set=4)
    wf.run(n_epochs=20, progress=False, summary=False)
    return wf


def test_recovers_known_charge_parameters(fitted):
    """A linear charge model fitted to charges made by known parameters gives those parameters back."""
    assert fitted.stop_reason != "non-finite loss"
    for pot in fitted.build_potentials():
        w, b = linear_coefficients(pot)
        scale = np.abs(WEIGHTS[pot.tag]).max()
        np.testing.assert_allclose(w, WEIGHTS[pot.tag], atol=TOLERANCE * scale)
        assert b == pytest.approx(BIAS[pot.tag], abs=TOLERANCE)
    for name in ("learn", "test"):
        assert fitted.metrics(name)["charge_rmse"] < TOLERANCE


def test_fitted_charges_on_new_cells_and_their_electrostatics(fitted, tmp_path):
    """On cells not seen in the fit: the charge potentials predict the known charges, and the wrapper's Ewald
    energy equals the Ewald energy of the known charges (also after saving and loading the wrapper)."""
    pots = fitted.build_potentials()
    wrapper = fitted.electrostatics(a=6.0, eta=0.55, accuracy=1e-8, charge_middleware=None)
    ml_util.save_potentials([wrapper], tmp_path / "model.json")
    (loaded,) = ml_util.load_potentials(tmp_path / "model.json")
    ewald = ewald_total_potential_family(a=6.0, eta=0.55, accuracy=1e-8)
    for cell in synthetic_cells(3, seed=7):
        nw = NeighborWrapper(cell, cutoff=6.0)
        predicted = sum(nw.eval(p, ignore_missing_species=True) for p in pots)
        np.testing.assert_allclose(predicted, cell.meta["charges"], atol=TOLERANCE)
        np.testing.assert_allclose(wrapper.charges(nw), cell.meta["charges"], atol=TOLERANCE)
        assert nw.total(wrapper) == pytest.approx(cell.meta["total-energy"], abs=1e-4)
        assert nw.total(loaded) == nw.total(wrapper)
        assert nw.total(ewald) == pytest.approx(cell.meta["total-energy"], rel=1e-12)


def test_summary_reports_charge_errors_next_to_the_spread(fitted):
    text = fitted.summary()
    assert "charge RMSE (spread)" in text and "validation" in text and "training, a" in text
    table = dict(fitted.summary_table)
    q = np.concatenate([c.meta["charges"] for c in fitted.cells[:16]])
    assert table["training"]["n"] == 16 * 8
    assert table["training"]["charge_spread"] == pytest.approx(np.std(q), rel=1e-12)
    assert table["training"]["charge_rmse"] < TOLERANCE


def small_dataset(normalize=False):
    cells = synthetic_cells(4, seed=3, n=6)
    return ml.learn_cauldron([NeighborWrapper(c, cutoff=4.0) for c in cells], descriptor_set(), normalize=normalize,
                             extract_charges=True)


def test_charges_loss_is_the_mean_squared_error_over_real_atoms():
    torch.manual_seed(0)
    ds = small_dataset()
    nets = [ml_util.behler_nn(2, n_internal=3, n_layers=2).to(torch.float64) for _ in range(2)]
    sq, n = 0.0, 0
    for net, d in zip(nets, ds.per_point_datasets, strict=True):
        m = d.mask.numpy() != 0
        pred = net(d.features).detach().numpy()[..., 0]
        sq += float(((pred - d.charges.numpy()[..., 0])[m] ** 2).sum())
        n += int(m.sum())
    assert float(ml_util.charges_loss(nets, ds).loss_value.detach()) == pytest.approx(sq / n, rel=1e-12)
    with_criterion = ml_util.charges_loss(nets, ds, criterion=torch.nn.MSELoss(reduction="sum"))
    assert float(with_criterion.loss_value.detach()) == pytest.approx(sq, rel=1e-12)


def test_charges_loss_gradient_matches_central_differences():
    torch.manual_seed(1)
    ds, _ = small_dataset(normalize=True)
    nets = [ml_util.behler_nn(2, n_internal=3, n_layers=2).to(torch.float64) for _ in range(2)]
    params = [p for net in nets for p in net.parameters()]
    x0 = torch.cat([p.detach().reshape(-1) for p in params]).numpy()

    def loss_at(x):
        offset = 0
        with torch.no_grad():
            for p in params:
                p.copy_(torch.from_numpy(x[offset:offset + p.numel()]).reshape(p.shape))
                offset += p.numel()
            return float(ml_util.charges_loss(nets, ds).loss_value.detach())

    numeric = central_differences(loss_at, x0, 1e-4)
    loss_at(x0)
    closure = ml_util.simple_charges_closure(nets, ds)
    closure.propagate()
    analytic = torch.cat([p.grad.reshape(-1) for p in params]).numpy()
    assert np.abs(analytic).max() > 1e-3
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)  # loss ~ 100: rounding ~1e-9


def test_job_file_stage_saves_charge_potentials(tmp_path, capsys):
    from ase.io import write

    from miniff.io import cell_to_atoms

    frames = []
    for c in synthetic_cells(8, seed=5):
        atoms = cell_to_atoms(c)
        atoms.set_initial_charges(c.meta["charges"])
        frames.append(atoms)
    write(tmp_path / "charges.extxyz", frames)
    description = {"fit-charges": {
        "init": {"seed": 0},
        "prepare": {"fn_cells": str(tmp_path / "charges.extxyz"), "cutoff": 4.0, "test_set": 2,
                    "default_descriptor_kwargs": {"n": 3, "three_point": False}, "nn_kwargs": {"n_layers": 1}},
        "run": {"n_epochs": 3, "save_fn": str(tmp_path / "charges.pt"), "summary": True},
    }}
    wf = ml_util.exec_workflows(description, rtn=False)
    assert isinstance(wf, ml_util.ChargeFitWorkflow)
    out = capsys.readouterr().out
    assert "fit fit-charges" in out and "charge RMSE (spread)" in out
    loaded = ml_util.load_potentials(tmp_path / "charges.pt")
    nw = NeighborWrapper(wf.cells[0], cutoff=4.0)
    q = sum(nw.eval(p, ignore_missing_species=True) for p in loaded)
    pred = ml.fw_cauldron_charges(wf.nn, wf.datasets["learn"].subset([0]), normalization=wf.normalization)
    expected = np.zeros(wf.cells[0].size)
    for p, d, s in zip(pred, wf.datasets["learn"].per_point_datasets, sorted(wf.descriptors), strict=True):
        expected[np.asarray(wf.cells[0].values) == s] = p[0][d.mask[0] != 0][:, 0].detach().numpy()
    np.testing.assert_allclose(q, expected, atol=1e-10)
    with pytest.raises(ml_util.JobFileError, match="w_gradients"):
        ml_util.validate_description({"fit-charges": {"prepare": {"fn_cells": "x", "w_gradients": 1}}})


def test_bad_reference_charges_are_named():
    cells = synthetic_cells(4, seed=2, n=4)
    wf = ml_util.ChargeFitWorkflow()
    broken = [c.copy() for c in cells]
    del broken[2].meta["charges"]
    with pytest.raises(ValueError, match="structure 2 has no reference charges"):
        wf.prepare(broken, descriptors=descriptor_set(), cells_order=None)
    broken = [c.copy() for c in cells]
    broken[1].meta["charges"] = broken[1].meta["charges"][:3]
    with pytest.raises(ValueError, match="structure 1 has 3 charges for 4 atoms"):
        wf.prepare(broken, descriptors=descriptor_set(), cells_order=None)
    broken = [c.copy() for c in cells]
    broken[3].meta["charges"] = np.array([0.1, np.nan, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"structure 3: the reference charges contain NaN or inf \(atom 1\)"):
        wf.prepare(broken, descriptors=descriptor_set(), cells_order=None)
    wf.prepare(cells, descriptors=descriptor_set(), test_set=1)
    with pytest.raises(ValueError, match="select_best"):
        wf.run(n_epochs=1, select_best="energy")
    with pytest.raises(KeyError, match="charge_rmse"):
        ml_util.simple_charges_closure(wf.nn, wf.datasets["learn"], convergence={"energy_rmse": 1e-3})
    no_charges = ml.learn_cauldron([NeighborWrapper(c, cutoff=4.0) for c in cells], descriptor_set(),
                                   normalize=False)
    with pytest.raises(ValueError, match="no reference charges"):
        ml_util.charges_loss(wf.nn, no_charges)


def test_convergence_criterion_in_e_stops_the_fit():
    wf = ml_util.ChargeFitWorkflow(seed=0)
    wf.prepare(synthetic_cells(6, seed=4), descriptors=descriptor_set(), nn_kwargs={"n_layers": 1}, test_set=1,
               closure_kwargs={"convergence": {"charge_rmse": 1e-3}})
    wf.run(n_epochs=50, progress=False, summary=False)
    assert wf.stop_reason == "converged"
    assert wf.history[-1]["charge_rmse"] <= 1e-3


def model_energy(vectors, cart, species, short):
    """Energy (eV) of the known model: Ewald of the known charges of these positions + the short-range terms."""
    frac = cart @ np.linalg.inv(vectors)
    cell = Cell(vectors, frac, species, meta={"charges": known_charges(vectors, frac, species)})
    return NeighborWrapper(cell, cutoff=6.0).total([ewald_total_potential_family(a=6.0, eta=0.55, accuracy=1e-9)]
                                                   + short)


def test_subtract_potentials_leaves_the_short_range_remainder(fitted):
    """Recipe step 2: energies and forces of Ewald(charges that depend on the positions through the known model)
    + a known pair term; subtracting the fitted electrostatics leaves the pair term (within the fit's accuracy).
    Reference forces are central differences of the model energy (they include the chain rule through the
    charges)."""
    from miniff.potentials import harmonic_repulsion_potential_family

    short = [harmonic_repulsion_potential_family(a=2.5, epsilon=3.0, tag=t) for t in ("a-b", "b-a", "a-a", "b-b")]
    cells = synthetic_cells(1, seed=8)
    for c in cells:
        cart = c.cartesian()
        c.meta["total-energy"] = model_energy(c.vectors, cart, c.values, short)
        c.meta["forces"] = -central_differences(lambda x, c=c: model_energy(c.vectors, x, c.values, short), cart,
                                                1e-4)
        c.meta["stress"] = np.zeros(6)
    before = [dict(c.meta) for c in cells]
    wrapper = fitted.electrostatics(a=6.0, eta=0.55, accuracy=1e-8, charge_middleware=None)
    remainder = ml_util.subtract_potentials(cells, wrapper)
    for c, r, meta in zip(cells, remainder, before, strict=True):
        assert c.meta["total-energy"] == meta["total-energy"]   # inputs untouched
        ev = NeighborWrapper(c, cutoff=6.0).evaluate(short)
        assert r.meta["total-energy"] == pytest.approx(ev.energy, abs=1e-4)
        np.testing.assert_allclose(r.meta["forces"], -ev.grad_nc, atol=1e-4)
        np.testing.assert_allclose(r.meta["stress"], -NeighborWrapper(c, cutoff=6.0).stress(wrapper), atol=1e-12)
    with pytest.raises(ValueError, match="potentials"):
        ml_util.subtract_potentials(cells, [])


def test_checkpoint_resumes_a_charge_fit(tmp_path):
    cells = synthetic_cells(6, seed=6)
    kwargs = dict(descriptors=descriptor_set(), nn_kwargs={"n_layers": 2, "n_internal": 3}, test_set=2,
                  checkpoint=str(tmp_path / "charges.ckpt"))
    first = ml_util.ChargeFitWorkflow(seed=0).prepare(cells, **kwargs)
    first.run(n_epochs=2, progress=False, summary=False, stall_epochs=None, restore_best=False)
    second = ml_util.ChargeFitWorkflow(seed=0).prepare(cells, **kwargs)
    assert second.resumed_from == first.epoch
    for a, b in zip(first.nn, second.nn, strict=True):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb)
    changed = [c.copy() for c in cells]
    changed[0].meta = dict(changed[0].meta, charges=changed[0].meta["charges"] + 0.1)
    with pytest.raises(ValueError, match="different data split"):
        ml_util.ChargeFitWorkflow(seed=0).prepare(changed, **kwargs)
