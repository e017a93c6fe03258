"""The import graph of miniff, by layer: checks that imports point one way and draws the picture.

Usage (from the repository root)::

    python tools/layers.py              # print the graph of units, exit 1 on a violation
    python tools/layers.py --png PATH   # also draw the layers (docs/layers.png)

A *unit* is a subpackage (``miniff.potentials``) or a top-level module (``miniff.calculator``). Every
import counts, also the ones inside functions. A unit may import units of a lower layer (``LAYERS``) and
modules of its own unit; imports within a unit must not form a cycle either.
"""

import argparse
import ast
import sys
from pathlib import Path

#: Layers from the bottom up; a unit imports only from layers below its own.
LAYERS = [
    ["miniff.version", "miniff._atomic"],
    ["miniff.units", "miniff._ext"],
    ["miniff.util"],
    ["miniff.neighbors", "miniff.ewald"],
    ["miniff.potentials"],
    ["miniff.kernel", "miniff.numerical", "miniff.io"],
    ["miniff.ml"],
    ["miniff.store", "miniff.calculator"],
    ["miniff.fit"],
    ["miniff.ml_util", "miniff.presentation"],
    ["miniff._show_versions", "miniff.quickstart"],
    ["miniff.cli"],
    ["miniff", "miniff.__main__", "miniff.data"],
]

RANK = {unit: k for k, layer in enumerate(LAYERS) for unit in layer}


def modules(root):
    """``{module name: path}`` of every Python module of the package under ``root``."""
    out = {}
    for path in sorted((root / "miniff").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(root):
    """``{module: set of imported miniff modules}`` (every import statement, also inside functions)."""
    mods = modules(root)
    edges = {}
    for name, path in mods.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
                subs = [t for t in targets[:-1] if t in mods]
                targets = subs if len(subs) == len(node.names) else targets
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("miniff"):
                    found.add(t)
        edges[name] = found
    return edges


def unit_of(module):
    """The unit (subpackage or top-level module) a module belongs to."""
    parts = module.split(".")
    return ".".join(parts[:2])


def check(edges):
    """Violations: a unit not in ``LAYERS``, an import upwards or sideways, a cycle inside a unit."""
    problems = []
    for mod, targets in sorted(edges.items()):
        unit = unit_of(mod)
        if unit not in RANK:
            problems.append(f"{mod}: unit {unit} is not in tools/layers.py LAYERS")
            continue
        for t in sorted(targets):
            other = unit_of(t)
            if other == unit or (unit == "miniff" and mod == "miniff"):
                continue
            if other not in RANK or RANK[other] >= RANK[unit]:
                problems.append(f"{mod} imports {t}: {other} is not in a layer below {unit}")
    # cycles among modules (Tarjan)
    index, low, stack, on, counter = {}, {}, [], set(), [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                problems.append("import cycle: " + " ".join(sorted(comp)))

    for v in edges:
        if v not in index:
            strong(v)
    return problems


def unit_edges(edges):
    """``{(unit, imported unit)}`` between different units."""
    out = set()
    for mod, targets in edges.items():
        for t in targets:
            a, b = unit_of(mod), unit_of(t)
            if a != b and a != "miniff":
                out.add((a, b))
    return out


def draw(edges, path):
    """Boxes per layer (bottom up) and an arrow for every unit that imports another."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    layers = [[u for u in layer if u not in ("miniff.__main__", "miniff.data")] for layer in LAYERS]
    pos = {}
    for k, layer in enumerate(layers):
        for m, unit in enumerate(layer):
            pos[unit] = ((m + 1) / (len(layer) + 1), k)
    fig, ax = pyplot.subplots(figsize=(9, 9))
    for a, b in sorted(unit_edges(edges)):
        if a in pos and b in pos:
            (x0, y0), (x1, y1) = pos[a], pos[b]
            ax.annotate("", xy=(x1, y1 + 0.18), xytext=(x0, y0 - 0.18),
                        arrowprops={"arrowstyle": "->", "color": "0.55", "lw": 0.8, "shrinkA": 2, "shrinkB": 2})
    for unit, (x, y) in pos.items():
        is_pkg = unit.split(".")[-1] in {"_ext", "neighbors", "potentials", "ml", "fit", "io", "presentation", "store"}
        label = unit.replace("miniff.", "") + ("/" if is_pkg else ".py") if unit != "miniff" else "__init__.py"
        ax.text(x, y, label, ha="center", va="center", fontsize=10,
                bbox={"boxstyle": "round,pad=0.4", "fc": "#dbe9f6" if is_pkg else "#f3f3f3", "ec": "0.3"})
    for k in range(len(layers)):
        ax.text(0.0, k, f"layer {k}", ha="left", va="center", fontsize=8, color="0.4")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(layers) - 0.4)
    ax.axis("off")
    ax.set_title("miniff: layers (bottom up) and imports (arrow = imports)\nsubpackages in blue, modules in grey",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    p.add_argument("--png", default=None, help="write the picture here")
    args = p.parse_args(argv)
    edges = imports(Path(args.root))
    for a, b in sorted(unit_edges(edges)):
        print(f"{a} -> {b}")
    problems = check(edges)
    for line in problems:
        print("VIOLATION:", line)
    if args.png:
        draw(edges, args.png)
        print(f"wrote {args.png}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
