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

# One list of compiled modules: fastvae/<name>.pyx -> fastvae.<name>.
MODULES = [
    "_threads",
    "_blas",
    "_rng",
    "_dense",
    "_reparam",
    "_losses",
    "_optim",
    "_step",
]

OPENMP_FLAG = "-fopenmp"
# -fno-math-errno lets gcc vectorise sqrt/exp loops; nothing reads errno.
BASE_COMPILE_ARGS = ["-O3", "-fno-math-errno"]


def copy_public_headers():
    """Ship src_c's headers inside the package for fastvae.get_include()."""
    src = HERE / "src_c" / "fastvae"
    dst = HERE / "fastvae" / "include" / "fastvae"
    if not src.is_dir():  # building from an sdist that already has them
        return
    dst.mkdir(parents=True, exist_ok=True)
    for header in src.glob("*.h"):
        shutil.copyfile(header, dst / header.name)


def openmp_wanted():
    return os.environ.get("FASTVAE_NO_OPENMP", "0").lower() in ("", "0", "false", "no")


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
        for ext in self.extensions:
            flags = [OPENMP_FLAG] if use_openmp else []
            ext.extra_compile_args = BASE_COMPILE_ARGS + flags
            ext.extra_link_args = list(flags)
        super().build_extensions()


def extensions():
    import numpy  # noqa: F401  (build requirement; keeps errors early and clear)

    exts = [
        Extension(
            f"fastvae.{name}",
            [f"fastvae/{name}.pyx"],
            include_dirs=["src_c"],
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
        nthreads=int(os.environ.get("FASTVAE_CYTHON_JOBS", "0") or 0),
    )


copy_public_headers()
setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
