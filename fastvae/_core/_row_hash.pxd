# Cython declarations of src_c/fastvae/row_hash.h: the 64-bit key of a data
# row, the Philox counter of that row's evaluation noise. Must match the
# header.

from libc.stdint cimport uint64_t


cdef extern from "fastvae/row_hash.h" nogil:
    # must match src_c/fastvae/row_hash.h
    uint64_t fv_row_key_f32(const float* x, int n)
    uint64_t fv_row_key_f64(const double* x, int n)
