"""Closed-form Gaussian KL, Bernoulli-with-logits and Gaussian losses."""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp
from libc.stdint cimport int64_t

from fastvae._core._checks cimport check_finite, check_threads
from fastvae._core._elementwise cimport (
    fv_bernoulli_rows_f32, fv_bernoulli_rows_f64, fv_dispatch_probe,
    fv_gaussian_rows_f32, fv_gaussian_rows_f64)
from fastvae._core._numerics cimport fv_clamp_logvar, fv_logvar_grad_mask
from fastvae._core._threads cimport fv_isa_bind, fv_isa_slot

# Run the header kernels at the process's ISA cap (src_c/fastvae/dispatch.h),
# not at the CPU's best level.
fv_isa_bind(fv_isa_slot())


def _dispatch_level():
    """The ISA level (1, 3, 4) this module's kernels run at now (tests)."""
    return fv_dispatch_probe(0)


cdef void kl_rows(const floating* H, int ldh, int K, double* loss_out,
                  int64_t r0, int64_t r1) noexcept nogil:
    cdef int64_t i
    cdef int j
    cdef double s, mu, lv
    cdef const floating* h
    for i in range(r0, r1):
        h = H + i * ldh
        s = 0.0
        for j in range(K):
            mu = h[j]
            lv = fv_clamp_logvar(h[K + j])
            s += exp(lv) + mu * mu - 1.0 - lv
        loss_out[i] = 0.5 * s


cdef void kl_backward_rows(const floating* H, int ldh, int K, double scale,
                           floating* dH, int lddh,
                           int64_t r0, int64_t r1) noexcept nogil:
    cdef int64_t i
    cdef int j
    cdef double lv
    cdef const floating* h
    cdef floating* dh
    for i in range(r0, r1):
        h = H + i * ldh
        dh = dH + i * lddh
        for j in range(K):
            lv = h[K + j]
            dh[j] = <floating> (dh[j] + scale * h[j])
            dh[K + j] = <floating> (
                dh[K + j] + scale * 0.5 * (exp(fv_clamp_logvar(lv)) - 1.0)
                * fv_logvar_grad_mask(lv))


cdef void bernoulli_rows(const floating* L, int ldl, const floating* X, int ldx,
                         int D, double scale, floating* grad, int ldg,
                         double* loss_out, int64_t r0, int64_t r1) noexcept nogil:
    if floating is float:
        fv_bernoulli_rows_f32(L, ldl, X, ldx, D, <float> scale, grad, ldg,
                              loss_out, r0, r1)
    else:
        fv_bernoulli_rows_f64(L, ldl, X, ldx, D, scale, grad, ldg, loss_out,
                              r0, r1)


cdef void gaussian_rows(const floating* M, int ldm, const floating* X, int ldx,
                        int D, double sigma, double scale, floating* grad,
                        int ldg, double* loss_out,
                        int64_t r0, int64_t r1) noexcept nogil:
    if floating is float:
        fv_gaussian_rows_f32(M, ldm, X, ldx, D, sigma, <float> scale, grad, ldg,
                             loss_out, r0, r1)
    else:
        fv_gaussian_rows_f64(M, ldm, X, ldx, D, sigma, scale, grad, ldg,
                             loss_out, r0, r1)


# ---------------------------------------------------------------------------
# Python-facing twins (tests, benchmarks).

def _check_pair(Py_ssize_t n0, Py_ssize_t d0, Py_ssize_t n1, Py_ssize_t d1):
    if n0 != n1 or d0 != d1:
        raise ValueError(
            f"prediction ({n0}, {d0}) and target ({n1}, {d1}) shapes differ")


def kl_memview(const floating[:, ::1] H, int n_threads=1):
    """Per-row KL(q || N(0, I)) for H = [mu | logvar]; float64 array (n_rows,)."""
    if H.shape[1] % 2:
        raise ValueError("H must have 2 * latent_dim columns")
    check_threads(n_threads)
    cdef int K = H.shape[1] // 2
    cdef int64_t n = H.shape[0], i
    out_arr = np.zeros(n, dtype=np.float64)
    cdef double[::1] out = out_arr
    if n == 0:
        return out_arr
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        kl_rows(&H[0, 0], 2 * K, K, &out[0], i, i + 1)
    return out_arr


def kl_backward_memview(const floating[:, ::1] H, double scale=1.0):
    """scale * dKL/dH for H = [mu | logvar]; array like H."""
    if H.shape[1] % 2:
        raise ValueError("H must have 2 * latent_dim columns")
    check_finite(scale, "scale")
    cdef int K = H.shape[1] // 2
    cdef int64_t n = H.shape[0]
    dH_arr = np.zeros((n, 2 * K),
                      dtype=np.float32 if floating is float else np.float64)
    cdef floating[:, ::1] dH = dH_arr
    if n == 0:
        return dH_arr
    with nogil:
        kl_backward_rows(&H[0, 0], 2 * K, K, scale, &dH[0, 0], 2 * K, 0, n)
    return dH_arr


def bernoulli_memview(const floating[:, ::1] L, const floating[:, ::1] X,
                      double scale=1.0, int n_threads=1):
    """Per-row Bernoulli NLL with logits and its scaled gradient.

    Returns
    -------
    loss : float64 array of shape (n_rows,)
    grad : array of shape (n_rows, D), scale * (sigmoid(L) - X)
    """
    _check_pair(L.shape[0], L.shape[1], X.shape[0], X.shape[1])
    check_finite(scale, "scale")
    check_threads(n_threads)
    cdef int64_t n = L.shape[0], i
    cdef int D = L.shape[1]
    loss_arr = np.zeros(n, dtype=np.float64)
    grad_arr = np.zeros((n, D),
                        dtype=np.float32 if floating is float else np.float64)
    cdef double[::1] loss = loss_arr
    cdef floating[:, ::1] grad = grad_arr
    if n == 0 or D == 0:
        return loss_arr, grad_arr
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        bernoulli_rows(&L[0, 0], D, &X[0, 0], D, D, scale, &grad[0, 0], D,
                       &loss[0], i, i + 1)
    return loss_arr, grad_arr


def gaussian_memview(const floating[:, ::1] M, const floating[:, ::1] X,
                     double sigma=1.0, double scale=1.0, int n_threads=1):
    """Per-row Gaussian NLL with fixed sigma and its scaled gradient.

    Returns
    -------
    loss : float64 array of shape (n_rows,)
    grad : array of shape (n_rows, D), scale * (M - X) / sigma^2
    """
    _check_pair(M.shape[0], M.shape[1], X.shape[0], X.shape[1])
    check_finite(sigma, "sigma")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    check_finite(scale, "scale")
    check_threads(n_threads)
    cdef int64_t n = M.shape[0], i
    cdef int D = M.shape[1]
    loss_arr = np.zeros(n, dtype=np.float64)
    grad_arr = np.zeros((n, D),
                        dtype=np.float32 if floating is float else np.float64)
    cdef double[::1] loss = loss_arr
    cdef floating[:, ::1] grad = grad_arr
    if n == 0 or D == 0:
        return loss_arr, grad_arr
    for i in prange(n, nogil=True, schedule="static", num_threads=n_threads):
        gaussian_rows(&M[0, 0], D, &X[0, 0], D, D, sigma, scale, &grad[0, 0], D,
                      &loss[0], i, i + 1)
    return loss_arr, grad_arr
