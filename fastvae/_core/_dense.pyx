"""Dense layer kernels: GEMM through scipy's BLAS fused with bias/activation."""

import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, threadid
from libc.stdint cimport int64_t

from fastvae._core._blas cimport gemm
from fastvae._core._checks cimport check_disjoint, check_threads
from fastvae._core._elementwise cimport (
    fv_bias_activation_f32, fv_bias_activation_f64, fv_column_sums_f32,
    fv_column_sums_f64, fv_count_nonfinite_f32, fv_count_nonfinite_f64,
    fv_dispatch_probe, fv_mul_activation_grad_f32, fv_mul_activation_grad_f64)
from fastvae._core._numerics cimport (
    FV_ACT_IDENTITY, FV_ACT_RELU, FV_ACT_SIGMOID, FV_ACT_TANH)
from fastvae._core._omp_shim cimport fv_omp_get_num_threads
from fastvae._core._partition cimport (
    FV_MAX_BLOCKS, fv_block_start, fv_n_col_blocks, fv_split_range)
from fastvae._core._threads cimport fv_isa, fv_isa_bind, fv_isa_cpu, fv_isa_slot

# Run the header kernels at the process's ISA cap (src_c/fastvae/dispatch.h),
# not at the CPU's best level.
fv_isa_bind(fv_isa_slot())


def _dispatch_level():
    """The ISA level (1, 3, 4) this module's kernels run at now (tests)."""
    return fv_dispatch_probe(0)


ACTIVATIONS = {
    "identity": FV_ACT_IDENTITY,
    "relu": FV_ACT_RELU,
    "tanh": FV_ACT_TANH,
    "sigmoid": FV_ACT_SIGMOID,
}


cdef void bias_activation(floating* Y, int ldy, int n_rows, int n_cols,
                          const floating* b, int activation) noexcept nogil:
    if floating is float:
        fv_bias_activation_f32(Y, ldy, n_rows, n_cols, b, activation)
    else:
        fv_bias_activation_f64(Y, ldy, n_rows, n_cols, b, activation)


cdef void mul_activation_grad(floating* D, int ldd, const floating* Y, int ldy,
                              int n_rows, int n_cols,
                              int activation) noexcept nogil:
    if floating is float:
        fv_mul_activation_grad_f32(D, ldd, Y, ldy, n_rows, n_cols, activation)
    else:
        fv_mul_activation_grad_f64(D, ldd, Y, ldy, n_rows, n_cols, activation)


cdef void dense_forward_block(int n_rows, int n_in, int n_out,
                              const floating* X, int ldx,
                              const floating* W, const floating* b,
                              floating* Y, int ldy, int activation,
                              int c0, int c1) noexcept nogil:
    if c1 <= c0 or n_rows <= 0:
        return
    gemm(False, False, n_rows, c1 - c0, n_in, <floating> 1, X, ldx,
         W + c0, n_out, <floating> 0, Y + c0, ldy)
    bias_activation(Y + c0, ldy, n_rows, c1 - c0, b + c0, activation)


cdef inline void _my_blocks(int tid, int nt, int nb, int* first,
                            int* last) noexcept nogil:
    cdef int64_t lo, hi
    fv_split_range(nb, nt, tid, 1, &lo, &hi)
    first[0] = <int> lo
    last[0] = <int> hi


cdef void dense_forward_team(int tid, int nt, int n_rows, int n_in, int n_out,
                             const floating* X, int ldx,
                             const floating* W, const floating* b,
                             floating* Y, int ldy,
                             int activation, int parts) noexcept nogil:
    cdef int nb = fv_n_col_blocks(n_out, n_rows, n_in, parts)
    cdef int blk, first, last
    _my_blocks(tid, nt, nb, &first, &last)
    for blk in range(first, last):
        dense_forward_block(n_rows, n_in, n_out, X, ldx, W, b, Y, ldy,
                            activation, fv_block_start(n_out, nb, blk),
                            fv_block_start(n_out, nb, blk + 1))


cdef int64_t weight_grad_block(int n_rows, int n_in, int n_out,
                                const floating* X, int ldx,
                                const floating* dA, int ldda,
                                floating* dW, floating* db,
                                int c0, int c1) noexcept nogil:
    """dW[:, c0:c1] and db[c0:c1]; returns how many of them are not finite
    (counted while the block is still in this core's cache)."""
    cdef int i, j
    if c1 <= c0:
        return 0
    if n_rows <= 0:
        for i in range(n_in):
            for j in range(c0, c1):
                dW[<int64_t> i * n_out + j] = 0
        for j in range(c0, c1):
            db[j] = 0
        return 0
    gemm(True, False, n_in, c1 - c0, n_rows, <floating> 1, X, ldx,
         dA + c0, ldda, <floating> 0, dW + c0, n_out)
    if floating is float:
        fv_column_sums_f32(dA + c0, ldda, n_rows, c1 - c0, db + c0)
        return (fv_count_nonfinite_f32(dW + c0, n_out, n_in, c1 - c0)
                + fv_count_nonfinite_f32(db + c0, 0, 1, c1 - c0))
    else:
        fv_column_sums_f64(dA + c0, ldda, n_rows, c1 - c0, db + c0)
        return (fv_count_nonfinite_f64(dW + c0, n_out, n_in, c1 - c0)
                + fv_count_nonfinite_f64(db + c0, 0, 1, c1 - c0))


cdef void input_grad_block(int n_rows, int n_in, int n_out,
                            const floating* X, int ldx,
                            const floating* W, const floating* dA, int ldda,
                            floating* dX, int lddx, int x_activation,
                            int r0, int r1) noexcept nogil:
    if r1 <= r0 or n_rows <= 0:
        return
    gemm(False, True, n_rows, r1 - r0, n_out, <floating> 1, dA, ldda,
         W + <int64_t> r0 * n_out, n_out, <floating> 0, dX + r0, lddx)
    mul_activation_grad(dX + r0, lddx, X + r0, ldx, n_rows, r1 - r0,
                        x_activation)


cdef int64_t dense_backward_team(int tid, int nt, int n_rows, int n_in,
                                 int n_out, const floating* X, int ldx,
                                 const floating* W, const floating* dA,
                                 int ldda, floating* dW, floating* db,
                                 floating* dX, int lddx,
                                 int x_activation, int parts) noexcept nogil:
    cdef int nbw = fv_n_col_blocks(n_out, n_rows, n_in, parts)
    cdef int nbx = fv_n_col_blocks(n_in, n_rows, n_out, parts)
    cdef int blk, first, last
    cdef int64_t bad = 0
    _my_blocks(tid, nt, nbw, &first, &last)
    for blk in range(first, last):
        bad += weight_grad_block(n_rows, n_in, n_out, X, ldx, dA, ldda, dW,
                                  db, fv_block_start(n_out, nbw, blk),
                                  fv_block_start(n_out, nbw, blk + 1))
    if dX == NULL:
        return bad
    # Hand the input-gradient blocks out in reverse thread order so a thread
    # with one weight block fewer gets one input block more.
    _my_blocks(nt - 1 - tid, nt, nbx, &first, &last)
    for blk in range(first, last):
        input_grad_block(n_rows, n_in, n_out, X, ldx, W, dA, ldda, dX, lddx,
                          x_activation, fv_block_start(n_in, nbx, blk),
                          fv_block_start(n_in, nbx, blk + 1))
    return bad


cdef void dense_rows_team(int tid, int nt, int n_rows, int n_in, int n_out,
                          const floating* X, int64_t ldx,
                          const floating* W, const floating* b,
                          floating* Y, int64_t ldy,
                          int activation) noexcept nogil:
    cdef int64_t r0, r1
    fv_split_range(n_rows, nt, tid, 1, &r0, &r1)
    if floating is float:
        fv_dense_rows_f32(r0, r1, n_in, n_out, X, ldx, W, b, Y, ldy, activation)
    else:
        fv_dense_rows_f64(r0, r1, n_in, n_out, X, ldx, W, b, Y, ldy, activation)


cdef void dense_forward(int n_rows, int n_in, int n_out,
                        const floating* X, int ldx,
                        const floating* W, const floating* b,
                        floating* Y, int ldy, int activation,
                        int parts, int n_threads) noexcept nogil:
    with parallel(num_threads=n_threads):
        dense_forward_team(threadid(), fv_omp_get_num_threads(), n_rows,
                           n_in, n_out, X, ldx, W, b, Y, ldy, activation,
                           parts)


cdef void dense_backward(int n_rows, int n_in, int n_out,
                         const floating* X, int ldx,
                         const floating* W, const floating* dA, int ldda,
                         floating* dW, floating* db, floating* dX, int lddx,
                         int x_activation, int parts,
                         int n_threads) noexcept nogil:
    with parallel(num_threads=n_threads):
        dense_backward_team(threadid(), fv_omp_get_num_threads(), n_rows,
                            n_in, n_out, X, ldx, W, dA, ldda, dW, db, dX,
                            lddx, x_activation, parts)


# ---------------------------------------------------------------------------
# Python-facing twins (tests, benchmarks). They check shapes; the model
# validates user input before it gets here.

def _activation_code(name):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}"
        ) from None


def _check_threads(n_threads, parts):
    check_threads(n_threads)
    if not 1 <= parts <= FV_MAX_BLOCKS:
        raise ValueError(f"parts must be in [1, {FV_MAX_BLOCKS}], got {parts}")


def dense_forward_memview(const floating[:, ::1] X, const floating[:, ::1] W,
                          const floating[::1] b, str activation="identity",
                          int n_threads=1, int parts=2):
    """Y = act(X @ W + b).

    Parameters
    ----------
    X : array of shape (n_rows, n_in)
    W : array of shape (n_in, n_out)
    b : array of shape (n_out,)
    activation : {"identity", "relu", "tanh", "sigmoid"}
    n_threads : int
    parts : int
        Column blocks of a large GEMM (see partition.h); results depend on
        it, not on n_threads.

    Returns
    -------
    Y : array of shape (n_rows, n_out), dtype of X
    """
    cdef int act = _activation_code(activation)
    _check_threads(n_threads, parts)
    if X.shape[1] != W.shape[0] or W.shape[1] != b.shape[0]:
        raise ValueError(
            f"shapes do not agree: X ({X.shape[0]}, {X.shape[1]}), "
            f"W ({W.shape[0]}, {W.shape[1]}), b ({b.shape[0]},)")
    cdef int n_rows = X.shape[0], n_in = X.shape[1], n_out = W.shape[1]
    Y_arr = np.empty((n_rows, n_out),
                     dtype=np.float32 if floating is float else np.float64)
    cdef floating[:, ::1] Y = Y_arr
    if n_rows == 0 or n_out == 0:
        return Y_arr
    with nogil:
        dense_forward(n_rows, n_in, n_out, &X[0, 0], n_in, &W[0, 0], &b[0],
                      &Y[0, 0], n_out, act, parts, n_threads)
    return Y_arr


def dense_rows_levels():
    """SIMD levels of the row-invariant kernels this CPU and build can run
    (1: baseline; 3: x86-64-v3, AVX2 + FMA; 4: x86-64-v4, AVX-512), whatever
    the ISA cap (level= of dense_rows_memview runs one of them)."""
    best = fv_isa_cpu()
    return [lv for lv in (1, 3, 4) if lv <= best]


def dense_rows_memview(const floating[:, ::1] X, const floating[:, ::1] W,
                       const floating[::1] b, str activation="identity",
                       int n_threads=1, level=None):
    """Y = act(X @ W + b) with the row-invariant kernel of inference.

    Row i of Y is a pure function of row i of X: bitwise the same for any
    other rows, order, chunking and number of threads.

    Parameters
    ----------
    X : array of shape (n_rows, n_in)
    W : array of shape (n_in, n_out)
    b : array of shape (n_out,)
    activation : {"identity", "relu", "tanh", "sigmoid"}
    n_threads : int
    level : int, optional
        SIMD level from dense_rows_levels(); the process's level
        (fastvae.get_isa()) when None.

    Returns
    -------
    Y : array of shape (n_rows, n_out), dtype of X
    """
    cdef int act = _activation_code(activation)
    cdef int lv = fv_isa() if level is None else level
    if lv not in dense_rows_levels():
        raise ValueError(f"level must be one of {dense_rows_levels()}, got {level}")
    _check_threads(n_threads, 1)
    if X.shape[1] != W.shape[0] or W.shape[1] != b.shape[0]:
        raise ValueError(
            f"shapes do not agree: X ({X.shape[0]}, {X.shape[1]}), "
            f"W ({W.shape[0]}, {W.shape[1]}), b ({b.shape[0]},)")
    cdef int n_rows = X.shape[0], n_in = X.shape[1], n_out = W.shape[1]
    Y_arr = np.empty((n_rows, n_out),
                     dtype=np.float32 if floating is float else np.float64)
    cdef floating[:, ::1] Y = Y_arr
    cdef int64_t r0 = 0, r1 = 0
    if n_rows == 0 or n_out == 0:
        return Y_arr
    with nogil, parallel(num_threads=n_threads):
        r0 = 0
        r1 = 0
        fv_split_range(n_rows, fv_omp_get_num_threads(), threadid(), 1, &r0,
                       &r1)
        if floating is float:
            fv_dense_rows_at_f32(lv, r0, r1, n_in, n_out, &X[0, 0], n_in,
                                 &W[0, 0], &b[0], &Y[0, 0], n_out, act)
        else:
            fv_dense_rows_at_f64(lv, r0, r1, n_in, n_out, &X[0, 0], n_in,
                                 &W[0, 0], &b[0], &Y[0, 0], n_out, act)
    return Y_arr


def dense_backward_memview(const floating[:, ::1] X, const floating[:, ::1] W,
                           const floating[:, ::1] dA,
                           str x_activation="identity", bint need_dx=True,
                           int n_threads=1, int parts=2):
    """Backward of a dense layer given dA, the gradient at its pre-activation.

    Returns
    -------
    dX : array of shape (n_rows, n_in) or None
        (dA @ W.T) * x_act'(X), None unless need_dx.
    dW : array of shape (n_in, n_out)
    db : array of shape (n_out,)
    """
    cdef int act = _activation_code(x_activation)
    _check_threads(n_threads, parts)
    if (X.shape[1] != W.shape[0] or dA.shape[1] != W.shape[1]
            or dA.shape[0] != X.shape[0]):
        raise ValueError(
            f"shapes do not agree: X ({X.shape[0]}, {X.shape[1]}), "
            f"W ({W.shape[0]}, {W.shape[1]}), dA ({dA.shape[0]}, {dA.shape[1]})")
    cdef int n_rows = X.shape[0], n_in = X.shape[1], n_out = W.shape[1]
    dtype = np.float32 if floating is float else np.float64
    dW_arr = np.zeros((n_in, n_out), dtype=dtype)
    db_arr = np.zeros(n_out, dtype=dtype)
    dX_arr = np.zeros((n_rows, n_in), dtype=dtype) if need_dx else None
    cdef floating[:, ::1] dW = dW_arr
    cdef floating[::1] db = db_arr
    cdef floating[:, ::1] dX
    cdef floating* dX_ptr = NULL
    # n_in == 0 still has db = column sums of dA: only these are all zeros
    if n_rows == 0 or n_out == 0:
        return dX_arr, dW_arr, db_arr
    if need_dx:
        dX = dX_arr
        dX_ptr = &dX[0, 0]
    with nogil:
        dense_backward(n_rows, n_in, n_out, &X[0, 0], n_in, &W[0, 0],
                       &dA[0, 0], n_out, &dW[0, 0], &db[0], dX_ptr, n_in,
                       act, parts, n_threads)
    return dX_arr, dW_arr, db_arr


def activation_grad_memview(floating[:, ::1] D, const floating[:, ::1] Y,
                            str activation):
    """In place: D *= act'(.) written through the activation output Y."""
    cdef int act = _activation_code(activation)
    if D.shape[0] != Y.shape[0] or D.shape[1] != Y.shape[1]:
        raise ValueError("D and Y must have the same shape")
    if D.shape[0] == 0 or D.shape[1] == 0:
        return
    cdef Py_ssize_t nbytes = D.shape[0] * D.shape[1] * sizeof(floating)
    check_disjoint("D", &D[0, 0], nbytes, "Y", &Y[0, 0], nbytes)
    with nogil:
        mul_activation_grad(&D[0, 0], D.shape[1], &Y[0, 0], Y.shape[1],
                            D.shape[0], D.shape[1], act)
