"""Row-major GEMM: fastvae's own AVX-512 kernels (src_c/fastvae/gemm.h) where
the CPU has them, else scipy's BLAS (no link step of our own)."""

import os

from cython cimport floating
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport dgemm, sgemm

from fastvae._checks cimport check_disjoint
from fastvae._threads cimport fv_isa_bind, fv_isa_slot

# Read the process's ISA cap (src_c/fastvae/isa.h), not a copy of our own.
fv_isa_bind(fv_isa_slot())


cdef extern from "fastvae/gemm.h" nogil:
    int fv_gemm_own_available()
    void fv_gemm_set_own(int on)
    int fv_gemm_get_own()
    int fv_gemm_own_f32(int trans_a, int trans_b, int m, int n, int k,
                        float alpha, const float* A, int64_t lda,
                        const float* B, int64_t ldb, float beta, float* C,
                        int64_t ldc)
    int fv_gemm_own_f64(int trans_a, int trans_b, int m, int n, int k,
                        double alpha, const double* A, int64_t lda,
                        const double* B, int64_t ldb, double beta, double* C,
                        int64_t ldc)
    int fv_gemm_run_f32(int trans_a, int trans_b, int m, int n, int k,
                        float alpha, const float* A, int64_t lda,
                        const float* B, int64_t ldb, float beta, float* C,
                        int64_t ldc)
    int fv_gemm_run_f64(int trans_a, int trans_b, int m, int n, int k,
                        double alpha, const double* A, int64_t lda,
                        const double* B, int64_t ldb, double beta, double* C,
                        int64_t ldc)

GEMM_BACKENDS = ("auto", "own", "blas")


def set_gemm_backend(str backend):
    """Choose the GEMM of the training step for this process.

    Parameters
    ----------
    backend : {"auto", "own", "blas"}
        "own": fastvae's AVX-512 kernels (an error on a CPU or build without
        them); "blas": scipy's BLAS; "auto": "own" where available.
        Results differ in the last bits between the two.
    """
    if backend not in GEMM_BACKENDS:
        raise ValueError(
            f"GEMM backend must be one of {GEMM_BACKENDS}, got {backend!r}")
    if backend == "own" and not fv_gemm_own_available():
        raise ValueError(
            "fastvae's own GEMM needs an x86-64 CPU with AVX-512 (x86-64-v4) "
            "and a build with GCC >= 12 on Linux; use 'blas' or 'auto'")
    fv_gemm_set_own(backend != "blas")


def gemm_backend():
    """The GEMM the training step uses now: "own" or "blas"."""
    return "own" if fv_gemm_get_own() else "blas"


def own_gemm_available():
    """Whether this build and CPU can run fastvae's own GEMM."""
    return bool(fv_gemm_own_available())


def _backend_from_env():
    value = os.environ.get("FASTVAE_GEMM", "auto").strip().lower() or "auto"
    try:
        set_gemm_backend(value)
    except ValueError as exc:
        raise ImportError(f"FASTVAE_GEMM={value!r}: {exc}") from None


_backend_from_env()


cdef bint gemm_uses_own() noexcept nogil:
    """Whether `gemm` runs fastvae's own kernels now (their numbers do not
    depend on how a product is cut into column blocks; BLAS's do)."""
    return fv_gemm_get_own()


cdef void blas_gemm(bint trans_a, bint trans_b, int m, int n, int k,
                    floating alpha, const floating* a, int lda,
                    const floating* b, int ldb,
                    floating beta, floating* c, int ldc) noexcept nogil:
    """C (m x n) = alpha * op(A) @ op(B) + beta * C, all row-major, by BLAS.

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


cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating* a, int lda,
               const floating* b, int ldb,
               floating beta, floating* c, int ldc) noexcept nogil:
    """C (m x n) = alpha * op(A) @ op(B) + beta * C, all row-major, by the
    backend chosen with set_gemm_backend."""
    if m <= 0 or n <= 0:
        return
    if floating is float:
        if fv_gemm_own_f32(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
                           beta, c, ldc):
            return
    else:
        if fv_gemm_own_f64(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
                           beta, c, ldc):
            return
    blas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


def gemm_memview(bint trans_a, bint trans_b, const floating[:, ::1] a,
                 const floating[:, ::1] b, floating[:, ::1] c,
                 floating alpha=1.0, floating beta=0.0, backend=None):
    """Test twin of `gemm`: c = alpha * op(a) @ op(b) + beta * c.

    backend None uses the process's choice (gemm_backend()); "own" or
    "blas" forces one ("own" with both operands transposed is refused).
    """
    if backend not in (None, "own", "blas"):
        raise ValueError(f"backend must be None, 'own' or 'blas', got {backend!r}")
    if backend == "own" and not fv_gemm_own_available():
        raise ValueError("fastvae's own GEMM is not available on this CPU or build")
    if backend == "own" and trans_a and trans_b:
        raise ValueError("fastvae's own GEMM has no A^T @ B^T")
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
    cdef int mode = 0 if backend is None else (1 if backend == "own" else 2)
    with nogil:
        if mode == 0:
            gemm(trans_a, trans_b, m, n, k, alpha, &a[0, 0], a.shape[1],
                 &b[0, 0], b.shape[1], beta, &c[0, 0], c.shape[1])
        elif mode == 2:
            blas_gemm(trans_a, trans_b, m, n, k, alpha, &a[0, 0], a.shape[1],
                      &b[0, 0], b.shape[1], beta, &c[0, 0], c.shape[1])
        elif floating is float:
            fv_gemm_run_f32(trans_a, trans_b, m, n, k, alpha, &a[0, 0],
                            a.shape[1], &b[0, 0], b.shape[1], beta, &c[0, 0],
                            c.shape[1])
        else:
            fv_gemm_run_f64(trans_a, trans_b, m, n, k, alpha, &a[0, 0],
                            a.shape[1], &b[0, 0], b.shape[1], beta, &c[0, 0],
                            c.shape[1])
