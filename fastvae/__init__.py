"""fastvae: fast Variational Autoencoders on CPUs.

The training step runs as one compiled nogil call (Cython + C + OpenMP,
GEMM through scipy's BLAS); this package is the small Python API on top.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

# Version of the C-level API (the .pxd files and C headers); bumped whenever
# a declared signature changes. Additions do not bump it.
C_API_VERSION = 1

from fastvae._validation import NotFittedError  # noqa: E402
from fastvae.io import ModelFileError  # noqa: E402
from fastvae.model import (  # noqa: E402
    VAE,
    Autoencoder,
    DenoisingAutoencoder,
    checkpoint_info,
    load,
    resume,
)
from fastvae.threads import get_num_threads, openmp_enabled, set_num_threads  # noqa: E402


def get_include() -> str:
    """Folder to add to a C or Cython build's include path.

    It holds fastvae's C headers (``fastvae/philox.h`` etc.) and, one level
    up, the ``fastvae`` package with its ``.pxd`` files, so
    ``cimport fastvae._rng`` and ``#include "fastvae/philox.h"`` both work.

    Returns
    -------
    str
    """
    return str(_Path(__file__).resolve().parent / "include")


__all__ = [
    "VAE",
    "Autoencoder",
    "DenoisingAutoencoder",
    "load",
    "resume",
    "checkpoint_info",
    "get_include",
    "get_num_threads",
    "set_num_threads",
    "openmp_enabled",
    "NotFittedError",
    "ModelFileError",
    "C_API_VERSION",
    "__version__",
]
