"""Peer-side builders shared by several cases (TorchANI AEV computer and model, DScribe ACSF)."""

import math
import os

import numpy as np

from benchmarks._timing import Unavailable

__all__ = ["DESCRIPTOR_SPEC", "import_torchani", "ani_aev_computer", "ani_model", "ani_inputs", "dscribe_acsf",
           "make_network"]

#: The descriptor set of the kernel issue: 8 Behler-2 + 8 Behler-5, cutoff 5 Å.
DESCRIPTOR_SPEC = {
    "cutoff": 5.0,
    "g2": [(2.0, float(rs)) for rs in np.linspace(1.0, 4.5, 8)],
    "g5": [(eta, zeta, lam) for eta in (0.005, 0.05) for zeta in (1.0, 4.0) for lam in (1.0, -1.0)],
}
#: TorchANI needs angular cutoff < radial cutoff: the angular one is this much smaller (Å).
ANI_ANGULAR_CUTOFF_MARGIN = 1e-4


def import_torchani():
    """Import torchani quietly, or raise ``Unavailable("missing")``."""
    os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
    try:
        import torchani  # noqa: F401
        from torchani.aev import AEVComputer  # noqa: F401
    except ImportError:
        raise Unavailable("missing", "pip install torchani") from None
    return torchani


def ani_aev_computer(spec=DESCRIPTOR_SPEC):
    """TorchANI AEV computer with the same counts as ``spec``: 8 radial terms (same eta, shifts = r_sphere,
    cosine cutoff) and 8 angular terms (4 shifts x 2 sections {0, pi}), float32, periodic cell list."""
    import_torchani()
    from torchani.aev import AEVComputer
    from torchani.aev._terms import ANIAngular, ANIRadial

    cutoff = spec["cutoff"]
    etas = {eta for eta, _ in spec["g2"]}
    if len(etas) != 1:
        raise ValueError("TorchANI's radial terms share one eta")
    radial = ANIRadial(eta=etas.pop(), shifts=[rs for _, rs in spec["g2"]], cutoff=cutoff, cutoff_fn="cosine")
    angular = ANIAngular(eta=0.05, zeta=4.0, shifts=[1.0, 2.0, 3.0, 4.0], sections=[0.0, math.pi],
                         cutoff=cutoff - ANI_ANGULAR_CUTOFF_MARGIN, cutoff_fn="cosine")
    return AEVComputer(radial=radial, angular=angular, num_species=1, cutoff_fn="cosine",
                       neighborlist="cell_list", strategy="pyaev")


def ani_inputs(atoms, dtype):
    """TorchANI inputs (species indices, coordinates [1, N, 3], cell, pbc) of a one-species structure."""
    import torch

    species = torch.zeros((1, len(atoms)), dtype=torch.long)
    coords = torch.tensor(atoms.positions, dtype=dtype)[None]
    cell = torch.tensor(np.array(atoms.cell), dtype=dtype)
    pbc = torch.tensor([True, True, True])
    return species, coords, cell, pbc


def make_network(n_inputs=16, hidden=(32, 32), dtype=None, seed=0):
    """The benchmark network ``n_inputs -> 32 -> 32 -> 1`` with tanh, seeded, as a ``torch.nn.Sequential``."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    layers = []
    dims = (n_inputs, *hidden, 1)
    for k, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        lin = torch.nn.Linear(d_in, d_out)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(d_out, d_in, generator=gen) / math.sqrt(d_in))
            lin.bias.copy_(0.1 * torch.randn(d_out, generator=gen))
        layers.append(lin)
        if k < len(dims) - 2:
            layers.append(torch.nn.Tanh())
    net = torch.nn.Sequential(*layers)
    return net if dtype is None else net.to(dtype)


def ani_model(net, spec=DESCRIPTOR_SPEC, symbol="Si"):
    """A TorchANI ``ANI`` model (float32) with :func:`ani_aev_computer` and the weights of ``net``
    (a ``Sequential`` of Linear/Tanh as made by :func:`make_network`), zero self energy."""
    import_torchani()
    import torch
    from torchani.arch import ANI
    from torchani.nn import ANINetworks
    from torchani.nn._core import AtomicNetwork
    from torchani.sae import SelfEnergy

    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    dims = [linears[0].in_features] + [m.out_features for m in linears]
    atomic = AtomicNetwork(layer_dims=dims, activation=torch.nn.Tanh(), bias=True)
    targets = list(atomic.layers) + [atomic.final_layer]
    with torch.no_grad():
        for dst, src in zip(targets, linears, strict=True):
            dst.weight.copy_(src.weight.float())
            dst.bias.copy_(src.bias.float())
    return ANI(symbols=(symbol,), aev_computer=ani_aev_computer(spec), neural_networks=ANINetworks({symbol: atomic}),
               energy_shifter=SelfEnergy(symbols=(symbol,), self_energies=(0.0,))).float()


def dscribe_acsf(spec=DESCRIPTOR_SPEC, species="Si"):
    """DScribe ACSF with the same G2 and G5 parameters (periodic, float64)."""
    try:
        from dscribe.descriptors import ACSF
    except ImportError:
        raise Unavailable("missing", "pip install dscribe") from None
    return ACSF(species=[species], r_cut=spec["cutoff"], g2_params=[[eta, rs] for eta, rs in spec["g2"]],
                g5_params=[[eta, zeta, lam] for eta, zeta, lam in spec["g5"]], periodic=True)
