"""fastvae: fast Variational Autoencoders on CPUs.

The training step runs as one compiled nogil call (Cython + C + OpenMP,
GEMM by fastvae's own AVX-512 kernels or scipy's BLAS); this package is the
small Python API on top.
"""

from pathlib import Path as _Path

from fastvae._version import C_API_VERSION, __version__

try:
    from fastvae._core import _threads  # noqa: E402, F401  (the first compiled module)
except ImportError as _exc:  # pragma: no cover - depends on how it was run
    if "_threads" not in str(_exc):
        raise
    raise ImportError(
        f"fastvae's compiled modules are missing from {_Path(__file__).parent}: "
        "this is an unbuilt source tree. Build it in place with "
        "`pip install -e .`, or run Python from another folder so that the "
        "installed fastvae is imported instead."
    ) from _exc

from fastvae._core.threads import (  # noqa: E402
    get_isa,
    get_num_threads,
    openmp_enabled,
    set_isa,
    set_num_threads,
)
from fastvae.config import show_config  # noqa: E402
from fastvae.exceptions import ModelFileError, NotFittedError  # noqa: E402
from fastvae.models import (  # noqa: E402
    VAE,
    Autoencoder,
    DenoisingAutoencoder,
    TabularVAE,
    checkpoint_info,
    load,
    resume,
)


def get_include() -> str:
    """The one folder a third-party C or Cython build needs, like
    ``numpy.get_include()``.

    It holds ``fastvae/*.h`` (fastvae's C headers, ``#include
    "fastvae/philox.h"``) and ``fastvae/*.pxd`` (the Cython declarations,
    ``cimport fastvae``): pass it to the C compiler (``include_dirs``) and to
    Cython (``cythonize(..., include_path=[...])``). Cython also finds the
    ``.pxd`` files of a regular install on ``sys.path``, but not those of an
    editable one.

    Returns
    -------
    str
        An absolute path inside the installed package.

    Examples
    --------
    >>> from setuptools import Extension
    >>> from Cython.Build import cythonize
    >>> ext = Extension("mine", ["mine.pyx"], include_dirs=[get_include()])
    >>> modules = cythonize([ext], include_path=[get_include()])  # doctest: +SKIP
    """
    return str(_Path(__file__).resolve().parent / "include")


__all__ = [
    "VAE",
    "Autoencoder",
    "DenoisingAutoencoder",
    "TabularVAE",
    "load",
    "resume",
    "checkpoint_info",
    "get_include",
    "get_num_threads",
    "set_num_threads",
    "get_isa",
    "set_isa",
    "openmp_enabled",
    "show_config",
    "NotFittedError",
    "ModelFileError",
    "C_API_VERSION",
    "__version__",
]
