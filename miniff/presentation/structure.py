"""Plots of structures and potentials: RDF, ADF, strain profiles, pair-potential and descriptor curves.

Private: the public names are re-exported by :mod:`miniff.presentation`. Internal units are Å and eV;
``length_unit`` / ``energy_unit`` only change the displayed numbers and the axis labels.
"""

import numpy as np

from miniff.presentation.common import apply_origin, as_numpy, get_ax, legend_outside, set_label
from miniff.presentation.common import energy_unit as _energy_unit
from miniff.presentation.common import length_unit as _length_unit

N_POINTS = 50  # points on the default curves (as in 0.1.4)


def _finish_legend(ax, lines, legend):
    """Draw a legend box (True), put each label next to its curve ("labels") or nothing (False)."""
    if legend is True:
        ax.legend()
    elif legend == "labels":
        for line in lines:
            x, y = line.get_data()
            if len(x):
                k = int(np.nanargmax(y))
                ax.annotate(line.get_label(), (x[k], y[k]), color=line.get_color(), ha="center", va="bottom")
    elif legend is not False:
        raise ValueError(f"legend must be True, False or 'labels', got {legend!r}")


def plot_rdf(r, data, ax=None, legend=True, length_unit="angstrom", xlabel=True, ylabel=True, **kw):
    """Plot radial distribution functions, one line per species pair.

    The figure: density of neighbours (y, atoms per cubed length unit) against distance (x), one coloured line
    per species pair in sorted order, named in a legend box or next to each curve's maximum.

    Parameters
    ----------
    r : ndarray of shape (n,)
        Distances, Å (the grid given to :func:`miniff.kernel.rdf`).
    data : dict
        ``{key: ndarray of shape (n,)}``: densities in atoms / Å³ per species pair, as returned by ``rdf``.
        Keys are plotted in sorted order and used as line labels.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.
    legend : {True, False, "labels"}
        A legend box, no legend, or a text label at the maximum of each curve.
    length_unit : str or float
        Display unit of length (``"angstrom"``, ``"nm"``, ``"bohr"``, ``"1"`` or a size in Å); densities are
        shown per cubed display unit.
    xlabel, ylabel : bool or str
        True draws the default label (``"r (<unit>)"``, ``"Density (atoms / <unit>³)"``), a string replaces it,
        False leaves the label alone.
    **kw
        Passed to :meth:`matplotlib.axes.Axes.plot`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if legend not in (True, False, "labels"):
        raise ValueError(f"legend must be True, False or 'labels', got {legend!r}")
    factor, symbol = _length_unit(length_unit)
    ax = get_ax(ax)
    r = as_numpy(r, "r")
    lines = []
    for key in sorted(data):
        y = as_numpy(data[key], f"data[{key!r}]")
        if y.shape != r.shape:
            raise ValueError(f"data[{key!r}] has shape {y.shape}, expected the shape of r {r.shape}")
        lines.extend(ax.plot(r / factor, y * factor**3, label=str(key), **kw))
    set_label(ax, "x", xlabel, f"r ({symbol})")
    set_label(ax, "y", ylabel, f"Density (atoms / {symbol}³)")
    _finish_legend(ax, lines, legend)
    return ax


def plot_adf(a, data, ax=None, legend=True, xlabel=True, ylabel=True, angle_unit="rad", **kw):
    """Plot bond-angle distributions, one line per species triple.

    The figure: angle density (y, per radian or per degree) against the bond angle (x), one coloured line per
    species triple, named in a legend box or next to each curve's maximum.

    Parameters
    ----------
    a : ndarray of shape (n,)
        Angles, radians (the grid given to :func:`miniff.kernel.adf`).
    data : dict
        ``{key: ndarray of shape (n,)}``: angle densities per radian, as returned by ``adf``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.
    legend : {True, False, "labels"}
        A legend box, no legend, or a text label at the maximum of each curve.
    xlabel, ylabel : bool or str
        True draws the default labels, a string replaces them, False leaves them alone.
    angle_unit : {"rad", "deg"}
        Display unit of the angle; with ``"deg"`` densities are shown per degree.
    **kw
        Passed to :meth:`matplotlib.axes.Axes.plot`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if legend not in (True, False, "labels"):
        raise ValueError(f"legend must be True, False or 'labels', got {legend!r}")
    if angle_unit == "rad":
        factor = 1.0
    elif angle_unit == "deg":
        factor = np.pi / 180
    else:
        raise ValueError(f"angle_unit must be 'rad' or 'deg', got {angle_unit!r}")
    ax = get_ax(ax)
    a = as_numpy(a, "a")
    lines = []
    for key in sorted(data):
        y = as_numpy(data[key], f"data[{key!r}]")
        if y.shape != a.shape:
            raise ValueError(f"data[{key!r}] has shape {y.shape}, expected the shape of a {a.shape}")
        lines.extend(ax.plot(a / factor, y * factor, label=str(key), **kw))
    set_label(ax, "x", xlabel, f"Angle ({angle_unit})")
    set_label(ax, "y", ylabel, f"Density (1 / {angle_unit})")
    _finish_legend(ax, lines, legend)
    return ax


def _as_cell(cell):
    """Accept a miniff Cell, a NeighborWrapper (its cell) or an ase.Atoms."""
    from miniff.kernel import Cell

    if isinstance(cell, Cell):
        return cell
    if hasattr(cell, "get_cell") and hasattr(cell, "get_scaled_positions"):
        return Cell.from_ase(cell)
    if hasattr(cell, "cell") and isinstance(cell.cell, Cell):
        return cell.cell
    raise TypeError(f"cell must be a miniff.kernel.Cell or an ase.Atoms, got {type(cell).__name__}")


def plot_strain_profile(potentials, cell, limits=(0.9, 1.1), direction=(1, 1, 1), ax=None, energy_unit="Ry",
                        xlabel=True, ylabel=True, mark_points=None, origin=None, profile_kwargs=None, **kw):
    """Plot the total energy of a structure as its box is stretched along some of its vectors.

    The figure: one line of total energy (y, ``energy_unit``, shifted by ``origin``) against the scale factor
    (x, 50 points between the limits), with black crosses at ``mark_points``; call it again with the same
    ``ax`` and a ``label`` to compare directions.

    The box vectors are multiplied by ``direction * s + (1 - direction)`` for scale factors ``s`` in
    ``linspace(*limits, 50)`` with fractional coordinates kept, as
    :func:`miniff.kernel.profile_directed_strain` does.

    Parameters
    ----------
    potentials : LocalPotential or list of LocalPotential
        The potentials giving the energy.
    cell : miniff.kernel.Cell or ase.Atoms
        The unstrained structure.
    limits : tuple of float
        First and last scale factor (dimensionless).
    direction : array-like of shape (3,)
        Which box vectors are scaled (1) and which are kept (0).
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.
    energy_unit : str or float
        Display unit of energy (``"eV"``, ``"meV"``, ``"Ry"``, ``"Hartree"``, ``"1"`` or a size in eV).
    xlabel, ylabel : bool or str
        True draws the default labels (``"Strain (scale factor)"``, ``"Energy (<unit>)"``).
    mark_points : array-like of shape (m,), optional
        Scale factors whose energies are marked with black crosses.
    origin : None, float or {"left", "right", "median", "min"}
        Energy zero of the plot (see :func:`miniff.presentation.common.apply_origin`); a number is in display units.
    profile_kwargs : dict, optional
        Passed to ``profile_directed_strain`` (e.g. ``pbc``).
    **kw
        Passed to :meth:`matplotlib.axes.Axes.plot`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from miniff.kernel import profile_directed_strain

    ef, esym = _energy_unit(energy_unit)
    if len(limits) != 2:
        raise ValueError(f"limits must be a pair (first, last), got {limits!r}")
    cell = _as_cell(cell)
    profile_kwargs = dict(profile_kwargs or {})
    direction = np.asarray(direction, dtype=float)
    ax = get_ax(ax)
    strain = np.linspace(*limits, N_POINTS)
    energy = np.asarray(profile_directed_strain(potentials, cell, strain, direction, **profile_kwargs)) / ef
    energy, shift = apply_origin(strain, energy, origin)
    ax.plot(strain, energy, **kw)
    if mark_points is not None:
        mark = np.atleast_1d(np.asarray(mark_points, dtype=float))
        e_mark = np.asarray(profile_directed_strain(potentials, cell, mark, direction, **profile_kwargs)) / ef
        ax.scatter(mark, e_mark - shift, marker="x", color="black", zorder=3)
    set_label(ax, "x", xlabel, "Strain (scale factor)")
    set_label(ax, "y", ylabel, f"Energy ({esym})")
    return ax


def _potential_list(potentials):
    if isinstance(potentials, (list, tuple)):
        result = list(potentials)
    else:
        result = [potentials]
    if not result:
        raise ValueError("potentials must not be empty")
    return result


def _infer_pair(potentials, pair):
    """Species pair of the dimer and the potentials to evaluate on it."""
    if pair is not None:
        if not isinstance(pair, str) or len(pair.split("-")) != 2:
            raise ValueError(f"pair must be a string like 'a-b', got {pair!r}")
        return pair, potentials
    tags = [p.tag for p in potentials]
    if all(t is None for t in tags):
        return "1-2", [p.copy(tag="1-2") for p in potentials]
    pairs = {t for t in tags if isinstance(t, str) and len(t.split("-")) == 2}
    if len(pairs) == 1 and None not in tags:
        return pairs.pop(), potentials
    raise ValueError(f"cannot infer the species pair from the potential tags {tags}; pass pair='a-b'")


def dimer_energies(potentials, pair, r):
    """Total energy of an isolated two-atom structure for each separation.

    Parameters
    ----------
    potentials : list of LocalPotential
        Tagged potentials.
    pair : str
        ``"a-b"``: the species of the two atoms.
    r : ndarray of shape (n,)
        Separations, Å.

    Returns
    -------
    ndarray of shape (n,)
        Total energies, eV.
    """
    from miniff.kernel import Cell, NeighborWrapper

    species = pair.split("-")
    cutoff = max(float(p.cutoff) for p in potentials)
    size = 2 * max(float(np.max(r)), cutoff) + 2.0
    vectors = np.eye(3) * size
    result = np.empty(len(r))
    for k, rk in enumerate(r):
        cart = np.array([[size / 2 - rk / 2, size / 2, size / 2], [size / 2 + rk / 2, size / 2, size / 2]])
        cell = Cell(vectors, cart / size, species)
        nw = NeighborWrapper(cell, pbc=False, cutoff=cutoff)
        result[k] = nw.total(potentials, ignore_missing_species=True)
    return result


def plot_potential_2(potentials, limits=None, pair=None, ax=None, energy_unit="Ry", length_unit="angstrom",
                     xlabel=True, ylabel=True, mark_points=None, origin=None, **kw):
    """Plot the energy of two isolated atoms against their separation.

    The figure: one line of the dimer's total energy (y, ``energy_unit``, shifted by ``origin``) against the
    separation (x, ``length_unit``, 50 points), with black crosses at ``mark_points``.

    This shows the radial form of a pair potential or a two-body descriptor. An untagged potential is tagged
    ``"1-2"`` (two different species), so the curve is exactly the pair function; with a homonuclear tag
    such as ``"a-a"`` both atoms carry the pair term and the curve is twice the pair function.

    Parameters
    ----------
    potentials : LocalPotential or list of LocalPotential
        Pair potentials or descriptors (three-body terms vanish for two atoms).
    limits : tuple of float, optional
        First and last separation, Å; ``(cutoff / 10, cutoff)`` by default (50 points).
    pair : str, optional
        Species of the two atoms, ``"a-b"``; inferred from the tags when they all name the same pair.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.
    energy_unit : str or float
        Display unit of energy (``"eV"``, ``"meV"``, ``"Ry"``, ``"Hartree"``, ``"1"`` = no conversion, or a
        size in eV).
    length_unit : str or float
        Display unit of length (``"angstrom"``, ``"nm"``, ``"bohr"``, ``"1"`` or a size in Å).
    xlabel, ylabel : bool or str
        True draws ``"r (<unit>)"`` and ``"Energy (<unit>)"``, a string replaces them, False leaves them.
    mark_points : array-like of shape (m,), optional
        Separations (Å) marked with black crosses on the curve.
    origin : None, float or {"left", "right", "median", "min"}
        Energy zero of the plot; a number is in display units.
    **kw
        Passed to :meth:`matplotlib.axes.Axes.plot` (e.g. ``label``).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        If the species pair cannot be inferred, or for an unknown unit.
    """
    ef, esym = _energy_unit(energy_unit)
    lf, lsym = _length_unit(length_unit)
    potentials = _potential_list(potentials)
    pair, potentials = _infer_pair(potentials, pair)
    if limits is None:
        cutoff = max(float(p.cutoff) for p in potentials)
        limits = (cutoff / 10, cutoff)
    if len(limits) != 2 or not limits[0] > 0:
        raise ValueError(f"limits must be a pair (first, last) of positive separations in Å, got {limits!r}")
    ax = get_ax(ax)
    r = np.linspace(*limits, N_POINTS)
    energy, shift = apply_origin(r, dimer_energies(potentials, pair, r) / ef, origin)
    ax.plot(r / lf, energy, **kw)
    if mark_points is not None:
        mark = np.atleast_1d(np.asarray(mark_points, dtype=float))
        ax.scatter(mark / lf, dimer_energies(potentials, pair, mark) / ef - shift, marker="x", color="black",
                   zorder=3)
    set_label(ax, "x", xlabel, f"r ({lsym})")
    set_label(ax, "y", ylabel, f"Energy ({esym})")
    return ax


def _turning_point(descriptor):
    """Inflection point (Å) of a Behler type-2 descriptor with ``r_sphere = 0``, or None for other descriptors."""
    family = getattr(descriptor, "family", None)
    if getattr(family, "tag", None) != "Behler type 2":
        return None
    from miniff import potentials

    fn = getattr(potentials, "behler_turning_point", None)
    if fn is None:
        return None
    par = descriptor.parameters
    if float(par["r_sphere"]) != 0:
        return None  # a shifted Gaussian has two inflection points; the recipes' turning point needs r_s = 0
    return float(fn(par["a"], par["eta"], par["r_sphere"]))


def plot_descriptors_2(descriptors, ax=None, length_unit="angstrom", xlabel=True, legend=True, **kw):
    """Plot the radial form of every two-body descriptor.

    The figure: each descriptor as its pair function ``g(r)`` (dimensionless, y) against the distance (x)
    between ``cutoff / 10`` and its cutoff, one colour per descriptor; the turning point (inflection) of
    Behler type-2 descriptors centred at zero (``r_sphere = 0``, the ones the recipes place by their turning
    point) is marked with a dot of the curve's colour. The legend, to the right of the
    plot, names each curve by species, tag and parameters (``"Cu: Cu-Pt η=4 r_s=2.2"``) and explains the
    dots. Three-body descriptors are skipped (they vanish for two atoms).

    Parameters
    ----------
    descriptors : dict or list
        ``{species: [descriptor, ...]}`` (as used by :func:`miniff.ml.learn_cauldron`) or a plain list.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.
    length_unit : str or float
        Display unit of length.
    xlabel : bool or str
        True draws ``"r (<unit>)"``; the y label is ``"Descriptor value"``.
    legend : {True, False, "labels"}
        A legend to the right of the plot, none, or a text label at each curve's maximum.
    **kw
        Passed to :meth:`matplotlib.axes.Axes.plot`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from miniff.ml.sensitivity import descriptor_label

    if legend not in (True, False, "labels"):
        raise ValueError(f"legend must be True, False or 'labels', got {legend!r}")
    lf, _ = _length_unit(length_unit)
    if isinstance(descriptors, dict):
        groups = sorted(descriptors.items(), key=lambda item: str(item[0]))
    else:
        groups = [(None, list(descriptors))]
    ax = get_ax(ax)
    lines = []
    n_turning = 0
    for species, items in groups:
        for d in items:
            tag = d.tag
            if isinstance(tag, str) and len(tag.split("-")) != 2:
                continue
            label = descriptor_label(d)
            label = f"{species}: {label}" if species is not None else label
            single = d.copy(tag="1-2")
            n_before = len(ax.lines)
            plot_potential_2(single, ax=ax, energy_unit="1", length_unit=length_unit, xlabel=xlabel,
                             ylabel="Descriptor value", label=label, **kw)
            line = ax.lines[n_before]
            lines.append(line)
            tp = _turning_point(d)
            if tp is not None and 0 < tp < d.cutoff:
                ax.plot([tp / lf], dimer_energies([single], "1-2", np.array([tp])), "o", color=line.get_color(),
                        label="_nolegend_", gid="miniff-turning-point")
                n_turning += 1
    if legend is True:
        from matplotlib.lines import Line2D

        handles = list(lines)
        if n_turning:
            handles.append(Line2D([], [], linestyle="none", marker="o", color="0.3",
                                  label="turning point (inflection)"))
        legend_outside(ax, handles, [h.get_label() for h in handles])
    else:
        _finish_legend(ax, lines, legend)
    return ax
