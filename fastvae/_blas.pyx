"""Row-major GEMM on top of scipy's BLAS (no link step of our own)."""

from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm

from fastvae._checks cimport check_disjoint


cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating* a, int lda,
               const floating* b, int ldb,
               floating beta, floating* c, int ldc) noexcept nogil:
    """C (m x n) = alpha * op(A) @ op(B) + beta * C, all row-major.

    BLAS is column-major and a row-major matrix is its transpose stored
    column-major, so C^T = op(B)^T op(A)^T is one call with the operands
    swapped and the same transpose flags.
    """
    cdef char ta = b"T" if trans_a else b"N"
    cdef char tb = b"T" if trans_b else b"N"
    if m <= 0 or n <= 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> b, &ldb,
              <float*> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> b, &ldb,
              <double*> a, &lda, &beta, c, &ldc)


def gemm_memview(bint trans_a, bint trans_b, const floating[:, ::1] a,
                 const floating[:, ::1] b, floating[:, ::1] c,
                 floating alpha=1.0, floating beta=0.0):
    """Test twin of `gemm`: c = alpha * op(a) @ op(b) + beta * c."""
    cdef int m = c.shape[0], n = c.shape[1]
    cdef int k = a.shape[0] if trans_a else a.shape[1]
    if (b.shape[1] if trans_b else b.shape[0]) != k:
        raise ValueError("inner dimensions of a and b do not agree")
    if (a.shape[1] if trans_a else a.shape[0]) != m or (
            b.shape[0] if trans_b else b.shape[1]) != n:
        raise ValueError("c has the wrong shape for op(a) @ op(b)")
    if m == 0 or n == 0:
        return
    cdef Py_ssize_t c_bytes = m * n * sizeof(floating)
    check_disjoint("c", &c[0, 0], c_bytes, "a", &a[0, 0],
                   a.shape[0] * a.shape[1] * sizeof(floating))
    check_disjoint("c", &c[0, 0], c_bytes, "b", &b[0, 0],
                   b.shape[0] * b.shape[1] * sizeof(floating))
    with nogil:
        gemm(trans_a, trans_b, m, n, k, alpha, &a[0, 0], a.shape[1],
             &b[0, 0], b.shape[1], beta, &c[0, 0], c.shape[1])
