# Cython declarations of src_c/fastvae/gemm.h: fastvae's own GEMM kernels at
# a given ISA level; must match the header.

from libc.stdint cimport int64_t

cdef extern from "fastvae/gemm.h" nogil:
    int fv_gemm_at_f32(int level, int trans_a, int trans_b, int m, int n, int k,
                       float alpha, const float* A, int64_t lda,
                       const float* B, int64_t ldb, float beta, float* C,
                       int64_t ldc)
    int fv_gemm_at_f64(int level, int trans_a, int trans_b, int m, int n, int k,
                       double alpha, const double* A, int64_t lda,
                       const double* B, int64_t ldb, double beta, double* C,
                       int64_t ldc)
