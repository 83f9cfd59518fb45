"""One nogil call per training step: forward, loss, backward, update.

Everything runs inside a single OpenMP parallel region with barriers between
phases: GEMM phases split columns into size-determined blocks (bitwise equal
results for any thread count), row-wise phases split rows.
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, threadid
from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

from fastvae._dense cimport dense_backward_team, dense_forward_team
from fastvae._losses cimport (
    bernoulli_rows, gaussian_rows, kl_backward_rows, kl_rows)
from fastvae._numerics cimport (
    FV_ACT_IDENTITY, FV_LIK_BERNOULLI, FV_LIK_GAUSSIAN, fv_sigmoid_f32,
    fv_sigmoid_f64)
from fastvae._optim cimport make_optimizer, optimizer_update_team
from fastvae._parallel cimport (
    FV_MAX_BLOCKS, fv_flush_denormals_begin, fv_flush_denormals_end, fv_fpenv,
    fv_omp_barrier, fv_omp_get_num_threads, fv_split_range)
from fastvae._reparam cimport reparam_backward_rows, reparam_forward_rows
from fastvae._rng cimport FV_STREAM_REPARAM

LIKELIHOODS = {"bernoulli": FV_LIK_BERNOULLI, "gaussian": FV_LIK_GAUSSIAN}
MAX_LAYERS = FV_MAX_LAYERS
MAX_THREADS = FV_MAX_TEAM

# Workspace regions start on 64-byte boundaries (16 float32 / 8 float64).
cdef int64_t _ALIGN = 16


cdef inline int64_t _round_up(int64_t n) noexcept nogil:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


# ---------------------------------------------------------------------------
# Phases. Each is called by every thread of the team (tid of nt) and ends
# with a barrier when later phases read what it wrote.

cdef inline void _rows_of(int tid, int nt, int64_t n, int64_t* r0,
                          int64_t* r1) noexcept nogil:
    fv_split_range(n, nt, tid, 1, r0, r1)


cdef void _gather(int tid, int nt, const fv_vae_config* cfg,
                  const floating* X, int64_t ldx, const int64_t* rows, int n,
                  floating* x) noexcept nogil:
    cdef int64_t i, r0, r1
    _rows_of(tid, nt, n, &r0, &r1)
    for i in range(r0, r1):
        memcpy(x + i * cfg.n_features, X + rows[i] * ldx,
               cfg.n_features * sizeof(floating))


cdef inline const floating* _input_of(const fv_vae_config* cfg, int l,
                                      const floating* x, int64_t ldx,
                                      const floating* z, int64_t ldz,
                                      const floating* work,
                                      int64_t* ld) noexcept nogil:
    """The input of layer l and its leading dimension."""
    if l == 0:
        ld[0] = ldx
        return x
    if l == cfg.n_encoder:
        ld[0] = ldz
        return z
    ld[0] = cfg.layers[l - 1].n_out
    return work + cfg.layers[l - 1].out_offset


cdef void _forward_layers(int tid, int nt, const fv_vae_config* cfg,
                          int first, int last, const floating* params,
                          floating* work, const floating* x, int64_t ldx,
                          const floating* z, int64_t ldz, int n) noexcept nogil:
    cdef int l
    cdef int64_t ld_in
    cdef const floating* inp
    cdef const fv_layer* L
    for l in range(first, last):
        L = &cfg.layers[l]
        inp = _input_of(cfg, l, x, ldx, z, ldz, work, &ld_in)
        dense_forward_team(tid, nt, n, L.n_in, L.n_out, inp, <int> ld_in,
                           params + L.w_offset, params + L.b_offset,
                           work + L.out_offset, L.n_out, L.activation,
                           cfg.parts)
        fv_omp_barrier()


cdef void _sample_latent(int tid, int nt, const fv_vae_config* cfg,
                         floating* work, double* kl_out, int n,
                         uint64_t seed, uint64_t stream, uint64_t step,
                         uint64_t row_offset, uint64_t draw) noexcept nogil:
    """z = mu + sigma * eps and the per-row KL, rows split across threads."""
    cdef int K = cfg.latent_dim
    cdef const floating* H = work + cfg.layers[cfg.n_encoder - 1].out_offset
    cdef int64_t r0, r1
    _rows_of(tid, nt, n, &r0, &r1)
    reparam_forward_rows(H, 2 * K, K, work + cfg.z_offset, K,
                         work + cfg.eps_offset, K, seed, stream, step,
                         row_offset, draw, r0, r1)
    kl_rows(H, 2 * K, K, kl_out, r0, r1)
    fv_omp_barrier()


cdef void _reconstruction(int tid, int nt, const fv_vae_config* cfg,
                          floating* work, const floating* x, int64_t ldx,
                          int n, double grad_scale, bint want_grad,
                          double* recon_out) noexcept nogil:
    """Per-row -log p(x|z); with want_grad, grad_scale * dLoss/d(output) goes
    to the first gradient buffer (not over the output: the loss kernels need
    non-overlapping buffers to vectorise)."""
    cdef const fv_layer* L = &cfg.layers[cfg.n_layers - 1]
    cdef floating* out = work + L.out_offset
    cdef floating* grad = work + cfg.grad_offset[0] if want_grad else NULL
    cdef int D = cfg.n_features
    cdef int64_t r0, r1
    _rows_of(tid, nt, n, &r0, &r1)
    if cfg.likelihood == FV_LIK_BERNOULLI:
        bernoulli_rows(out, D, x, <int> ldx, D, grad_scale, grad, D,
                       recon_out, r0, r1)
    else:
        gaussian_rows(out, D, x, <int> ldx, D, cfg.sigma, grad_scale, grad, D,
                      recon_out, r0, r1)
    fv_omp_barrier()


cdef int _forward_backward(int tid, int nt, const fv_vae_config* cfg,
                           const fv_step_args* args, const floating* params,
                           floating* grads, floating* work, double* row_losses,
                           const floating* X, int64_t ldx, const int64_t* rows,
                           int n, double* sums_out) noexcept nogil:
    cdef int K = cfg.latent_dim
    cdef int l, which = 1
    cdef int64_t i, r0, r1, ld_in, ld_cur, ld_x = ldx
    cdef double recon_sum = 0.0, kl_sum = 0.0
    cdef double scale = 1.0 / args.global_batch
    cdef double* recon = row_losses
    cdef double* kl = row_losses + cfg.max_batch
    cdef const floating* x = X
    cdef const floating* inp
    cdef floating* cur
    cdef floating* dX
    cdef const floating* H = work + cfg.layers[cfg.n_encoder - 1].out_offset
    cdef const fv_layer* L
    cdef double* team_bad = row_losses + 2 * cfg.max_batch
    cdef int64_t bad = 0

    if rows != NULL:
        _gather(tid, nt, cfg, X, ldx, rows, n, work + cfg.x_offset)
        fv_omp_barrier()
        x = work + cfg.x_offset
        ld_x = cfg.n_features

    _forward_layers(tid, nt, cfg, 0, cfg.n_encoder, params, work, x, ld_x,
                    NULL, 0, n)
    _sample_latent(tid, nt, cfg, work, kl, n, args.seed, FV_STREAM_REPARAM,
                   args.step, <uint64_t> args.row_offset, 0)
    _forward_layers(tid, nt, cfg, cfg.n_encoder, cfg.n_layers, params, work,
                    x, ld_x, work + cfg.z_offset, K, n)
    _reconstruction(tid, nt, cfg, work, x, ld_x, n, scale, True, recon)

    # Every thread sums the same rows in the same order, so all of them
    # reach the same verdict without another barrier.
    for i in range(n):
        recon_sum += recon[i]
        kl_sum += kl[i]
    if tid == 0:
        sums_out[0] = recon_sum
        sums_out[1] = kl_sum
    if not (isfinite(recon_sum) and isfinite(kl_sum)):
        return 1

    # Decoder, top down, from the output gradient in grad buffer 0.
    L = &cfg.layers[cfg.n_layers - 1]
    cur = work + cfg.grad_offset[0]
    ld_cur = L.n_out
    for l in range(cfg.n_layers - 1, cfg.n_encoder - 1, -1):
        L = &cfg.layers[l]
        inp = _input_of(cfg, l, x, ld_x, work + cfg.z_offset, K, work, &ld_in)
        dX = work + cfg.grad_offset[which]
        bad += dense_backward_team(
            tid, nt, n, L.n_in, L.n_out, inp, <int> ld_in,
            params + L.w_offset, cur, <int> ld_cur, grads + L.w_offset,
            grads + L.b_offset, dX, L.n_in,
            FV_ACT_IDENTITY if l == cfg.n_encoder
            else cfg.layers[l - 1].activation, cfg.parts)
        fv_omp_barrier()
        cur = dX
        ld_cur = L.n_in
        which = 1 - which

    # cur = dL/dz: through the reparameterization and the KL term.
    _rows_of(tid, nt, n, &r0, &r1)
    reparam_backward_rows(H, 2 * K, K, work + cfg.eps_offset, K, cur, K,
                          work + cfg.dh_offset, 2 * K, r0, r1)
    kl_backward_rows(H, 2 * K, K, args.kl_weight * scale,
                     work + cfg.dh_offset, 2 * K, r0, r1)
    fv_omp_barrier()

    cur = work + cfg.dh_offset
    ld_cur = 2 * K
    for l in range(cfg.n_encoder - 1, -1, -1):
        L = &cfg.layers[l]
        inp = _input_of(cfg, l, x, ld_x, NULL, 0, work, &ld_in)
        dX = NULL if l == 0 else work + cfg.grad_offset[which]
        bad += dense_backward_team(
            tid, nt, n, L.n_in, L.n_out, inp, <int> ld_in,
            params + L.w_offset, cur, <int> ld_cur, grads + L.w_offset,
            grads + L.b_offset, dX, L.n_in,
            FV_ACT_IDENTITY if l == 0 else cfg.layers[l - 1].activation,
            cfg.parts)
        fv_omp_barrier()
        cur = dX
        ld_cur = L.n_in
        which = 1 - which

    # A finite loss can still have overflowing gradients; updating with them
    # would put NaN into the parameters. Each thread counted its own blocks;
    # all add the counts in the same order and reach the same verdict.
    team_bad[tid] = <double> bad
    fv_omp_barrier()
    bad = 0
    for i in range(nt):
        bad += <int64_t> team_bad[i]
    if bad:
        return 2
    return 0


# ---------------------------------------------------------------------------
# Entry points (nogil, one parallel region each).

cdef int train_step(const fv_vae_config* cfg, const fv_optimizer* opt,
                    const fv_step_args* args, floating* params,
                    floating* grads, floating* state1, floating* state2,
                    floating* work, double* row_losses,
                    const floating* X, int64_t ldx, const int64_t* rows,
                    int batch, double* sums_out) noexcept nogil:
    # A one-element array: names assigned inside a parallel block are
    # thread-private in Cython, stores through a pointer are shared.
    cdef int status[1]
    cdef int st, tid, nt
    cdef fv_fpenv env
    status[0] = 0
    with parallel(num_threads=args.n_threads):
        env = fv_flush_denormals_begin()
        tid = threadid()
        nt = fv_omp_get_num_threads()
        st = _forward_backward(tid, nt, cfg, args, params, grads, work,
                               row_losses, X, ldx, rows, batch, sums_out)
        if st == 0:
            optimizer_update_team(tid, nt, opt, <int64_t> args.step + 1,
                                  params, grads, state1, state2, cfg.n_params)
        elif tid == 0:
            status[0] = st
        fv_flush_denormals_end(env)
    return status[0]


cdef int compute_gradients(const fv_vae_config* cfg, const fv_step_args* args,
                           const floating* params, floating* grads,
                           floating* work, double* row_losses,
                           const floating* X, int64_t ldx, const int64_t* rows,
                           int batch, double* sums_out) noexcept nogil:
    cdef int status[1]
    cdef int st, tid
    cdef fv_fpenv env
    status[0] = 0
    with parallel(num_threads=args.n_threads):
        env = fv_flush_denormals_begin()
        tid = threadid()
        st = _forward_backward(tid, fv_omp_get_num_threads(), cfg, args,
                               params, grads, work, row_losses, X, ldx, rows,
                               batch, sums_out)
        if tid == 0:
            status[0] = st
        fv_flush_denormals_end(env)
    return status[0]


cdef void encode_rows(const fv_vae_config* cfg, const floating* params,
                      floating* work, const floating* X, int64_t ldx, int n,
                      floating* H_out, int64_t ldh, int n_threads) noexcept nogil:
    cdef int64_t i, r0, r1
    cdef int tid, nt
    cdef fv_fpenv env
    cdef int width = 2 * cfg.latent_dim
    cdef const floating* H = work + cfg.layers[cfg.n_encoder - 1].out_offset
    with parallel(num_threads=n_threads):
        env = fv_flush_denormals_begin()
        tid = threadid()
        nt = fv_omp_get_num_threads()
        _forward_layers(tid, nt, cfg, 0, cfg.n_encoder, params, work, X, ldx,
                        NULL, 0, n)
        _rows_of(tid, nt, n, &r0, &r1)
        for i in range(r0, r1):
            memcpy(H_out + i * ldh, H + i * width, width * sizeof(floating))
        fv_flush_denormals_end(env)


cdef void decode_rows(const fv_vae_config* cfg, const floating* params,
                      floating* work, const floating* Z, int64_t ldz, int n,
                      floating* out, int64_t ldo, int n_threads) noexcept nogil:
    cdef int64_t i, r0, r1
    cdef int d, tid, nt
    cdef fv_fpenv env
    cdef int D = cfg.n_features
    cdef const floating* Y = work + cfg.layers[cfg.n_layers - 1].out_offset
    cdef const floating* y
    cdef floating* o
    with parallel(num_threads=n_threads):
        env = fv_flush_denormals_begin()
        tid = threadid()
        nt = fv_omp_get_num_threads()
        _forward_layers(tid, nt, cfg, cfg.n_encoder, cfg.n_layers, params,
                        work, NULL, 0, Z, ldz, n)
        _rows_of(tid, nt, n, &r0, &r1)
        for i in range(r0, r1):
            y = Y + i * D
            o = out + i * ldo
            if cfg.likelihood == FV_LIK_BERNOULLI:
                for d in range(D):
                    if floating is float:
                        o[d] = fv_sigmoid_f32(y[d])
                    else:
                        o[d] = fv_sigmoid_f64(y[d])
            else:
                memcpy(o, y, D * sizeof(floating))
        fv_flush_denormals_end(env)


cdef void elbo_rows(const fv_vae_config* cfg, const floating* params,
                    floating* work, const floating* X, int64_t ldx, int n,
                    uint64_t seed, uint64_t stream, uint64_t step,
                    uint64_t row_offset, uint64_t draw,
                    double* recon_out, double* kl_out,
                    int n_threads) noexcept nogil:
    cdef int tid, nt
    cdef fv_fpenv env
    with parallel(num_threads=n_threads):
        env = fv_flush_denormals_begin()
        tid = threadid()
        nt = fv_omp_get_num_threads()
        _forward_layers(tid, nt, cfg, 0, cfg.n_encoder, params, work, X, ldx,
                        NULL, 0, n)
        _sample_latent(tid, nt, cfg, work, kl_out, n, seed, stream, step,
                       row_offset, draw)
        _forward_layers(tid, nt, cfg, cfg.n_encoder, cfg.n_layers, params,
                        work, X, ldx, work + cfg.z_offset, cfg.latent_dim, n)
        _reconstruction(tid, nt, cfg, work, X, ldx, n, 1.0, False, recon_out)
        fv_flush_denormals_end(env)


# ---------------------------------------------------------------------------
# Python side: a Network turns the model's architecture into the C config
# once, owns the workspace, and checks every array it passes to C.

cdef _aligned_empty(int64_t n, dtype):
    """A 64-byte aligned 1-D array (numpy only guarantees 16)."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(n + 64 // itemsize, dtype=dtype)
    start = (-raw.ctypes.data % 64) // itemsize
    return raw[start:start + n]


cdef class Network:
    """Compiled VAE network of fixed architecture, dtype and max batch size.

    Parameters
    ----------
    encoder_dims : sequence of int
        (n_features, hidden..., 2 * latent_dim).
    decoder_dims : sequence of int
        (latent_dim, hidden..., n_features).
    activations : sequence of int
        Activation code of every layer, encoder then decoder; the encoder head
        and the decoder output must be identity.
    w_offsets, b_offsets : sequence of int
        Offsets of each layer's W and b in the flat parameter buffer.
    n_params : int
        Length of the flat parameter buffer.
    likelihood : {"bernoulli", "gaussian"}
    sigma : float
        Gaussian observation noise (ignored for Bernoulli).
    max_batch : int
        Largest number of rows one call handles.
    dtype : numpy.float32 or numpy.float64
    parts : int, default=2
        Column blocks of large GEMMs (fastvae/partition.h); results depend on
        it but not on the number of threads. The model passes
        fastvae.threads.partition_count().
    """

    cdef fv_vae_config cfg
    cdef fv_optimizer opt
    cdef readonly object dtype
    cdef object _work
    cdef object _row_losses

    def __init__(self, encoder_dims, decoder_dims, activations, w_offsets,
                 b_offsets, int64_t n_params, str likelihood, double sigma,
                 int max_batch, dtype, int parts=2):
        dims = [list(encoder_dims), list(decoder_dims)]
        n_enc = len(dims[0]) - 1
        n_layers = n_enc + len(dims[1]) - 1
        if n_enc < 1 or len(dims[1]) < 2 or n_layers > FV_MAX_LAYERS:
            raise ValueError(
                f"need 1 to {FV_MAX_LAYERS} layers in total, with at least one "
                "in the encoder and one in the decoder")
        if not (len(activations) == len(w_offsets) == len(b_offsets) == n_layers):
            raise ValueError("one activation, W offset and b offset per layer")
        if dims[0][n_enc] != 2 * dims[1][0] or dims[0][0] != dims[1][len(dims[1]) - 1]:
            raise ValueError("encoder must output 2 * latent_dim and the decoder "
                             "must output n_features")
        if any(int(d) < 1 for d in dims[0] + dims[1]):
            raise ValueError("every layer size must be >= 1")
        if (activations[n_enc - 1] != FV_ACT_IDENTITY
                or activations[n_layers - 1] != FV_ACT_IDENTITY):
            raise ValueError("the encoder head and decoder output are linear")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {sorted(LIKELIHOODS)}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not 1 <= parts <= FV_MAX_BLOCKS:
            raise ValueError(f"parts must be in [1, {FV_MAX_BLOCKS}], got {parts}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")

        cdef fv_vae_config* c = &self.cfg
        c.n_layers = n_layers
        c.n_encoder = n_enc
        c.n_features = dims[0][0]
        c.latent_dim = dims[1][0]
        c.likelihood = LIKELIHOODS[likelihood]
        c.parts = parts
        c.sigma = sigma
        c.max_batch = max_batch
        c.n_params = n_params
        sizes = [(dims[0][i], dims[0][i + 1]) for i in range(n_enc)] + [
            (dims[1][i], dims[1][i + 1]) for i in range(len(dims[1]) - 1)]
        cdef int64_t off = 0
        max_width = 0
        for l, (n_in, n_out) in enumerate(sizes):
            w_off, b_off = int(w_offsets[l]), int(b_offsets[l])
            if (w_off < 0 or b_off < 0 or w_off + n_in * n_out > n_params
                    or b_off + n_out > n_params):
                raise ValueError(f"layer {l} does not fit in {n_params} parameters")
            c.layers[l].n_in = n_in
            c.layers[l].n_out = n_out
            c.layers[l].activation = activations[l]
            c.layers[l].w_offset = w_off
            c.layers[l].b_offset = b_off
            c.layers[l].out_offset = off
            off += _round_up(<int64_t> max_batch * n_out)
            max_width = max(max_width, n_in, n_out)
        K = c.latent_dim
        c.x_offset = off
        off += _round_up(<int64_t> max_batch * c.n_features)
        c.eps_offset = off
        off += _round_up(<int64_t> max_batch * K)
        c.z_offset = off
        off += _round_up(<int64_t> max_batch * K)
        c.dh_offset = off
        off += _round_up(<int64_t> max_batch * 2 * K)
        for i in range(2):
            c.grad_offset[i] = off
            off += _round_up(<int64_t> max_batch * max_width)
        c.work_size = off
        self._work = _aligned_empty(off, self.dtype)
        self._row_losses = np.zeros(2 * max_batch + FV_MAX_TEAM, dtype=np.float64)
        self.opt = make_optimizer("sgd", 0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def max_batch(self):
        return self.cfg.max_batch

    @property
    def parts(self):
        return self.cfg.parts

    @property
    def n_params(self):
        return self.cfg.n_params

    @property
    def work_size(self):
        return self.cfg.work_size

    def set_optimizer(self, str kind, double lr, double momentum=0.9,
                      double beta1=0.9, double beta2=0.999, double eps=1e-8):
        """Optimizer used by train_step (ValueError on an unknown kind)."""
        self.opt = make_optimizer(kind, lr, momentum, beta1, beta2, eps)

    # -- checks shared by the entry points ---------------------------------

    cdef _check_buffers(self, Py_ssize_t n_params, bint is_float):
        if is_float != (self.dtype == np.float32):
            raise TypeError(f"arrays must be {self.dtype} for this network")
        if n_params != self.cfg.n_params:
            raise ValueError(f"parameter buffers must have length "
                             f"{self.cfg.n_params}, got {n_params}")

    cdef _check_rows(self, Py_ssize_t n_rows, Py_ssize_t n_cols, int batch,
                     const int64_t[::1] rows):
        cdef Py_ssize_t i
        if n_cols != self.cfg.n_features:
            raise ValueError(f"X must have {self.cfg.n_features} columns, "
                             f"got {n_cols}")
        if not 1 <= batch <= self.cfg.max_batch:
            raise ValueError(f"batch must be in [1, {self.cfg.max_batch}], "
                             f"got {batch}")
        if rows is None:
            if batch > n_rows:
                raise ValueError("batch is larger than X")
            return
        if rows.shape[0] != batch:
            raise ValueError("rows must have one index per batch row")
        for i in range(batch):
            if not 0 <= rows[i] < n_rows:
                raise IndexError(f"row index {rows[i]} out of range for "
                                 f"{n_rows} rows")

    cdef fv_step_args _args(self, seed, step, row_offset, global_batch, int batch,
                            double kl_weight, int n_threads) except *:
        cdef fv_step_args a
        if not 1 <= n_threads <= FV_MAX_TEAM:
            raise ValueError(f"n_threads must be in [1, {FV_MAX_TEAM}], got {n_threads}")
        a.seed = seed
        a.step = step
        a.row_offset = row_offset
        a.global_batch = batch if global_batch is None else global_batch
        if a.global_batch < batch:
            raise ValueError("global_batch must be >= batch")
        a.kl_weight = kl_weight
        a.n_threads = n_threads
        return a

    # -- training -----------------------------------------------------------

    def train_step(self, floating[::1] params, floating[::1] grads,
                   floating[::1] state1, floating[::1] state2,
                   const floating[:, ::1] X, const int64_t[::1] rows, int batch,
                   seed, step, double kl_weight=1.0, int n_threads=1,
                   row_offset=0, global_batch=None):
        """One optimizer step on the minibatch X[rows] (rows None: X[:batch]).

        Returns
        -------
        status : int
            0; 1 if the loss was not finite, 2 if the loss was finite but a
            gradient was not (in both cases nothing was updated).
        recon_sum, kl_sum : float
            Sums over the minibatch rows of -log p(x|z) and KL(q || p).
        """
        self._check_buffers(params.shape[0], floating is float)
        if (grads.shape[0] != params.shape[0] or state1.shape[0] != params.shape[0]
                or state2.shape[0] != params.shape[0]):
            raise ValueError("grads and optimizer states must match params")
        self._check_rows(X.shape[0], X.shape[1], batch, rows)
        cdef fv_step_args a = self._args(seed, step, row_offset, global_batch,
                                         batch, kl_weight, n_threads)
        cdef floating[::1] work = self._work
        cdef double[::1] row_losses = self._row_losses
        cdef double sums[2]
        cdef int status
        cdef const int64_t* rows_ptr = NULL if rows is None else &rows[0]
        with nogil:
            status = train_step(&self.cfg, &self.opt, &a, &params[0], &grads[0],
                                &state1[0], &state2[0], &work[0],
                                &row_losses[0], &X[0, 0], X.shape[1],
                                rows_ptr, batch, sums)
        return status, sums[0], sums[1]

    def gradients(self, const floating[::1] params, floating[::1] grads,
                  const floating[:, ::1] X, const int64_t[::1] rows, int batch,
                  seed, step, double kl_weight=1.0, int n_threads=1,
                  row_offset=0, global_batch=None):
        """Gradient of this minibatch's share of the loss into grads.

        Returns (status, recon_sum, kl_sum) like train_step.
        """
        self._check_buffers(params.shape[0], floating is float)
        if grads.shape[0] != params.shape[0]:
            raise ValueError("grads must match params")
        self._check_rows(X.shape[0], X.shape[1], batch, rows)
        cdef fv_step_args a = self._args(seed, step, row_offset, global_batch,
                                         batch, kl_weight, n_threads)
        cdef floating[::1] work = self._work
        cdef double[::1] row_losses = self._row_losses
        cdef double sums[2]
        cdef int status
        cdef const int64_t* rows_ptr = NULL if rows is None else &rows[0]
        with nogil:
            status = compute_gradients(&self.cfg, &a, &params[0], &grads[0],
                                       &work[0], &row_losses[0], &X[0, 0],
                                       X.shape[1], rows_ptr, batch, sums)
        return status, sums[0], sums[1]

    def row_losses(self, int batch):
        """Per-row (recon, kl) of the last training call, shape (batch, 2)."""
        if not 0 <= batch <= self.cfg.max_batch:
            raise ValueError("batch out of range")
        m = self.cfg.max_batch
        return np.stack([self._row_losses[:batch],
                         self._row_losses[m:m + batch]], axis=1)

    # -- inference, in chunks of max_batch rows -----------------------------

    def encode(self, const floating[::1] params, const floating[:, ::1] X,
               int n_threads=1):
        """Encoder head [mu | raw logvar] of every row: (n_rows, 2 * latent_dim)."""
        self._check_buffers(params.shape[0], floating is float)
        if X.shape[1] != self.cfg.n_features:
            raise ValueError(f"X must have {self.cfg.n_features} columns")
        cdef int64_t n = X.shape[0], start
        cdef int chunk
        cdef int width = 2 * self.cfg.latent_dim
        out_arr = np.empty((n, width), dtype=self.dtype)
        cdef floating[:, ::1] out = out_arr
        cdef floating[::1] work = self._work
        with nogil:
            start = 0
            while start < n:
                chunk = <int> min(<int64_t> self.cfg.max_batch, n - start)
                encode_rows(&self.cfg, &params[0], &work[0], &X[start, 0],
                            X.shape[1], chunk, &out[start, 0], width, n_threads)
                start += chunk
        return out_arr

    def decode(self, const floating[::1] params, const floating[:, ::1] Z,
               int n_threads=1):
        """Mean of p(x|z) for every row of Z: (n_rows, n_features)."""
        self._check_buffers(params.shape[0], floating is float)
        if Z.shape[1] != self.cfg.latent_dim:
            raise ValueError(f"Z must have {self.cfg.latent_dim} columns")
        cdef int64_t n = Z.shape[0], start
        cdef int chunk
        cdef int D = self.cfg.n_features
        out_arr = np.empty((n, D), dtype=self.dtype)
        cdef floating[:, ::1] out = out_arr
        cdef floating[::1] work = self._work
        with nogil:
            start = 0
            while start < n:
                chunk = <int> min(<int64_t> self.cfg.max_batch, n - start)
                decode_rows(&self.cfg, &params[0], &work[0], &Z[start, 0],
                            Z.shape[1], chunk, &out[start, 0], D, n_threads)
                start += chunk
        return out_arr

    def elbo_terms(self, const floating[::1] params, const floating[:, ::1] X,
                   seed, stream, step=0, draw=0, int n_threads=1):
        """Per-row (-log p(x|z), KL) with z drawn from (seed, stream, step, draw).

        Returns
        -------
        recon, kl : float64 arrays of shape (n_rows,)
        """
        self._check_buffers(params.shape[0], floating is float)
        if X.shape[1] != self.cfg.n_features:
            raise ValueError(f"X must have {self.cfg.n_features} columns")
        cdef int64_t n = X.shape[0], start
        cdef int chunk
        cdef uint64_t s = seed, st = stream, t = step, d = draw
        recon_arr = np.empty(n, dtype=np.float64)
        kl_arr = np.empty(n, dtype=np.float64)
        cdef double[::1] recon = recon_arr
        cdef double[::1] kl = kl_arr
        cdef floating[::1] work = self._work
        with nogil:
            start = 0
            while start < n:
                chunk = <int> min(<int64_t> self.cfg.max_batch, n - start)
                elbo_rows(&self.cfg, &params[0], &work[0], &X[start, 0],
                          X.shape[1], chunk, s, st, t, <uint64_t> start, d,
                          &recon[start], &kl[start], n_threads)
                start += chunk
        return recon_arr, kl_arr
