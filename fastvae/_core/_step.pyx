"""One nogil call per training step: forward, loss, backward, update.

A call is a job of phases for fastvae's thread pool (src_c/fastvae/pool.h):
each phase is cut into blocks of fixed size (columns of a GEMM, rows of a
row-wise kernel, a range of parameters), whichever thread runs takes the next
block, and a phase starts when the one before it has completed. Every block
writes its own part of the output and every sum runs in a fixed order, so
results are bitwise equal for any thread count and any scheduling, and a
thread that another process keeps off its core holds nobody up (it only
delays the blocks it has started).
"""

import numpy as np

from cython cimport floating
from libc.math cimport exp, isfinite, log
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

from fastvae._core._blas cimport gemm_uses_own
from fastvae._core._checks cimport (
    check_disjoint, check_finite, check_threads, check_u64)
from fastvae._core._dense cimport (
    dense_forward_block, fv_dense_rows_f32, fv_dense_rows_f64,
    input_grad_block, weight_grad_block)
from fastvae._core._elementwise cimport (
    fv_bernoulli_draw_f32, fv_bernoulli_draw_f64, fv_column_sums_f32,
    fv_column_sums_f64, fv_count_nonfinite_f32, fv_count_nonfinite_f64,
    fv_dispatch_probe, fv_gaussian_learned_rows_f32,
    fv_gaussian_learned_rows_f64, fv_mask_f32, fv_mask_f64)
from fastvae._core._losses cimport (
    bernoulli_rows, gaussian_rows, kl_backward_rows, kl_rows)
from fastvae._core._numerics cimport (
    FV_ACT_IDENTITY, FV_KIND_AE, FV_KIND_VAE, FV_LIK_BERNOULLI,
    FV_LIK_GAUSSIAN, FV_LIK_GAUSSIAN_LEARNED, FV_LOG_2PI, FV_OPT_ADAM,
    FV_OPT_SGD, fv_clamp_logvar, fv_sigmoid_f32, fv_sigmoid_f64)
from fastvae._core._optim cimport make_optimizer, optimizer_update_range
from fastvae._core._parallel cimport (
    FV_BLOCK_ALIGN, FV_MAX_BLOCKS, fv_block_start, fv_n_col_blocks)
from fastvae._core._reparam cimport reparam_backward_rows, reparam_forward_rows
from fastvae._core._rng cimport (
    FV_STREAM_BINARIZE, FV_STREAM_CORRUPT, FV_STREAM_REPARAM,
    fv_normal_fill_f32, fv_normal_fill_f64)
from fastvae._core._threads cimport fv_isa_bind, fv_isa_slot

# Run the header kernels at the process's ISA cap (src_c/fastvae/dispatch.h),
# not at the CPU's best level.
fv_isa_bind(fv_isa_slot())


def _dispatch_level():
    """The ISA level (1, 3, 4) this module's kernels run at now (tests)."""
    return fv_dispatch_probe(0)


cdef extern from "fastvae/row_hash.h" nogil:
    # must match src_c/fastvae/row_hash.h
    uint64_t fv_row_key_f32(const float* x, int n)
    uint64_t fv_row_key_f64(const double* x, int n)

cdef extern from "fastvae/pool.h" nogil:
    # must match src_c/fastvae/pool.h
    ctypedef void (*fv_pool_fn)(void* ctx, int phase, int block,
                                int tid) noexcept nogil
    int FV_POOL_MAX_PHASES
    void fv_pool_run(fv_pool_fn fn, void* ctx, int n_phases,
                     const int* n_blocks, int n_threads)

cdef extern from *:
    """
    static inline void fv_atomic_add_i64(int64_t *p, int64_t v)
    {
        __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
    }
    static inline int64_t fv_atomic_load_i64(int64_t *p)
    {
        return __atomic_load_n(p, __ATOMIC_RELAXED);
    }
    """
    void fv_atomic_add_i64(int64_t* p, int64_t v) nogil
    int64_t fv_atomic_load_i64(int64_t* p) nogil

LIKELIHOODS = {"bernoulli": FV_LIK_BERNOULLI, "gaussian": FV_LIK_GAUSSIAN,
               "gaussian_learned": FV_LIK_GAUSSIAN_LEARNED}
KINDS = {"vae": FV_KIND_VAE, "ae": FV_KIND_AE}
MAX_LAYERS = FV_MAX_LAYERS
MAX_THREADS = FV_MAX_TEAM

# Workspace regions start on 64-byte boundaries (16 float32 / 8 float64).
cdef int64_t _ALIGN = 16

cdef enum:
    # Phases of the longest job: inputs, 2 per layer, latent, reconstruction,
    # check, log-sigma, head gradient, verdict, update (pool.h allows 256).
    _MAX_PHASES = 2 * FV_MAX_LAYERS + 16
    # Columns of one GEMM block with fastvae's own kernels, whose numbers do
    # not depend on the cut (gemm.h): a multiple of every register tile's
    # width, small enough that a thread that is slowed down by another
    # process holds up little (a 784-400/20/128 step has 7-13 blocks per
    # product). BLAS keeps partition.h's cuts, its numbers depend on them.
    _OWN_BLOCK_COLS = 64
    # Parameters per optimizer block (a multiple of FV_BLOCK_ALIGN).
    _UPDATE_BLOCK = 32768
    # Row-wise phases: about this many blocks, of at least _MIN_BLOCK_ROWS.
    _ROW_BLOCKS = 8
    _MIN_BLOCK_ROWS = 8
    # Columns per block of the log-sigma gradient.
    _LOGSIGMA_BLOCK = 64

# Phase kinds.
cdef enum:
    PH_INPUTS, PH_FORWARD, PH_LATENT, PH_RECON, PH_CHECK, PH_LOGSIGMA,
    PH_BACKWARD, PH_HEAD_GRAD, PH_VERDICT, PH_UPDATE,
    PH_ENCODE, PH_DECODE, PH_ELBO,
    PH_LL_DRAWS, PH_LL_LOSSES, PH_LL_ACCUM


cdef inline int64_t _round_up(int64_t n) noexcept nogil:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


ctypedef struct fv_phase:
    int kind
    int layer
    int n_blocks
    int n_split         # backward: the first n_split blocks are weight-gradient blocks
    int64_t a_off       # backward / head gradient: the incoming gradient in work
    int64_t a_ld
    int64_t x_off       # backward: the input gradient's place in work (-1: none)


ctypedef struct fv_job:
    # What one call computes; filled by the entry point, read by every block.
    const fv_vae_config* cfg
    const fv_step_args* args
    const fv_optimizer* opt
    void* params
    void* grads
    void* state1
    void* state2
    void* work
    double* row_losses
    const void* X
    int64_t ldx
    const void* Cond
    int64_t ldc
    const int64_t* rows
    int n               # rows of this job (a window of pairs for log p(x))
    int row_block
    bint own_gemm
    bint training
    const void* x       # encoder input and reconstruction target
    int64_t ld_x
    const void* xt
    int64_t ld_t
    bint gather_plain   # PH_INPUTS: gather rows as they are (else prepare)
    double* sums_out
    int status          # set by PH_CHECK / PH_VERDICT, read by later phases
    int64_t bad         # non-finite gradient values (atomic adds)
    int64_t update_t
    # inference and log-likelihood
    void* out
    int64_t ldo
    uint64_t seed
    uint64_t stream
    uint64_t step
    uint64_t draw
    uint64_t row_offset
    double* recon_out
    double* kl_out
    int64_t q0
    int64_t k
    int n_phases
    fv_phase phases[_MAX_PHASES]
    int n_blocks[_MAX_PHASES]


# ---------------------------------------------------------------------------
# Planning: which phases a call has and how each is cut. Cuts depend on the
# sizes (and, for BLAS, cfg.parts) only, never on the thread count.

cdef inline int _head_width(const fv_vae_config* cfg) noexcept nogil:
    return 2 * cfg.latent_dim if cfg.kind == FV_KIND_VAE else cfg.latent_dim


cdef inline bint _plain(const fv_vae_config* cfg, bint training) noexcept nogil:
    """True when the encoder reads the data rows as they are."""
    return cfg.n_cond == 0 and not (training and (cfg.binarize or cfg.corrupt > 0))


cdef inline int _cdiv(int64_t a, int64_t b) noexcept nogil:
    return <int> ((a + b - 1) // b)


cdef void _job_init(fv_job* j, const fv_vae_config* cfg, int n) noexcept nogil:
    j.cfg = cfg
    j.n = n
    j.row_block = max(_MIN_BLOCK_ROWS, _cdiv(n, _ROW_BLOCKS))
    j.own_gemm = gemm_uses_own()
    j.status = 0
    j.bad = 0
    j.n_phases = 0
    j.rows = NULL
    j.Cond = NULL
    j.ldc = 0
    j.training = False
    j.gather_plain = False


cdef inline void _add(fv_job* j, int kind, int layer, int n_blocks,
                      int n_split=0, int64_t a_off=0, int64_t a_ld=0,
                      int64_t x_off=-1) noexcept nogil:
    cdef fv_phase* ph = &j.phases[j.n_phases]
    ph.kind = kind
    ph.layer = layer
    ph.n_blocks = max(1, n_blocks)
    ph.n_split = n_split
    ph.a_off = a_off
    ph.a_ld = a_ld
    ph.x_off = x_off
    j.n_blocks[j.n_phases] = ph.n_blocks
    j.n_phases += 1


cdef inline int _col_blocks(const fv_job* j, int n_cols, int rows,
                            int depth) noexcept nogil:
    if j.own_gemm:
        return _cdiv(n_cols, _OWN_BLOCK_COLS)
    return fv_n_col_blocks(n_cols, rows, depth, j.cfg.parts)


cdef inline int _col_start(const fv_job* j, int n_cols, int nb,
                           int b) noexcept nogil:
    if j.own_gemm:
        return min(b * _OWN_BLOCK_COLS, n_cols)
    return fv_block_start(n_cols, nb, b)


cdef inline void _block_rows(const fv_job* j, int b, int64_t* r0,
                             int64_t* r1) noexcept nogil:
    r0[0] = <int64_t> b * j.row_block
    r1[0] = min(<int64_t> j.n, r0[0] + j.row_block)


cdef inline int _row_blocks(const fv_job* j) noexcept nogil:
    return _cdiv(j.n, j.row_block)


cdef void _plan_inputs(fv_job* j, bint training, void* work,
                       int itemsize) noexcept nogil:
    """Where the encoder input and the reconstruction target are, and the
    phase that makes them when the data cannot be read in place."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef int D = cfg.n_features
    cdef char* w = <char*> work
    j.training = training
    if _plain(cfg, training):
        if j.rows == NULL:
            j.x = j.X
            j.ld_x = j.ldx
        else:
            j.x = w + cfg.xtgt_offset * itemsize
            j.ld_x = D
            j.gather_plain = True
            _add(j, PH_INPUTS, 0, _row_blocks(j))
        j.xt = j.x
        j.ld_t = j.ld_x
        return
    j.x = w + cfg.xin_offset * itemsize
    j.ld_x = D + cfg.n_cond
    j.xt = w + cfg.xtgt_offset * itemsize
    j.ld_t = D
    _add(j, PH_INPUTS, 0, _row_blocks(j))


cdef void _plan_forward(fv_job* j, int first, int last) noexcept nogil:
    cdef int l
    cdef const fv_layer* L
    for l in range(first, last):
        L = &j.cfg.layers[l]
        _add(j, PH_FORWARD, l, _col_blocks(j, L.n_out, j.n, L.n_in))


cdef void _plan_step(fv_job* j, bint update, int itemsize) noexcept nogil:
    """The phases of a training step (update) or of its gradient alone."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef int l, which = 1, nbx, nbw
    cdef int64_t cur, ld_cur, dx
    cdef const fv_layer* L
    _plan_inputs(j, True, j.work, itemsize)
    _plan_forward(j, 0, cfg.n_encoder)
    _add(j, PH_LATENT, 0, _row_blocks(j))
    _plan_forward(j, cfg.n_encoder, cfg.n_layers)
    _add(j, PH_RECON, 0, _row_blocks(j))
    _add(j, PH_CHECK, 0, 1)
    if cfg.likelihood == FV_LIK_GAUSSIAN_LEARNED:
        _add(j, PH_LOGSIGMA, 0, _cdiv(cfg.n_features, _LOGSIGMA_BLOCK))
    # Backward, top down, from the output gradient in grad buffer 0, through
    # the two ping-pong buffers. The first decoder layer's input gradient is
    # d[z | c]; only dz is used.
    cur = cfg.grad_offset[0]
    ld_cur = cfg.layers[cfg.n_layers - 1].n_out
    for l in range(cfg.n_layers - 1, -1, -1):
        if l == cfg.n_encoder - 1 and cfg.kind == FV_KIND_VAE:
            # through the reparameterization and the KL term to the head
            _add(j, PH_HEAD_GRAD, 0, _row_blocks(j), 0, cur, ld_cur)
            cur = cfg.dh_offset
            ld_cur = 2 * cfg.latent_dim
        L = &cfg.layers[l]
        dx = -1 if l == 0 else cfg.grad_offset[which]
        nbx = 0 if l == 0 else _col_blocks(j, L.n_in, j.n, L.n_out)
        nbw = _col_blocks(j, L.n_out, j.n, L.n_in)
        _add(j, PH_BACKWARD, l, nbw + nbx, nbw, cur, ld_cur, dx)
        cur = dx
        ld_cur = L.n_in
        which = 1 - which
    _add(j, PH_VERDICT, 0, 1)
    if update:
        _add(j, PH_UPDATE, 0, _cdiv(cfg.n_params, _UPDATE_BLOCK))


# ---------------------------------------------------------------------------
# Blocks. Each writes only its own rows / columns / parameters.

cdef void _prepare(const fv_vae_config* cfg, bint training,
                   const floating* X, int64_t ldx, const floating* Cond,
                   int64_t ldc, const int64_t* rows, int64_t r0, int64_t r1,
                   uint64_t seed, uint64_t step, uint64_t row_offset,
                   floating* work) noexcept nogil:
    """Gather rows [r0, r1) of the minibatch into the workspace: the target
    (binarized when training asks for it), the encoder input [x~ | c] (x~ the
    target with masking noise when training a denoising model) and the
    condition part of the decoder input [z | c]. Noise is a pure function of
    (seed, step, the row's global position), like eps."""
    cdef int D = cfg.n_features, C = cfg.n_cond, K = cfg.latent_dim
    cdef int64_t i, r
    cdef const floating* src
    cdef floating* tgt
    cdef floating* xin
    cdef bint binarize = training and cfg.binarize
    cdef double corrupt = cfg.corrupt if training else 0.0
    for i in range(r0, r1):
        r = rows[i] if rows != NULL else i
        src = X + r * ldx
        tgt = work + cfg.xtgt_offset + i * D
        xin = work + cfg.xin_offset + i * (D + C)
        if binarize:
            if floating is float:
                fv_bernoulli_draw_f32(src, tgt, D, seed, FV_STREAM_BINARIZE,
                                      row_offset + i, step)
            else:
                fv_bernoulli_draw_f64(src, tgt, D, seed, FV_STREAM_BINARIZE,
                                      row_offset + i, step)
        else:
            memcpy(tgt, src, D * sizeof(floating))
        if corrupt > 0:
            if floating is float:
                fv_mask_f32(tgt, xin, D, corrupt, seed, FV_STREAM_CORRUPT,
                            row_offset + i, step)
            else:
                fv_mask_f64(tgt, xin, D, corrupt, seed, FV_STREAM_CORRUPT,
                            row_offset + i, step)
        else:
            memcpy(xin, tgt, D * sizeof(floating))
        if C > 0:
            memcpy(xin + D, Cond + r * ldc, C * sizeof(floating))
            memcpy(work + cfg.z_offset + i * (K + C) + K, Cond + r * ldc,
                   C * sizeof(floating))


cdef void _inputs_rows(const fv_job* j, int64_t r0, int64_t r1,
                       floating* work) noexcept nogil:
    cdef const fv_vae_config* cfg = j.cfg
    cdef int64_t i
    cdef const floating* X = <const floating*> j.X
    cdef uint64_t seed = 0, step = 0, row_offset = 0
    if j.gather_plain:
        for i in range(r0, r1):
            memcpy(work + cfg.xtgt_offset + i * cfg.n_features,
                   X + j.rows[i] * j.ldx, cfg.n_features * sizeof(floating))
        return
    if j.training:
        seed = j.args.seed
        step = j.args.step
        row_offset = <uint64_t> j.args.row_offset
    _prepare(cfg, j.training, X, j.ldx, <const floating*> j.Cond, j.ldc,
             j.rows, r0, r1, seed, step, row_offset, work)


cdef inline const floating* _input_of(const fv_vae_config* cfg, int l,
                                      const floating* x, int64_t ldx,
                                      const floating* work,
                                      int64_t* ld) noexcept nogil:
    """The input of layer l and its leading dimension."""
    if l == 0:
        ld[0] = ldx
        return x
    if l == cfg.n_encoder:
        ld[0] = cfg.latent_dim + cfg.n_cond
        return work + cfg.z_offset
    ld[0] = cfg.layers[l - 1].n_out
    return work + cfg.layers[l - 1].out_offset


cdef void _forward_rows(const fv_vae_config* cfg, int first, int last,
                        const floating* params, floating* work,
                        const floating* x, int64_t ldx, int64_t r0,
                        int64_t r1) noexcept nogil:
    """Layers [first, last) for rows [r0, r1) with the row-invariant kernel
    (fastvae/dense_rows.h): inference gives a row the same numbers whatever
    batch it comes in. Training keeps the GEMM."""
    cdef int l
    cdef int64_t ld_in
    cdef const floating* inp
    cdef const fv_layer* L
    for l in range(first, last):
        L = &cfg.layers[l]
        inp = _input_of(cfg, l, x, ldx, work, &ld_in)
        if floating is float:
            fv_dense_rows_f32(r0, r1, L.n_in, L.n_out, inp, ld_in,
                              params + L.w_offset, params + L.b_offset,
                              work + L.out_offset, L.n_out, L.activation)
        else:
            fv_dense_rows_f64(r0, r1, L.n_in, L.n_out, inp, ld_in,
                              params + L.w_offset, params + L.b_offset,
                              work + L.out_offset, L.n_out, L.activation)


cdef void _latent_rows(const fv_vae_config* cfg, floating* work,
                       double* kl_out, uint64_t seed, uint64_t stream,
                       uint64_t step, uint64_t row_offset, uint64_t draw,
                       int64_t r0, int64_t r1) noexcept nogil:
    """The decoder's z: mu + sigma * eps and the per-row KL for a VAE, the
    encoder's code (KL 0) for an autoencoder."""
    cdef int K = cfg.latent_dim, C = cfg.n_cond
    cdef const floating* H = work + cfg.layers[cfg.n_encoder - 1].out_offset
    cdef int64_t i
    if cfg.kind == FV_KIND_VAE:
        reparam_forward_rows(H, 2 * K, K, work + cfg.z_offset, K + C,
                             work + cfg.eps_offset, K, seed, stream, step,
                             row_offset, draw, r0, r1)
        kl_rows(H, 2 * K, K, kl_out, r0, r1)
    else:
        for i in range(r0, r1):
            memcpy(work + cfg.z_offset + i * (K + C), H + i * K,
                   K * sizeof(floating))
            kl_out[i] = 0.0


cdef void _latent_keyed_rows(const fv_vae_config* cfg, floating* work,
                             const floating* x, int64_t ldx, double* kl_out,
                             uint64_t seed, uint64_t stream, uint64_t step,
                             uint64_t draw, int64_t r0,
                             int64_t r1) noexcept nogil:
    """_latent_rows for evaluation: row i's eps comes from counter (block,
    key(x_i), step, draw), key the hash of the row's encoder input
    (fastvae/row_hash.h), so it does not depend on where the row sits."""
    cdef int K = cfg.latent_dim, C = cfg.n_cond
    cdef int width = cfg.n_features + C
    cdef const floating* H = work + cfg.layers[cfg.n_encoder - 1].out_offset
    cdef int64_t i
    cdef uint64_t key
    if cfg.kind != FV_KIND_VAE:
        _latent_rows(cfg, work, kl_out, seed, stream, step, 0, draw, r0, r1)
        return
    for i in range(r0, r1):
        if floating is float:
            key = fv_row_key_f32(x + i * ldx, width)
        else:
            key = fv_row_key_f64(x + i * ldx, width)
        reparam_forward_rows(H + i * 2 * K, 2 * K, K,
                             work + cfg.z_offset + i * (K + C), K + C,
                             work + cfg.eps_offset + i * K, K, seed, stream,
                             step, key, draw, 0, 1)
    kl_rows(H, 2 * K, K, kl_out, r0, r1)


cdef void _loss_rows(const fv_vae_config* cfg, const floating* params,
                     floating* work, const floating* out, const floating* x,
                     int64_t ldx, double grad_scale, floating* grad,
                     int64_t r0, int64_t r1, int tid,
                     double* recon) noexcept nogil:
    """-log p(x_i | decoder output row i) for rows [r0, r1) and, with grad,
    grad_scale times its gradient (for a learned Gaussian also the per-row
    log-sigma gradient terms, into sgrad)."""
    cdef int D = cfg.n_features
    cdef floating* sgrad = work + cfg.sgrad_offset if grad != NULL else NULL
    cdef floating* scratch = work + cfg.scratch_offset + tid * _round_up(D)
    if cfg.likelihood == FV_LIK_BERNOULLI:
        bernoulli_rows(out, D, x, <int> ldx, D, grad_scale, grad, D, recon,
                       r0, r1)
    elif cfg.likelihood == FV_LIK_GAUSSIAN:
        gaussian_rows(out, D, x, <int> ldx, D, cfg.sigma, grad_scale, grad, D,
                      recon, r0, r1)
    elif floating is float:
        fv_gaussian_learned_rows_f32(
            out, D, x, ldx, D, params + cfg.logsigma_offset, <float> grad_scale,
            grad, D, sgrad, D, scratch, recon, r0, r1)
    else:
        fv_gaussian_learned_rows_f64(
            out, D, x, ldx, D, params + cfg.logsigma_offset, grad_scale,
            grad, D, sgrad, D, scratch, recon, r0, r1)


cdef void _store_means(const fv_vae_config* cfg, const floating* work,
                       floating* out, int64_t ldo, int64_t r0,
                       int64_t r1) noexcept nogil:
    """Mean of p(x | z): sigmoid of the logits, or the Gaussian mean."""
    cdef int64_t i
    cdef int d, D = cfg.n_features
    cdef const floating* Y = work + cfg.layers[cfg.n_layers - 1].out_offset
    cdef const floating* y
    cdef floating* o
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


cdef void _importance_draws(const fv_vae_config* cfg, floating* work,
                            double* extra, int64_t q0, int64_t j0, int64_t j1,
                            int64_t k, uint64_t seed, uint64_t stream,
                            uint64_t row_offset) noexcept nogil:
    """Rows j in [j0, j1) of the decoder input for pairs q = q0 + j of (data
    row q // k, sample q % k): z = mu + sigma * eps (rounded like the
    training step's), and extra[j] = log p(z) - log q(z | x)
    = -1/2 sum (z^2 - eps^2 - logvar) in double."""
    cdef int K = cfg.latent_dim, C = cfg.n_cond, D = cfg.n_features, c
    cdef int64_t j, q, r
    cdef double s, lv, zc, e
    cdef const floating* H = work + cfg.layers[cfg.n_encoder - 1].out_offset
    cdef const floating* h
    cdef floating* z
    cdef floating* eps
    for j in range(j0, j1):
        q = q0 + j
        r = q // k
        h = H + r * 2 * K
        z = work + cfg.z_offset + j * (K + C)
        eps = work + cfg.eps_offset + j * K
        if floating is float:
            fv_normal_fill_f32(seed, stream, row_offset + r, <uint64_t> (q % k),
                               0, eps, K)
        else:
            fv_normal_fill_f64(seed, stream, row_offset + r, <uint64_t> (q % k),
                               0, eps, K)
        s = 0.0
        for c in range(K):
            lv = fv_clamp_logvar(h[K + c])
            e = eps[c]
            z[c] = <floating> (h[c] + exp(0.5 * lv) * e)
            zc = z[c]
            s += zc * zc - e * e - lv
        extra[j] = -0.5 * s
        if C > 0:
            memcpy(z + K, work + cfg.xin_offset + r * (D + C) + D,
                   C * sizeof(floating))


cdef void _window_losses(const fv_vae_config* cfg, const floating* params,
                         floating* work, int64_t q0, int64_t j0, int64_t j1,
                         int64_t k, int tid, double* recon) noexcept nogil:
    """-log p(x_r | z) of the window's pairs [j0, j1) against their data
    rows: runs of equal r share the target, read with leading dimension 0."""
    cdef int64_t j, r, run
    cdef int D = cfg.n_features
    cdef const floating* dec_out = work + cfg.layers[cfg.n_layers - 1].out_offset
    j = j0
    while j < j1:
        r = (q0 + j) // k
        run = min(j1, (r + 1) * k - q0)
        _loss_rows(cfg, params, work, dec_out, work + cfg.xtgt_offset + r * D,
                   0, 1.0, NULL, j, run, tid, recon)
        j = run


cdef void _accumulate_window(const fv_job* j) noexcept nogil:
    """log-mean-exp with a running maximum, samples in order."""
    cdef int64_t i, q, r
    cdef double lw
    cdef int64_t m = j.cfg.max_batch
    cdef double* recon = j.row_losses
    cdef double* extra = j.row_losses + m
    cdef double* top = j.row_losses + 2 * m + FV_MAX_TEAM
    cdef double* total = top + m
    for i in range(j.n):
        q = j.q0 + i
        r = q // j.k
        lw = extra[i] - recon[i]
        if q % j.k == 0:
            top[r] = lw
            total[r] = 1.0
        elif lw > top[r]:
            total[r] = total[r] * exp(top[r] - lw) + 1.0
            top[r] = lw
        else:
            total[r] += exp(lw - top[r])


cdef void _run_block(fv_job* j, int p, int b, int tid,
                     floating* tag) noexcept nogil:
    """Block b of phase p, on pool thread tid (tag selects the type)."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef const fv_phase* ph = &j.phases[p]
    cdef floating* work = <floating*> j.work
    cdef floating* params = <floating*> j.params
    cdef floating* grads = <floating*> j.grads
    cdef const floating* x = <const floating*> j.x
    cdef const floating* inp
    cdef const fv_layer* L
    cdef int64_t r0, r1, ld_in, i, c0, c1, bad
    cdef int D = cfg.n_features, K = cfg.latent_dim, C = cfg.n_cond
    cdef int m = cfg.max_batch, nb
    cdef double recon_sum, kl_sum
    cdef double* recon = j.row_losses
    cdef double* kl = j.row_losses + m
    cdef const floating* H
    if j.status != 0:
        return  # the loss or a gradient was not finite: nothing more to do
    if ph.kind == PH_FORWARD:
        L = &cfg.layers[ph.layer]
        inp = _input_of(cfg, ph.layer, x, j.ld_x, work, &ld_in)
        dense_forward_block(j.n, L.n_in, L.n_out, inp, <int> ld_in,
                            params + L.w_offset, params + L.b_offset,
                            work + L.out_offset, L.n_out, L.activation,
                            _col_start(j, L.n_out, ph.n_blocks, b),
                            _col_start(j, L.n_out, ph.n_blocks, b + 1))
        return
    if ph.kind == PH_BACKWARD:
        L = &cfg.layers[ph.layer]
        inp = _input_of(cfg, ph.layer, x, j.ld_x, work, &ld_in)
        if b < ph.n_split:
            bad = weight_grad_block(
                j.n, L.n_in, L.n_out, inp, <int> ld_in, work + ph.a_off,
                <int> ph.a_ld, grads + L.w_offset, grads + L.b_offset,
                _col_start(j, L.n_out, ph.n_split, b),
                _col_start(j, L.n_out, ph.n_split, b + 1))
            if bad:
                fv_atomic_add_i64(&j.bad, bad)
        else:
            nb = ph.n_blocks - ph.n_split
            input_grad_block(
                j.n, L.n_in, L.n_out, inp, <int> ld_in, params + L.w_offset,
                work + ph.a_off, <int> ph.a_ld, work + ph.x_off, L.n_in,
                FV_ACT_IDENTITY if ph.layer == cfg.n_encoder
                else cfg.layers[ph.layer - 1].activation,
                _col_start(j, L.n_in, nb, b - ph.n_split),
                _col_start(j, L.n_in, nb, b - ph.n_split + 1))
        return
    if ph.kind == PH_LOGSIGMA:
        # d loss / d log-sigma: column sums of the per-row terms, rows in order
        c0 = <int64_t> b * _LOGSIGMA_BLOCK
        c1 = min(<int64_t> D, c0 + _LOGSIGMA_BLOCK)
        if floating is float:
            fv_column_sums_f32(work + cfg.sgrad_offset + c0, D, j.n,
                               <int> (c1 - c0), grads + cfg.logsigma_offset + c0)
            bad = fv_count_nonfinite_f32(grads + cfg.logsigma_offset + c0, 0, 1,
                                         <int> (c1 - c0))
        else:
            fv_column_sums_f64(work + cfg.sgrad_offset + c0, D, j.n,
                               <int> (c1 - c0), grads + cfg.logsigma_offset + c0)
            bad = fv_count_nonfinite_f64(grads + cfg.logsigma_offset + c0, 0, 1,
                                         <int> (c1 - c0))
        if bad:
            fv_atomic_add_i64(&j.bad, bad)
        return
    if ph.kind == PH_CHECK:
        recon_sum = 0.0
        kl_sum = 0.0
        for i in range(j.n):
            recon_sum += recon[i]
            kl_sum += kl[i]
        j.sums_out[0] = recon_sum
        j.sums_out[1] = kl_sum
        if not (isfinite(recon_sum) and isfinite(kl_sum)):
            j.status = 1
        return
    if ph.kind == PH_VERDICT:
        # A finite loss can still have overflowing gradients; updating with
        # them would put NaN into the parameters.
        if fv_atomic_load_i64(&j.bad):
            j.status = 2
        return
    if ph.kind == PH_UPDATE:
        c0 = <int64_t> b * _UPDATE_BLOCK
        c1 = min(cfg.n_params, c0 + _UPDATE_BLOCK)
        optimizer_update_range(j.opt, j.update_t, params, grads,
                               <floating*> j.state1, <floating*> j.state2,
                               c0, c1)
        return
    # Row-wise phases.
    if ph.kind == PH_LL_ACCUM:
        _accumulate_window(j)
        return
    _block_rows(j, b, &r0, &r1)
    if ph.kind == PH_INPUTS:
        _inputs_rows(j, r0, r1, work)
    elif ph.kind == PH_LATENT:
        _latent_rows(cfg, work, kl, j.args.seed, FV_STREAM_REPARAM,
                     j.args.step, <uint64_t> j.args.row_offset, 0, r0, r1)
    elif ph.kind == PH_RECON:
        _loss_rows(cfg, params, work,
                   work + cfg.layers[cfg.n_layers - 1].out_offset,
                   <const floating*> j.xt, j.ld_t, 1.0 / j.args.global_batch,
                   work + cfg.grad_offset[0], r0, r1, tid, recon)
    elif ph.kind == PH_HEAD_GRAD:
        H = work + cfg.layers[cfg.n_encoder - 1].out_offset
        reparam_backward_rows(H, 2 * K, K, work + cfg.eps_offset, K,
                              work + ph.a_off, <int> ph.a_ld,
                              work + cfg.dh_offset, 2 * K, r0, r1)
        kl_backward_rows(H, 2 * K, K,
                         j.args.kl_weight * (1.0 / j.args.global_batch),
                         work + cfg.dh_offset, 2 * K, r0, r1)
    elif ph.kind == PH_ENCODE:
        if not _plain(cfg, False):
            _inputs_rows(j, r0, r1, work)
        _forward_rows(cfg, 0, cfg.n_encoder, params, work, x, j.ld_x, r0, r1)
        H = work + cfg.layers[cfg.n_encoder - 1].out_offset
        nb = _head_width(cfg)
        for i in range(r0, r1):
            memcpy(<floating*> j.out + i * j.ldo, H + i * nb,
                   nb * sizeof(floating))
    elif ph.kind == PH_DECODE:
        for i in range(r0, r1):
            memcpy(work + cfg.z_offset + i * (K + C),
                   <const floating*> j.X + i * j.ldx, K * sizeof(floating))
            if C > 0:
                memcpy(work + cfg.z_offset + i * (K + C) + K,
                       <const floating*> j.Cond + i * j.ldc,
                       C * sizeof(floating))
        _forward_rows(cfg, cfg.n_encoder, cfg.n_layers, params, work, NULL, 0,
                      r0, r1)
        _store_means(cfg, work, <floating*> j.out, j.ldo, r0, r1)
    elif ph.kind == PH_ELBO:
        if not _plain(cfg, False):
            _inputs_rows(j, r0, r1, work)
        _forward_rows(cfg, 0, cfg.n_encoder, params, work, x, j.ld_x, r0, r1)
        _latent_keyed_rows(cfg, work, x, j.ld_x, j.kl_out, j.seed, j.stream,
                           j.step, j.draw, r0, r1)
        _forward_rows(cfg, cfg.n_encoder, cfg.n_layers, params, work, x,
                      j.ld_x, r0, r1)
        _loss_rows(cfg, params, work,
                   work + cfg.layers[cfg.n_layers - 1].out_offset,
                   <const floating*> j.xt, j.ld_t, 1.0, NULL, r0, r1, tid,
                   j.recon_out)
    elif ph.kind == PH_LL_DRAWS:
        _importance_draws(cfg, work, j.row_losses + m, j.q0, r0, r1, j.k,
                          j.seed, j.stream, j.row_offset)
    elif ph.kind == PH_LL_LOSSES:
        _window_losses(cfg, params, work, j.q0, r0, r1, j.k, tid, recon)


cdef void _run_block_f32(void* ctx, int p, int b, int tid) noexcept nogil:
    _run_block(<fv_job*> ctx, p, b, tid, <float*> NULL)


cdef void _run_block_f64(void* ctx, int p, int b, int tid) noexcept nogil:
    _run_block(<fv_job*> ctx, p, b, tid, <double*> NULL)


cdef inline void _run(fv_job* j, int n_threads, floating* tag) noexcept nogil:
    if floating is float:
        fv_pool_run(_run_block_f32, j, j.n_phases, j.n_blocks, n_threads)
    else:
        fv_pool_run(_run_block_f64, j, j.n_phases, j.n_blocks, n_threads)


# ---------------------------------------------------------------------------
# Entry points (nogil; each runs one job on the pool, log p(x) one per window).

cdef int _step_job(const fv_vae_config* cfg, const fv_optimizer* opt,
                   const fv_step_args* args, floating* params,
                   floating* grads, floating* state1, floating* state2,
                   floating* work, double* row_losses,
                   const floating* X, int64_t ldx,
                   const floating* Cond, int64_t ldc, const int64_t* rows,
                   int batch, double* sums_out) noexcept nogil:
    cdef fv_job j
    _job_init(&j, cfg, batch)
    j.args = args
    j.opt = opt
    j.params = params
    j.grads = grads
    j.state1 = state1
    j.state2 = state2
    j.work = work
    j.row_losses = row_losses
    j.X = X
    j.ldx = ldx
    j.Cond = Cond
    j.ldc = ldc
    j.rows = rows
    j.sums_out = sums_out
    j.update_t = <int64_t> args.step + 1
    _plan_step(&j, opt != NULL, sizeof(floating))
    _run(&j, args.n_threads, params)
    return j.status


cdef int train_step(const fv_vae_config* cfg, const fv_optimizer* opt,
                    const fv_step_args* args, floating* params,
                    floating* grads, floating* state1, floating* state2,
                    floating* work, double* row_losses,
                    const floating* X, int64_t ldx,
                    const floating* Cond, int64_t ldc, const int64_t* rows,
                    int batch, double* sums_out) noexcept nogil:
    return _step_job(cfg, opt, args, params, grads, state1, state2, work,
                     row_losses, X, ldx, Cond, ldc, rows, batch, sums_out)


cdef int compute_gradients(const fv_vae_config* cfg, const fv_step_args* args,
                           const floating* params, floating* grads,
                           floating* work, double* row_losses,
                           const floating* X, int64_t ldx,
                           const floating* Cond, int64_t ldc,
                           const int64_t* rows, int batch,
                           double* sums_out) noexcept nogil:
    return _step_job(cfg, NULL, args, <floating*> params, grads, NULL, NULL,
                     work, row_losses, X, ldx, Cond, ldc, rows, batch,
                     sums_out)


cdef void _apply_update(const fv_vae_config* cfg, const fv_optimizer* opt,
                        int64_t t, floating* params, const floating* grads,
                        floating* state1, floating* state2,
                        int n_threads) noexcept nogil:
    # The update train_step makes after its backward pass, on its own: the
    # same blocks and denormal flushing, so the same numbers.
    cdef fv_job j
    _job_init(&j, cfg, 1)
    j.opt = opt
    j.params = params
    j.grads = <floating*> grads
    j.state1 = state1
    j.state2 = state2
    j.update_t = t
    _add(&j, PH_UPDATE, 0, _cdiv(cfg.n_params, _UPDATE_BLOCK))
    _run(&j, n_threads, params)


cdef void _inference_job(fv_job* j, const fv_vae_config* cfg,
                         const floating* params, floating* work,
                         const floating* X, int64_t ldx, const floating* Cond,
                         int64_t ldc, int n) noexcept nogil:
    _job_init(j, cfg, n)
    j.params = <floating*> params
    j.work = work
    j.X = X
    j.ldx = ldx
    j.Cond = Cond
    j.ldc = ldc


cdef void encode_rows(const fv_vae_config* cfg, const floating* params,
                      floating* work, const floating* X, int64_t ldx,
                      const floating* Cond, int64_t ldc, int n,
                      floating* H_out, int64_t ldh, int n_threads) noexcept nogil:
    cdef fv_job j
    _inference_job(&j, cfg, params, work, X, ldx, Cond, ldc, n)
    j.out = H_out
    j.ldo = ldh
    _plan_inputs(&j, False, work, sizeof(floating))
    j.n_phases = 0  # inputs are made inside the row blocks
    _add(&j, PH_ENCODE, 0, _row_blocks(&j))
    _run(&j, n_threads, work)


cdef void decode_rows(const fv_vae_config* cfg, const floating* params,
                      floating* work, const floating* Z, int64_t ldz,
                      const floating* Cond, int64_t ldc, int n,
                      floating* out, int64_t ldo, int n_threads) noexcept nogil:
    cdef fv_job j
    _inference_job(&j, cfg, params, work, Z, ldz, Cond, ldc, n)
    j.out = out
    j.ldo = ldo
    _add(&j, PH_DECODE, 0, _row_blocks(&j))
    _run(&j, n_threads, work)


cdef void elbo_rows(const fv_vae_config* cfg, const floating* params,
                    floating* work, const floating* X, int64_t ldx,
                    const floating* Cond, int64_t ldc, int n,
                    uint64_t seed, uint64_t stream, uint64_t step,
                    uint64_t draw, double* recon_out, double* kl_out,
                    int n_threads) noexcept nogil:
    cdef fv_job j
    _inference_job(&j, cfg, params, work, X, ldx, Cond, ldc, n)
    j.seed = seed
    j.stream = stream
    j.step = step
    j.draw = draw
    j.recon_out = recon_out
    j.kl_out = kl_out
    _plan_inputs(&j, False, work, sizeof(floating))
    j.n_phases = 0
    _add(&j, PH_ELBO, 0, _row_blocks(&j))
    _run(&j, n_threads, work)


cdef void log_likelihood_rows(const fv_vae_config* cfg, const floating* params,
                              floating* work, double* row_losses,
                              const floating* X, int64_t ldx,
                              const floating* Cond, int64_t ldc, int n,
                              int64_t k, uint64_t seed, uint64_t stream,
                              uint64_t row_offset, double* out,
                              int n_threads) noexcept nogil:
    cdef fv_job j
    cdef int64_t q0, r, n_pairs = n * k
    cdef double* top = row_losses + 2 * cfg.max_batch + FV_MAX_TEAM
    cdef double* total = top + cfg.max_batch
    # The data rows (with their conditions) stay in the workspace while the
    # decoder runs over windows of (row, sample) pairs.
    _inference_job(&j, cfg, params, work, X, ldx, Cond, ldc, n)
    j.row_losses = row_losses
    j.x = work + cfg.xin_offset
    j.ld_x = cfg.n_features + cfg.n_cond
    _add(&j, PH_INPUTS, 0, _row_blocks(&j))
    _plan_forward(&j, 0, cfg.n_encoder)
    _run(&j, n_threads, work)
    q0 = 0
    while q0 < n_pairs:
        _inference_job(&j, cfg, params, work, X, ldx, Cond, ldc,
                       <int> min(<int64_t> cfg.max_batch, n_pairs - q0))
        j.row_losses = row_losses
        j.seed = seed
        j.stream = stream
        j.row_offset = row_offset
        j.q0 = q0
        j.k = k
        _add(&j, PH_LL_DRAWS, 0, _row_blocks(&j))
        _plan_forward(&j, cfg.n_encoder, cfg.n_layers)
        _add(&j, PH_LL_LOSSES, 0, _row_blocks(&j))
        _add(&j, PH_LL_ACCUM, 0, 1)
        _run(&j, n_threads, work)
        q0 += j.n
    for r in range(n):
        out[r] = top[r] + log(total[r]) - log(<double> k)


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
    """Compiled network (VAE or autoencoder) of fixed architecture, dtype and
    max batch size.

    Parameters
    ----------
    encoder_dims : sequence of int
        (n_features + n_cond, hidden..., head) with head 2 * latent_dim for a
        VAE and latent_dim for an autoencoder.
    decoder_dims : sequence of int
        (latent_dim + n_cond, hidden..., n_features).
    activations : sequence of int
        Activation code of every layer, encoder then decoder; the encoder head
        and the decoder output must be identity.
    w_offsets, b_offsets : sequence of int
        Offsets of each layer's W and b in the flat parameter buffer.
    n_params : int
        Length of the flat parameter buffer.
    likelihood : {"bernoulli", "gaussian", "gaussian_learned"}
    sigma : float
        Fixed Gaussian observation noise (used by "gaussian" only).
    max_batch : int
        Largest number of rows one call handles.
    dtype : numpy.float32 or numpy.float64
    parts : int, default=2
        Column blocks of large GEMMs (fastvae/partition.h); results depend on
        it but not on the number of threads. The models pass
        fastvae._core.threads.partition_count().
    kind : {"vae", "ae"}, default="vae"
    n_cond : int, default=0
        Width of the condition vector fed to encoder and decoder.
    logsigma_offset : int, default=-1
        Offset of the n_features learned log-sigmas ("gaussian_learned").
    corrupt : float in [0, 1), default=0
        Training only: probability of zeroing each input value (denoising).
    binarize : bool, default=False
        Training only: targets drawn as Bernoulli(x) at every step (dynamic
        binarization; x must lie in [0, 1]).
    """

    cdef fv_vae_config cfg
    cdef fv_optimizer opt
    cdef readonly object dtype
    cdef object _work
    cdef object _row_losses
    # set while a call runs in the workspace (without the GIL): a second
    # thread using the same Network would overwrite it mid-call
    cdef bint _busy

    def __init__(self, encoder_dims, decoder_dims, activations, w_offsets,
                 b_offsets, int64_t n_params, str likelihood, double sigma,
                 int max_batch, dtype, int parts=2, str kind="vae",
                 int n_cond=0, int64_t logsigma_offset=-1, double corrupt=0.0,
                 bint binarize=False):
        dims = [[int(d) for d in encoder_dims], [int(d) for d in decoder_dims]]
        n_enc = len(dims[0]) - 1
        n_layers = n_enc + len(dims[1]) - 1
        if n_enc < 1 or len(dims[1]) < 2 or n_layers > FV_MAX_LAYERS:
            raise ValueError(
                f"need 1 to {FV_MAX_LAYERS} layers in total, with at least one "
                "in the encoder and one in the decoder")
        if not (len(activations) == len(w_offsets) == len(b_offsets) == n_layers):
            raise ValueError("one activation, W offset and b offset per layer")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        if n_cond < 0:
            raise ValueError(f"n_cond must be >= 0, got {n_cond}")
        D = dims[1][len(dims[1]) - 1]
        K = dims[1][0] - n_cond
        head = 2 * K if kind == "vae" else K
        if K < 1 or dims[0][n_enc] != head or dims[0][0] != D + n_cond:
            raise ValueError(
                f"a {kind} with {n_cond} condition columns needs encoder dims "
                "(n_features + n_cond, ..., head) and decoder dims "
                "(latent_dim + n_cond, ..., n_features) with head = "
                f"{'2 * latent_dim' if kind == 'vae' else 'latent_dim'}; got "
                f"{tuple(dims[0])} and {tuple(dims[1])}")
        if any(d < 1 for d in dims[0] + dims[1]):
            raise ValueError("every layer size must be >= 1")
        if (activations[n_enc - 1] != FV_ACT_IDENTITY
                or activations[n_layers - 1] != FV_ACT_IDENTITY):
            raise ValueError("the encoder head and decoder output are linear")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {sorted(LIKELIHOODS)}")
        check_finite(sigma, "sigma")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        if likelihood == "gaussian_learned" and not (
                0 <= logsigma_offset and logsigma_offset + D <= n_params):
            raise ValueError(f"the {D} log-sigmas do not fit in {n_params} "
                             f"parameters at offset {logsigma_offset}")
        if not 0.0 <= corrupt < 1.0:
            raise ValueError(f"corrupt must be in [0, 1), got {corrupt}")
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
        c.kind = KINDS[kind]
        c.n_features = D
        c.latent_dim = K
        c.n_cond = n_cond
        c.likelihood = LIKELIHOODS[likelihood]
        c.sigma = sigma
        c.logsigma_offset = logsigma_offset
        c.corrupt = corrupt
        c.binarize = binarize
        c.parts = parts
        c.max_batch = max_batch
        c.n_params = n_params
        sizes = [(dims[0][i], dims[0][i + 1]) for i in range(n_enc)] + [
            (dims[1][i], dims[1][i + 1]) for i in range(len(dims[1]) - 1)]
        cdef int64_t off = 0
        cdef int64_t rows = max_batch
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
            off += _round_up(rows * n_out)
            max_width = max(max_width, n_in, n_out)
        regions = [("xin", rows * (D + n_cond)), ("xtgt", rows * D),
                   ("eps", rows * K), ("z", rows * (K + n_cond)),
                   ("dh", rows * 2 * K),
                   ("sgrad", rows * D if likelihood == "gaussian_learned" else 0),
                   ("scratch", FV_MAX_TEAM * _round_up(D)
                    if likelihood == "gaussian_learned" else 0),
                   ("grad0", rows * max_width), ("grad1", rows * max_width)]
        at = {}
        for name, size in regions:
            at[name] = off
            off += _round_up(size)
        c.xin_offset, c.xtgt_offset = at["xin"], at["xtgt"]
        c.eps_offset, c.z_offset, c.dh_offset = at["eps"], at["z"], at["dh"]
        c.sgrad_offset, c.scratch_offset = at["sgrad"], at["scratch"]
        c.grad_offset[0], c.grad_offset[1] = at["grad0"], at["grad1"]
        c.work_size = off
        self._work = _aligned_empty(off, self.dtype)
        self._row_losses = np.zeros(FV_ROW_SCRATCH(max_batch), dtype=np.float64)
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

    @property
    def n_cond(self):
        return self.cfg.n_cond

    @property
    def head_width(self):
        return _head_width(&self.cfg)

    def set_optimizer(self, str kind, double lr, double momentum=0.9,
                      double beta1=0.9, double beta2=0.999, double eps=1e-8):
        """Optimizer used by train_step (ValueError on an unknown kind)."""
        self.opt = make_optimizer(kind, lr, momentum, beta1, beta2, eps)

    # -- checks shared by the entry points ---------------------------------

    cdef int _claim(self) except -1:
        """Take the workspace for one call (under the GIL, so test-and-set is
        atomic); the call clears _busy when its nogil part returns."""
        if self._busy:
            raise RuntimeError(
                "this Network is in use by another thread (they would share its "
                "workspace); give each thread its own Network")
        self._busy = True
        return 0

    cdef _check_buffers(self, Py_ssize_t n_params, bint is_float):
        if is_float != (self.dtype == np.float32):
            raise TypeError(f"arrays must be {self.dtype} for this network")
        if n_params != self.cfg.n_params:
            raise ValueError(f"parameter buffers must have length "
                             f"{self.cfg.n_params}, got {n_params}")

    cdef _check_cond(self, object cond, Py_ssize_t n_rows):
        if self.cfg.n_cond == 0:
            if cond is not None:
                raise ValueError("this network takes no conditions")
            return
        if cond is None:
            raise ValueError(f"this network needs conditions: an array of shape "
                             f"(n_rows, {self.cfg.n_cond})")
        if cond.shape[0] != n_rows or cond.shape[1] != self.cfg.n_cond:
            raise ValueError(f"cond must have shape ({n_rows}, {self.cfg.n_cond}), "
                             f"got ({cond.shape[0]}, {cond.shape[1]})")

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
        check_threads(n_threads)
        a.seed = check_u64(seed, "seed")
        a.step = check_u64(step, "step")
        if not 0 <= row_offset < 2**63:
            raise ValueError(f"row_offset must be in [0, 2**63), got {row_offset}")
        a.row_offset = row_offset
        a.global_batch = batch if global_batch is None else global_batch
        if a.global_batch < batch:
            raise ValueError("global_batch must be >= batch")
        check_finite(kl_weight, "kl_weight")
        a.kl_weight = kl_weight
        a.n_threads = n_threads
        return a

    # -- training -----------------------------------------------------------

    def train_step(self, floating[::1] params, floating[::1] grads,
                   floating[::1] state1, floating[::1] state2,
                   const floating[:, ::1] X, const int64_t[::1] rows, int batch,
                   seed, step, double kl_weight=1.0, int n_threads=1,
                   row_offset=0, global_batch=None,
                   const floating[:, ::1] cond=None):
        """One optimizer step on the minibatch X[rows] (rows None: X[:batch]),
        with conditions cond[rows] for a conditional network.

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
        self._check_cond(cond, X.shape[0])
        cdef fv_step_args a = self._args(seed, step, row_offset, global_batch,
                                         batch, kl_weight, n_threads)
        cdef Py_ssize_t nbytes = params.shape[0] * sizeof(floating)
        cdef Py_ssize_t xbytes = X.shape[0] * X.shape[1] * sizeof(floating)
        check_disjoint("params", &params[0], nbytes, "grads", &grads[0], nbytes)
        check_disjoint("X", &X[0, 0], xbytes, "params", &params[0], nbytes)
        check_disjoint("X", &X[0, 0], xbytes, "grads", &grads[0], nbytes)
        # the optimizer's buffers are restrict; state1 is unused by SGD and
        # state2 by SGD and momentum, so callers may pass one dummy for both
        if self.opt.kind != FV_OPT_SGD:
            check_disjoint("params", &params[0], nbytes, "state1", &state1[0], nbytes)
            check_disjoint("grads", &grads[0], nbytes, "state1", &state1[0], nbytes)
            check_disjoint("X", &X[0, 0], xbytes, "state1", &state1[0], nbytes)
        if self.opt.kind == FV_OPT_ADAM:
            check_disjoint("params", &params[0], nbytes, "state2", &state2[0], nbytes)
            check_disjoint("grads", &grads[0], nbytes, "state2", &state2[0], nbytes)
            check_disjoint("X", &X[0, 0], xbytes, "state2", &state2[0], nbytes)
            check_disjoint("state1", &state1[0], nbytes, "state2", &state2[0], nbytes)
        cdef floating[::1] work = self._work
        cdef double[::1] row_losses = self._row_losses
        cdef double sums[2]
        cdef int status
        cdef const int64_t* rows_ptr = NULL if rows is None else &rows[0]
        cdef const floating* c_ptr = NULL if cond is None else &cond[0, 0]
        cdef int64_t ldc = 0 if cond is None else cond.shape[1]
        self._claim()
        with nogil:
            status = train_step(&self.cfg, &self.opt, &a, &params[0], &grads[0],
                                &state1[0], &state2[0], &work[0],
                                &row_losses[0], &X[0, 0], X.shape[1], c_ptr,
                                ldc, rows_ptr, batch, sums)
        self._busy = False
        return status, sums[0], sums[1]

    def gradients(self, const floating[::1] params, floating[::1] grads,
                  const floating[:, ::1] X, const int64_t[::1] rows, int batch,
                  seed, step, double kl_weight=1.0, int n_threads=1,
                  row_offset=0, global_batch=None,
                  const floating[:, ::1] cond=None):
        """Gradient of this minibatch's share of the loss into grads.

        Returns (status, recon_sum, kl_sum) like train_step.
        """
        self._check_buffers(params.shape[0], floating is float)
        if grads.shape[0] != params.shape[0]:
            raise ValueError("grads must match params")
        self._check_rows(X.shape[0], X.shape[1], batch, rows)
        self._check_cond(cond, X.shape[0])
        cdef fv_step_args a = self._args(seed, step, row_offset, global_batch,
                                         batch, kl_weight, n_threads)
        cdef Py_ssize_t nbytes = params.shape[0] * sizeof(floating)
        check_disjoint("params", &params[0], nbytes, "grads", &grads[0], nbytes)
        check_disjoint("X", &X[0, 0], X.shape[0] * X.shape[1] * sizeof(floating),
                       "grads", &grads[0], nbytes)
        cdef floating[::1] work = self._work
        cdef double[::1] row_losses = self._row_losses
        cdef double sums[2]
        cdef int status
        cdef const int64_t* rows_ptr = NULL if rows is None else &rows[0]
        cdef const floating* c_ptr = NULL if cond is None else &cond[0, 0]
        cdef int64_t ldc = 0 if cond is None else cond.shape[1]
        self._claim()
        with nogil:
            status = compute_gradients(&self.cfg, &a, &params[0], &grads[0],
                                       &work[0], &row_losses[0], &X[0, 0],
                                       X.shape[1], c_ptr, ldc, rows_ptr, batch,
                                       sums)
        self._busy = False
        return status, sums[0], sums[1]

    def apply_update(self, floating[::1] params, const floating[::1] grads,
                     floating[::1] state1, floating[::1] state2, step,
                     int n_threads=1):
        """In place: the optimizer update train_step applies for `step`
        (0-based; Adam's t = step + 1), from a gradient computed elsewhere:
        gradients on a shard of the minibatch, summed over processes
        (fastvae.models.distributed). gradients then apply_update on one process
        give train_step's parameters bitwise.
        """
        self._check_buffers(params.shape[0], floating is float)
        if (grads.shape[0] != params.shape[0] or state1.shape[0] != params.shape[0]
                or state2.shape[0] != params.shape[0]):
            raise ValueError("grads and optimizer states must match params")
        check_threads(n_threads)
        cdef int64_t t = <int64_t> check_u64(step, "step") + 1
        cdef Py_ssize_t nbytes = params.shape[0] * sizeof(floating)
        check_disjoint("params", &params[0], nbytes, "grads", &grads[0], nbytes)
        if self.opt.kind != FV_OPT_SGD:
            check_disjoint("params", &params[0], nbytes, "state1", &state1[0], nbytes)
            check_disjoint("grads", &grads[0], nbytes, "state1", &state1[0], nbytes)
        if self.opt.kind == FV_OPT_ADAM:
            check_disjoint("params", &params[0], nbytes, "state2", &state2[0], nbytes)
            check_disjoint("grads", &grads[0], nbytes, "state2", &state2[0], nbytes)
            check_disjoint("state1", &state1[0], nbytes, "state2", &state2[0], nbytes)
        with nogil:
            _apply_update(&self.cfg, &self.opt, t, &params[0], &grads[0],
                          &state1[0], &state2[0], n_threads)

    def row_losses(self, int batch):
        """Per-row (recon, kl) of the last training call, shape (batch, 2)."""
        if not 0 <= batch <= self.cfg.max_batch:
            raise ValueError("batch out of range")
        m = self.cfg.max_batch
        return np.stack([self._row_losses[:batch],
                         self._row_losses[m:m + batch]], axis=1)

    # -- inference, in chunks of max_batch rows -----------------------------

    def encode(self, const floating[::1] params, const floating[:, ::1] X,
               int n_threads=1, const floating[:, ::1] cond=None):
        """Encoder head of every row: VAE [mu | raw logvar] (n_rows,
        2 * latent_dim), autoencoder z (n_rows, latent_dim)."""
        self._check_buffers(params.shape[0], floating is float)
        if X.shape[1] != self.cfg.n_features:
            raise ValueError(f"X must have {self.cfg.n_features} columns")
        self._check_cond(cond, X.shape[0])
        check_threads(n_threads)
        cdef int64_t n = X.shape[0], start
        cdef int chunk
        cdef int width = _head_width(&self.cfg)
        cdef int64_t ldc = 0 if cond is None else cond.shape[1]
        out_arr = np.empty((n, width), dtype=self.dtype)
        cdef floating[:, ::1] out = out_arr
        cdef floating[::1] work = self._work
        if n == 0:
            return out_arr
        self._claim()
        with nogil:
            start = 0
            while start < n:
                chunk = <int> min(<int64_t> self.cfg.max_batch, n - start)
                encode_rows(&self.cfg, &params[0], &work[0], &X[start, 0],
                            X.shape[1], NULL if ldc == 0 else &cond[start, 0],
                            ldc, chunk, &out[start, 0], width, n_threads)
                start += chunk
        self._busy = False
        return out_arr

    def decode(self, const floating[::1] params, const floating[:, ::1] Z,
               int n_threads=1, const floating[:, ::1] cond=None):
        """Mean of p(x|z, c) for every row of Z: (n_rows, n_features)."""
        self._check_buffers(params.shape[0], floating is float)
        if Z.shape[1] != self.cfg.latent_dim:
            raise ValueError(f"Z must have {self.cfg.latent_dim} columns")
        self._check_cond(cond, Z.shape[0])
        check_threads(n_threads)
        cdef int64_t n = Z.shape[0], start
        cdef int chunk
        cdef int D = self.cfg.n_features
        cdef int64_t ldc = 0 if cond is None else cond.shape[1]
        out_arr = np.empty((n, D), dtype=self.dtype)
        cdef floating[:, ::1] out = out_arr
        cdef floating[::1] work = self._work
        if n == 0:
            return out_arr
        self._claim()
        with nogil:
            start = 0
            while start < n:
                chunk = <int> min(<int64_t> self.cfg.max_batch, n - start)
                decode_rows(&self.cfg, &params[0], &work[0], &Z[start, 0],
                            Z.shape[1], NULL if ldc == 0 else &cond[start, 0],
                            ldc, chunk, &out[start, 0], D, n_threads)
                start += chunk
        self._busy = False
        return out_arr

    def elbo_terms(self, const floating[::1] params, const floating[:, ::1] X,
                   seed, stream, step=0, draw=0, int n_threads=1,
                   const floating[:, ::1] cond=None):
        """Per-row (-log p(x|z), KL) with z drawn from (seed, stream, step, draw).

        Row i's eps comes from Philox counter (block, row_keys(X)[i], step,
        draw) under key (seed, stream): a pure function of the row's values
        (with its condition), so a row gets the same numbers in any batch.

        Returns
        -------
        recon, kl : float64 arrays of shape (n_rows,)
        """
        self._check_buffers(params.shape[0], floating is float)
        if X.shape[1] != self.cfg.n_features:
            raise ValueError(f"X must have {self.cfg.n_features} columns")
        self._check_cond(cond, X.shape[0])
        check_threads(n_threads)
        cdef int64_t n = X.shape[0], start
        cdef int chunk
        cdef uint64_t s = check_u64(seed, "seed"), st = check_u64(stream, "stream")
        cdef uint64_t t = check_u64(step, "step"), d = check_u64(draw, "draw")
        cdef int64_t ldc = 0 if cond is None else cond.shape[1]
        recon_arr = np.empty(n, dtype=np.float64)
        kl_arr = np.empty(n, dtype=np.float64)
        cdef double[::1] recon = recon_arr
        cdef double[::1] kl = kl_arr
        cdef floating[::1] work = self._work
        if n == 0:
            return recon_arr, kl_arr
        self._claim()
        with nogil:
            start = 0
            while start < n:
                chunk = <int> min(<int64_t> self.cfg.max_batch, n - start)
                elbo_rows(&self.cfg, &params[0], &work[0], &X[start, 0],
                          X.shape[1], NULL if ldc == 0 else &cond[start, 0],
                          ldc, chunk, s, st, t, d, &recon[start], &kl[start],
                          n_threads)
                start += chunk
        self._busy = False
        return recon_arr, kl_arr

    def log_likelihood(self, const floating[::1] params,
                       const floating[:, ::1] X, k, seed, stream,
                       int n_threads=1, const floating[:, ::1] cond=None,
                       row_offset=0):
        """Importance-sampled log p(x | c) of every row with k samples.

        Row i's samples are a pure function of (seed, stream, row_offset + i,
        sample index), whatever the chunking.

        Returns
        -------
        float64 array of shape (n_rows,)
        """
        self._check_buffers(params.shape[0], floating is float)
        if self.cfg.kind != FV_KIND_VAE:
            raise ValueError("log-likelihoods need a VAE (an autoencoder "
                             "defines no density)")
        if X.shape[1] != self.cfg.n_features:
            raise ValueError(f"X must have {self.cfg.n_features} columns")
        k = check_u64(k, "k")
        if not 1 <= k * max(X.shape[0], 1) < 2**62:
            raise ValueError(f"k must be >= 1 with k * n_rows < 2**62, got k={k} "
                             f"for {X.shape[0]} rows")
        self._check_cond(cond, X.shape[0])
        check_threads(n_threads)
        cdef int64_t n = X.shape[0], start, kk = k
        cdef int chunk
        cdef uint64_t s = check_u64(seed, "seed"), st = check_u64(stream, "stream")
        cdef uint64_t ro = check_u64(row_offset, "row_offset")
        cdef int64_t ldc = 0 if cond is None else cond.shape[1]
        out_arr = np.empty(n, dtype=np.float64)
        cdef double[::1] out = out_arr
        cdef floating[::1] work = self._work
        cdef double[::1] row_losses = self._row_losses
        if n == 0:
            return out_arr
        self._claim()
        with nogil:
            start = 0
            while start < n:
                chunk = <int> min(<int64_t> self.cfg.max_batch, n - start)
                log_likelihood_rows(&self.cfg, &params[0], &work[0],
                                    &row_losses[0], &X[start, 0], X.shape[1],
                                    NULL if ldc == 0 else &cond[start, 0], ldc,
                                    chunk, kk, s, st, ro + <uint64_t> start,
                                    &out[start], n_threads)
                start += chunk
        self._busy = False
        return out_arr


cdef int network_config(object network, fv_vae_config* cfg_out,
                        fv_optimizer* opt_out) except -1:
    cdef Network net
    if not isinstance(network, Network):
        raise TypeError(f"network must be a fastvae._core._step.Network, got "
                        f"{type(network).__module__}.{type(network).__qualname__}")
    net = <Network> network
    if cfg_out != NULL:
        cfg_out[0] = net.cfg
    if opt_out != NULL:
        opt_out[0] = net.opt
    return 0


def row_keys(const floating[:, ::1] X):
    """The 64-bit key of every row (fastvae/row_hash.h): the Philox row
    counter of its evaluation noise in elbo_terms (rows of [x | c] for a
    conditional network).

    Returns
    -------
    uint64 array of shape (n_rows,)
    """
    cdef Py_ssize_t i, n = X.shape[0]
    cdef int width = X.shape[1]
    out_arr = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] out = out_arr
    with nogil:
        for i in range(n):
            if floating is float:
                out[i] = fv_row_key_f32(&X[i, 0], width)
            else:
                out[i] = fv_row_key_f64(&X[i, 0], width)
    return out_arr
