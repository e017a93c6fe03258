"""The installation reports itself: version, OpenMP build, the extension modules of the compiled core (all
built alike, one namespace, family codes from the core, a partial build explained),
``python -m miniff info`` / ``version``."""

import importlib
import io
import os
import shutil
from pathlib import Path

from support import run_python

import miniff
from miniff import _ext
from miniff._ext import threads as _parallel
from miniff._show_versions import versions_info


def test_version_is_a_string():
    assert isinstance(miniff.__version__, str) and miniff.__version__[0].isdigit()


def test_openmp_build_reports_itself():
    # gcc with libgomp is on every machine this project builds on, so the build must have OpenMP
    # unless the developer opted out explicitly.
    if os.environ.get("MINIFF_NO_OPENMP"):
        assert not _parallel.openmp_enabled()
    else:
        assert _parallel.openmp_enabled()
    info = versions_info()
    assert info["openmp"] is _parallel.openmp_enabled()
    assert info["threads"] == _parallel.effective_n_threads()


def test_show_versions_prints_dependencies_and_threads():
    buf = io.StringIO()
    miniff.show_versions(file=buf)
    text = buf.getvalue()
    for word in ("miniff", "numpy", "torch", "ase", "built with OpenMP", "effective threads"):
        assert word in text


def test_cli_info_and_version(tmp_path):
    # cwd outside the source tree, so that "-m" never picks up an unbuilt source tree
    out = run_python(["-m", "miniff", "info"], tmp_path, check=True)
    assert "built with OpenMP" in out.stdout
    out = run_python(["-m", "miniff", "version"], tmp_path, check=True)
    assert out.stdout.strip() == miniff.__version__


def _extension_modules():
    return {name: importlib.import_module(f"miniff._ext.{name}") for name in _ext.EXTENSION_MODULES}


def test_every_extension_module_is_built_alike():
    # one compiled module per .pyx shipped with the package (no textual includes left), every one with the
    # OpenMP setting the build reports
    here = Path(_ext.__file__).parent
    assert sorted(p.stem for p in here.glob("*.pyx")) == sorted(_ext.EXTENSION_MODULES)
    assert not list(here.glob("*.pxi"))
    assert (here / "common.pxd").is_file() and (here / "_openmp.pxd").is_file()
    for name, mod in _extension_modules().items():
        assert Path(mod.__file__).suffix in {".so", ".pyd"}, name
        assert mod._OPENMP_ENABLED is _parallel.openmp_enabled(), name


def test_kernel_module_holds_every_public_name_of_every_extension_once():
    seen = {}
    for name, mod in _extension_modules().items():
        assert mod.__all__, name
        for attr in mod.__all__:
            assert attr not in seen, f"{attr} exported by {seen.get(attr)} and {name}"
            seen[attr] = name
            assert getattr(_ext.kernel_module, attr) is getattr(mod, attr)
    assert set(vars(_ext.kernel_module)) == set(seen)
    for attr in ("openmp_enabled", "openmp_max_threads", "neighbor_search", "pair_reduce", "sw_reduce"):
        assert callable(getattr(_ext.kernel_module, attr))


def test_family_codes_and_limits_come_from_the_compiled_core():
    from miniff.potentials import backends

    codes = _ext.kernel_module.FAMILY_CODES
    assert len(codes) == 9 and len(set(codes.values())) == len(codes)
    for name, value in codes.items():
        assert type(value) is int and getattr(backends, name) == value
    for name in ("MAX_GROUP", "MOMENT_MAX_ETA", "MOMENT_MAX_ZETA"):
        assert getattr(backends, name) == _ext.kernel_module.LIMITS[name]


def test_partial_build_names_the_missing_extension_module(tmp_path):
    # the package with every compiled module but one: the import error names it and says how to build
    src = Path(miniff.__file__).parent
    dst = tmp_path / "miniff"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    missing = list((dst / "_ext").glob("triple.*.so")) + list((dst / "_ext").glob("triple.*.pyd"))
    assert missing
    for path in missing:
        path.unlink()
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = run_python(["-c", "import miniff.kernel"], tmp_path, env=env)
    assert out.returncode != 0
    assert "miniff._ext.triple" in out.stderr
    assert "pip install" in out.stderr and "build_ext --inplace" in out.stderr
