"""Descriptor sets from RuNNer ``input.nn`` files (``symfunction_short`` lines, Bohr units) and NN potentials
from the text potential files of LAMMPS ``pair_style nn`` (SIMPLE-NN's ``potential_saved``)."""

import os

from miniff import units

__all__ = ["parse_runner_input", "parse_lammps_input", "BOHR_TO_ANGSTROM", "group_by_species"]

#: Bohr radius in Å (``miniff.units.BOHR``).
BOHR_TO_ANGSTROM = units.BOHR


def parse_runner_input(f, strict=True):
    """Behler descriptors of the ``symfunction_short`` lines of a RuNNer input file.

    Supported lines (lengths and ``eta`` in Bohr units, converted to Å)::

        symfunction_short <c> 2 <n> <eta> <rshift> <cutoff>
        symfunction_short <c> 3 <n1> <n2> <eta> <lambda> <zeta> <cutoff>

    giving ``behler2(eta=eta/a0^2, r_sphere=rshift*a0, a=cutoff*a0, tag="c-n")`` and
    ``behler4(eta=eta/a0^2, l=lambda, zeta=zeta, a=cutoff*a0, tag="c-n1-n2")``.  Blank lines and ``#``
    comments are skipped; so is comment text after ``!`` or ``#`` at the end of a line (RuNNer writes e.g.
    ``symfunction_short Ge 2 Ge 0.3 0.0 12.0 ! central_atom type neighbor_atom eta rshift funccutoff``).

    Parameters
    ----------
    f : str, PathLike or file object
        The file.
    strict : bool
        Raise ``ValueError`` on any other line or descriptor type (otherwise skip them).

    Returns
    -------
    list of LocalPotential
        In file order; :func:`group_by_species` turns it into ``{species: [...]}``.
    """
    from miniff import potentials

    lines = _read_lines(f)
    a0 = BOHR_TO_ANGSTROM
    out = []
    for number, raw in enumerate(lines, 1):
        line = _strip_comment(raw)
        if not line:
            continue
        words = line.split()
        if words[0] != "symfunction_short" or len(words) < 3:
            if strict:
                raise ValueError(f"f: line {number}: not a symfunction_short line: {raw.strip()!r}")
            continue
        kind = words[2]
        if not ((kind == "2" and len(words) == 7) or (kind == "3" and len(words) == 9)):
            if strict:
                raise ValueError(f"f: line {number}: unsupported descriptor type {kind!r} or field count "
                                 f"({len(words)}): {raw.strip()!r}")
            continue
        try:
            numbers = [float(x) for x in words[4:]] if kind == "2" else [float(x) for x in words[5:]]
        except ValueError:
            raise ValueError(f"f: line {number}: malformed numbers in {raw.strip()!r}") from None
        if kind == "2":
            eta, rshift, cutoff = numbers
            out.append(potentials.behler2_descriptor_family(
                a=cutoff * a0, eta=eta / a0**2, r_sphere=rshift * a0, tag=f"{words[1]}-{words[3]}"))
        else:
            eta, lam, zeta, cutoff = numbers
            out.append(potentials.behler4_descriptor_family(
                a=cutoff * a0, eta=eta / a0**2, l=lam, zeta=zeta, tag=f"{words[1]}-{words[3]}-{words[4]}"))
    return out


def group_by_species(descriptors):
    """``{centre species: [descriptors]}`` from a list of tagged descriptors (centre = first tag field)."""
    out = {}
    for d in descriptors:
        out.setdefault(str(d.tag).split("-")[0], []).append(d)
    return out


def _read_lines(f):
    """The lines of a path or an open text file."""
    if isinstance(f, (str, os.PathLike)):
        with open(f) as handle:
            return handle.readlines()
    if not hasattr(f, "readlines"):
        raise TypeError(f"f must be a path or a text file object, got {type(f).__name__}")
    return f.readlines()


def _strip_comment(raw, markers="#!"):
    """``raw`` without the comment text after the first of ``markers``, stripped."""
    cut = len(raw)
    for marker in markers:
        pos = raw.find(marker)
        if pos >= 0:
            cut = min(cut, pos)
    return raw[:cut].strip()


def parse_lammps_input(f, simplify=True):
    """NN potentials from a LAMMPS ``pair_style nn`` potential file (SIMPLE-NN's text format).

    The file (lengths in Å, energies in eV; ``#`` starts a comment)::

        ELEM_LIST <el> [<el> ...]           # optional first line
        POT <el> <cutoff>                   # one block per element
        SYM <n>
        <type> <cutoff> <eta> <p3> <p4> <el1> [<el2>]    # n lines
        scale1 <n values>
        scale2 <n values>
        NET <n_layers> <width_1> ... <width_n_layers>   # the last width is 1 (the atomic energy)
        LAYER 0 <activation>                # sigmoid, tanh, relu, selu, ... or linear
        w0 <inputs of the layer>            # one w/b pair per output node of the layer
        b0 <bias>
        ...

    Symmetry-function lines give ``behler2(a=cutoff, eta=eta, r_sphere=p3, tag="el-el1")`` for type 2 and
    ``behler4(a=cutoff, eta=eta, zeta=p3, l=p4, tag="el-el1-el2")`` for type 4; the file sums each angle
    once per unordered neighbour pair, so ``epsilon=0.5`` when ``el1 == el2`` (miniff's triplet sums run over
    ordered pairs).  The network input is ``(G - scale1) / scale2``, folded into the potential as a
    :class:`~miniff.ml.Normalization` with ``energy_scale=1`` eV and zero energy offsets.

    Parameters
    ----------
    f : str, PathLike or file object
    simplify : bool
        Fuse consecutive linear layers (including the folded scaling) of the networks.

    Returns
    -------
    list of NNPotential
        One per element, sorted by element.

    Raises
    ------
    ValueError
        Naming the line, for any malformed or unsupported content.
    """
    import torch

    from miniff import ml, potentials
    from miniff.ml.networks import resolve_activation

    blocks = {}
    state = "pot"
    block = None
    for number, raw in enumerate(_read_lines(f), 1):
        line = _strip_comment(raw, "#")
        if not line:
            continue
        words = line.split()
        where = f"f: line {number}"
        if words[0] == "ELEM_LIST":
            continue
        if state == "pot":
            if words[0] != "POT" or len(words) != 3:
                raise ValueError(f"{where}: expected 'POT <element> <cutoff>', got {raw.strip()!r}")
            el = words[1]
            if el in blocks:
                raise ValueError(f"{where}: element {el!r} appears twice")
            block = blocks[el] = {"cutoff": _float(words[2], where), "sym": [], "scale": [], "layers": []}
            state = "sym_count"
        elif state == "sym_count":
            if words[0] != "SYM" or len(words) != 2 or not words[1].isdigit() or int(words[1]) == 0:
                raise ValueError(f"{where}: expected 'SYM <number of symmetry functions>', got {raw.strip()!r}")
            block["n_sym"] = int(words[1])
            state = "sym"
        elif state == "sym":
            block["sym"].append(_lammps_symmetry_function(el, words, where, potentials))
            if len(block["sym"]) == block["n_sym"]:
                state = "scale"
        elif state == "scale":
            key = f"scale{len(block['scale']) + 1}"
            if words[0] != key or len(words) != block["n_sym"] + 1:
                raise ValueError(f"{where}: expected {key!r} and {block['n_sym']} values, got {len(words) - 1} "
                                 f"value(s) after {words[0]!r}")
            values = [_float(x, where) for x in words[1:]]
            if key == "scale2" and any(v == 0 for v in values):
                raise ValueError(f"{where}: scale2 has a zero entry (position {values.index(0) + 1}): the "
                                 f"scaled input would be infinite")
            block["scale"].append(values)
            if len(block["scale"]) == 2:
                state = "net"
        elif state == "net":
            if words[0] != "NET" or len(words) < 3 or not all(w.isdigit() for w in words[1:]):
                raise ValueError(f"{where}: expected 'NET <n_layers> <widths...>', got {raw.strip()!r}")
            widths = [int(w) for w in words[2:]]
            if int(words[1]) + 1 != len(widths) or widths[-1] != 1 or 0 in widths:
                raise ValueError(f"{where}: NET {words[1]} needs {int(words[1]) + 1} positive widths ending in 1 "
                                 f"(the atomic energy), got {widths}")
            block["widths"] = [block["n_sym"]] + widths
            state = "layer"
        elif state == "layer":
            k = len(block["layers"])
            if words[0] != "LAYER" or len(words) < 3 or words[1] != str(k):
                raise ValueError(f"{where}: expected 'LAYER {k} <activation>', got {raw.strip()!r}")
            act = words[2].lower()
            if act != "linear":
                try:
                    resolve_activation(act)
                except ValueError:
                    raise ValueError(f"{where}: unknown activation {words[2]!r}") from None
            block["layers"].append({"activation": act, "w": [], "b": []})
            state = "weights"
        elif state == "weights":
            layer = block["layers"][-1]
            k = len(block["layers"]) - 1
            n_in, n_out = block["widths"][k], block["widths"][k + 1]
            node = len(layer["b"])
            expect = f"w{node}" if len(layer["w"]) == node else f"b{node}"
            count = n_in if expect[0] == "w" else 1
            if words[0] != expect or len(words) != count + 1:
                raise ValueError(f"{where}: expected {expect!r} with {count} value(s) (layer {k}: {n_in} inputs, "
                                 f"{n_out} nodes), got {words[0]!r} with {len(words) - 1}")
            values = [_float(x, where) for x in words[1:]]
            (layer["w"] if expect[0] == "w" else layer["b"]).append(values if expect[0] == "w" else values[0])
            if len(layer["b"]) == n_out:
                state = "layer" if len(block["layers"]) < len(block["widths"]) - 1 else "pot"
    if not blocks:
        raise ValueError("f: no 'POT' block found")
    if state != "pot":
        raise ValueError(f"f: the file ends inside the block of {el!r} (expected {state.replace('_', ' ')} next)")
    elements = sorted(blocks)
    nets, descriptors, scales, offsets = [], {}, [], []
    for el in elements:
        block = blocks[el]
        layers = []
        for k, layer in enumerate(block["layers"]):
            lin = torch.nn.Linear(block["widths"][k], block["widths"][k + 1], dtype=torch.float64)
            with torch.no_grad():
                lin.weight.copy_(torch.tensor(layer["w"], dtype=torch.float64))
                lin.bias.copy_(torch.tensor(layer["b"], dtype=torch.float64))
            layers.append(lin)
            if layer["activation"] != "linear":
                layers.append(resolve_activation(layer["activation"])())
        nets.append(torch.nn.Sequential(*layers))
        descriptors[el] = block["sym"]
        offsets.append(torch.tensor(block["scale"][0], dtype=torch.float64))
        scales.append(torch.tensor(block["scale"][1], dtype=torch.float64))
    normalization = ml.Normalization(energy_scale=torch.tensor(1.0, dtype=torch.float64), features_scale=scales,
                                     energy_offsets=torch.zeros(len(elements), 1, dtype=torch.float64),
                                     features_offsets=offsets)
    return ml.potentials_from_ml_data(nets, descriptors, normalization=normalization, simplify=simplify)


def _float(word, where):
    try:
        value = float(word)
    except ValueError:
        raise ValueError(f"{where}: {word!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{where}: {word!r} is not a finite number")
    return value


def _lammps_symmetry_function(el, words, where, potentials):
    """One ``<type> <cutoff> <eta> <p3> <p4> <el1> [<el2>]`` line of a ``pair_style nn`` file."""
    kind = words[0]
    if kind not in ("2", "4"):
        raise ValueError(f"{where}: symmetry function type {kind!r} is not supported (only 2 and 4)")
    n_el = 1 if kind == "2" else 2
    if len(words) != 5 + n_el:
        raise ValueError(f"{where}: a type {kind} symmetry function has {5 + n_el} fields "
                         f"(type cutoff eta {'rs' if kind == '2' else 'zeta lambda'} ... "
                         f"{' '.join(['element'] * n_el)}), got {len(words)}")
    cutoff, eta, p3, p4 = (_float(x, where) for x in words[1:5])
    if cutoff <= 0:
        raise ValueError(f"{where}: the cutoff must be positive, got {cutoff}")
    if kind == "2":
        return potentials.behler2_descriptor_family(a=cutoff, eta=eta, r_sphere=p3, tag=f"{el}-{words[5]}")
    n1, n2 = words[5], words[6]
    return potentials.behler4_descriptor_family(a=cutoff, eta=eta, zeta=p3, l=p4, epsilon=0.5 if n1 == n2 else 1.0,
                                                tag=f"{el}-{n1}-{n2}")
