"""Writing miniff NN potentials as n2p2 potential folders (:func:`write_n2p2`), for n2p2 and LAMMPS ``hdnnp``.

Every descriptor of a potential becomes one n2p2 symmetry function times a factor, or a sum of them
(``docs/n2p2.md`` has the table): Behler type 2 is n2p2 type 2; Behler types 4 and 5 are n2p2 types 3 and 9,
which sum over unordered neighbour pairs (miniff over ordered ones), times ``epsilon`` (``2 epsilon`` when both
neighbours are of one species); the element-weighted families with ``weights="Z"`` are n2p2 types 12 and 13
(``2 epsilon``), with any other weights the sum over the elements (pairs of elements) of types 2 (3) times the
weights.  The factors go into the first layer of the network, so the written network reads n2p2's unscaled
symmetry functions (no scaling keyword) and gives eV; the files are in Å and eV (LAMMPS ``cflength 1.0
cfenergy 1.0`` with ``units metal``).  The cutoff function is n2p2's type 1 (the cosine, ``alpha = 0``), miniff's.
"""

import os

import numpy as np

from miniff._atomic import atomic_folder
from miniff.io.n2p2_files import function_line, function_sort_key

__all__ = ["write_n2p2", "ACTIVATION_LETTERS"]

#: torch activation layers and their n2p2 letters (``Softplus`` only with ``beta=1``).
ACTIVATION_LETTERS = {"Tanh": "t", "Sigmoid": "s", "ReLU": "r", "Softplus": "p", "Identity": "l"}
_INERT = ("Dropout", "AlphaDropout")  # identity at prediction
#: The n2p2 cutoff function of every written symmetry function: type 1 with alpha 0 is miniff's cosine cutoff.
CUTOFF_TYPE = 1
#: ``scaling.data`` range written for a symmetry function whose training range is unknown (no extrapolation
#: check): every written function is non-negative.
NO_RANGE = (0.0, 1e300)


def _modules(module):
    children = list(module.children()) if type(module).__name__ == "Sequential" else [module]
    for m in children:
        if type(m).__name__ == "Sequential":
            yield from _modules(m)
        else:
            yield m


def network_layers(nn, name):
    """``[(W [out, in], b [out], letter)]`` of a network of ``Linear`` layers, each followed by at most one
    activation n2p2 has (:data:`ACTIVATION_LETTERS`; none: ``"l"``); ``ValueError`` naming the layer otherwise."""
    layers = []
    for k, m in enumerate(_modules(nn)):
        kind = type(m).__name__
        if kind == "Linear":
            w = m.weight.detach().double().numpy().copy()
            b = np.zeros(len(w)) if m.bias is None else m.bias.detach().double().numpy().copy()
            layers.append([w, b, None])
        elif kind in _INERT:
            continue
        elif kind in ACTIVATION_LETTERS:
            if kind == "Identity" and layers and layers[-1][2] is None:
                continue
            if not layers or layers[-1][2] is not None:
                raise ValueError(f"{name}: layer {k} ({kind}) does not follow a Linear layer; n2p2 networks are "
                                 f"Linear layers each followed by one activation")
            if kind == "Softplus" and float(m.beta) != 1.0:
                raise ValueError(f"{name}: layer {k} is Softplus(beta={m.beta}); n2p2's softplus has beta 1")
            layers[-1][2] = ACTIVATION_LETTERS[kind]
        else:
            raise ValueError(f"{name}: layer {k} ({kind}) has no n2p2 equivalent; n2p2 networks use Linear layers "
                             f"and the activations {sorted(ACTIVATION_LETTERS)}")
    if not layers:
        raise ValueError(f"{name}: the network has no Linear layer")
    if layers[-1][0].shape[0] != 1:
        raise ValueError(f"{name}: the network gives {layers[-1][0].shape[0]} outputs per atom, n2p2 needs 1")
    return [(w, b, "l" if act is None else act) for w, b, act in layers]


def _function(kind, ec, rc, **values):
    f = {"type": kind, "ec": ec, "e1": -1, "e2": -1, "eta": 0.0, "rs": 0.0, "zeta": 0.0, "lambda": 0.0,
         "rc": float(rc), "rl": 0.0, "al": 0.0, "ar": 0.0, "subtype": ""}
    f.update({k: (v if k in ("e1", "e2") else float(v)) for k, v in values.items()})
    if f["e2"] >= 0:
        f["e1"], f["e2"] = sorted((f["e1"], f["e2"]))
    return f


def descriptor_functions(d, name, index):
    """``[(n2p2 function dict, factor)]`` with ``d = sum factor * G_function`` for the atoms of its centre
    species (``index``: element symbol -> n2p2 element index); ``ValueError`` naming ``name`` when n2p2 has no
    equivalent."""
    from miniff.potentials.weighted import species_weights

    family = getattr(getattr(d, "family", None), "tag", None)
    p = d.parameters
    parts = str(d.tag).split("-")
    for s in parts:
        if s not in index:
            raise ValueError(f"{name} (tag {d.tag!r}) names species {s!r}, which has no potential among those "
                             f"written; n2p2 needs a network for every element ({sorted(index)})")
    ec = index[parts[0]]
    symbols = sorted(index, key=index.get)
    if family in ("Behler type 4", "Behler type 5", "weighted angular") and not -1.0 <= p["l"] <= 1.0:
        raise ValueError(f"{name}: l={p['l']} is outside [-1, 1], where n2p2 (which sets negative 1 + l cos "
                         f"to 0) and miniff differ")
    if family == "Behler type 2" and len(parts) == 2:
        return [(_function(2, ec, p["a"], e1=index[parts[1]], eta=p["eta"], rs=p["r_sphere"]), 1.0)]
    if family in ("Behler type 4", "Behler type 5") and len(parts) == 3:
        f = _function(3 if family == "Behler type 4" else 9, ec, p["a"], e1=index[parts[1]], e2=index[parts[2]],
                      eta=p["eta"], zeta=p["zeta"], **{"lambda": p["l"]})
        return [(f, p["epsilon"] * (2.0 if parts[1] == parts[2] else 1.0))]
    if family in ("weighted radial", "weighted angular") and len(parts) == 1:
        radial = family == "weighted radial"
        if p["weights"] == "Z":
            if radial:
                return [(_function(12, ec, p["a"], eta=p["eta"], rs=p["r_sphere"]), 1.0)]
            return [(_function(13, ec, p["a"], eta=p["eta"], rs=p["r_sphere"], zeta=p["zeta"],
                               **{"lambda": p["l"]}), 2.0 * p["epsilon"])]
        try:
            w = species_weights(p["weights"], symbols)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        if radial:
            return [(_function(2, ec, p["a"], e1=e, eta=p["eta"], rs=p["r_sphere"]), w[e])
                    for e in range(len(symbols)) if w[e] != 0]
        return [(_function(3, ec, p["a"], e1=e1, e2=e2, eta=p["eta"], rs=p["r_sphere"], zeta=p["zeta"],
                           **{"lambda": p["l"]}), 2.0 * p["epsilon"] * w[e1] * w[e2])
                for e1 in range(len(symbols)) for e2 in range(e1, len(symbols)) if w[e1] * w[e2] != 0]
    raise ValueError(f"{name} ({family!r}, tag {d.tag!r}) has no n2p2 symmetry function: write_n2p2 writes the "
                     f"families 'Behler type 2' (tag 'a-b'), 'Behler type 4' and 'Behler type 5' (tag 'a-b-c'), "
                     f"'weighted radial' and 'weighted angular'")


def _element(pot, k, index):
    """Sorted functions, their ``scaling.data`` rows and the network layers of potential ``pot`` (n2p2 input
    order)."""
    name = f"potentials[{k}] ({pot.tag})"
    functions, columns = [], {}
    coefficients = []  # per descriptor: [(column, factor)]
    for j, d in enumerate(pot.descriptors):
        row = []
        for f, factor in descriptor_functions(d, f"{name}: descriptors[{j}]", index):
            key = tuple(sorted(f.items()))
            if key not in columns:
                columns[key] = len(functions)
                functions.append(f)
            row.append((columns[key], factor))
        coefficients.append(row)
    if not functions:
        raise ValueError(f"{name}: its descriptors give no n2p2 symmetry function (all weights are 0)")
    c_fm = np.zeros((len(pot.descriptors), len(functions)))
    for j, row in enumerate(coefficients):
        for m, factor in row:
            c_fm[j, m] += factor
    ranges = np.tile(NO_RANGE, (len(functions), 1))
    known = np.zeros(len(functions), dtype=bool)
    if pot.descriptor_range is not None:
        for j, row in enumerate(coefficients):
            if len(row) == 1 and row[0][1] != 0:
                m, factor = row[0]
                lo, hi = sorted(np.asarray(pot.descriptor_range[j], dtype=float) / factor)
                ranges[m] = (max(lo, ranges[m, 0]), min(hi, ranges[m, 1])) if known[m] else (lo, hi)
                known[m] = True
    order = sorted(range(len(functions)), key=lambda m: function_sort_key(functions[m], CUTOFF_TYPE, 0.0))
    layers = network_layers(pot.nn, name)
    w0, b0, act0 = layers[0]
    if w0.shape[1] != len(pot.descriptors):
        raise ValueError(f"{name}: the network takes {w0.shape[1]} inputs for {len(pot.descriptors)} descriptors")
    layers[0] = ((w0 @ c_fm)[:, order], b0, act0)
    if len(layers) == 1:  # n2p2 needs a hidden layer: the linear network's output becomes one, passed on as is
        layers.append((np.ones((1, 1)), np.zeros(1), "l"))
    return [functions[m] for m in order], ranges[order], layers


def _pad(layers, widths):
    """The layers with zero neurons added up to ``widths`` (hidden layers): the same function."""
    out = []
    for k, (w, b, act) in enumerate(layers):
        n_out = widths[k] if k < len(widths) else w.shape[0]
        n_in = w.shape[1] if k == 0 else widths[k - 1]
        wp, bp = np.zeros((n_out, n_in)), np.zeros(n_out)
        wp[:w.shape[0], :w.shape[1]], bp[:len(b)] = w, b
        out.append((wp, bp, act))
    return out


def _weights_text(layers):
    """``weights.NNN.data`` in n2p2's order: per layer every weight (source neuron outer, target inner), then
    the biases; ``<value> a <index> <l_s> <n_s> <l_e> <n_e>`` / ``<value> b <index> <l_e> <n_e>``."""
    lines, index = ["# miniff write_n2p2: weights and biases of one element's network"], 0
    for k, (w, b, _) in enumerate(layers):
        for ns in range(w.shape[1]):
            for ne in range(w.shape[0]):
                index += 1
                lines.append(f"{float(w[ne, ns])!r} a {index} {k} {ns + 1} {k + 1} {ne + 1}")
        for ne in range(len(b)):
            index += 1
            lines.append(f"{float(b[ne])!r} b {index} {k + 1} {ne + 1}")
    return "\n".join(lines) + "\n"


def _is_potential_file(name):
    return name in ("input.nn", "scaling.data") or (name.startswith("weights.") and name.endswith(".data"))


def write_n2p2(potentials, folder, overwrite=False):
    """Write miniff NN potentials as an n2p2 potential folder (``input.nn``, ``scaling.data``,
    ``weights.<Z>.data``) that n2p2 (``nnp-predict``) and LAMMPS ``pair_style hdnnp`` read.

    Parameters
    ----------
    potentials : list of NNPotential
        One per element (tags chemical symbols), e.g. from ``FitWorkflow`` or ``load_potentials``. Their
        descriptors must be of the families n2p2 can express (module docstring); the networks ``Linear`` layers
        with ``Tanh``, ``Sigmoid``, ``ReLU``, ``Softplus`` (beta 1) or no activation. Networks of different
        widths are padded with inert neurons; the number of layers and the activations must agree (n2p2 uses
        one layout for all elements).
    folder : str or PathLike
        The folder to write (its parent must exist). Written atomically: the files go to a temporary folder
        that replaces ``folder`` only when complete.
    overwrite : bool
        Replace an existing ``folder``; it must then hold nothing but n2p2 potential files (``input.nn``,
        ``scaling.data``, ``weights.*.data``), which are never half-replaced.

    Returns
    -------
    str
        The folder.

    Notes
    -----
    The files are in Å and eV. ``scaling.data`` holds each function's training range where the potential has a
    ``descriptor_range`` (n2p2 then warns about extrapolation as miniff does), else ``[0, 1e300]`` (no check);
    the network inputs are not scaled. ``read_n2p2(folder)`` gives the potentials back.

    Raises
    ------
    TypeError
        An entry that is not an NN potential (named).
    ValueError
        A descriptor, layer or species n2p2 cannot express (named), or two elements with different network
        layouts.
    FileExistsError
        ``folder`` exists and ``overwrite`` is False, or it holds other files.
    """
    from ase.data import atomic_numbers

    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path (str or PathLike), got {type(folder).__name__}")
    potentials = list(potentials) if isinstance(potentials, (list, tuple)) else [potentials]
    if not potentials:
        raise ValueError("potentials must not be empty")
    for k, pot in enumerate(potentials):
        if hasattr(pot, "members"):
            raise TypeError(f"potentials[{k}] is a committee ({pot!r}); n2p2 reads one network per element: write "
                            f"each member to its own folder")
        if not (hasattr(pot, "nn") and hasattr(pot, "descriptors")):
            raise TypeError(f"potentials[{k}] ({pot!r}) is not an NN potential (NNPotential); n2p2 folders hold "
                            f"atomic networks only")
        if pot.tag not in atomic_numbers or pot.tag == "X":
            raise ValueError(f"potentials[{k}] has tag {pot.tag!r}: n2p2 needs chemical symbols")
    tags = [p.tag for p in potentials]
    if len(set(tags)) != len(tags):
        raise ValueError(f"potentials: one potential per element, got the tags {tags}")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FileExistsError(f"{os.fspath(folder)!r} is a file; write_n2p2 writes a folder (give a new name)")
    if os.path.exists(folder) and not overwrite:
        raise FileExistsError(f"{os.fspath(folder)!r} exists; pass overwrite=True to replace its potential files")
    symbols = sorted(tags, key=lambda s: atomic_numbers[s])
    index = {s: k for k, s in enumerate(symbols)}
    pots = sorted(potentials, key=lambda p: atomic_numbers[p.tag])
    elements = [_element(p, potentials.index(p), index) for p in pots]
    layouts = {(len(layers), tuple(act for _, _, act in layers)) for _, _, layers in elements}
    if len(layouts) > 1:
        raise ValueError(f"potentials: n2p2 uses one network layout for all elements, but the networks have "
                         f"different numbers of layers or activations: "
                         f"{ {p.tag: ''.join(a for _, _, a in el[2]) for p, el in zip(pots, elements, strict=True)} }")
    n_hidden = len(elements[0][2]) - 1
    widths = [max(el[2][k][0].shape[0] for el in elements) for k in range(n_hidden)]
    text = ["# n2p2 potential written by miniff (write_n2p2): lengths in Angstrom, energies in eV",
            "nnp_generation 2", f"number_of_elements {len(symbols)}", "elements " + " ".join(symbols),
            f"cutoff_type {CUTOFF_TYPE} 0.0", "# no scale_*/center_* keyword: the networks read unscaled functions",
            f"global_hidden_layers_short {n_hidden}",
            "global_nodes_short " + " ".join(str(w) for w in widths),
            "global_activation_short " + " ".join(act for _, _, act in elements[0][2])]
    rows = []
    for e, (functions, ranges, _) in enumerate(elements, 1):
        text += [function_line(f, symbols) for f in functions]
        for m, (lo, hi) in enumerate(ranges.tolist(), 1):
            sigma = (hi - lo) / 2 if 0 < hi - lo < NO_RANGE[1] else 1.0
            rows.append(f"{e} {m} {lo!r} {hi!r} {(lo + hi) / 2!r} {sigma!r}")
    with atomic_folder(folder, replaceable=_is_potential_file) as tmp:
        with open(os.path.join(tmp, "input.nn"), "w") as f:
            f.write("\n".join(text) + "\n")
        with open(os.path.join(tmp, "scaling.data"), "w") as f:
            f.write("\n".join(rows) + "\n")
        for p, (_, _, layers) in zip(pots, elements, strict=True):
            with open(os.path.join(tmp, f"weights.{atomic_numbers[p.tag]:03d}.data"), "w") as f:
                f.write(_weights_text(_pad(layers, widths)))
    return os.fspath(folder)
