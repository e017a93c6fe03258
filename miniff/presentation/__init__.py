"""Plots and text summaries: potential curves, RDF/ADF, strain profiles and the quality of a fit.

Every plotting function draws with matplotlib into ``ax`` and returns that Axes (or one Axes per panel for
figures of several panels: convergence per unit, parity per quantity, sensitivity per species), so plots can be
combined and restyled. Without ``ax`` a function makes a new figure; it never draws into pyplot's current
Axes. Each function's docstring describes the figure it draws; the documentation's gallery shows them all.
Values are computed in miniff's units (eV, Å); the
``energy_unit`` and ``length_unit`` arguments only change what is displayed. A unit is a name
(``"angstrom"``, ``"nm"``, ``"bohr"``; ``"eV"``, ``"meV"``, ``"Ry"``, ``"Hartree"``), ``"1"`` for plain numbers,
or a positive number giving the display unit in eV or Å. Axis labels read ``"r (<unit>)"`` and
``"Energy (<unit>)"``.

matplotlib is imported only when a function draws.
"""

import numpy as np

from miniff.presentation.common import ENERGY_UNITS, LENGTH_UNITS
from miniff.presentation.convergence import plot_convergence, read_fit_log
from miniff.presentation.descriptors import plot_descriptor_range, plot_descriptor_sensitivity
from miniff.presentation.parity import parity_statistics, plot_diagonal, plot_error_histogram, plot_parity
from miniff.presentation.structure import plot_adf, plot_descriptors_2, plot_potential_2, plot_rdf, plot_strain_profile
from miniff.presentation.uncertainty import plot_spread_vs_error

__all__ = [
    "ENERGY_UNITS",
    "LENGTH_UNITS",
    "unicode_block_elements",
    "text_bars",
    "plot_rdf",
    "plot_adf",
    "plot_strain_profile",
    "plot_potential_2",
    "plot_descriptors_2",
    "plot_convergence",
    "read_fit_log",
    "plot_diagonal",
    "plot_parity",
    "parity_statistics",
    "plot_error_histogram",
    "plot_descriptor_range",
    "plot_descriptor_sensitivity",
    "plot_spread_vs_error",
]

#: Characters of increasing height used by :func:`text_bars` (a space stands for the lowest value).
unicode_block_elements = " ▁▂▃▄▅▆▇█"

# Present the re-exported functions as members of this module (documentation, repr, pickling).
for _f in (plot_rdf, plot_adf, plot_strain_profile, plot_potential_2, plot_descriptors_2, plot_convergence,
           read_fit_log, plot_diagonal, plot_parity, parity_statistics, plot_error_histogram, plot_descriptor_range,
           plot_descriptor_sensitivity, plot_spread_vs_error):
    _f.__module__ = __name__
del _f


def text_bars(values, mn=None, mx=None, palette=unicode_block_elements):
    """Draw a sequence of numbers as a one-line bar chart of unicode block characters.

    Useful for histograms in log files: ``text_bars([0, 1, 4, 9])`` gives ``" ▁▄█"``.

    Parameters
    ----------
    values : array-like of shape (n,)
        The numbers (any unit).
    mn, mx : float, optional
        Values mapped to the first and last palette character; the minimum and maximum of ``values`` by
        default. Values outside are clipped.
    palette : str or sequence of str
        Characters from lowest to highest (at least two).

    Returns
    -------
    str
        ``n`` characters; NaN values are shown as ``"?"``.
    """
    values = np.asarray(values, dtype=float).ravel()
    if len(palette) < 2:
        raise ValueError(f"palette must have at least two characters, got {palette!r}")
    finite = values[np.isfinite(values)]
    if mn is None:
        mn = finite.min() if finite.size else 0.0
    if mx is None:
        mx = finite.max() if finite.size else 1.0
    if mx < mn:
        raise ValueError(f"mx ({mx}) must not be smaller than mn ({mn})")
    top = len(palette) - 1
    span = mx - mn
    chars = []
    for v in values:
        if not np.isfinite(v):
            chars.append("?")
            continue
        level = 0.0 if span == 0 else (min(max(v, mn), mx) - mn) / span
        chars.append(palette[int(round(level * top))])
    return "".join(chars)
