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
