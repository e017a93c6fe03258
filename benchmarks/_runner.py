"""One comparison: prepare every tool, check agreement, time interleaved, measure memory, make rows."""

from dataclasses import asdict, dataclass, field

from benchmarks._timing import Unavailable, measure_memory, median, time_interleaved

__all__ = ["Row", "run_comparison", "status_row"]


@dataclass
class Row:
    """One line of the results table (and one object of ``results.json["rows"]``).

    Attributes
    ----------
    case : str
        Case name, e.g. ``"neighbors"`` or ``"descriptors-grad"``.
    n_atoms : int
        Atoms in the structure.
    tool : str
        Tool name (``"miniff"``, ``"vesin"``, ...).
    status : str
        ``"ok"``, ``"missing"`` (peer not installed), ``"not available yet"`` (miniff API missing),
        ``"skipped"`` or ``"error"``.
    median_s : float or None
        Median wall time of the timed runs, s.
    ratio : float or None
        ``median_s(miniff) / median_s(tool)`` — the quantity the issue targets use (< 1: miniff is faster).
    peak_mem_mb : float or None
        Resident-set high-water mark during one call minus the resident set before it, MB.
    python_peak_mb : float or None
        Peak of Python-side (tracemalloc) allocations during one call, MB.
    check : bool or None
        Whether the correctness check of this row passed (None: no check possible).
    check_detail : str
        What was compared, and the deviation.
    threads : str
        Threads the tool ran with.
    runs_s : list of float
        All timed runs, s.
    note : str
        Anything else (error message, reason of a skip, what exactly was timed).
    """

    case: str
    n_atoms: int
    tool: str
    status: str = "ok"
    median_s: float | None = None
    ratio: float | None = None
    peak_mem_mb: float | None = None
    python_peak_mb: float | None = None
    check: bool | None = None
    check_detail: str = ""
    threads: str = ""
    runs_s: list = field(default_factory=list)
    note: str = ""

    def to_dict(self):
        """Plain dict for JSON."""
        return asdict(self)


def status_row(case, n_atoms, tool, exc, threads=""):
    """A row for a tool that did not run (``exc`` is an :class:`Unavailable` or any exception)."""
    if isinstance(exc, Unavailable):
        return Row(case, n_atoms, tool, status=exc.status, note=exc.reason, threads=threads)
    return Row(case, n_atoms, tool, status="error", note=f"{type(exc).__name__}: {exc}", threads=threads)


def run_comparison(case, n_atoms, factories, check, settings, reference="miniff", threads=None, notes=None,
                   memory=True):
    """Run one comparison and return its rows.

    Parameters
    ----------
    case : str
    n_atoms : int
    factories : dict of str to callable
        Tool name to a zero-argument factory returning the timed zero-argument callable; the factory raises
        :class:`Unavailable` when the tool cannot run. Every callable's return value (from the first,
        untimed call) goes to ``check``.
    check : callable
        ``check(outputs: dict tool -> output) -> dict tool -> (bool or None, str)``, run before any timing.
    settings : TimingSettings
    reference : str
        The tool the ratios refer to.
    threads : dict of str to str, optional
        Thread description per tool.
    notes : dict of str to str, optional
        Extra note per tool.
    memory : bool
        Measure peak memory (one extra call per tool).

    Returns
    -------
    list of Row
    """
    threads = threads or {}
    notes = notes or {}
    rows = {}
    funcs, outputs = {}, {}
    for tool, factory in factories.items():
        try:
            func = factory()
            outputs[tool] = func()
            funcs[tool] = func
        except Exception as exc:  # recorded in the row: a failing tool never stops the benchmark
            rows[tool] = status_row(case, n_atoms, tool, exc, threads.get(tool, ""))
    try:
        verdicts = check(outputs) if outputs else {}
    except Exception as exc:  # a broken check is a failed check, not a crash
        verdicts = {tool: (False, f"check raised {type(exc).__name__}: {exc}") for tool in outputs}
    times, errors = time_interleaved(funcs, settings)
    for tool in funcs:
        if tool in errors:
            rows[tool] = Row(case, n_atoms, tool, status="error", note=errors[tool], threads=threads.get(tool, ""))
            continue
        ok, detail = verdicts.get(tool, (None, ""))
        row = Row(case, n_atoms, tool, median_s=median(times[tool]), runs_s=times[tool], check=ok,
                  check_detail=detail, threads=threads.get(tool, ""), note=notes.get(tool, ""))
        if memory:
            try:
                row.peak_mem_mb, row.python_peak_mb = measure_memory(funcs[tool])
            except Exception as exc:  # memory is informative only
                row.note = (row.note + f"; memory measurement failed: {exc}").strip("; ")
        rows[tool] = row
    ref = rows.get(reference)
    for row in rows.values():
        if ref is not None and ref.median_s and row.median_s:
            row.ratio = ref.median_s / row.median_s
    return [rows[tool] for tool in factories if tool in rows]
