"""The end-of-stage report: RMSEs and spreads recomputed by hand, formatting in meV."""

import numpy as np
import pytest

from miniff.fit.jobs import check_key_type
from miniff.fit.summary import error_table, errors_summary, fit_summary, format_table


def test_error_table_by_hand():
    rng = np.random.default_rng(0)
    e_ref, e_pred = rng.normal(size=5), rng.normal(size=5)
    f_ref = [rng.normal(size=(n, 3)) for n in (2, 3, 0, 1, 2)]   # the third structure has no forces
    f_pred = [f + rng.normal(size=f.shape) for f in f_ref]
    groups = ["a", "b", "a", "b", "b"]
    table = dict(error_table([("set", {"energy_ref": e_ref, "energy_pred": e_pred, "forces_ref": f_ref,
                                       "forces_pred": f_pred, "groups": groups})]))
    assert table["set"]["n"] == 5
    assert table["set"]["energy_rmse"] == pytest.approx(np.sqrt(np.mean((e_pred - e_ref) ** 2)))
    assert table["set"]["energy_spread"] == pytest.approx(np.std(e_ref))
    df = np.concatenate([(p - r).ravel() for p, r in zip(f_pred, f_ref, strict=True)])
    assert table["set"]["force_rmse"] == pytest.approx(np.sqrt(np.mean(df**2)))
    assert table["set"]["force_spread"] == pytest.approx(np.std(np.concatenate([f.ravel() for f in f_ref])))
    a = table["  set, group a"]
    assert a["n"] == 2 and a["force_rmse"] == pytest.approx(np.sqrt(np.mean((f_pred[0] - f_ref[0]) ** 2)))
    lines = format_table(list(table.items()))
    assert "energy RMSE (spread)" in lines[0] and len(lines) == 4
    assert f"{1000 * table['set']['energy_rmse']:8.2f}" in lines[1] and "meV/atom" in lines[1]
    assert f"{1000 * table['set']['force_rmse']:8.1f}" in lines[1] and "meV/Å" in lines[1]
    # energy-only data: no force column
    lines = format_table(error_table([("x", {"energy_ref": e_ref, "energy_pred": e_pred})]))
    assert "force" not in lines[0] and "meV/Å" not in lines[1]
    assert errors_summary("t", 5, error_table([("x", {"energy_ref": e_ref, "energy_pred": e_pred})])).startswith(
        "test t: 5 structures")


def test_fit_summary_text():
    class Fit:
        tag, epoch, resumed_from, wall_time, stop_reason = "fit", 7, 2, 3.25, "stalled"
        best_epoch_info = (4, "lowest validation loss")
        history = [{"loss": 1.0}, {"loss": 1.0}]

    text = fit_summary(Fit(), [])
    assert text.startswith("fit fit: 7 epochs (5 in this run) in 3.2 s; stopped: stalled (")
    assert "networks of epoch 4 (lowest validation loss)" in text


@pytest.mark.parametrize("key, value, expected", [
    ("cutoff", 5, None), ("cutoff", "abc", "expected a number"), ("cutoff", True, "expected a number"),
    ("test_set", 0.2, None), ("test_set", 20, None), ("test_set", "valid.xyz", None),
    ("test_set", 1.5, "fraction in [0, 1)"), ("closure_kwargs", {"w_l2": 1}, None),
    ("closure_kwargs", [1], "expected a mapping"), ("fn_cells", ["a.xyz", 3], "list with other entries"),
    ("fn_cells", {"bulk": "a.xyz"}, None), ("n_epochs", 2.0, "expected an integer"), ("forces", None, None),
    ("some_unknown_key", object(), None),
])
def test_check_key_type(key, value, expected):
    problem = check_key_type(key, value)
    assert problem is None if expected is None else expected in problem
