# Reparameterization z = mu + exp(logvar / 2) * eps with eps ~ N(0, I) drawn
# inside the kernel from Philox (fastvae/philox.h).
#
# Layout: H (n_rows, 2K) row-major with leading dimension ldh holds the
# encoder head: mu = H[:, :K], logvar = H[:, K:2K] (raw; clamped to
# [FV_LOGVAR_MIN, FV_LOGVAR_MAX] inside). Z, eps: (n_rows, K) with ldz / lde.
# Row i draws its eps from counter (block, row_offset + i, step, draw) under
# key (seed, stream), so a row's noise depends only on its global position.
# The *_rows versions do rows [r0, r1) on the calling thread; rows never
# interact, so any split gives the same numbers.

from cython cimport floating
from libc.stdint cimport int64_t, uint64_t

cdef void reparam_forward_rows(const floating* H, int ldh, int K,
                               floating* Z, int ldz, floating* eps, int lde,
                               uint64_t seed, uint64_t stream, uint64_t step,
                               uint64_t row_offset, uint64_t draw,
                               int64_t r0, int64_t r1) noexcept nogil

# dH[:, :K] = dZ;  dH[:, K:] = dZ * eps * exp(logvar / 2) / 2 (0 where the
# clamp is active). Overwrites dH.
cdef void reparam_backward_rows(const floating* H, int ldh, int K,
                                const floating* eps, int lde,
                                const floating* dZ, int lddz,
                                floating* dH, int lddh,
                                int64_t r0, int64_t r1) noexcept nogil

# k samples per row: pair q = i * k + s (rows i in [r0, r1), s < k) draws
# its eps from counter (block, row_offset + i, step, s) (sample 0 is
# reparam_forward_rows' draw 0) into eps row q, and Z row q = mu_i + sigma_i *
# eps_q, rounded like reparam_forward_rows. With log_ratio, log_ratio[q] =
# log p(z_q) - log q(z_q | x_i) = -1/2 sum (z^2 - eps^2 - logvar), in double.
cdef void reparam_samples_rows(const floating* H, int ldh, int K,
                               floating* Z, int ldz, floating* eps, int lde,
                               int64_t k, uint64_t seed, uint64_t stream,
                               uint64_t step, uint64_t row_offset,
                               double* log_ratio,
                               int64_t r0, int64_t r1) noexcept nogil

# The gradient at the head of row i from its k pairs, samples summed in
# order: with t_q = dZ_q + weight_q * Z_q (weight NULL: t_q = dZ_q),
# dH[:, :K] = sum_s t_q; dH[:, K:] = (sum_s t_q * eps_q * exp(logvar / 2) / 2
# - lv_shift) (0 where the clamp is active). weight_q * Z_q and lv_shift are
# the IWAE bound's log p(z) - log q(z | x) terms (weight_q = kl_weight times
# the pair's normalized importance weight over the batch, lv_shift =
# kl_weight / (2 * batch)). Overwrites dH.
cdef void reparam_samples_backward_rows(const floating* H, int ldh, int K,
                                        const floating* eps, int lde,
                                        const floating* Z, int ldz,
                                        const floating* dZ, int lddz,
                                        int64_t k, const double* weight,
                                        double lv_shift, floating* dH,
                                        int lddh, int64_t r0,
                                        int64_t r1) noexcept nogil

cdef void reparam_forward(int64_t n_rows, const floating* H, int ldh, int K,
                          floating* Z, int ldz, floating* eps, int lde,
                          uint64_t seed, uint64_t stream, uint64_t step,
                          uint64_t row_offset, uint64_t draw,
                          int n_threads) noexcept nogil

cdef void reparam_backward(int64_t n_rows, const floating* H, int ldh, int K,
                           const floating* eps, int lde,
                           const floating* dZ, int lddz,
                           floating* dH, int lddh,
                           int n_threads) noexcept nogil
