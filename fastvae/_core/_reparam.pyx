"""Fused reparameterization sampling and its backward."""

import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, threadid
from libc.math cimport exp
from libc.stdint cimport int64_t, uint64_t

from fastvae._core._checks cimport check_threads, check_u64
from fastvae._core._numerics cimport fv_clamp_logvar, fv_logvar_grad_mask
from fastvae._core._omp_shim cimport fv_omp_get_num_threads
from fastvae._core._partition cimport fv_split_range
from fastvae._core._rng cimport fv_normal_fill_f32, fv_normal_fill_f64


cdef void reparam_forward_rows(const floating* H, int ldh, int K,
                               floating* Z, int ldz, floating* eps, int lde,
                               uint64_t seed, uint64_t stream, uint64_t step,
                               uint64_t row_offset, uint64_t draw,
                               int64_t r0, int64_t r1) noexcept nogil:
    cdef int64_t i
    cdef int j
    cdef const floating* h
    cdef floating* e
    cdef floating* z
    for i in range(r0, r1):
        h = H + i * ldh
        e = eps + i * lde
        z = Z + i * ldz
        if floating is float:
            fv_normal_fill_f32(seed, stream, row_offset + <uint64_t> i, step,
                               draw, e, K)
        else:
            fv_normal_fill_f64(seed, stream, row_offset + <uint64_t> i, step,
                               draw, e, K)
        for j in range(K):
            z[j] = <floating> (h[j] + exp(0.5 * fv_clamp_logvar(h[K + j])) * e[j])


cdef void reparam_backward_rows(const floating* H, int ldh, int K,
                                const floating* eps, int lde,
                                const floating* dZ, int lddz,
                                floating* dH, int lddh,
                                int64_t r0, int64_t r1) noexcept nogil:
    cdef int64_t i
    cdef int j
    cdef double lv
    cdef const floating* h
    cdef const floating* e
    cdef const floating* dz
    cdef floating* dh
    for i in range(r0, r1):
        h = H + i * ldh
        e = eps + i * lde
        dz = dZ + i * lddz
        dh = dH + i * lddh
        for j in range(K):
            lv = h[K + j]
            dh[j] = dz[j]
            dh[K + j] = <floating> (dz[j] * e[j] * 0.5 * exp(0.5 * fv_clamp_logvar(lv))
                                    * fv_logvar_grad_mask(lv))


cdef void reparam_samples_rows(const floating* H, int ldh, int K,
                               floating* Z, int ldz, floating* eps, int lde,
                               int64_t k, uint64_t seed, uint64_t stream,
                               uint64_t step, uint64_t row_offset,
                               double* log_ratio,
                               int64_t r0, int64_t r1) noexcept nogil:
    cdef int64_t i, s, q
    cdef int j
    cdef double lv, zj, e, acc
    cdef const floating* h
    cdef floating* ep
    cdef floating* z
    for i in range(r0, r1):
        h = H + i * ldh
        for s in range(k):
            q = i * k + s
            ep = eps + q * lde
            z = Z + q * ldz
            if floating is float:
                fv_normal_fill_f32(seed, stream, row_offset + <uint64_t> i, step,
                                   <uint64_t> s, ep, K)
            else:
                fv_normal_fill_f64(seed, stream, row_offset + <uint64_t> i, step,
                                   <uint64_t> s, ep, K)
            acc = 0.0
            for j in range(K):
                lv = fv_clamp_logvar(h[K + j])
                z[j] = <floating> (h[j] + exp(0.5 * lv) * ep[j])
                zj = z[j]
                e = ep[j]
                acc += zj * zj - e * e - lv
            if log_ratio != NULL:
                log_ratio[q] = -0.5 * acc


cdef void reparam_samples_backward_rows(const floating* H, int ldh, int K,
                                        const floating* eps, int lde,
                                        const floating* Z, int ldz,
                                        const floating* dZ, int lddz,
                                        int64_t k, const double* weight,
                                        double lv_shift, floating* dH,
                                        int lddh, int64_t r0,
                                        int64_t r1) noexcept nogil:
    cdef int64_t i, s, q
    cdef int j
    cdef double lv, t, sum_mu, sum_lv
    cdef const floating* h
    cdef floating* dh
    for i in range(r0, r1):
        h = H + i * ldh
        dh = dH + i * lddh
        for j in range(K):
            sum_mu = 0.0
            sum_lv = 0.0
            for s in range(k):
                q = i * k + s
                t = dZ[q * lddz + j]
                if weight != NULL:
                    t = t + weight[q] * Z[q * ldz + j]
                sum_mu += t
                sum_lv += t * eps[q * lde + j]
            lv = h[K + j]
            dh[j] = <floating> sum_mu
            dh[K + j] = <floating> (
                (sum_lv * 0.5 * exp(0.5 * fv_clamp_logvar(lv)) - lv_shift)
                * fv_logvar_grad_mask(lv))


cdef void reparam_forward(int64_t n_rows, const floating* H, int ldh, int K,
                          floating* Z, int ldz, floating* eps, int lde,
                          uint64_t seed, uint64_t stream, uint64_t step,
                          uint64_t row_offset, uint64_t draw,
                          int n_threads) noexcept nogil:
    cdef int64_t r0, r1
    with parallel(num_threads=n_threads):
        # assigned in the block, so Cython makes them thread-private (the
        # split below only writes them through pointers)
        r0 = 0
        r1 = 0
        fv_split_range(n_rows, fv_omp_get_num_threads(), threadid(), 1, &r0, &r1)
        reparam_forward_rows(H, ldh, K, Z, ldz, eps, lde, seed, stream, step,
                             row_offset, draw, r0, r1)


cdef void reparam_backward(int64_t n_rows, const floating* H, int ldh, int K,
                           const floating* eps, int lde,
                           const floating* dZ, int lddz,
                           floating* dH, int lddh,
                           int n_threads) noexcept nogil:
    cdef int64_t r0, r1
    with parallel(num_threads=n_threads):
        r0 = 0
        r1 = 0
        fv_split_range(n_rows, fv_omp_get_num_threads(), threadid(), 1, &r0, &r1)
        reparam_backward_rows(H, ldh, K, eps, lde, dZ, lddz, dH, lddh, r0, r1)


# ---------------------------------------------------------------------------
# Python-facing twins (tests, benchmarks).

def _latent_dim(Py_ssize_t width):
    if width % 2 or width == 0:
        raise ValueError(f"H must have 2 * latent_dim columns, got {width}")
    return width // 2


def reparam_forward_memview(const floating[:, ::1] H, seed, stream, step,
                            row_offset=0, draw=0, int n_threads=1):
    """z = mu + exp(logvar / 2) * eps for H = [mu | logvar].

    Returns
    -------
    Z, eps : arrays of shape (n_rows, latent_dim)
    """
    cdef int K = _latent_dim(H.shape[1])
    cdef int64_t n = H.shape[0]
    check_threads(n_threads)
    cdef uint64_t s = check_u64(seed, "seed"), st = check_u64(stream, "stream")
    cdef uint64_t t = check_u64(step, "step")
    cdef uint64_t ro = check_u64(row_offset, "row_offset")
    cdef uint64_t d = check_u64(draw, "draw")
    dtype = np.float32 if floating is float else np.float64
    Z_arr = np.empty((n, K), dtype=dtype)
    eps_arr = np.empty((n, K), dtype=dtype)
    cdef floating[:, ::1] Z = Z_arr
    cdef floating[:, ::1] E = eps_arr
    if n == 0:
        return Z_arr, eps_arr
    with nogil:
        reparam_forward(n, &H[0, 0], 2 * K, K, &Z[0, 0], K, &E[0, 0], K,
                        s, st, t, ro, d, n_threads)
    return Z_arr, eps_arr


def reparam_backward_memview(const floating[:, ::1] H,
                             const floating[:, ::1] eps,
                             const floating[:, ::1] dZ, int n_threads=1):
    """Gradient with respect to H = [mu | logvar] given dL/dz.

    Returns
    -------
    dH : array of shape (n_rows, 2 * latent_dim)
    """
    cdef int K = _latent_dim(H.shape[1])
    cdef int64_t n = H.shape[0]
    if (eps.shape[0] != n or dZ.shape[0] != n or eps.shape[1] != K
            or dZ.shape[1] != K):
        raise ValueError("eps and dZ must have shape (n_rows, latent_dim)")
    check_threads(n_threads)
    dH_arr = np.empty((n, 2 * K),
                      dtype=np.float32 if floating is float else np.float64)
    cdef floating[:, ::1] dH = dH_arr
    if n == 0:
        return dH_arr
    with nogil:
        reparam_backward(n, &H[0, 0], 2 * K, K, &eps[0, 0], K, &dZ[0, 0], K,
                         &dH[0, 0], 2 * K, n_threads)
    return dH_arr
