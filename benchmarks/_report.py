"""Human table on stdout, ``results.json`` on disk, and the markdown block of ``benchmarks/README.md``."""

import json
import math
import os
import tempfile

__all__ = ["format_table", "write_json", "markdown", "update_readme", "README_BEGIN", "README_END"]

README_BEGIN = "<!-- results:begin (written by `python -m benchmarks report --readme`) -->"
README_END = "<!-- results:end -->"

_COLUMNS = ("case", "N", "tool", "median ms", "miniff/tool", "peak MB", "check", "status")


def _fmt(value, spec):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _cells(row):
    check = {True: "pass", False: "FAIL", None: "-"}[row["check"]]
    status = row["status"] if row["status"] == "ok" else f"{row['status']}: {row['note']}".rstrip(": ")
    status = " ".join(status.split())
    ms = None if row["median_s"] is None else 1e3 * row["median_s"]
    mems = [m for m in (row["peak_mem_mb"], row.get("python_peak_mb")) if m is not None]
    return (row["case"], str(row["n_atoms"]), row["tool"], _fmt(ms, ".3g"), _fmt(row["ratio"], ".2f"),
            _fmt(max(mems) if mems else None, ".0f"), check, status)


def format_table(rows, max_status=60):
    """A fixed-width text table of result rows (dicts as in ``results.json``)."""
    lines = [_cells(r) for r in rows]
    lines = [c[:-1] + (c[-1][:max_status],) for c in lines]
    widths = [max(len(h), *(len(c[k]) for c in lines)) if lines else len(h) for k, h in enumerate(_COLUMNS)]
    out = ["  ".join(h.ljust(w) for h, w in zip(_COLUMNS, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines]
    return "\n".join(out)


def write_json(results, path):
    """Write ``results`` atomically (temporary file + rename), so a crash never leaves half a file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(results, f, indent=1, allow_nan=False, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _rounded(value, digits=3):
    """``value`` with every float rounded to ``digits`` significant digits (nested dicts and lists)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def markdown(results):
    """The README block: date, machine, threads, the table, derived numbers and the targets."""
    env = results["environment"]
    m = env["machine"]
    th = env["threads"]
    mini = th.get("miniff") or {}
    load = m.get("load_average_1_5_15")
    lines = [
        f"Measured {env['date']} on {m['cpu_model']} ({m['cores']} cores), profile `{results['profile']}`, "
        f"OMP_NUM_THREADS={th['OMP_NUM_THREADS']}, OMP_WAIT_POLICY={th.get('OMP_WAIT_POLICY')}, "
        f"torch threads {th['torch_num_threads']}, miniff OpenMP {mini.get('openmp')} with "
        f"{mini.get('effective_n_threads')} threads"
        + (f", load average at the start {load[0]:.1f} (1 min)." if load else "."),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v) + ".",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    for row in results["rows"]:
        cells = [c.replace("|", "/") for c in _cells(row)]
        lines.append("| " + " | ".join(cells) + " |")
    derived = results.get("derived") or {}
    if derived:
        lines += ["", "Derived numbers:", ""]
        for case, values in derived.items():
            lines.append(f"- {case}: `{json.dumps(_rounded(values), default=_json_default)}`")
    targets = results.get("targets") or []
    if targets:
        lines += ["", "| issue | target | measured | verdict |", "|---|---|---|---|"]
        for t in targets:
            lines.append(f"| {t['issue']} | {t['target']} | {t['measured']} | {t['verdict']} |")
    return "\n".join(lines)


def update_readme(readme_path, results):
    """Replace the block between the result markers of the README with :func:`markdown` of ``results``."""
    with open(readme_path) as f:
        text = f.read()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme_path} has no results markers ({README_BEGIN!r} ... {README_END!r})")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    new = head + README_BEGIN + "\n\n" + markdown(results) + "\n\n" + README_END + tail
    tmp = readme_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, readme_path)
