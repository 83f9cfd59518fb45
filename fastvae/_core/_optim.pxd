# Optimizer updates: one fused pass over flat parameter, gradient and state
# buffers. Element-wise, so any split of [0, n) gives the same numbers.

from cython cimport floating
from libc.stdint cimport int64_t

ctypedef struct fv_optimizer:
    int kind          # FV_OPT_SGD, FV_OPT_MOMENTUM or FV_OPT_ADAM (numerics.h)
    double lr
    double momentum   # momentum: v = momentum * v + g;  p -= lr * v
    double beta1      # Adam, as in Kingma & Ba with PyTorch's epsilon placement:
    double beta2      # p -= lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)
    double eps

# Update elements [i0, i1) for step t (1-based; Adam's bias correction).
# state1 is the momentum velocity or Adam's m; state2 is Adam's v (unused
# otherwise and may be NULL).
cdef void optimizer_update_range(const fv_optimizer* opt, int64_t t,
                                 floating* params, const floating* grads,
                                 floating* state1, floating* state2,
                                 int64_t i0, int64_t i1) noexcept nogil

# The part of [0, n) that thread tid of nt owns (cache-line aligned cuts).
cdef void optimizer_update_team(int tid, int nt, const fv_optimizer* opt,
                                int64_t t, floating* params,
                                const floating* grads, floating* state1,
                                floating* state2, int64_t n) noexcept nogil

cdef void optimizer_update(const fv_optimizer* opt, int64_t t,
                           floating* params, const floating* grads,
                           floating* state1, floating* state2, int64_t n,
                           int n_threads) noexcept nogil

# Build the struct from Python values; ValueError on an unknown kind.
cdef fv_optimizer make_optimizer(str kind, double lr, double momentum,
                                 double beta1, double beta2,
                                 double eps) except *
