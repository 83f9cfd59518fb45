"""Row-major GEMM: fastvae's own kernels (src_c/fastvae/gemm.h) at the
process's instruction-set level (AVX-512 or AVX2 + FMA) where the CPU has
them, else scipy's BLAS (no link step of our own)."""

import os

from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm

from fastvae._core._checks cimport check_disjoint
from fastvae._core._gemm cimport fv_gemm_at_f32, fv_gemm_at_f64
from fastvae._core._threads cimport (FV_ISA_AVX2, FV_ISA_AVX512, fv_isa, fv_isa_bind,
                               fv_isa_cpu, fv_isa_slot)

# Read the process's ISA cap (src_c/fastvae/isa.h), not a copy of our own.
fv_isa_bind(fv_isa_slot())

GEMM_BACKENDS = ("auto", "own", "blas")
_LEVELS = {"avx512": FV_ISA_AVX512, "avx2": FV_ISA_AVX2}
_LEVEL_NAMES = {FV_ISA_AVX512: "avx512", FV_ISA_AVX2: "avx2"}

# The process's one GEMM switch: whether the training step may use the own
# kernels (FASTVAE_GEMM / set_gemm_backend). The level they run at is read
# from the ISA cap on every call, so fastvae.set_isa() takes effect at once.
cdef bint _own_on = False


cdef inline int _own_level() noexcept nogil:
    """The level the own kernels run at now, 0 when gemm falls back to BLAS."""
    if not _own_on:
        return 0
    cdef int level = fv_isa()
    return level if level >= FV_ISA_AVX2 else 0


def set_gemm_backend(str backend):
    """Choose the GEMM of the training step for this process.

    Parameters
    ----------
    backend : {"auto", "own", "blas"}
        "own": fastvae's kernels (an error on a CPU or build without AVX2 +
        FMA); "blas": scipy's BLAS; "auto": "own" where available.
        Results differ in the last bits between the two, and between the
        own kernels' levels.

    Notes
    -----
    The own kernels run at the process's instruction-set level
    (fastvae.set_isa, FASTVAE_ISA): AVX-512 or AVX2; with the cap at
    "baseline" the GEMM falls back to BLAS whatever the backend.
    """
    global _own_on
    if backend not in GEMM_BACKENDS:
        raise ValueError(
            f"GEMM backend must be one of {GEMM_BACKENDS}, got {backend!r}")
    if backend == "own" and not own_gemm_available():
        raise ValueError(
            "fastvae's own GEMM needs an x86-64 CPU with AVX2 + FMA (x86-64-v3) "
            "or AVX-512 and a build with GCC >= 12 on Linux; use 'blas' or 'auto'")
    _own_on = backend != "blas" and own_gemm_available()


def gemm_backend():
    """The GEMM the training step uses now: "own" or "blas".

    Returns
    -------
    str
        "own" when fastvae's kernels run (see own_gemm_level), else "blas".
    """
    return "own" if gemm_uses_own() else "blas"


def own_gemm_available():
    """Whether this build and CPU can run fastvae's own GEMM (at any level).

    Returns
    -------
    bool
        True on x86-64 CPUs with AVX2 + FMA or AVX-512 in a dispatching
        build, whatever the ISA cap and backend choice are now.
    """
    return fv_isa_cpu() >= FV_ISA_AVX2


def own_gemm_level():
    """The level fastvae's own GEMM runs at now.

    Returns
    -------
    {"avx512", "avx2"} or None
        None when the training step's GEMM falls back to BLAS (backend
        "blas", an ISA cap of "baseline", or a CPU or build without the
        kernels).
    """
    return _LEVEL_NAMES.get(_own_level())


def _backend_from_env():
    value = os.environ.get("FASTVAE_GEMM", "auto").strip().lower() or "auto"
    try:
        set_gemm_backend(value)
    except ValueError as exc:
        raise ImportError(f"FASTVAE_GEMM={value!r}: {exc}") from None


_backend_from_env()


cdef bint gemm_uses_own() noexcept nogil:
    """Whether `gemm` runs fastvae's own kernels now (their numbers do not
    depend on how a product is cut into column blocks; BLAS's do): backend
    not "blas", an ISA level of at least AVX2, and a build with them."""
    return _own_level() != 0


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


cdef inline int own_gemm_at(int level, bint trans_a, bint trans_b, int m, int n,
                            int k, floating alpha, const floating* a, int lda,
                            const floating* b, int ldb, floating beta,
                            floating* c, int ldc) noexcept nogil:
    if floating is float:
        return fv_gemm_at_f32(level, trans_a, trans_b, m, n, k, alpha, a, lda,
                              b, ldb, beta, c, ldc)
    else:
        return fv_gemm_at_f64(level, trans_a, trans_b, m, n, k, alpha, a, lda,
                              b, ldb, beta, c, ldc)


cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating* a, int lda,
               const floating* b, int ldb,
               floating beta, floating* c, int ldc) noexcept nogil:
    """C (m x n) = alpha * op(A) @ op(B) + beta * C, all row-major, by the
    backend chosen with set_gemm_backend."""
    if m <= 0 or n <= 0:
        return
    cdef int level = _own_level()
    if level and own_gemm_at(level, trans_a, trans_b, m, n, k, alpha, a, lda,
                             b, ldb, beta, c, ldc):
        return
    blas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef int _ld(const char* name, Py_ssize_t rows, Py_ssize_t cols,
             Py_ssize_t row_stride, Py_ssize_t col_stride,
             Py_ssize_t itemsize) except -1:
    """Row stride in elements of a view with contiguous rows."""
    if cols > 1 and col_stride != itemsize:
        raise ValueError(f"{name} must have contiguous rows (unit column stride)")
    if rows <= 1:
        return max(cols, 1)
    if row_stride % itemsize or row_stride < cols * itemsize:
        raise ValueError(f"{name} has a row stride below its row length or not "
                         "a whole number of elements")
    return row_stride // itemsize


def gemm_memview(bint trans_a, bint trans_b, const floating[:, :] a,
                 const floating[:, :] b, floating[:, :] c,
                 floating alpha=1.0, floating beta=0.0, backend=None, level=None,
                 bint strided=False):
    """Test twin of `gemm`: c = alpha * op(a) @ op(b) + beta * c.

    Parameters
    ----------
    trans_a, trans_b : bool
        Whether op transposes a, b.
    a, b, c : 2-D arrays of one float dtype
        The operands, C-contiguous unless `strided`; c (m x n) is written
        in place and its span must not overlap those of a or b.
    alpha, beta : float
        The scalars; c is not read when beta is 0.
    backend : {None, "own", "blas"}
        None: the process's choice (gemm_backend()); "own": fastvae's
        kernels at `level`, or at the process's level (own_gemm_level())
        when that is None, or at the CPU's best level when the process's
        GEMM is BLAS; "blas": scipy's BLAS.
    level : {None, "avx512", "avx2"}
        Run fastvae's kernels at this level whatever the ISA cap (implies
        backend "own"); a ValueError when the CPU cannot run it.
    strided : bool
        Accept operands whose rows lie further apart than their length
        (views of wider arrays: lda, ldb, ldc > the row length), as the
        training step passes its column blocks; rows must be contiguous.

    Raises
    ------
    ValueError
        On an unknown backend or level, one the CPU cannot run, both
        operands transposed with the own kernels, or shapes that do not
        agree.
    """
    if backend not in (None, "own", "blas"):
        raise ValueError(f"backend must be None, 'own' or 'blas', got {backend!r}")
    if level is not None and level not in _LEVELS:
        raise ValueError(f"level must be None, 'avx512' or 'avx2', got {level!r}")
    if level is not None and backend == "blas":
        raise ValueError("a level applies to fastvae's own GEMM, not to 'blas'")
    if level is not None:
        backend = "own"
    if backend == "own" and not own_gemm_available():
        raise ValueError("fastvae's own GEMM is not available on this CPU or build")
    cdef int run_level = 0
    if level is not None:
        run_level = _LEVELS[level]
        if run_level > fv_isa_cpu():
            raise ValueError(f"this CPU or build cannot run the {level} GEMM kernels")
    elif backend == "own":
        run_level = fv_isa() if fv_isa() >= FV_ISA_AVX2 else fv_isa_cpu()
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
    if not strided:
        for name, arr in (("a", a), ("b", b), ("c", c)):
            if not arr.is_c_contig():
                raise ValueError(f"{name} must be C-contiguous (or pass strided=True)")
    cdef Py_ssize_t size = sizeof(floating)
    cdef int lda = _ld("a", a.shape[0], a.shape[1], a.strides[0], a.strides[1], size)
    cdef int ldb = _ld("b", b.shape[0], b.shape[1], b.strides[0], b.strides[1], size)
    cdef int ldc = _ld("c", c.shape[0], c.shape[1], c.strides[0], c.strides[1], size)
    if k == 0:  # BLAS wants ld >= 1 even for an empty operand
        lda = max(lda, 1)
        ldb = max(ldb, 1)
    cdef Py_ssize_t c_bytes = ((m - 1) * ldc + n) * size
    check_disjoint("c", &c[0, 0], c_bytes, "a", &a[0, 0],
                   ((a.shape[0] - 1) * lda + a.shape[1]) * size)
    check_disjoint("c", &c[0, 0], c_bytes, "b", &b[0, 0],
                   ((b.shape[0] - 1) * ldb + b.shape[1]) * size)
    cdef int mode = 0 if backend is None else (1 if backend == "own" else 2)
    cdef int done = 1
    with nogil:
        if mode == 0:
            gemm(trans_a, trans_b, m, n, k, alpha, &a[0, 0], lda,
                 &b[0, 0], ldb, beta, &c[0, 0], ldc)
        elif mode == 2:
            blas_gemm(trans_a, trans_b, m, n, k, alpha, &a[0, 0], lda,
                      &b[0, 0], ldb, beta, &c[0, 0], ldc)
        else:
            done = own_gemm_at(run_level, trans_a, trans_b, m, n, k, alpha,
                               &a[0, 0], lda, &b[0, 0], ldb, beta, &c[0, 0], ldc)
    if not done:
        raise MemoryError("fastvae's own GEMM could not allocate its panel buffer")
