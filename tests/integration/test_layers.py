"""The architecture holds: imports between subpackages point one way and no module imports itself back.

The rules live in ``tools/layers.py`` (``LAYERS``, also drawn in ``docs/layers.png``); this test runs them
on the source tree, counting imports inside functions too.
"""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layers_tool():
    spec = importlib.util.spec_from_file_location("miniff_layers_tool", ROOT / "tools" / "layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_imports_point_down_the_layers_and_form_no_cycle():
    tool = _layers_tool()
    edges = tool.imports(ROOT)
    assert "miniff.potentials.evaluate" in edges and "miniff.neighbors.wrapper" in edges
    assert tool.check(edges) == []


def test_neighbour_layer_knows_nothing_of_potentials():
    tool = _layers_tool()
    edges = tool.imports(ROOT)
    for module, targets in edges.items():
        if module.startswith("miniff.neighbors"):
            assert not {t for t in targets if t.startswith(("miniff.potentials", "miniff.ml", "miniff.fit"))}, module


def test_the_checker_sees_an_upward_import_and_a_cycle(tmp_path):
    """The rules are not vacuous: a neighbour module importing the potentials, and a cycle, are reported."""
    tool = _layers_tool()
    pkg = tmp_path / "miniff"
    (pkg / "neighbors").mkdir(parents=True)
    (pkg / "potentials").mkdir()
    for path in (pkg / "__init__.py", pkg / "neighbors" / "__init__.py", pkg / "potentials" / "__init__.py"):
        path.write_text("")
    (pkg / "neighbors" / "a.py").write_text("def f():\n    from miniff.potentials import b\n")
    (pkg / "potentials" / "b.py").write_text("import miniff.neighbors.a\n")
    problems = tool.check(tool.imports(tmp_path))
    assert any("miniff.neighbors.a imports miniff.potentials" in p for p in problems)
    assert any(p.startswith("import cycle") for p in problems)
