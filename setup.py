"""Build script for miniff's compiled core, the extension modules of ``miniff._ext``.

One extension ``miniff._ext.<name>`` per ``miniff/_ext/<name>.pyx`` (what each does: the docstring of
``miniff/_ext/__init__.py``, which imports them all), all compiled with the same flags. They share
declarations through ``.pxd`` files, never through textual includes: ``common.pxd`` (inline helpers, family
codes, limits), ``pairdesc.pxd`` (the batched pair descriptors of one atom), ``triplets.pxd`` (the inline steps of
the batched triplet loops), ``_openmp.pxd`` (the only
access to OpenMP), ``pair.pxd`` / ``pairpool.pxd`` / ``weighted.pxd`` (C functions that ``triple``,
``weighted``, ``chebyshev`` and ``neighbors`` call across modules) and ``_pairsearch_c.pxd`` (inline C of
``pairsearch``: SIMD distance test, Lennard-Jones pairs).

OpenMP is used when the C compiler can build and run a tiny OpenMP program;
otherwise the extensions are built single-threaded and a warning is printed.
Environment variables:

``MINIFF_NO_OPENMP=1``  build without OpenMP even when it is available.
``MINIFF_DEBUG=1``      keep Cython's bounds and wrap-around checks (slow).
``MINIFF_PORTABLE=1``   compile for the architecture's baseline instruction set instead of this machine's.

By default the extensions are compiled with ``-march=native`` when the C compiler accepts it: the vector
instructions of the machine that builds (AVX2/AVX-512, FMA) make the descriptor kernels 1.5-2x faster. The
build is then only guaranteed to run on CPUs with the same instruction sets: set ``MINIFF_PORTABLE=1`` when the
build is copied to other machines (a wheel, a cluster whose login and compute nodes differ, a container image).
Results agree between the two builds to rounding (fused multiply-adds), not bit for bit.
"""

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# the extension modules miniff._ext.<name>, one per miniff/_ext/<name>.pyx
EXTENSIONS = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join("miniff", "_ext", "*.pyx")))

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d\\n", n > 0);
        return 0;
    }
    """
)


def _truthy(name):
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _compiler_command():
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return cc.split()


def openmp_flags():
    """Return (compile_args, link_args) enabling OpenMP, or None when unsupported."""
    if _truthy("MINIFF_NO_OPENMP"):
        print("miniff: MINIFF_NO_OPENMP is set; building without OpenMP.")
        return None
    candidates = [(["-fopenmp"], ["-fopenmp"]), (["-Xpreprocessor", "-fopenmp"], ["-lomp"])]
    tmp = tempfile.mkdtemp(prefix="miniff-omp-")
    try:
        src = os.path.join(tmp, "probe.c")
        exe = os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        for cflags, lflags in candidates:
            cmd = _compiler_command() + cflags + [src, "-o", exe] + lflags
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=120)
                out = subprocess.run([exe], check=True, capture_output=True, timeout=60)
            except (OSError, subprocess.SubprocessError):
                continue
            if out.stdout.strip() == b"1":
                return cflags, lflags
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def native_flags():
    """``["-march=native"]`` when the C compiler accepts it and ``MINIFF_PORTABLE`` is not set, else ``[]``."""
    if _truthy("MINIFF_PORTABLE"):
        print("miniff: MINIFF_PORTABLE is set; building for the baseline instruction set.")
        return []
    tmp = tempfile.mkdtemp(prefix="miniff-march-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("int main(void) { return 0; }\n")
        cmd = _compiler_command() + ["-march=native", "-Werror", src, "-o", os.path.join(tmp, "probe")]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return []
        return ["-march=native"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def warn_no_openmp():
    bar = "*" * 78
    sys.stderr.write(
        f"\n{bar}\n"
        "miniff: the C compiler does not support OpenMP (probe program failed).\n"
        "miniff will be built SINGLE-THREADED: results are identical, only slower.\n"
        "To enable threads install an OpenMP runtime (e.g. libgomp with gcc, or\n"
        "libomp with clang) and reinstall miniff.\n"
        f"{bar}\n\n"
    )


def extensions():
    flags = openmp_flags()
    compile_args = ["-O3"] + native_flags()
    if len(compile_args) > 1:
        print("miniff: compiling for this machine's CPU (-march=native; MINIFF_PORTABLE=1 to disable)")
    link_args = []
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    if flags is None:
        if not _truthy("MINIFF_NO_OPENMP"):
            warn_no_openmp()
    else:
        compile_args += flags[0]
        link_args += flags[1]
        print("miniff: building with OpenMP (" + " ".join(flags[0]) + ")")
    exts = [
        Extension(
            f"miniff._ext.{name}",
            sources=[f"miniff/_ext/{name}.pyx"],
            include_dirs=[numpy.get_include(), "miniff/_ext", "."],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            define_macros=macros,
        )
        for name in EXTENSIONS
    ]
    debug = _truthy("MINIFF_DEBUG")
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "cdivision": True,
        "initializedcheck": debug,
        "embedsignature": True,
    }
    return cythonize(
        exts,
        compiler_directives=directives,
        build_dir="build/cython",
    )


setup(ext_modules=extensions())
