# Checks shared by the kernels' Python-facing (def) wrappers: the nogil
# kernels trust their inputs, so everything a caller can get wrong is caught
# here and raised as a Python exception naming the argument.

from libc.math cimport isfinite
from libc.stdint cimport uintptr_t

cdef enum:
    # Most OpenMP threads one wrapper call may ask for. libgomp cannot start
    # 10^5 threads (it segfaulted here), and _step keeps FV_MAX_TEAM (also
    # 256) per-thread slots in its scratch buffers.
    FV_MAX_THREADS = 256


cdef inline int check_threads(long n_threads) except -1:
    if not 1 <= n_threads <= FV_MAX_THREADS:
        raise ValueError(
            f"n_threads must be in [1, {FV_MAX_THREADS}], got {n_threads}")
    return 0


cdef inline object check_u64(object value, str name):
    """value as a Python int in [0, 2**64); floats and bools are refused
    (a seed of 1.5 must not silently become 1)."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = value.__index__()
    if not 0 <= value < 2**64:
        raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    return value


cdef inline int check_finite(double value, str name) except -1:
    if not isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return 0


cdef inline int check_disjoint(str name_a, const void* a, Py_ssize_t bytes_a,
                               str name_b, const void* b,
                               Py_ssize_t bytes_b) except -1:
    """The kernels declare their buffers restrict (non-overlapping); views of
    one array passed as two of them would give wrong numbers silently."""
    cdef uintptr_t pa = <uintptr_t> a, pb = <uintptr_t> b
    if (bytes_a > 0 and bytes_b > 0 and pa < pb + <uintptr_t> bytes_b
            and pb < pa + <uintptr_t> bytes_a):
        raise ValueError(
            f"{name_a} and {name_b} overlap in memory; pass separate arrays")
    return 0
