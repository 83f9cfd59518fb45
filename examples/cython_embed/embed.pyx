# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A third-party extension on fastvae's C-level API.

Three functions, each running its hot loop in nogil code of this module:

- ``normals`` / ``uniforms``: Philox draws in a prange over rows;
- ``train``: fastvae's whole training step, called in a nogil loop;
- ``train_from_kernels``: the same step composed here from fastvae's dense,
  reparameterization, loss and optimizer kernels (a template for a step of
  your own: another loss, another layer).

Python objects are touched only before and after the nogil blocks: the
layout of a fastvae._core._network.Network is copied into a C struct once.
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cimport fastvae
from fastvae cimport (
    FASTVAE_C_API_VERSION, FV_ACT_IDENTITY, FV_KIND_VAE, FV_LIK_BERNOULLI,
    FV_LIK_GAUSSIAN, FV_MAX_LAYERS, FV_ROW_SCRATCH, FV_STREAM_REPARAM,
    bernoulli_rows, dense_backward, dense_forward, fv_layer,
    fv_normal_fill_f32, fv_normal_fill_f64, fv_optimizer, fv_step_args,
    fv_uniform_fill_f64, fv_vae_config, gaussian_rows, kl_backward_rows,
    kl_rows, network_config, optimizer_update, reparam_backward,
    reparam_forward, train_step)

# Struct layouts are compiled into this module: refuse to run against a
# fastvae with another C API.
fastvae.check_c_api_version()


def c_api_version():
    """FASTVAE_C_API_VERSION of the headers this module was compiled with."""
    return FASTVAE_C_API_VERSION


# -- random numbers ------------------------------------------------------------

def normals(uint64_t seed, uint64_t stream, uint64_t step, Py_ssize_t n_rows,
            Py_ssize_t n_cols, dtype=np.float64, int n_threads=1):
    """Element (i, j): normal j of (row i, step, draw 0) under (seed, stream)."""
    out = np.empty((n_rows, n_cols), dtype=dtype)
    cdef float[:, ::1] o32
    cdef double[:, ::1] o64
    cdef Py_ssize_t i
    if n_rows == 0 or n_cols == 0:
        return out
    if out.dtype == np.float32:
        o32 = out
        for i in prange(n_rows, nogil=True, schedule="static",
                        num_threads=n_threads):
            fv_normal_fill_f32(seed, stream, i, step, 0, &o32[i, 0], n_cols)
    else:
        o64 = out
        for i in prange(n_rows, nogil=True, schedule="static",
                        num_threads=n_threads):
            fv_normal_fill_f64(seed, stream, i, step, 0, &o64[i, 0], n_cols)
    return out


def uniforms(uint64_t seed, uint64_t stream, uint64_t step, Py_ssize_t n_rows,
             Py_ssize_t n_cols, int n_threads=1):
    """Element (i, j): uniform j of (row i, step, draw 0) under (seed, stream)."""
    out = np.empty((n_rows, n_cols), dtype=np.float64)
    cdef double[:, ::1] o = out
    cdef Py_ssize_t i
    if n_rows == 0 or n_cols == 0:
        return out
    for i in prange(n_rows, nogil=True, schedule="static", num_threads=n_threads):
        fv_uniform_fill_f64(seed, stream, i, step, 0, &o[i, 0], n_cols)
    return out


# -- training ------------------------------------------------------------------

cdef void* _aligned(void* raw) noexcept nogil:
    """The first 64-byte boundary in a block malloc'ed 64 bytes too large."""
    return <void*> ((<uintptr_t> raw + 63) & ~(<uintptr_t> 63))


cdef _config(network, fv_vae_config* cfg, fv_optimizer* opt, Py_ssize_t n_params,
             Py_ssize_t n_rows, Py_ssize_t n_cols, const int64_t[:, ::1] rows):
    """Copy the network's layout and check the arrays against it."""
    cdef Py_ssize_t s, i
    network_config(network, cfg, opt)
    if n_params != cfg.n_params:
        raise ValueError(f"params must have length {cfg.n_params}, got {n_params}")
    if n_cols != cfg.n_features:
        raise ValueError(f"X must have {cfg.n_features} columns, got {n_cols}")
    if cfg.n_cond != 0:
        raise ValueError("this example trains unconditional networks only")
    if not 1 <= rows.shape[1] <= cfg.max_batch:
        raise ValueError(f"rows must have 1 to {cfg.max_batch} columns (the batch)")
    for s in range(rows.shape[0]):
        for i in range(rows.shape[1]):
            if not 0 <= rows[s, i] < n_rows:
                raise IndexError(f"rows[{s}, {i}] = {rows[s, i]} is not a row of X")


def train(network, floating[::1] params, floating[::1] state1,
          floating[::1] state2, const floating[:, ::1] X,
          const int64_t[:, ::1] rows, uint64_t seed, uint64_t first_step=0,
          double kl_weight=1.0, int n_threads=1):
    """Training steps first_step, first_step + 1, ... with fastvae.train_step.

    Step s trains on X[rows[s]] with the network's optimizer; params and
    the optimizer states are updated in place.

    Returns
    -------
    float64 array of shape (n_steps, 2)
        Per step, the sums over the batch of -log p(x|z) and of KL.
    """
    cdef fv_vae_config cfg
    cdef fv_optimizer opt
    cdef fv_step_args args
    _config(network, &cfg, &opt, params.shape[0], X.shape[0], X.shape[1], rows)
    if state1.shape[0] != cfg.n_params or state2.shape[0] != cfg.n_params:
        raise ValueError("state1 and state2 must be as long as params")
    cdef int64_t n_steps = rows.shape[0], s
    cdef int batch = rows.shape[1], status = 0
    sums_arr = np.zeros((n_steps, 2), dtype=np.float64)
    cdef double[:, ::1] sums = sums_arr
    if n_steps == 0:
        return sums_arr
    args.seed = seed
    args.row_offset = 0
    args.global_batch = batch
    args.kl_weight = kl_weight
    args.n_threads = n_threads
    cdef void* raw_work = malloc((cfg.work_size + cfg.n_params) * sizeof(floating) + 64)
    cdef double* row_losses = <double*> malloc(
        FV_ROW_SCRATCH(cfg.max_batch) * sizeof(double))
    cdef floating* work = <floating*> _aligned(raw_work)
    cdef floating* grads = work + cfg.work_size  # a 64-byte multiple: aligned
    try:
        if raw_work == NULL or row_losses == NULL:
            raise MemoryError()
        # The update runs over all n_params, padding between layers included,
        # which no gradient kernel writes: it must hold zeros.
        memset(grads, 0, cfg.n_params * sizeof(floating))
        with nogil:
            for s in range(n_steps):
                args.step = first_step + <uint64_t> s
                status = train_step(&cfg, &opt, &args, &params[0], grads,
                                    &state1[0], &state2[0], work, row_losses,
                                    &X[0, 0], X.shape[1], NULL, 0, &rows[s, 0],
                                    batch, &sums[s, 0])
                if status != 0:
                    break
    finally:
        free(raw_work)
        free(row_losses)
    if status != 0:
        raise FloatingPointError(f"step {first_step + s}: status {status}")
    return sums_arr


cdef void _step_from_kernels(const fv_vae_config* cfg, const fv_optimizer* opt,
                             floating* params, floating* grads, floating* state1,
                             floating* state2, const floating* X, int64_t ldx,
                             const int64_t* rows, int B, uint64_t seed,
                             uint64_t step, double kl_weight, floating* buf,
                             double* recon, double* kl, double* sums,
                             int nt) noexcept nogil:
    """One step of an unconditional VAE, kernel by kernel. buf holds the
    gathered batch, every layer's output, eps and two gradient buffers."""
    cdef int D = cfg.n_features, K = cfg.latent_dim, j, width = D
    cdef int n_enc = cfg.n_encoder, n_layers = cfg.n_layers
    cdef int64_t i
    cdef double scale = 1.0 / B
    cdef const fv_layer* L
    cdef floating* out[FV_MAX_LAYERS]  # output of layer j
    cdef floating* x = buf
    cdef floating* z
    cdef floating* eps
    cdef floating* g[2]
    cdef floating* H = NULL
    cdef const floating* inp
    cdef floating* cur
    cdef int which = 1
    for i in range(B):
        memcpy(x + i * D, X + rows[i] * ldx, D * sizeof(floating))
    buf += B * D
    for j in range(n_layers):
        out[j] = buf
        buf += B * cfg.layers[j].n_out
        width = max(width, cfg.layers[j].n_in, cfg.layers[j].n_out)
    z = buf
    eps = z + B * K
    g[0] = eps + B * K
    g[1] = g[0] + B * width

    # Forward: encoder, z = mu + sigma * eps, decoder.
    for j in range(n_layers):
        L = &cfg.layers[j]
        inp = x if j == 0 else (z if j == n_enc else out[j - 1])
        dense_forward(B, L.n_in, L.n_out, inp, L.n_in, params + L.w_offset,
                      params + L.b_offset, out[j], L.n_out, L.activation,
                      cfg.parts, nt)
        if j == n_enc - 1:
            H = out[j]
            reparam_forward(B, H, 2 * K, K, z, K, eps, K, seed,
                            FV_STREAM_REPARAM, step, 0, 0, nt)
    # Per-row losses and the output gradient, rows split over threads.
    for i in prange(B, schedule="static", num_threads=nt):
        kl_rows(H, 2 * K, K, kl, i, i + 1)
        if cfg.likelihood == FV_LIK_BERNOULLI:
            bernoulli_rows(out[n_layers - 1], D, x, D, D, scale, g[0], D, recon,
                           i, i + 1)
        else:
            gaussian_rows(out[n_layers - 1], D, x, D, D, cfg.sigma, scale, g[0],
                          D, recon, i, i + 1)
    sums[0] = 0.0
    sums[1] = 0.0
    for i in range(B):  # in row order, as fastvae sums
        sums[0] += recon[i]
        sums[1] += kl[i]

    # Backward, top down; g[which] receives each layer's input gradient.
    cur = g[0]
    for j in range(n_layers - 1, -1, -1):
        L = &cfg.layers[j]
        inp = x if j == 0 else (z if j == n_enc else out[j - 1])
        dense_backward(B, L.n_in, L.n_out, inp, L.n_in, params + L.w_offset,
                       cur, L.n_out, grads + L.w_offset, grads + L.b_offset,
                       NULL if j == 0 else g[which], L.n_in,
                       FV_ACT_IDENTITY if j == 0 or j == n_enc
                       else cfg.layers[j - 1].activation, cfg.parts, nt)
        cur = g[which]
        which = 1 - which
        if j == n_enc:
            # cur = dLoss/dz; through the sampling and the KL term to the
            # head [mu | logvar], into the other buffer.
            reparam_backward(B, H, 2 * K, K, eps, K, cur, K, g[which], 2 * K, nt)
            kl_backward_rows(H, 2 * K, K, kl_weight * scale, g[which], 2 * K,
                             0, B)
            cur = g[which]
            which = 1 - which
    optimizer_update(opt, <int64_t> step + 1, params, grads, state1, state2,
                     cfg.n_params, nt)


def train_from_kernels(network, floating[::1] params, floating[::1] state1,
                       floating[::1] state2, const floating[:, ::1] X,
                       const int64_t[:, ::1] rows, uint64_t seed,
                       uint64_t first_step=0, double kl_weight=1.0,
                       int n_threads=1):
    """The steps of ``train``, composed from fastvae's kernels here: a VAE
    with a Bernoulli or fixed-sigma Gaussian likelihood.

    Returns
    -------
    float64 array of shape (n_steps, 2), as ``train``.
    """
    cdef fv_vae_config cfg
    cdef fv_optimizer opt
    _config(network, &cfg, &opt, params.shape[0], X.shape[0], X.shape[1], rows)
    if (cfg.kind != FV_KIND_VAE
            or cfg.likelihood not in (FV_LIK_BERNOULLI, FV_LIK_GAUSSIAN)):
        raise ValueError("train_from_kernels needs a VAE with a Bernoulli or "
                         "fixed-sigma Gaussian likelihood")
    if state1.shape[0] != cfg.n_params or state2.shape[0] != cfg.n_params:
        raise ValueError("state1 and state2 must be as long as params")
    cdef int64_t n_steps = rows.shape[0], s, size, outs = 0
    cdef int B = rows.shape[1], j, width = 0
    sums_arr = np.zeros((n_steps, 2), dtype=np.float64)
    cdef double[:, ::1] sums = sums_arr
    if n_steps == 0:
        return sums_arr
    for j in range(cfg.n_layers):
        outs += cfg.layers[j].n_out
        width = max(width, cfg.layers[j].n_in, cfg.layers[j].n_out)
    # the batch, the layer outputs, z, eps and two gradient buffers
    size = B * (cfg.n_features + outs + 2 * cfg.latent_dim + 2 * width)
    cdef floating* grads = <floating*> malloc(cfg.n_params * sizeof(floating))
    cdef floating* buf = <floating*> malloc(size * sizeof(floating))
    cdef double* losses = <double*> malloc(2 * B * sizeof(double))
    try:
        if grads == NULL or buf == NULL or losses == NULL:
            raise MemoryError()
        memset(grads, 0, cfg.n_params * sizeof(floating))  # as in train
        with nogil:
            for s in range(n_steps):
                _step_from_kernels(&cfg, &opt, &params[0], grads, &state1[0],
                                   &state2[0], &X[0, 0], X.shape[1], &rows[s, 0],
                                   B, seed, first_step + <uint64_t> s, kl_weight,
                                   buf, losses, losses + B, &sums[s, 0],
                                   n_threads)
    finally:
        free(grads)
        free(buf)
        free(losses)
    return sums_arr
