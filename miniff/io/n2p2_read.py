"""``read_n2p2``: an n2p2 potential folder as miniff potentials, 2G (short-range) or 4G-HDNNP; the one place
that turns the files' unit names into sizes."""

import math

from miniff.io.n2p2_4g import read_n2p2_4g
from miniff.io.n2p2_files import n2p2_generation
from miniff.io.n2p2_model import read_n2p2_2g

__all__ = ["read_n2p2"]


def read_n2p2(folder, length_unit="angstrom", energy_unit="eV", extrapolation="warn"):
    """The potentials of an n2p2 potential folder, in eV and Å.

    Parameters
    ----------
    folder : str or PathLike
        Holds ``input.nn``, ``scaling.data`` and ``weights.<Z:03d>.data`` (one per element, ``Z`` its atomic
        number); a 4G-HDNNP (``nnp_generation 4``) also ``weightse.<Z:03d>.data`` and ``hardness.<Z:03d>.data``.
    length_unit : {"angstrom", "bohr"} or float
        The length unit of the files (a float: its size in Å).
    energy_unit : {"eV", "hartree"} or float
        The energy unit of the files (a float: its size in eV).
    extrapolation : {"warn", "ignore", "raise"}
        What to do when a symmetry function leaves the range of ``scaling.data``.

    Returns
    -------
    list of N2p2Potential, or list of one N2p2Potential4G
        A 2G potential gives one :class:`~miniff.io.n2p2_model.N2p2Potential` per element (by atomic number); a
        4G-HDNNP one :class:`~miniff.io.n2p2_4g.N2p2Potential4G` for all elements (the charge equilibration
        couples every atom).  Pass the list to ``NeighborWrapper.total/grad/...`` or the ASE calculator.

    Raises
    ------
    FileNotFoundError
        A missing folder or file (named).
    ValueError
        Unsupported or malformed content, naming the file and line.
    """
    from miniff import units

    length = _unit("length_unit", length_unit, {"angstrom": 1.0, "bohr": units.BOHR})
    energy = _unit("energy_unit", energy_unit, {"ev": 1.0, "hartree": units.HARTREE})
    if n2p2_generation(folder) == 4:
        return read_n2p2_4g(folder, length, energy, extrapolation=extrapolation)
    return read_n2p2_2g(folder, length, energy, extrapolation=extrapolation)


def _unit(name, value, known):
    """The size of a unit (``known``: names, lower case, to sizes) given by name or as a positive number."""
    if isinstance(value, str):
        if value.lower() not in known:
            raise ValueError(f"{name} must be one of {sorted(known)} or a positive number, got {value!r}")
        return known[value.lower()]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be one of {sorted(known)} or a positive number, got {value!r}")
    return float(value)
