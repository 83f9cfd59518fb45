"""What the compiled core knows about OpenMP."""

from fastvae._checks cimport FV_MAX_THREADS
from fastvae._parallel cimport fv_omp_get_max_threads, fv_openmp_enabled

# Most threads one compiled call accepts (fastvae/_checks.pxd).
MAX_THREADS = FV_MAX_THREADS


def openmp_enabled():
    """True when the extensions were compiled with OpenMP."""
    return bool(fv_openmp_enabled())


def omp_max_threads():
    """omp_get_max_threads(): honours OMP_NUM_THREADS; 1 without OpenMP."""
    return fv_omp_get_max_threads()
