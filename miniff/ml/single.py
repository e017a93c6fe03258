"""SingleNN: one atomic network shared by every species, the species entering as inputs.

Per-species Behler networks need one network per element; SingleNN (as AmpTorch trains on many elements) uses
one network ``body`` whose inputs are the descriptors of the atom ``x`` ``[F]`` followed by an embedding
``e_s`` ``[d]`` of its species ``s``::

    E_i = body([x_i, e_{s_i}])

The embedding is a fixed one-hot block (``embedding="one-hot"``: ``d`` = number of species, ``e_s`` the unit
vector of species ``s``) or learned vectors (``embedding=d``, an int: ``[n_species, d]`` trainable). Every
species must have the same number of descriptors, in the same order (the element-agnostic recipes such as
``"wacsf"`` give that).

By default (``species_output=True``) every species also has its own output layer, the ``Linear`` layer that
makes the atomic energy from the last hidden layer ``h``: ``E_i = (w + dw_s) . h + (c + dc_s)``, with shared
``w``, ``c`` (``body``'s layer) and per-species offsets ``dw_s``, ``dc_s`` that start at 0 (so the initial
network is the shared one). This is the SingleNN of Liu and Kitchin (shared hidden layers, an element-specific
output layer); the input embedding alone only shifts the first layer's bias per species, which fitted the
forces of a 5-element EMT set worse (measured in ``docs/many-elements.md``). ``species_output=False`` gives the
plain shared body.

Because the embedding enters only the first ``Linear`` layer ``W [x, e] + b = W_x x + (b + W_e e_s)``, and the
output offsets only the output layer, the network of species ``s`` is exactly a plain per-species network with
first-layer weight ``W_x``, bias ``b + W_e e_s`` and output layer ``(w + dw_s, c + dc_s)``
(:meth:`SpeciesNetwork.to_sequential`). So:

- the fit trains the shared parameters through one :class:`SpeciesNetwork` view per species (the fit's
  ``nn`` list; the views share every tensor, :func:`unique_parameters` lists each once);
- potentials made from the views (:class:`~miniff.ml.potential.NNPotential`) hold the folded plain networks,
  so they evaluate, save and load like any per-species potential, with no loss of precision.
"""

import copy
import numbers

import torch

from miniff.ml.networks import SequentialSoleEnergyNN

__all__ = ["SingleNN", "SpeciesNetwork", "single_nn_networks", "unique_parameters", "EMBEDDINGS"]

#: Names of the fixed embeddings (an int ``d`` gives a learned embedding of ``d`` numbers per species).
EMBEDDINGS = ("one-hot",)


def unique_parameters(networks):
    """The parameters of ``networks`` (a list of modules), each tensor once, in order of first appearance.

    SingleNN views share their tensors; optimizers and regularisation terms must see every one once.
    """
    seen, out = set(), []
    for net in networks:
        for p in net.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


class SingleNN(torch.nn.Module):
    """One atomic network for every species: ``body([descriptors, embedding of the species])`` -> eV.

    Parameters
    ----------
    n_inputs : int
        Number of descriptors per atom (the same for every species).
    species : sequence of str
        The species labels, in the order of the fit's networks (sorted); index = species index.
    embedding : "one-hot" or int
        ``"one-hot"``: a fixed unit vector per species (``d = len(species)``); an int ``d >= 1``: learned
        vectors ``[len(species), d]``, initialised from a unit normal distribution (torch's global generator).
    species_output : bool
        Give every species its own output layer (shared layer + per-species offsets, see the module
        docstring); False: every layer after the input is shared.
    **network_kwargs
        Arguments of :class:`~miniff.ml.networks.SequentialSoleEnergyNN` for ``body`` (``n_internal``,
        ``n_layers``, ``activation``, ``bias``, ``dtype``, ``output_activation``, ``init``); its input width is
        ``n_inputs + d``.

    Attributes
    ----------
    body : SequentialSoleEnergyNN
        The shared network ``[n_inputs + d] -> [1]``.
    embedding : torch.Tensor
        ``[len(species), d]``: a buffer (one-hot) or a parameter (learned).
    output_index : int
        Position in ``body`` of the output layer (the ``Linear`` making the atomic energy, before the output
        scaling of ``output_activation``).
    output_weight, output_bias : torch.nn.Parameter or None
        ``[len(species), 1, H]`` and ``[len(species), 1]`` (H: width of the last hidden layer): the per-species
        offsets of the output layer (None with ``species_output=False``; no bias offset when that layer has no
        bias).
    """

    def __init__(self, n_inputs, species, embedding="one-hot", species_output=True, **network_kwargs):
        super().__init__()
        n_inputs = _check_int("n_inputs", n_inputs, 1)
        species = tuple(species)
        if not species or not all(isinstance(s, str) and s for s in species):
            raise ValueError(f"species must be a non-empty sequence of labels, got {species!r}")
        if len(set(species)) != len(species):
            raise ValueError(f"species must not repeat labels, got {species!r}")
        self.species = species
        self.n_inputs = n_inputs
        dtype = network_kwargs.get("dtype")
        if isinstance(embedding, str):
            if embedding not in EMBEDDINGS:
                raise ValueError(f"embedding must be one of {list(EMBEDDINGS)} or an int (learned size), "
                                 f"got {embedding!r}")
            self.register_buffer("embedding", torch.eye(len(species), dtype=dtype))
        else:
            d = _check_int("embedding", embedding, 1)
            self.embedding = torch.nn.Parameter(torch.randn(len(species), d, dtype=dtype))
        self.embedding_kind = embedding
        self.body = SequentialSoleEnergyNN(n_inputs + self.embedding.shape[1], **network_kwargs)
        if not isinstance(species_output, bool):
            raise TypeError(f"species_output must be a bool, got {type(species_output).__name__}")
        linears = [i for i, m in enumerate(self.body) if isinstance(m, torch.nn.Linear)]
        self.output_index = linears[-2] if network_kwargs.get("output_activation") else linears[-1]
        self.species_output = species_output
        self.output_weight = self.output_bias = None
        if species_output:
            out = self.body[self.output_index]
            n = len(species)
            self.output_weight = torch.nn.Parameter(torch.zeros(n, *out.weight.shape, dtype=out.weight.dtype))
            if out.bias is not None:
                self.output_bias = torch.nn.Parameter(torch.zeros(n, *out.bias.shape, dtype=out.bias.dtype))

    def layer_parameters(self, i, k):
        """``(weight, bias)`` of ``body[i]`` (a ``Linear``) for species index ``k`` or ``[n]`` indices ``k``
        (then ``weight`` ``[n, out, in]``, ``bias`` ``[n, out]``): the shared layer plus the species' output
        offsets at the output layer; the embedding columns are not folded (differentiable; bias may be None)."""
        layer = self.body[i]
        w, b = layer.weight, layer.bias
        if i == self.output_index and self.output_weight is not None:
            w = w + self.output_weight[k]
            if self.output_bias is not None:
                b = b + self.output_bias[k]
        return w, b

    def forward(self, features, species_index):
        """Atomic energies ``[n, 1]`` of atoms with descriptors ``features`` ``[n, F]`` and species indices
        ``species_index`` ``[n]`` (int, into :attr:`species`): the concatenated inputs through :attr:`body`."""
        species_index = torch.as_tensor(species_index, dtype=torch.long)
        e = self.embedding[species_index].to(features.dtype)
        h = torch.cat([features, e], dim=-1)
        for i, module in enumerate(self.body):
            if i == self.output_index and self.output_weight is not None:
                w, b = self.layer_parameters(i, species_index)          # [n, 1, H], [n, 1]
                h = (w @ h.unsqueeze(-1)).squeeze(-1) + (0 if b is None else b)
            else:
                h = module(h)
        return h

    def species_network(self, k):
        """The :class:`SpeciesNetwork` of species index ``k`` (shares every tensor with this network)."""
        k = _check_int("k", k, 0)
        if k >= len(self.species):
            raise ValueError(f"k must be a species index below {len(self.species)}, got {k}")
        return SpeciesNetwork(self, k)

    def species_networks(self):
        """One :class:`SpeciesNetwork` per species, in the order of :attr:`species` (the fit's ``nn`` list)."""
        return [SpeciesNetwork(self, k) for k in range(len(self.species))]


class SpeciesNetwork(torch.nn.Module):
    """The network of one species of a :class:`SingleNN`: descriptors ``[..., F]`` -> energy ``[..., 1]``.

    It evaluates ``body`` with the species' embedding folded into the first layer's bias and shares its tensors
    with the :class:`SingleNN` (``single``); :meth:`to_sequential` gives an independent plain network.
    """

    def __init__(self, single, k):
        super().__init__()
        self.single = single
        self.k = int(k)

    @property
    def body(self):
        """The shared network of the :class:`SingleNN`."""
        return self.single.body

    def _layer(self, i):
        """``(weight, bias)`` of ``body[i]`` (a ``Linear``) for this species: the output offsets added, and for
        the first layer the embedding folded into the bias (``(W_x [H, F], bias [H])``; differentiable)."""
        w, b = self.single.layer_parameters(i, self.k)
        if i == 0:
            n_f = self.single.n_inputs
            fold = w[:, n_f:] @ self.single.embedding[self.k].to(w.dtype)
            w, b = w[:, :n_f], fold if b is None else b + fold
        return w, b

    def forward(self, x):
        """Energies ``[..., 1]`` of descriptors ``x`` ``[..., F]``."""
        h = x
        for i, module in enumerate(self.single.body):
            if isinstance(module, torch.nn.Linear) and (i == 0 or i == self.single.output_index):
                h = torch.nn.functional.linear(h, *self._layer(i))
            else:
                h = module(h)
        return h

    def to_sequential(self):
        """A plain ``torch.nn.Sequential`` equal to this network (embedding and output offsets folded; a detached
        copy)."""
        layers = []
        for i, module in enumerate(self.single.body):
            if isinstance(module, torch.nn.Linear) and (i == 0 or i == self.single.output_index):
                w, b = self._layer(i)
                layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype)
                with torch.no_grad():
                    layer.weight.copy_(w)
                    if b is not None:
                        layer.bias.copy_(b)
                layers.append(layer)
            else:
                layers.append(copy.deepcopy(module))
        return torch.nn.Sequential(*layers)

    def extra_repr(self):
        return f"species={self.single.species[self.k]!r}"


def single_nn_networks(descriptors, embedding="one-hot", species_output=True, **network_kwargs):
    """The fit's networks for SingleNN: one :class:`SpeciesNetwork` view per species of one new :class:`SingleNN`.

    Parameters
    ----------
    descriptors : dict
        ``{species: [descriptor potentials]}``; every species must have the same number of descriptors.
    embedding, species_output, **network_kwargs
        As :class:`SingleNN`.

    Returns
    -------
    list of SpeciesNetwork
        In ``sorted(descriptors)`` order.
    """
    counts = {s: len(d) for s, d in descriptors.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"SingleNN needs the same number of descriptors for every species (one network reads "
                         f"them all), got {counts}; use an element-agnostic recipe such as 'wacsf'")
    species = sorted(descriptors)
    return SingleNN(counts[species[0]], species, embedding=embedding, species_output=species_output,
                    **network_kwargs).species_networks()
