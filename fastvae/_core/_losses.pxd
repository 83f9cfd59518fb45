# Per-sample losses of the negative ELBO and their gradients.
#
# All matrices are row-major with a leading dimension; each *_rows function
# handles rows [r0, r1) on the calling thread, sums each row in double in a
# fixed order and writes one double per row to loss_out[i]. Rows never
# interact, so any split gives bitwise the same numbers.

from cython cimport floating
from libc.stdint cimport int64_t

# KL(N(mu, diag exp(lv)) || N(0, I)) = 1/2 sum_j (exp(lv) + mu^2 - 1 - lv)
# for H = [mu | logvar] (n_rows, 2K), lv clamped as in the reparameterization.
cdef void kl_rows(const floating* H, int ldh, int K, double* loss_out,
                  int64_t r0, int64_t r1) noexcept nogil

# dH += scale * dKL/dH:  d/dmu = mu,  d/dlv = (exp(lv) - 1) / 2 (0 if clamped).
cdef void kl_backward_rows(const floating* H, int ldh, int K, double scale,
                           floating* dH, int lddh,
                           int64_t r0, int64_t r1) noexcept nogil

# Bernoulli with logits L for targets X in [0, 1] (n_rows, D):
#   loss_i = sum_d softplus(L) - X * L,   grad = scale * (sigmoid(L) - X).
# grad must not overlap L or X; it may be NULL (loss only).
cdef void bernoulli_rows(const floating* L, int ldl, const floating* X, int ldx,
                         int D, double scale, floating* grad, int ldg,
                         double* loss_out, int64_t r0, int64_t r1) noexcept nogil

# Gaussian with fixed scalar sigma and mean M (n_rows, D):
#   loss_i = sum_d (X - M)^2 / (2 sigma^2) + D * (log sigma + log(2 pi) / 2),
#   grad = scale * (M - X) / sigma^2.   grad must not overlap M or X; it may
#   be NULL.
cdef void gaussian_rows(const floating* M, int ldm, const floating* X, int ldx,
                        int D, double sigma, double scale, floating* grad,
                        int ldg, double* loss_out,
                        int64_t r0, int64_t r1) noexcept nogil
