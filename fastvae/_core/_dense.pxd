# Dense layers: Y = act(X @ W + b) and its backward.
#
# Layout (all row-major): X (n_rows, n_in) with leading dimension ldx,
# W (n_in, n_out) contiguous, b (n_out,), Y (n_rows, n_out) with ldy.
# Work is cut into column blocks that depend only on the sizes and `parts`
# (fastvae/partition.h), each one BLAS call, so results are bitwise equal for
# any thread count. BLAS must be single-threaded while these run (threadpoolctl
# limit); OpenMP owns the cores.

from cython cimport floating
from libc.stdint cimport int64_t

# Declarations of src_c/fastvae/dense_rows.h; must match that header.
cdef extern from "fastvae/dense_rows.h" nogil:
    void fv_dense_rows_at_f32(int level, int64_t r0, int64_t r1, int n_in,
                              int n_out, const float* X, int64_t ldx,
                              const float* W, const float* b, float* Y,
                              int64_t ldy, int activation)
    void fv_dense_rows_at_f64(int level, int64_t r0, int64_t r1, int n_in,
                              int n_out, const double* X, int64_t ldx,
                              const double* W, const double* b, double* Y,
                              int64_t ldy, int activation)
    void fv_dense_rows_f32(int64_t r0, int64_t r1, int n_in, int n_out,
                           const float* X, int64_t ldx, const float* W,
                           const float* b, float* Y, int64_t ldy,
                           int activation)
    void fv_dense_rows_f64(int64_t r0, int64_t r1, int n_in, int n_out,
                           const double* X, int64_t ldx, const double* W,
                           const double* b, double* Y, int64_t ldy,
                           int activation)

# Y[:, c0:c1] = act(X @ W[:, c0:c1] + b[c0:c1])
cdef void dense_forward_block(int n_rows, int n_in, int n_out,
                              const floating* X, int ldx,
                              const floating* W, const floating* b,
                              floating* Y, int ldy, int activation,
                              int c0, int c1) noexcept nogil

# The column blocks of one forward call that thread `tid` of `nt` owns.
cdef void dense_forward_team(int tid, int nt, int n_rows, int n_in, int n_out,
                             const floating* X, int ldx,
                             const floating* W, const floating* b,
                             floating* Y, int ldy,
                             int activation, int parts) noexcept nogil

# Blocks of the backward below: dW[:, c0:c1] and db[c0:c1] (returns how many
# of them are not finite), and dX[:, r0:r1] (r0, r1 index the columns of dX,
# the rows of W).
cdef int64_t weight_grad_block(int n_rows, int n_in, int n_out,
                               const floating* X, int ldx,
                               const floating* dA, int ldda,
                               floating* dW, floating* db,
                               int c0, int c1) noexcept nogil

cdef void input_grad_block(int n_rows, int n_in, int n_out,
                           const floating* X, int ldx,
                           const floating* W, const floating* dA, int ldda,
                           floating* dX, int lddx, int x_activation,
                           int r0, int r1) noexcept nogil

# Given dA = dLoss/d(pre-activation) (n_rows, n_out):
#   dW = X^T dA, db = column sums of dA (in double, rows in order),
#   dX = (dA W^T) * x_act'(X)   (skipped when dX is NULL)
# where x_act is the activation whose output X is, so dX is already the
# gradient with respect to the previous layer's pre-activation.
# The thread-team version does the blocks `tid` of `nt` owns and returns how
# many of the dW and db values it wrote are NaN or infinite.
cdef int64_t dense_backward_team(int tid, int nt, int n_rows, int n_in,
                                 int n_out, const floating* X, int ldx,
                                 const floating* W, const floating* dA,
                                 int ldda, floating* dW, floating* db,
                                 floating* dX, int lddx,
                                 int x_activation, int parts) noexcept nogil

# Whole-layer versions that open their own OpenMP team of n_threads.
cdef void dense_forward(int n_rows, int n_in, int n_out,
                        const floating* X, int ldx,
                        const floating* W, const floating* b,
                        floating* Y, int ldy, int activation,
                        int parts, int n_threads) noexcept nogil

cdef void dense_backward(int n_rows, int n_in, int n_out,
                         const floating* X, int ldx,
                         const floating* W, const floating* dA, int ldda,
                         floating* dW, floating* db, floating* dX, int lddx,
                         int x_activation, int parts,
                         int n_threads) noexcept nogil

# In place: Y[:, :n_cols] = act(Y + b).
cdef void bias_activation(floating* Y, int ldy, int n_rows, int n_cols,
                          const floating* b, int activation) noexcept nogil

# In place: D *= act'(.) expressed through the activation's output Y.
cdef void mul_activation_grad(floating* D, int ldd, const floating* Y, int ldy,
                              int n_rows, int n_cols,
                              int activation) noexcept nogil

# Row-invariant forward for inference (src_c/fastvae/dense_rows.h): the same
# Y = act(X @ W + b), but every row of Y is a pure function of that row of X
# (bitwise, whatever the other rows, their order, the number of threads or
# of rows per call), which BLAS does not give (it rounds a row by its
# position in the call). Thread `tid` of `nt` does its share of the rows.
# Y must not overlap X, W or b.
cdef void dense_rows_team(int tid, int nt, int n_rows, int n_in, int n_out,
                          const floating* X, int64_t ldx,
                          const floating* W, const floating* b,
                          floating* Y, int64_t ldy,
                          int activation) noexcept nogil
