from cython cimport floating

cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating* a, int lda,
               const floating* b, int ldb,
               floating beta, floating* c, int ldc) noexcept nogil

# Whether `gemm` runs fastvae's own kernels now (backend not "blas", ISA level
# AVX2 or AVX-512, a build with them): their numbers do not depend on how a
# product is cut into column blocks (src_c/fastvae/gemm.h), BLAS's do.
cdef bint gemm_uses_own() noexcept nogil
