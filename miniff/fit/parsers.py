"""Descriptor sets from RuNNer ``input.nn`` files (``symfunction_short`` lines, Bohr units)."""

import os

from miniff import units

__all__ = ["parse_runner_input", "BOHR_TO_ANGSTROM", "group_by_species"]

#: Bohr radius in Å (``miniff.units.BOHR``).
BOHR_TO_ANGSTROM = units.BOHR


def parse_runner_input(f, strict=True):
    """Behler descriptors of the ``symfunction_short`` lines of a RuNNer input file.

    Supported lines (lengths and ``eta`` in Bohr units, converted to Å)::

        symfunction_short <c> 2 <n> <eta> <rshift> <cutoff>
        symfunction_short <c> 3 <n1> <n2> <eta> <lambda> <zeta> <cutoff>

    giving ``behler2(eta=eta/a0^2, r_sphere=rshift*a0, a=cutoff*a0, tag="c-n")`` and
    ``behler4(eta=eta/a0^2, l=lambda, zeta=zeta, a=cutoff*a0, tag="c-n1-n2")``.  Blank lines and ``#``
    comments are skipped.

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

    if isinstance(f, (str, os.PathLike)):
        with open(f) as handle:
            lines = handle.readlines()
    else:
        lines = f.readlines()
    a0 = BOHR_TO_ANGSTROM
    out = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
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
