"""Build fastvae's compiled core: Cython extensions over header-only C.

OpenMP is probed by compiling a test program; without it (or with
FASTVAE_NO_OPENMP=1) every kernel still builds and runs on one thread.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent

# One list of compiled modules: fastvae/_core/<name>.pyx -> fastvae._core.<name>.
MODULES = [
    "_threads",
    "_numerics",
    "_blas",
    "_rng",
    "_dense",
    "_reparam",
    "_losses",
    "_optim",
    "_step",
    "_network",
]

OPENMP_FLAG = "-fopenmp"
# -fno-math-errno lets gcc vectorise sqrt loops (nothing reads errno);
# -fno-trapping-math lets it turn the selects of the branch-free kernels
# (numerics.h, elementwise.h) into SIMD blends: nothing enables FP traps.
# Neither changes a computed value. -fno-wrapv undoes the -fwrapv of Python's
# own CFLAGS: with wrapping int indices gcc cannot prove `row[d + j]`
# contiguous and left the AVX2 loss kernels scalar (Bernoulli rows of a
# 128 x 784 batch: 1.9 ms against 0.24 ms). Nothing here relies on signed
# overflow wrapping (hashes and counters are unsigned).
BASE_COMPILE_ARGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fno-wrapv"]


def copy_public_headers():
    """Ship src_c's headers and the package's .pxd files in one folder,
    fastvae/include/fastvae/ (the .pxd files of fastvae/_core/ in its _core/
    subfolder), so that fastvae.get_include() serves both the C compiler and
    Cython, whether fastvae is installed or editable (an editable install is
    not on sys.path, where Cython looks for .pxd files)."""
    src = HERE / "src_c" / "fastvae"
    dst = HERE / "fastvae" / "include" / "fastvae"
    if not src.is_dir():  # building from an sdist that already has them
        return
    dst.mkdir(parents=True, exist_ok=True)
    for header in src.glob("*.h"):
        shutil.copyfile(header, dst / header.name)
    for pxd in (HERE / "fastvae").glob("*.pxd"):
        shutil.copyfile(pxd, dst / pxd.name)
    (dst / "_core").mkdir(exist_ok=True)
    for pxd in (HERE / "fastvae" / "_core").glob("*.pxd"):
        shutil.copyfile(pxd, dst / "_core" / pxd.name)


def env_flag(name):
    return os.environ.get(name, "0").lower() not in ("", "0", "false", "no")


def openmp_wanted():
    return not env_flag("FASTVAE_NO_OPENMP")


def compiler_has_openmp(compiler):
    """Compile and link a tiny OpenMP program with the build's compiler."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(
            "#include <omp.h>\n"
            "int main(void) { int n = 0;\n"
            "#pragma omp parallel reduction(+:n)\n"
            "n += 1; return n > 0 ? 0 : 1; }\n"
        )
        try:
            objects = compiler.compile(
                [str(src)], output_dir=tmp, extra_postargs=[OPENMP_FLAG]
            )
            compiler.link_executable(
                objects, "probe", output_dir=tmp, extra_postargs=[OPENMP_FLAG]
            )
        except Exception:  # any compile or link error means "no OpenMP"
            return False
    return True


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        # Compile the extensions in parallel unless told otherwise (-j N).
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        use_openmp = openmp_wanted() and compiler_has_openmp(self.compiler)
        if not use_openmp:
            reason = (
                "FASTVAE_NO_OPENMP is set"
                if not openmp_wanted()
                else "the compiler cannot build OpenMP code"
            )
            print(
                f"WARNING: building fastvae without OpenMP ({reason}); "
                "kernels will run on one thread.",
                file=sys.stderr,
            )
        # FASTVAE_NO_DISPATCH=1 builds only the baseline SIMD level (see
        # src_c/fastvae/dispatch.h), e.g. to test that code path on a new CPU.
        dispatch = ["-DFASTVAE_NO_DISPATCH"] if env_flag("FASTVAE_NO_DISPATCH") else []
        # Python's CFLAGS carry -g: 16 MB of debug info in the installed
        # modules against 3 MB of code. FASTVAE_DEBUG_INFO=1 keeps it (for gdb,
        # perf annotate and tools/sanitize.sh).
        debug = [] if env_flag("FASTVAE_DEBUG_INFO") else ["-g0"]
        for ext in self.extensions:
            flags = [OPENMP_FLAG] if use_openmp else []
            ext.extra_compile_args = BASE_COMPILE_ARGS + debug + dispatch + flags
            ext.extra_link_args = list(flags)
        super().build_extensions()


def extensions():
    import numpy  # noqa: F401  (build requirement; keeps errors early and clear)

    # Every module may include any header: an edited header rebuilds them all
    # (setuptools compares these files' times with the built module's).
    headers = sorted(str(p) for p in (HERE / "src_c" / "fastvae").glob("*.h"))
    exts = [
        Extension(
            f"fastvae._core.{name}",
            [f"fastvae/_core/{name}.pyx"],
            include_dirs=["src_c"],
            depends=headers,
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        )
        for name in MODULES
    ]
    return cythonize(
        exts,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
        nthreads=int(os.environ.get("FASTVAE_CYTHON_JOBS", "") or os.cpu_count() or 1),
    )


copy_public_headers()
setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
