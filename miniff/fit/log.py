"""The per-epoch fit log: one JSON object per line (JSON Lines).

Every line written by :class:`FitLog` is a self-contained JSON object describing one epoch of a fit::

    {"epoch": 12, "time": 3.41, "lr": 1.0, "loss": 0.00231, "loss_valid": 0.00312,
     "energy_rmse": 0.0041, "energy_rmse_valid": 0.0052, "energy_max": 0.011, "energy_max_valid": 0.013,
     "force_rmse": 0.084, "force_rmse_valid": 0.091, "force_max": 0.52, "force_max_valid": 0.61}

Keys
----
``epoch``
    int, 1-based number of the epoch just finished (epoch 0 = before any optimisation step).
``time``
    float, s: wall time spent in the fit so far (summed over resumed runs).
``lr``
    float: learning rate of the first parameter group of the optimizer.
``loss``, ``loss_valid``
    float: the optimised loss (normalised, dimensionless units) on the training / validation set.
``energy_rmse[_valid]``, ``energy_max[_valid]``
    float, eV/atom: root-mean-square and maximum absolute per-atom energy residual.
``force_rmse[_valid]``, ``force_max[_valid]``
    float, eV/Å: root-mean-square and maximum absolute force-component residual (only when forces are
    fitted).
``group_<name>_energy_rmse``, ``group_<name>_force_rmse``
    float, per structure group (``meta["group"]`` of the cells) on the validation set, when groups exist.

Missing quantities are absent (never ``NaN``).  A resumed fit appends to the same file after dropping the
lines of epochs beyond the checkpoint, so the file always describes one consistent history.
:func:`read_fit_log` turns a log back into ``{key: ndarray}`` columns (``miniff.presentation`` plots them).
"""

import json
import os
from pathlib import Path

import numpy as np

__all__ = ["FitLog", "read_fit_log"]


class FitLog:
    """Append-only JSON Lines writer of per-epoch records.

    Parameters
    ----------
    path : str or Path or None
        The log file; ``None`` keeps the records in memory only (``records``).
    resume_epoch : int or None
        When given, existing lines with ``epoch > resume_epoch`` are dropped first (a resumed fit);
        otherwise an existing file is truncated (a fresh fit).
    """

    def __init__(self, path=None, resume_epoch=None):
        self.path = None if path is None else Path(path)
        self.records = []
        if self.path is None:
            return
        if resume_epoch is not None and self.path.exists():
            kept = [r for r in _read_records(self.path) if r.get("epoch", 0) <= resume_epoch]
        else:
            kept = []
        self.records = kept
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            for r in kept:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, self.path)

    def write(self, record):
        """Append one epoch record (a dict of JSON-serialisable scalars) and flush it to disk."""
        clean = {k: _plain(v) for k, v in record.items() if v is not None}
        self.records.append(clean)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(clean) + "\n")
                f.flush()
        return clean


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def _read_records(path):
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                # A line cut short by a kill is the only possible damage (lines are appended whole).
                break
    return records


def read_fit_log(path):
    """Read a fit log written by a :class:`~miniff.ml_util.FitWorkflow`.

    Parameters
    ----------
    path : str or Path
        The JSON Lines log file (format in :mod:`miniff.fit.log`).

    Returns
    -------
    dict
        ``{key: ndarray of shape (n_epochs,)}`` for every key present in any line (``NaN`` where a line
        lacks it), e.g. ``"epoch"``, ``"loss"``, ``"energy_rmse"`` (eV/atom), ``"force_rmse"`` (eV/Å).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path: no fit log at {str(path)!r}")
    records = _read_records(path)
    keys = []
    for r in records:
        keys.extend(k for k in r if k not in keys)
    return {k: np.array([r.get(k, np.nan) for r in records], dtype=float) for k in keys}
