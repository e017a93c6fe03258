"""Neural-network (Behler-Parrinello) potentials: datasets, normalisation, networks, training passes.

The pieces, in the order of a fit:

1. :func:`learn_cauldron` computes descriptors of cells (and, with ``grad=True``, their sparse Jacobians) and
   assembles a :class:`Dataset` = one :class:`PerCellDataset` (total energies ``[S, 1]`` eV, energy
   gradients ``[S, N, 3]`` eV/Å) + one :class:`PerPointDataset` per species (features ``[S, M, F]``, mask
   ``[S, M]``, Jacobian as a :class:`SparseJacobian`), normalised by a :class:`Normalization`.
2. :class:`SequentialSoleEnergyNN` makes one atomic network per species; or :class:`SingleNN` one network for
   every species, the species entering as a one-hot or learned embedding and choosing its own output layer
   (:func:`single_nn_networks` gives the fit one :class:`SpeciesNetwork` view per species).
3. :func:`forward_cauldron` predicts total energies (and gradients, for force training) of a dataset.
4. :func:`potentials_from_ml_data` turns fitted networks into :class:`NNPotential` objects that work with
   ``NeighborWrapper.eval/total/grad/stress/relax``; :func:`save_potentials` / :func:`load_potentials`
   store them as plain data.
5. :class:`CommitteePotential` averages K networks of one species; :func:`committee_spread` gives their
   disagreement (energy, per-atom energy, force and stress standard deviations) as an uncertainty;
   :func:`calibrate_committee` measures on held-out data how well it predicts the error and rescales it.
6. :func:`descriptor_sensitivity` measures how much each descriptor moves a fitted potential's energies.

Memory of force training is linear in the number of pairs (never a dense ``[S, M, F, N, 3]`` tensor).
"""

from miniff.ml.calibration import CommitteeCalibration, calibrate_committee, committee_force_errors
from miniff.ml.cauldron import (
    cpu_copy,
    energy_gradients,
    forward,
    forward_cauldron,
    fw_cauldron,
    fw_cauldron_charges,
    learn_cauldron,
    prepare_descriptor_data,
    total_energy,
)
from miniff.ml.committee import CommitteePotential, CommitteeSpread, committee_family, committee_spread
from miniff.ml.datasets import Dataset, PerCellDataset, PerPointDataset
from miniff.ml.descriptor_data import collect_atoms, encode_species
from miniff.ml.jacobian import SparseJacobian
from miniff.ml.networks import (
    SequentialSoleEnergyNN,
    behler_nn,
    init_output_range,
    linear,
    sequential_from_data,
    sequential_to_data,
    simplify_sequential,
)
from miniff.ml.normalization import Normalization
from miniff.ml.potential import (
    ExtrapolationError,
    ExtrapolationWarning,
    NNPotential,
    NNPotentialFamily,
    descriptor_ranges,
    ml_potential_family,
    potentials_from_ml_data,
)
from miniff.ml.sensitivity import DescriptorSensitivity, descriptor_label, descriptor_sensitivity
from miniff.ml.serialize import load_potentials, save_potentials
from miniff.ml.single import SingleNN, SpeciesNetwork, single_nn_networks, unique_parameters

__all__ = [
    "PerCellDataset",
    "PerPointDataset",
    "Dataset",
    "SparseJacobian",
    "Normalization",
    "learn_cauldron",
    "prepare_descriptor_data",
    "collect_atoms",
    "encode_species",
    "SequentialSoleEnergyNN",
    "behler_nn",
    "init_output_range",
    "linear",
    "simplify_sequential",
    "sequential_to_data",
    "sequential_from_data",
    "forward_cauldron",
    "fw_cauldron",
    "fw_cauldron_charges",
    "cpu_copy",
    "forward",
    "total_energy",
    "energy_gradients",
    "NNPotential",
    "NNPotentialFamily",
    "ExtrapolationError",
    "ExtrapolationWarning",
    "descriptor_ranges",
    "CommitteePotential",
    "CommitteeSpread",
    "committee_family",
    "committee_spread",
    "CommitteeCalibration",
    "calibrate_committee",
    "committee_force_errors",
    "ml_potential_family",
    "potentials_from_ml_data",
    "save_potentials",
    "load_potentials",
    "descriptor_sensitivity",
    "DescriptorSensitivity",
    "descriptor_label",
    "SingleNN",
    "SpeciesNetwork",
    "single_nn_networks",
    "unique_parameters",
]
