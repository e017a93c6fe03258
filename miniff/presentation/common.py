"""Helpers shared by the plotting functions of :mod:`miniff.presentation`.

miniff computes in eV and Å. Plots may *display* other units: a unit is given by name (``"angstrom"``,
``"nm"``, ``"bohr"``, ``"eV"``, ``"meV"``, ``"Ry"``, ``"Hartree"``, ...), by ``"1"`` (no conversion, plain
numbers) or by a positive number (the size of the display unit in eV or Å). Conversion factors come from
the constants of :mod:`miniff.units` (CODATA 2018).
"""

import numbers

import numpy as np

from miniff import units as _units

#: Size of each length display unit in Å, and its axis-label symbol.
LENGTH_UNITS = {
    "angstrom": (1.0, "Å"),
    "nm": (10.0, "nm"),
    "pm": (0.01, "pm"),
    "bohr": (_units.BOHR, "Bohr"),
    "1": (1.0, "1"),
}

#: Size of each energy display unit in eV, and its axis-label symbol.
ENERGY_UNITS = {
    "eV": (1.0, "eV"),
    "meV": (1e-3, "meV"),
    "Ry": (_units.RYDBERG, "Ry"),
    "Hartree": (_units.HARTREE, "Ha"),
    "kcal/mol": (4184.0 / _units.EV_J / _units.AVOGADRO, "kcal/mol"),
    "kJ/mol": (1000.0 / _units.EV_J / _units.AVOGADRO, "kJ/mol"),
    "1": (1.0, "1"),
}

_ALIASES = {
    "a": "angstrom",
    "å": "angstrom",
    "ang": "angstrom",
    "angstroms": "angstrom",
    "abohr": "bohr",
    "ha": "Hartree",
    "hartree": "Hartree",
    "ry": "Ry",
    "rydberg": "Ry",
    "ev": "eV",
    "mev": "meV",
}


def resolve_unit(unit, table, argument):
    """Return ``(factor, symbol)`` of a display unit.

    Parameters
    ----------
    unit : str or float
        A unit name from ``table`` (case-insensitive aliases such as ``"ev"`` or ``"Ha"`` accepted), ``"1"``
        for no conversion, or a positive number: the display unit expressed in internal units (eV or Å).
    table : dict
        :data:`LENGTH_UNITS` or :data:`ENERGY_UNITS`.
    argument : str
        Name of the caller's argument, used in error messages.

    Returns
    -------
    factor : float
        Size of the display unit in internal units: displayed value = internal value / factor.
    symbol : str
        Text used in axis labels.
    """
    if isinstance(unit, numbers.Real) and not isinstance(unit, bool):
        if not unit > 0:
            raise ValueError(f"{argument} must be a positive number or a unit name, got {unit!r}")
        return float(unit), f"{unit:g}"
    if isinstance(unit, str):
        key = unit if unit in table else _ALIASES.get(unit.lower(), unit.lower())
        if key in table:
            return table[key]
    raise ValueError(f"{argument}={unit!r} is not a known unit; use one of {sorted(table)} or a positive number")


def length_unit(unit, argument="length_unit"):
    """Size in Å and label symbol of a length display unit (see :func:`resolve_unit`)."""
    return resolve_unit(unit, LENGTH_UNITS, argument)


def energy_unit(unit, argument="energy_unit"):
    """Size in eV and label symbol of an energy display unit (see :func:`resolve_unit`)."""
    return resolve_unit(unit, ENERGY_UNITS, argument)


def get_ax(ax, figsize=None):
    """Return ``ax`` or, when it is None, the Axes of a new figure.

    A plot made without ``ax=`` never draws into an earlier figure (pyplot's "current Axes" would be the last
    panel of whatever was drawn before, e.g. a two-panel parity plot).
    """
    if ax is None:
        return new_axes(1, figsize=figsize)[0]
    if not hasattr(ax, "plot"):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    return ax


def new_axes(n, figsize=None, rows=True, sharex=False):
    """A new figure with ``n`` panels (constrained layout); returns the list of its Axes.

    Parameters
    ----------
    n : int
        Number of panels.
    figsize : tuple of float, optional
        Figure size in inches; matplotlib's default for one panel, 6.4 x (3 n) for stacked panels.
    rows : bool
        Stack the panels vertically (True) or put them side by side (False).
    sharex : bool
        Share the x axis between the panels.
    """
    from matplotlib import pyplot

    if figsize is None and n > 1:
        figsize = (6.4, 3.0 * n) if rows else (4.8 * n, 4.4)
    shape = (n, 1) if rows else (1, n)
    _, axes = pyplot.subplots(*shape, figsize=figsize, layout="constrained", squeeze=False, sharex=sharex)
    return list(axes.ravel())


def axes_list(ax, n, argument="ax", **kw):
    """The ``n`` Axes to draw ``n`` panels into: a new figure when ``ax`` is None, else ``ax`` itself.

    ``ax`` may be one Axes (only when ``n == 1``) or a sequence of ``n`` Axes.
    """
    if ax is None:
        return new_axes(n, **kw)
    if hasattr(ax, "plot"):
        ax = [ax]
    ax = list(np.ravel(np.asarray(ax, dtype=object)))
    if len(ax) != n:
        raise ValueError(f"{argument} must hold {n} Axes (one per panel), got {len(ax)}; pass {argument}=None to "
                         "make a new figure")
    return [get_ax(a) for a in ax]


def panels_result(axes):
    """One Axes, or an ndarray of Axes when there are several panels (like ``pyplot.subplots``)."""
    if len(axes) == 1:
        return axes[0]
    result = np.empty(len(axes), dtype=object)
    result[:] = axes
    return result


def legend_outside(ax, handles=None, labels=None, **kw):
    """A legend to the right of ``ax``, outside the data; returns it (None when there is nothing to label)."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    kw.setdefault("fontsize", "small")
    return ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kw)


def apply_origin(x, y, origin, argument="origin"):
    """Shift a curve ``y(x)`` vertically.

    Parameters
    ----------
    x, y : ndarray of shape (n,)
        The curve (displayed units).
    origin : None, float or {"left", "right", "median", "min"}
        None leaves ``y`` unchanged; a number is subtracted; ``"left"``/``"right"`` subtract the first/last
        value, ``"median"`` the median and ``"min"`` the minimum.

    Returns
    -------
    y_shifted : ndarray of shape (n,)
    shift : float
        The value subtracted.
    """
    y = np.asarray(y, dtype=float)
    if origin is None:
        return y, 0.0
    if isinstance(origin, numbers.Real) and not isinstance(origin, bool):
        shift = float(origin)
    elif origin == "left":
        shift = float(y[0])
    elif origin == "right":
        shift = float(y[-1])
    elif origin == "median":
        shift = float(np.median(y))
    elif origin == "min":
        shift = float(np.min(y))
    else:
        raise ValueError(f"{argument} must be None, a number, 'left', 'right', 'median' or 'min', got {origin!r}")
    return y - shift, shift


def set_label(ax, which, value, default):
    """Set an axis label: ``value`` True -> ``default``, a string -> that string, False/None -> nothing."""
    if value is True:
        text = default
    elif isinstance(value, str):
        text = value
    else:
        return
    (ax.set_xlabel if which == "x" else ax.set_ylabel)(text)


def as_numpy(a, argument):
    """Convert an array-like or a torch tensor into a float64 ndarray (detached, on the CPU)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{argument} must be an array of numbers, got {type(a).__name__}") from e
