"""Build the example against the installed fastvae:

    python setup.py build_ext --inplace
    pip install --no-build-isolation .     (or: as a package)

fastvae.get_include() is the one folder both compilers need: the C compiler
for fastvae's headers (include_dirs), Cython for its .pxd files
(include_path).
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

import fastvae

# fastvae's kernels run their own OpenMP teams whatever this module is built
# with; -fopenmp makes this module's own prange loops parallel too.
no_openmp = os.environ.get("FASTVAE_NO_OPENMP", "0").lower() not in (
    "",
    "0",
    "false",
    "no",
)
openmp = [] if no_openmp else ["-fopenmp"]

ext = Extension(
    "embed",
    ["embed.pyx"],
    include_dirs=[fastvae.get_include()],
    extra_compile_args=["-O2", *openmp],
    extra_link_args=openmp,
)

setup(
    name="fastvae-embed-example",
    version="0.1.0",
    ext_modules=cythonize([ext], include_path=[fastvae.get_include()]),
)
