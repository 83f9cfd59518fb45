# Cython declarations of src_c/fastvae/sparse_rows.h: the first layer of a
# row given by its stored values. Must match the header.

from libc.stdint cimport int32_t, int64_t


cdef extern from "fastvae/sparse_rows.h" nogil:
    void fv_sr_row_f32(const float* vals, const int32_t* idx, int64_t nk,
                       const float* cond, int n_cond, int n_in, const float* W,
                       int H, int accumulate, float* out)
    void fv_sr_row_f64(const double* vals, const int32_t* idx, int64_t nk,
                       const double* cond, int n_cond, int n_in,
                       const double* W, int H, int accumulate, double* out)
