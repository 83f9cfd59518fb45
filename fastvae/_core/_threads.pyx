"""What the compiled core knows about OpenMP, and the process's ISA cap."""

import os

from fastvae._core._checks cimport FV_MAX_THREADS
from fastvae._core._omp_shim cimport fv_omp_get_max_threads, fv_openmp_enabled

# Most threads one compiled call accepts (fastvae/_core/_checks.pxd).
MAX_THREADS = FV_MAX_THREADS

# The one ISA cap of the process (src_c/fastvae/isa.h); 0 = no cap.
cdef int _isa_cap = 0

cdef int* fv_isa_slot() noexcept nogil:
    return &_isa_cap

fv_isa_bind(&_isa_cap)

ISA_LEVELS = {"baseline": FV_ISA_BASELINE, "avx2": FV_ISA_AVX2,
              "avx512": FV_ISA_AVX512}
_ISA_NAMES = {v: k for k, v in ISA_LEVELS.items()}


def openmp_enabled():
    """True when the extensions were compiled with OpenMP."""
    return bool(fv_openmp_enabled())


def omp_max_threads():
    """omp_get_max_threads(): honours OMP_NUM_THREADS; 1 without OpenMP."""
    return fv_omp_get_max_threads()


def set_isa(level):
    """Cap the instruction set fastvae's kernels use, for this process.

    Parameters
    ----------
    level : {"avx512", "avx2", "baseline"} or None
        The highest level kernels may use; None (or "avx512") lifts the cap.
        A cap above what the CPU has is no cap: kernels never use
        instructions the CPU lacks.

    Notes
    -----
    Results are bitwise equal for any thread count at one level; they can
    differ in the last bits between levels (vector widths, FMA). Kernels
    read the cap on every call (src_c/fastvae/dispatch.h): not while a
    computation runs on another thread.
    """
    if level is None:
        value = 0
    else:
        try:
            value = ISA_LEVELS[str(level).strip().lower()]
        except KeyError:
            raise ValueError(
                f"ISA level must be one of {sorted(ISA_LEVELS)} or None, "
                f"got {level!r}") from None
    global _isa_cap
    _isa_cap = value


def isa():
    """The level kernels run at now: "avx512", "avx2" or "baseline"."""
    return _ISA_NAMES[fv_isa()]


def cpu_isa():
    """The highest level this build and CPU can run."""
    return _ISA_NAMES[fv_isa_cpu()]


def isa_cap():
    """The cap set by FASTVAE_ISA or set_isa(), None when there is none."""
    return _ISA_NAMES.get(_isa_cap)


def _isa_from_env():
    value = os.environ.get("FASTVAE_ISA", "").strip()
    if not value:
        return
    try:
        set_isa(value)
    except ValueError as exc:
        raise ImportError(f"FASTVAE_ISA={value!r}: {exc}") from None


_isa_from_env()
