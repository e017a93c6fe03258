"""Descriptors: values, and values + gradients, of 8 Behler-2 + 8 Behler-5 functions.

miniff (``eval_descriptors`` from positions, i.e. including the pair list, float64) against DScribe ACSF
(float64) and TorchANI's AEV computer (float32, same counts, cell list; gradients = forward + backward of a
weighted sum). Conventions (see README): DScribe's G2 equals Behler-2; DScribe's G5 sums over unordered
neighbour pairs, miniff's Behler-5 over ordered pairs (factor 2); TorchANI's radial terms are 0.25 x
Behler-2 with the same cosine cutoff; its angular terms are a different function (only counts match).
"""

import dataclasses

import numpy as np

from benchmarks import _miniff
from benchmarks._checks import compare_arrays
from benchmarks._flops import descriptor_flops, float64_peak, neighbour_counts
from benchmarks._peers import DESCRIPTOR_SPEC, ani_aev_computer, ani_inputs, dscribe_acsf
from benchmarks._runner import Row, run_comparison
from benchmarks._structures import si_diamond_n
from benchmarks._timing import Unavailable

N_G2 = len(DESCRIPTOR_SPEC["g2"])
N_F = N_G2 + len(DESCRIPTOR_SPEC["g5"])


def _weights(n_atoms, seed=1):
    """Fixed weights [N, F] of the weighted sum whose gradient is compared; angular columns zeroed for checks."""
    w = np.random.default_rng(seed).normal(size=(n_atoms, N_F))
    w_radial = w.copy()
    w_radial[:, N_G2:] = 0.0
    return w, w_radial


def _miniff_setup(atoms):
    eval_descriptors = _miniff.require("potentials", "eval_descriptors")
    nw_cls = _miniff.require("kernel", "NeighborWrapper")
    descriptors = _miniff.behler_descriptors(DESCRIPTOR_SPEC)
    cell = _miniff.cell_from_atoms(atoms)
    return eval_descriptors, nw_cls, descriptors, cell


def _pair_vjp(nw, jac_pfc, w_nf):
    """d(sum_nf w v)/dr [N, 3] from the per-pair Jacobian (Contract 3 of DEVELOPING.md)."""
    pairs = nw.pairs
    i_p = pairs.i_p
    g_pc = np.einsum("pf,pfc->pc", w_nf[i_p], jac_pfc)
    out = np.zeros((pairs.n_atoms, 3))
    np.add.at(out, pairs.j_p, g_pc)
    np.add.at(out, i_p, -g_pc)
    return out


# The miniff tool timing the descriptor pass alone, on a pair list built before timing: what the flop bound
# (which counts no neighbour search) is compared with.
PASS_TOOL = "miniff[list prebuilt]"


def _miniff_values(atoms, with_list=True):
    def factory():
        eval_descriptors, nw_cls, descriptors, cell = _miniff_setup(atoms)
        nw0 = nw_cls(cell, cutoff=DESCRIPTOR_SPEC["cutoff"])

        def run():
            nw = nw_cls(cell, cutoff=DESCRIPTOR_SPEC["cutoff"]) if with_list else nw0
            values, _ = eval_descriptors(nw, descriptors, grad=False)
            return {"values": np.asarray(values)}

        return run

    return factory


def _miniff_grad(atoms, n_threads=None, with_list=True):
    def factory():
        eval_descriptors, nw_cls, descriptors, cell = _miniff_setup(atoms)
        kwargs = {} if n_threads is None else {"n_threads": n_threads}
        nw0 = nw_cls(cell, cutoff=DESCRIPTOR_SPEC["cutoff"])
        _, w_radial = _weights(len(atoms))
        values, jac = eval_descriptors(nw0, descriptors, grad=True, **kwargs)
        check = {"values": np.asarray(values), "vjp_radial": _pair_vjp(nw0, np.asarray(jac), w_radial)}

        def run():
            nw = nw_cls(cell, cutoff=DESCRIPTOR_SPEC["cutoff"]) if with_list else nw0
            eval_descriptors(nw, descriptors, grad=True, **kwargs)
            return check

        return run

    return factory


def _dscribe_values(atoms):
    def factory():
        acsf = dscribe_acsf()

        def run():
            out = np.asarray(acsf.create(atoms))
            # DScribe layout: [G1, G2 x 8, G5 x 8]; G5 over unordered pairs -> x2 for miniff's convention.
            return {"values": np.concatenate([out[:, 1:1 + N_G2], 2.0 * out[:, 1 + N_G2:]], axis=1)}

        return run

    return factory


def _ani_values(atoms):
    def factory():
        import torch

        aev = ani_aev_computer()
        species, coords, cell, pbc = ani_inputs(atoms, torch.float32)

        def run():
            with torch.no_grad():
                out = aev(species, coords, cell=cell, pbc=pbc)[0].double().numpy()
            return {"radial": 4.0 * out[:, :N_G2]}

        return run

    return factory


def _ani_grad(atoms):
    def factory():
        import torch

        aev = ani_aev_computer()
        species, coords, cell, pbc = ani_inputs(atoms, torch.float32)
        w, w_radial = _weights(len(atoms))
        w_t = torch.tensor(w, dtype=torch.float32)
        # TorchANI radial = 0.25 x Behler-2: scale the radial weights by 4 to compare with miniff's gradient.
        scale = np.ones(N_F)
        scale[:N_G2] = 4.0
        w_check = torch.tensor(w_radial * scale, dtype=torch.float32)

        def vjp(weights):
            x = coords.clone().requires_grad_(True)
            out = aev(species, x, cell=cell, pbc=pbc)[0]
            (out * weights).sum().backward()
            return x.grad[0]

        check = {"vjp_radial": vjp(w_check).double().numpy()}

        def run():
            vjp(w_t)
            return check

        return run

    return factory


def _check_values(outputs):
    ref_tool = "dscribe" if "dscribe" in outputs else ("miniff" if "miniff" in outputs else None)
    verdicts = {}
    for tool, out in outputs.items():
        other = "miniff" if tool == "dscribe" else ref_tool
        if other is None or other == tool or other not in outputs:
            if tool == "dscribe" and "torchani" in outputs:
                ok, detail = compare_arrays(out["values"][:, :N_G2], outputs["torchani"]["radial"],
                                            atol=2e-6 * np.abs(out["values"]).max())
                verdicts[tool] = (ok, "G2 vs 4 x TorchANI radial: " + detail)
            else:
                verdicts[tool] = (None, "no other tool computes the same values")
            continue
        ref = outputs[other]["values"]
        if tool == "torchani":
            ok, detail = compare_arrays(out["radial"], ref[:, :N_G2], atol=2e-6 * np.abs(ref).max())
            verdicts[tool] = (ok, f"4 x radial vs G2 of {other} (float32): {detail}")
        else:
            ok, detail = compare_arrays(out["values"], ref, atol=1e-9 * np.abs(ref).max())
            verdicts[tool] = (ok, f"G2 and G5 (x2, ordered pairs) vs {other}: {detail}")
    return verdicts


def _check_grad(outputs):
    verdicts = {}
    if "miniff" in outputs and "torchani" in outputs:
        ref = outputs["miniff"]["vjp_radial"]
        ok, detail = compare_arrays(outputs["torchani"]["vjp_radial"], ref, atol=2e-5 * np.abs(ref).max())
        text = "gradient of a weighted sum of the G2 values (float32 vs float64): " + detail
        verdicts = {"miniff": (ok, text), "torchani": (ok, text)}
        if PASS_TOOL in outputs:
            ok2, detail2 = compare_arrays(outputs[PASS_TOOL]["vjp_radial"], ref, atol=1e-12 * np.abs(ref).max())
            verdicts[PASS_TOOL] = (ok and ok2, f"same gradient as miniff with the list: {detail2}; " + text)
    for tool in outputs:
        verdicts.setdefault(tool, (None, "needs both miniff and TorchANI"))
    return verdicts


def _dscribe_grad_factory():
    raise Unavailable("skipped", "DScribe ACSF derivatives are numerical and dense [N, N, 3, F] (O(N^2) memory)")


def _threads():
    import torch

    return {"miniff": "OpenMP (default)", "dscribe": "1 (n_jobs=1)", "torchani": f"torch {torch.get_num_threads()}"}


def run(settings, sizes, threads_n=None):
    """Descriptor rows at every size, and the 1 -> 2 thread speed-up of miniff's values + Jacobian.

    Returns
    -------
    rows : list of Row
    derived : dict
        ``speedup_1_to_2_threads``: median time with 1 thread / with 2 threads of ``eval_descriptors``
        (values + Jacobian, pair list prebuilt), or None.
    """
    rows = []
    threads = _threads()
    for n in sizes:
        atoms = si_diamond_n(n)
        pass_note = "descriptor pass alone (pair list built before timing); ratio = miniff with the list / this"
        rows += run_comparison("descriptors", len(atoms), {"miniff": _miniff_values(atoms),
                                                           PASS_TOOL: _miniff_values(atoms, with_list=False),
                                                           "dscribe": _dscribe_values(atoms),
                                                           "torchani": _ani_values(atoms)},
                               _check_values, settings, threads={**threads, PASS_TOOL: threads["miniff"]},
                               notes={PASS_TOOL: pass_note})
        rows += run_comparison("descriptors-grad", len(atoms), {"miniff": _miniff_grad(atoms),
                                                                PASS_TOOL: _miniff_grad(atoms, with_list=False),
                                                                "dscribe": _dscribe_grad_factory,
                                                                "torchani": _ani_grad(atoms)},
                               _check_grad, settings, threads={**threads, PASS_TOOL: threads["miniff"]},
                               notes={"miniff": "values + per-pair Jacobian [P, F, 3]",
                                      PASS_TOOL: pass_note,
                                      "torchani": "forward + backward of a weighted sum"})
    bounds = _flop_bound_rows(rows, sizes)
    rows += bounds[0]
    speedup = None
    if threads_n:
        atoms = si_diamond_n(threads_n)
        # a ratio of two noisy times: three times the rounds of the other rows (each round ~60 ms at 8k atoms),
        # so that a few rounds slowed by other work on the machine do not move the median
        thread_settings = dataclasses.replace(settings, repeat=3 * settings.repeat)
        t_rows = run_comparison(
            "descriptors-grad-threads", len(atoms),
            {"miniff[1 thread]": _miniff_grad(atoms, 1, with_list=False),
             "miniff[2 threads]": _miniff_grad(atoms, 2, with_list=False)},
            _check_threads, thread_settings, reference="miniff[1 thread]",
            threads={"miniff[1 thread]": "n_threads=1", "miniff[2 threads]": "n_threads=2"},
            notes={"miniff[2 threads]": "ratio = speed-up (pair list prebuilt, eval_descriptors only)"})
        rows += t_rows
        ok = [r for r in t_rows if r.status == "ok"]
        if len(ok) == 2:
            speedup = ok[0].median_s / ok[1].median_s
    return rows, {"speedup_1_to_2_threads": speedup, "flop_bound": bounds[1]}


def _flop_bound_rows(rows, sizes):
    """A "flop bound" row per size and case: the time the counted operations (``benchmarks/_flops.py``) take at
    this machine's float64 BLAS peak; its ratio is the median time of miniff's descriptor pass alone (tool
    ``miniff[list prebuilt]``: the count has no neighbour search) over that bound. The ratio of the row with the
    pair list built in the timed call is in the note and in ``derived`` (``..._x_bound_with_list``)."""
    try:
        nw_cls = _miniff.require("kernel", "NeighborWrapper")
    except Unavailable:
        return [], {}
    peak = float64_peak()
    out, derived = [], {"peak_gflops": peak / 1e9}
    for n in sizes:
        atoms = si_diamond_n(n)
        n_pairs, n_triplets = neighbour_counts(nw_cls(_miniff.cell_from_atoms(atoms),
                                                      cutoff=DESCRIPTOR_SPEC["cutoff"]).pairs.indptr)
        entry = {"pairs": n_pairs, "neighbour_pairs": n_triplets}
        for case, jac in (("descriptors", False), ("descriptors-grad", True)):
            flops = descriptor_flops(n_pairs, n_triplets, DESCRIPTOR_SPEC["g2"], DESCRIPTOR_SPEC["g5"], jac)
            bound = flops / peak
            times = {r.tool: r.median_s for r in rows if r.case == case and r.n_atoms == len(atoms)
                     and r.tool in ("miniff", PASS_TOOL) and r.status == "ok" and r.median_s}
            ratio = times[PASS_TOOL] / bound if PASS_TOOL in times else None
            with_list = times["miniff"] / bound if "miniff" in times else None
            list_text = "-" if with_list is None else f"{with_list:.1f}"
            out.append(Row(case, len(atoms), "flop bound", median_s=bound, ratio=ratio,
                           note=f"{flops:.3g} operations (count: benchmarks/_flops.py) at the float64 BLAS peak "
                                f"{peak / 1e9:.1f} Gflop/s; ratio = miniff's descriptor pass (list prebuilt) / "
                                f"bound; with the pair list built in the timed call: {list_text}"))
            entry[f"{case}_flops"] = flops
            entry[f"{case}_x_bound"] = ratio
            entry[f"{case}_x_bound_with_list"] = with_list
        derived[str(len(atoms))] = entry
    return out, derived


def _check_threads(outputs):
    if len(outputs) < 2:
        return {tool: (None, "one run only") for tool in outputs}
    a, b = (outputs[t] for t in outputs)
    ok, detail = compare_arrays(b["values"], a["values"], atol=0.0, rtol=1e-12)
    ok2, detail2 = compare_arrays(b["vjp_radial"], a["vjp_radial"], atol=1e-12 * np.abs(a["vjp_radial"]).max())
    return {tool: (ok and ok2, f"1 vs 2 threads: values {detail}; gradient {detail2}") for tool in outputs}



