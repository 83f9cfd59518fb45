"""What the compiled core knows about OpenMP."""

from fastvae._parallel cimport fv_omp_get_max_threads, fv_openmp_enabled


def openmp_enabled():
    """True when the extensions were compiled with OpenMP."""
    return bool(fv_openmp_enabled())


def omp_max_threads():
    """omp_get_max_threads(): honours OMP_NUM_THREADS; 1 without OpenMP."""
    return fv_omp_get_max_threads()
