"""Python access to the Philox4x64-10 generator of src_c/fastvae/philox.h.

The training kernels draw their normals in C; these wrappers exist so tests,
references and users can reproduce exactly the numbers a kernel used.
"""

import numpy as np

from cython.parallel cimport prange

from fastvae._core._checks cimport check_threads
from libc.stdint cimport uint64_t

STREAM_REPARAM = FV_STREAM_REPARAM
STREAM_EVAL = FV_STREAM_EVAL
STREAM_SAMPLE = FV_STREAM_SAMPLE
STREAM_BINARIZE = FV_STREAM_BINARIZE
STREAM_CORRUPT = FV_STREAM_CORRUPT
STREAM_IS = FV_STREAM_IS
STREAM_USER = FV_STREAM_USER

_U64_MAX = 2**64 - 1


def _as_u64(value, name):
    value = int(value)
    if not 0 <= value <= _U64_MAX:
        raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    return value


def philox4x64_10(counter, key):
    """One Philox4x64-10 block.

    Parameters
    ----------
    counter : sequence of 4 ints in [0, 2**64)
    key : sequence of 2 ints in [0, 2**64)

    Returns
    -------
    ndarray of shape (4,), dtype uint64
    """
    if len(counter) != 4 or len(key) != 2:
        raise ValueError("counter needs 4 words and key 2 words")
    cdef uint64_t c[4]
    cdef uint64_t k[2]
    cdef uint64_t r[4]
    for i in range(4):
        c[i] = _as_u64(counter[i], "counter word")
    for i in range(2):
        k[i] = _as_u64(key[i], "key word")
    fv_philox4x64_10(c, k, r)
    return np.array([r[0], r[1], r[2], r[3]], dtype=np.uint64)


def normal_matrix(seed, stream, step, Py_ssize_t n_rows, Py_ssize_t n_cols,
                  row_offset=0, draw=0, dtype=np.float64, int n_threads=1):
    """Standard normals exactly as the kernels draw them.

    Element (i, j) is the normal of counter (j // 4, row_offset + i, step,
    draw) under key (seed, stream), lane j % 4.

    Parameters
    ----------
    seed, stream, step : int in [0, 2**64)
    n_rows, n_cols : int >= 0
    row_offset, draw : int in [0, 2**64)
    dtype : float32 or float64
    n_threads : int >= 1

    Returns
    -------
    ndarray of shape (n_rows, n_cols)
    """
    cdef uint64_t s = _as_u64(seed, "seed"), st = _as_u64(stream, "stream")
    cdef uint64_t t = _as_u64(step, "step"), d = _as_u64(draw, "draw")
    cdef uint64_t r0 = _as_u64(row_offset, "row_offset")
    if n_rows < 0 or n_cols < 0:
        raise ValueError("n_rows and n_cols must be >= 0")
    check_threads(n_threads)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):  # also for an empty result
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    out = np.empty((n_rows, n_cols), dtype=dtype)
    if n_rows == 0 or n_cols == 0:
        return out
    cdef float[:, ::1] out32
    cdef double[:, ::1] out64
    cdef Py_ssize_t i
    if dtype == np.float32:
        out32 = out
        for i in prange(n_rows, nogil=True, schedule="static",
                        num_threads=n_threads):
            fv_normal_fill_f32(s, st, r0 + i, t, d, &out32[i, 0], n_cols)
    else:
        out64 = out
        for i in prange(n_rows, nogil=True, schedule="static",
                        num_threads=n_threads):
            fv_normal_fill_f64(s, st, r0 + i, t, d, &out64[i, 0], n_cols)
    return out


def uniform_matrix(seed, stream, step, Py_ssize_t n_rows, Py_ssize_t n_cols,
                   row_offset=0, draw=0):
    """Uniforms in [0, 1) exactly as the kernels draw them (dynamic
    binarization, masking noise).

    Element (i, j) is lane j % 4 of the block of counter (j // 4,
    row_offset + i, step, draw) under key (seed, stream).

    Returns
    -------
    float64 ndarray of shape (n_rows, n_cols)
    """
    cdef uint64_t s = _as_u64(seed, "seed"), st = _as_u64(stream, "stream")
    cdef uint64_t t = _as_u64(step, "step"), d = _as_u64(draw, "draw")
    cdef uint64_t r0 = _as_u64(row_offset, "row_offset")
    if n_rows < 0 or n_cols < 0:
        raise ValueError("n_rows and n_cols must be >= 0")
    out_arr = np.empty((n_rows, n_cols), dtype=np.float64)
    cdef double[:, ::1] out = out_arr
    cdef double u[4]
    cdef Py_ssize_t i, b, l
    with nogil:
        for i in range(n_rows):
            for b in range((n_cols + 3) // 4):
                fv_uniform4(s, st, <uint64_t> b, r0 + i, t, d, u)
                for l in range(4):
                    if 4 * b + l < n_cols:
                        out[i, 4 * b + l] = u[l]
    return out_arr
