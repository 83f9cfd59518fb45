"""One nogil call per training step: forward, loss, backward, update.

A call is a job of phases for fastvae's thread pool (src_c/fastvae/pool.h):
each phase is cut into blocks of fixed size (columns of a GEMM, rows of a
row-wise kernel, a range of parameters), whichever thread runs takes the next
block, and a phase starts when the one before it has completed. Every block
writes its own part of the output and every sum runs in a fixed order, so
results are bitwise equal for any thread count and any scheduling, and a
thread that another process keeps off its core holds nobody up (it only
delays the blocks it has started).

Why one module of about 900 lines: the job planner, the per-phase block
functions and the runner are module-level cdef functions that Cython
compiles into one C file, where gcc inlines them into the block loop.
Split across extension modules they would call each other through the C
API's function pointers. The Python-facing Network is in _network.pyx.
"""

from cython cimport floating
from libc.math cimport exp, isfinite, log, log1p
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memcpy, memset

from fastvae._core._blas cimport gemm_uses_own
from fastvae._core._columns cimport (
    fv_columns_expand_f32, fv_columns_expand_f64, fv_columns_means_f32,
    fv_columns_means_f64, fv_columns_rows_f32, fv_columns_rows_f64,
    fv_columns_rows_library_f32, fv_columns_rows_library_f64, fv_tail_mix_f32,
    fv_tail_mix_f64, fv_tail_mix_grad_f32, fv_tail_mix_grad_f64)
from fastvae._core._dense cimport (
    dense_forward_block, fv_dense_rows_f32, fv_dense_rows_f64,
    input_grad_block, weight_grad_block)
from fastvae._core._elementwise cimport (
    fv_bernoulli_draw_f32, fv_bernoulli_draw_f64, fv_bias_activation_f32,
    fv_bias_activation_f64, fv_column_sums_f32,
    fv_column_sums_f64, fv_count_nonfinite_f32, fv_count_nonfinite_f64,
    fv_dispatch_probe, fv_gaussian_learned_rows_f32,
    fv_gaussian_learned_rows_f64, fv_mask_f32, fv_mask_f64)
from fastvae._core._losses cimport (
    bernoulli_rows, gaussian_rows, kl_backward_rows, kl_rows)
from fastvae._core._numerics cimport (
    FV_ACT_IDENTITY, FV_KIND_VAE, FV_LIK_BERNOULLI, FV_LIK_GAUSSIAN,
    FV_LIK_GAUSSIAN_LEARNED, fv_clamp_logvar, fv_sigmoid_f32, fv_sigmoid_f64)
from fastvae._core._optim cimport optimizer_update_range
from fastvae._core._partition cimport fv_block_start, fv_n_col_blocks
from fastvae._core._reparam cimport (
    reparam_backward_rows, reparam_forward_rows, reparam_samples_backward_rows,
    reparam_samples_rows)
from fastvae._core._rng cimport (
    FV_STREAM_BINARIZE, FV_STREAM_CORRUPT, FV_STREAM_REPARAM,
    fv_normal_fill_f32, fv_normal_fill_f64)
from fastvae._core._pool cimport fv_pool_run
from fastvae._core._row_hash cimport fv_row_key_f32, fv_row_key_f64
from fastvae._core._sparse_rows cimport fv_sr_row_f32, fv_sr_row_f64
from fastvae._core._threads cimport fv_isa_bind, fv_isa_slot

# Run the header kernels at the process's ISA cap (src_c/fastvae/dispatch.h),
# not at the CPU's best level.
fv_isa_bind(fv_isa_slot())


def _dispatch_level():
    """The ISA level (1, 3, 4) this module's kernels run at now (tests)."""
    return fv_dispatch_probe(0)


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

MAX_THREADS = FV_MAX_TEAM

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
    # Input features per block of a sparse first layer's weight gradient.
    _CSR_FEATURES = 64
    # Counts below this take log1p from a table: single-cell counts are
    # mostly small, and a libm call per stored value costs as much as the
    # value's multiply-adds.
    _LOG1P_TABLE = 256

# log1p(c) of the small counts c, the same libm call (so the same bits) as
# for any other value.
cdef double _log1p_counts[_LOG1P_TABLE]
for _c in range(_LOG1P_TABLE):
    _log1p_counts[_c] = log1p(<double> _c)

# Phase kinds.
cdef enum:
    PH_INPUTS, PH_FORWARD, PH_LATENT, PH_RECON, PH_CHECK, PH_LOGSIGMA,
    PH_BACKWARD, PH_HEAD_GRAD, PH_VERDICT, PH_UPDATE,
    PH_ENCODE, PH_DECODE, PH_ELBO,
    PH_LL_DRAWS, PH_LL_LOSSES, PH_LL_ACCUM, PH_SAMPLES,
    PH_CSR_T, PH_CSR_FORWARD, PH_CSR_WGRAD


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
    const fv_csr* csr   # training on a CSR matrix's rows (else NULL)
    int n               # rows of this job (a window of pairs for log p(x))
    int row_block
    int n_dec           # rows through the decoder: n * n_samples in training
    int dec_block       # rows per block of the row-wise phases over n_dec
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

cdef inline bint _plain(const fv_vae_config* cfg, bint training) noexcept nogil:
    """True when the encoder reads the data rows as they are."""
    return cfg.n_cond == 0 and cfg.columns == NULL and not (
        training and (cfg.binarize or cfg.corrupt > 0))


cdef inline bint _has_tail(const fv_vae_config* cfg) noexcept nogil:
    """True when trained per-feature parameters (log-sigmas, dispersions)
    follow the layers: their gradient comes from per-row terms in sgrad."""
    return cfg.likelihood == FV_LIK_GAUSSIAN_LEARNED or (
        cfg.columns != NULL and cfg.logsigma_offset >= 0)


cdef inline const floating* _tail_of(const fv_vae_config* cfg,
                                     const floating* params,
                                     const floating* work,
                                     int64_t r) noexcept nogil:
    """Data row r's tails: the shared ones, or its own made from its
    conditions (tail_by_condition), or NULL without a tail."""
    if cfg.logsigma_offset < 0:
        return NULL
    if cfg.tail_by_condition:
        return work + cfg.tails_offset + r * cfg.n_features
    return params + cfg.logsigma_offset


cdef inline int64_t _tail_ld(const fv_vae_config* cfg) noexcept nogil:
    """The row stride of the tails of consecutive data rows."""
    return cfg.n_features if cfg.tail_by_condition else 0


cdef inline int _cdiv(int64_t a, int64_t b) noexcept nogil:
    return <int> ((a + b - 1) // b)


cdef void _job_init(fv_job* j, const fv_vae_config* cfg, int n) noexcept nogil:
    j.cfg = cfg
    j.n = n
    j.row_block = max(_MIN_BLOCK_ROWS, _cdiv(n, _ROW_BLOCKS))
    j.n_dec = n
    j.dec_block = j.row_block
    j.own_gemm = gemm_uses_own()
    j.status = 0
    j.bad = 0
    j.n_phases = 0
    j.rows = NULL
    j.csr = NULL
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


cdef inline int _dec_blocks(const fv_job* j) noexcept nogil:
    return _cdiv(j.n_dec, j.dec_block)


cdef inline int _rows_of(const fv_job* j, int layer) noexcept nogil:
    """Rows layer `layer` runs on: the decoder sees every (row, sample) pair."""
    return j.n_dec if layer >= j.cfg.n_encoder else j.n


cdef inline double* _pairs(const fv_vae_config* cfg, void* work,
                           int itemsize) noexcept nogil:
    """The per-pair doubles of a step with n_samples > 1."""
    return <double*> (<char*> work + cfg.pairs_offset * itemsize)


cdef void _plan_inputs(fv_job* j, bint training, void* work,
                       int itemsize) noexcept nogil:
    """Where the encoder input and the reconstruction target are, and the
    phase that makes them when the data cannot be read in place."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef int D = cfg.n_features
    cdef char* w = <char*> work
    j.training = training
    if j.csr != NULL:
        # the target rows are scattered from the nonzeros; the first layer
        # reads the nonzeros themselves (PH_CSR_FORWARD)
        j.x = NULL
        j.ld_x = 0
        j.xt = w + cfg.xtgt_offset * itemsize
        j.ld_t = D
        _add(j, PH_INPUTS, 0, _row_blocks(j))
        _add(j, PH_CSR_T, 0, 1)
        return
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
    j.ld_x = cfg.n_in + cfg.n_cond
    j.xt = w + cfg.xtgt_offset * itemsize
    j.ld_t = D
    _add(j, PH_INPUTS, 0, _row_blocks(j))


cdef void _plan_forward(fv_job* j, int first, int last) noexcept nogil:
    cdef int l
    cdef const fv_layer* L
    for l in range(first, last):
        L = &j.cfg.layers[l]
        if l == 0 and j.csr != NULL:
            _add(j, PH_CSR_FORWARD, 0, _row_blocks(j))
            continue
        _add(j, PH_FORWARD, l, _col_blocks(j, L.n_out, _rows_of(j, l), L.n_in))


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
    _add(j, PH_RECON, 0, _dec_blocks(j))
    if cfg.n_samples > 1:
        _add(j, PH_SAMPLES, 0, _row_blocks(j))
    _add(j, PH_CHECK, 0, 1)
    if _has_tail(cfg):
        _add(j, PH_LOGSIGMA, 0, _cdiv(cfg.n_features, _LOGSIGMA_BLOCK)
             * (cfg.n_cond if cfg.tail_by_condition else 1))
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
        if l == 0 and j.csr != NULL:
            # feature blocks of dW, then one block for db
            _add(j, PH_CSR_WGRAD, 0, _cdiv(L.n_in, _CSR_FEATURES) + 1, 0, cur,
                 ld_cur)
            break
        dx = -1 if l == 0 else cfg.grad_offset[which]
        nbx = 0 if l == 0 else _col_blocks(j, L.n_in, _rows_of(j, l), L.n_out)
        nbw = _col_blocks(j, L.n_out, _rows_of(j, l), L.n_in)
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
    cdef int W = cfg.n_in
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
        xin = work + cfg.xin_offset + i * (W + C)
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
        elif cfg.columns != NULL:
            if floating is float:
                fv_columns_expand_f32(tgt, cfg.columns, D, cfg.mask_offset, xin)
            else:
                fv_columns_expand_f64(tgt, cfg.columns, D, cfg.mask_offset, xin)
        else:
            memcpy(xin, tgt, D * sizeof(floating))
        if C > 0:
            memcpy(xin + W, Cond + r * ldc, C * sizeof(floating))
            memcpy(work + cfg.z_offset + i * (K + C) + K, Cond + r * ldc,
                   C * sizeof(floating))


cdef inline floating _csr_input(const fv_vae_config* cfg,
                               floating v) noexcept nogil:
    """The encoder's value of a stored entry: log1p of a count (columns, as
    fv_columns_expand), else the value."""
    cdef int c
    if cfg.columns != NULL and v != 0:
        c = <int> v if 0 < v < _LOG1P_TABLE else 0
        if c == v:
            return <floating> _log1p_counts[c]
        return <floating> log1p(<double> v)
    return v


cdef void _csr_inputs_rows(const fv_job* j, int64_t r0, int64_t r1,
                           floating* work) noexcept nogil:
    """Target rows scattered from the CSR rows, and the conditions' part of
    the decoder input and of the encoder input (log_likelihood_pairs'
    draws read them there, as from a dense row's)."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef const fv_csr* A = j.csr
    cdef const floating* data = <const floating*> A.data
    cdef int D = cfg.n_features, C = cfg.n_cond, K = cfg.latent_dim
    cdef int W = cfg.n_in
    cdef int64_t i, r, k
    cdef floating* tgt
    for i in range(r0, r1):
        r = j.rows[i] if j.rows != NULL else i
        tgt = work + cfg.xtgt_offset + i * D
        memset(tgt, 0, D * sizeof(floating))
        for k in range(A.indptr[r], A.indptr[r + 1]):
            tgt[A.indices[k]] = data[k]
        if C > 0:
            memcpy(work + cfg.z_offset + i * (K + C) + K,
                   <const floating*> j.Cond + r * j.ldc, C * sizeof(floating))
            memcpy(work + cfg.xin_offset + i * (W + C) + W,
                   <const floating*> j.Cond + r * j.ldc, C * sizeof(floating))


cdef void _csr_key_inputs_rows(const fv_job* j, int64_t r0, int64_t r1,
                               floating* work) noexcept nogil:
    """The x part of the dense encoder input [x | c] of rows [r0, r1), from
    their stored values: evaluation noise is keyed by the hash of that row
    (fastvae/row_hash.h), and the hash of a dense row is what the dense path
    computes. A network that reads a CSR matrix has one input per column
    (no categorical levels or missingness indicators), so column d's input
    is _csr_input of its value, as fv_columns_expand makes it."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef const fv_csr* A = j.csr
    cdef const floating* data = <const floating*> A.data
    cdef int W = cfg.n_in, C = cfg.n_cond
    cdef int64_t i, r, k
    cdef floating* xin
    for i in range(r0, r1):
        r = j.rows[i] if j.rows != NULL else i
        xin = work + cfg.xin_offset + i * (W + C)
        memset(xin, 0, W * sizeof(floating))
        for k in range(A.indptr[r], A.indptr[r + 1]):
            xin[A.indices[k]] = _csr_input(cfg, data[k])


cdef void _csr_transpose(const fv_job* j, floating* tag) noexcept nogil:
    """The minibatch's stored values by column (counting sort): column d's
    are t_rows / t_vals[col_start[d]:col_start[d + 1]], rows ascending."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef const fv_csr* A = j.csr
    cdef const floating* data = <const floating*> A.data
    cdef floating* vals = <floating*> A.t_vals
    cdef int64_t* start = A.col_start
    cdef int D = cfg.n_features
    cdef int64_t i, r, k, at
    cdef int d
    memset(start, 0, (D + 2) * sizeof(int64_t))
    for i in range(j.n):
        r = j.rows[i] if j.rows != NULL else i
        for k in range(A.indptr[r], A.indptr[r + 1]):
            start[A.indices[k] + 2] += 1
    for d in range(D):
        start[d + 2] += start[d + 1]
    for i in range(j.n):
        r = j.rows[i] if j.rows != NULL else i
        for k in range(A.indptr[r], A.indptr[r + 1]):
            at = start[A.indices[k] + 1]
            start[A.indices[k] + 1] = at + 1
            A.t_rows[at] = <int32_t> i
            vals[at] = _csr_input(cfg, data[k])


cdef void _csr_forward_rows(const fv_job* j, const floating* params,
                            floating* work, int64_t r0,
                            int64_t r1) noexcept nogil:
    """The first layer on rows [r0, r1) from their stored values (and
    conditions; fastvae/sparse_rows.h), then its bias and activation."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef const fv_layer* L = &cfg.layers[0]
    cdef const fv_csr* A = j.csr
    cdef const floating* data = <const floating*> A.data
    cdef const floating* W = params + L.w_offset
    cdef const floating* c
    cdef int H = L.n_out, n_cond
    cdef int64_t i, r, k, a, nk, k0, k1
    cdef floating* vals
    cdef floating* out
    for i in range(r0, r1):
        r = j.rows[i] if j.rows != NULL else i
        out = work + L.out_offset + i * H
        a = A.indptr[r]
        nk = A.indptr[r + 1] - a
        # the row's encoder values, made once, go in the x part of its
        # encoder-input row (unused here; the conditions after it are left
        # alone), n_in at a time: a canonical row has at most n_in
        vals = work + cfg.xin_offset + i * (cfg.n_in + cfg.n_cond)
        k0 = 0
        while True:
            k1 = min(nk, k0 + cfg.n_in)
            for k in range(k0, k1):
                vals[k - k0] = _csr_input(cfg, data[a + k])
            # the conditions' terms come last, with the last piece
            n_cond = cfg.n_cond if k1 == nk else 0
            c = <const floating*> j.Cond + r * j.ldc if n_cond > 0 else NULL
            if floating is float:
                fv_sr_row_f32(vals, A.indices + a + k0, k1 - k0, c, n_cond,
                              cfg.n_in, W, H, k0 > 0, out)
            else:
                fv_sr_row_f64(vals, A.indices + a + k0, k1 - k0, c, n_cond,
                              cfg.n_in, W, H, k0 > 0, out)
            if k1 == nk:
                break
            k0 = k1
    if floating is float:
        fv_bias_activation_f32(work + L.out_offset + r0 * H, H, <int> (r1 - r0),
                               H, params + L.b_offset, L.activation)
    else:
        fv_bias_activation_f64(work + L.out_offset + r0 * H, H, <int> (r1 - r0),
                               H, params + L.b_offset, L.activation)


cdef int64_t _csr_weight_grad(const fv_job* j, const fv_phase* ph, int b,
                              floating* work, floating* grads) noexcept nogil:
    """Block b of the first layer's gradient: dW rows of features
    [64 b, 64 b + 64) from the transposed stored values (conditions: every
    row), or, for the last block, db. Returns the non-finite count."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef const fv_layer* L = &cfg.layers[0]
    cdef const fv_csr* A = j.csr
    cdef const floating* vals = <const floating*> A.t_vals
    cdef const floating* dA = work + ph.a_off
    cdef const floating* g
    cdef int H = L.n_out, h, f, f0, f1
    cdef int64_t p, i
    cdef floating v
    cdef floating* dw
    if b == ph.n_blocks - 1:
        if floating is float:
            fv_column_sums_f32(dA, ph.a_ld, j.n, H, grads + L.b_offset)
            return fv_count_nonfinite_f32(grads + L.b_offset, 0, 1, H)
        else:
            fv_column_sums_f64(dA, ph.a_ld, j.n, H, grads + L.b_offset)
            return fv_count_nonfinite_f64(grads + L.b_offset, 0, 1, H)
    f0 = b * _CSR_FEATURES
    f1 = min(L.n_in, f0 + _CSR_FEATURES)
    for f in range(f0, f1):
        dw = grads + L.w_offset + <int64_t> f * H
        memset(dw, 0, H * sizeof(floating))
        if f < cfg.n_in:
            for p in range(A.col_start[f], A.col_start[f + 1]):
                v = vals[p]
                g = dA + <int64_t> A.t_rows[p] * ph.a_ld
                for h in range(H):
                    dw[h] += v * g[h]
        else:
            for i in range(j.n):
                v = (<const floating*> j.Cond)[
                    (j.rows[i] if j.rows != NULL else i) * j.ldc + f - cfg.n_in]
                g = dA + i * ph.a_ld
                for h in range(H):
                    dw[h] += v * g[h]
    dw = grads + L.w_offset + <int64_t> f0 * H
    if floating is float:
        return fv_count_nonfinite_f32(dw, H, f1 - f0, H)
    else:
        return fv_count_nonfinite_f64(dw, H, f1 - f0, H)


cdef void _inputs_rows(const fv_job* j, int64_t r0, int64_t r1,
                       floating* work) noexcept nogil:
    cdef const fv_vae_config* cfg = j.cfg
    cdef int64_t i
    cdef const floating* X = <const floating*> j.X
    cdef uint64_t seed = 0, step = 0, row_offset = 0
    if j.csr != NULL:
        _csr_inputs_rows(j, r0, r1, work)
        _tail_rows(j, r0, r1, work)
        return
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
    _tail_rows(j, r0, r1, work)


cdef void _tail_rows(const fv_job* j, int64_t r0, int64_t r1,
                     floating* work) noexcept nogil:
    """The tails of rows [r0, r1) from their conditions, once per data row
    (a row's latent samples share them), with the rows' other inputs."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef const floating* phi = <const floating*> j.params + cfg.logsigma_offset
    cdef const floating* c
    cdef int64_t i, r
    if not cfg.tail_by_condition:
        return
    for i in range(r0, r1):
        r = j.rows[i] if j.rows != NULL else i
        c = <const floating*> j.Cond + r * j.ldc
        if floating is float:
            fv_tail_mix_f32(c, cfg.n_cond, phi, cfg.n_features,
                            work + cfg.tails_offset + i * cfg.n_features)
        else:
            fv_tail_mix_f64(c, cfg.n_cond, phi, cfg.n_features,
                            work + cfg.tails_offset + i * cfg.n_features)


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


cdef void _latent_samples_rows(const fv_job* j, floating* work, double* kl_out,
                               int64_t r0, int64_t r1) noexcept nogil:
    """_latent_rows with n_samples = k > 1: k z rows per data row (pairs
    i * k + s), their log p(z) - log q(z | x) for the IWAE bound, the
    condition part of every pair's decoder input, and the per-row KL."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef int K = cfg.latent_dim, C = cfg.n_cond, W = cfg.n_in
    cdef int64_t k = cfg.n_samples, m = cfg.max_batch, i, q
    cdef const floating* H = work + cfg.layers[cfg.n_encoder - 1].out_offset
    cdef const floating* c
    cdef double* log_ratio = NULL
    if cfg.objective == FV_OBJ_IWAE:
        log_ratio = _pairs(cfg, work, sizeof(floating)) + m * k
    reparam_samples_rows(H, 2 * K, K, work + cfg.z_offset, K + C,
                         work + cfg.eps_offset, K, k, j.args.seed,
                         FV_STREAM_REPARAM, j.args.step,
                         <uint64_t> j.args.row_offset, log_ratio, r0, r1)
    kl_rows(H, 2 * K, K, kl_out, r0, r1)
    if C > 0:
        for i in range(r0, r1):
            # a CSR minibatch has no expanded input rows: its conditions
            # are read where the caller keeps them
            if j.csr != NULL:
                c = <const floating*> j.Cond + (
                    j.rows[i] if j.rows != NULL else i) * j.ldc
            else:
                c = work + cfg.xin_offset + i * (W + C) + W
            for q in range(i * k, (i + 1) * k):
                memcpy(work + cfg.z_offset + q * (K + C) + K, c,
                       C * sizeof(floating))


cdef void _recon_pairs(const fv_job* j, const floating* params, floating* work,
                       int64_t p0, int64_t p1, int tid) noexcept nogil:
    """The reconstruction terms (and their gradients) of pairs [p0, p1) of a
    step with n_samples = k > 1, runs of equal data row sharing the target
    (leading dimension 0). The ELBO's gradient is scaled by 1 / (batch * k)
    here; the IWAE bound's by each pair's weight, once the weights are known
    (_combine_samples)."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef int64_t k = cfg.n_samples, p, r, run
    cdef double scale = 1.0
    cdef double* pair_recon = _pairs(cfg, work, sizeof(floating))
    cdef const floating* xt = <const floating*> j.xt
    if cfg.objective == FV_OBJ_ELBO:
        scale = 1.0 / (<double> j.args.global_batch * k)
    p = p0
    while p < p1:
        r = p // k
        run = min(p1, (r + 1) * k)
        _loss_rows(cfg, params, work,
                   work + cfg.layers[cfg.n_layers - 1].out_offset,
                   xt + r * j.ld_t, 0, _tail_of(cfg, params, work, r), 0,
                   scale, work + cfg.grad_offset[0], p, run, tid, pair_recon)
        p = run


cdef void _combine_samples(const fv_job* j, floating* work, double* recon,
                           const double* kl, int64_t r0,
                           int64_t r1) noexcept nogil:
    """Per data row, from its k pairs (in sample order): the ELBO's mean
    reconstruction term; or the IWAE bound -log (1/k) sum_s w_s, whose
    gradient is sum_s (w_s / sum w) grad(-log w_s): each pair's output
    gradient (and log-sigma terms) is scaled by its normalized weight over
    the batch, and kl_weight times that weight goes to the head gradient."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef int D = cfg.n_out, T = cfg.n_features, d
    cdef int64_t k = cfg.n_samples, m = cfg.max_batch, i, s, q
    cdef double* pair_recon = _pairs(cfg, work, sizeof(floating))
    cdef double* log_ratio = pair_recon + m * k
    cdef double* weight = pair_recon + 2 * m * k
    cdef double beta = j.args.kl_weight
    cdef double inv_batch = 1.0 / j.args.global_batch
    cdef double total, top, a
    cdef floating* g
    cdef floating fa
    for i in range(r0, r1):
        if cfg.objective == FV_OBJ_ELBO:
            total = 0.0
            for s in range(k):
                total += pair_recon[i * k + s]
            recon[i] = total / k
            continue
        top = -pair_recon[i * k] + beta * log_ratio[i * k]
        for s in range(1, k):
            q = i * k + s
            top = max(top, -pair_recon[q] + beta * log_ratio[q])
        total = 0.0
        for s in range(k):
            q = i * k + s
            total += exp(-pair_recon[q] + beta * log_ratio[q] - top)
        # the row's loss, split so that loss = recon + kl_weight * KL
        recon[i] = log(<double> k) - top - log(total) - beta * kl[i]
        for s in range(k):
            q = i * k + s
            a = exp(-pair_recon[q] + beta * log_ratio[q] - top) / total * inv_batch
            weight[q] = beta * a
            fa = <floating> a
            g = work + cfg.grad_offset[0] + q * D
            for d in range(D):
                g[d] = g[d] * fa
            if _has_tail(cfg):
                g = work + cfg.sgrad_offset + q * T
                for d in range(T):
                    g[d] = g[d] * fa


cdef void _latent_keyed_rows(const fv_vae_config* cfg, floating* work,
                             const floating* x, int64_t ldx, double* kl_out,
                             uint64_t seed, uint64_t stream, uint64_t step,
                             uint64_t draw, int64_t r0,
                             int64_t r1) noexcept nogil:
    """_latent_rows for evaluation: row i's eps comes from counter (block,
    key(x_i), step, draw), key the hash of the row's encoder input
    (fastvae/row_hash.h), so it does not depend on where the row sits."""
    cdef int K = cfg.latent_dim, C = cfg.n_cond
    cdef int width = cfg.n_in + C
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
                     int64_t ldx, const floating* tail, int64_t ld_tail,
                     double grad_scale, floating* grad, int64_t r0, int64_t r1,
                     int tid, double* recon) noexcept nogil:
    """-log p(x_i | decoder output row i) for rows [r0, r1) and, with grad,
    grad_scale times its gradient (for a learned Gaussian also the per-row
    log-sigma gradient terms, into sgrad). Columns read row i's tails at
    tail + i * ld_tail (_tail_of)."""
    cdef int D = cfg.n_features
    cdef floating* sgrad = work + cfg.sgrad_offset if grad != NULL else NULL
    cdef floating* scratch = work + cfg.scratch_offset + tid * fv_round_up(
        max(D, cfg.n_out))
    if cfg.columns != NULL and cfg.library:
        if floating is float:
            fv_columns_rows_library_f32(
                out, cfg.n_out, cfg.n_out, x, ldx, D, cfg.columns, tail,
                ld_tail, grad_scale, grad, cfg.n_out,
                sgrad if _has_tail(cfg) else NULL, D, recon, r0, r1, scratch)
        else:
            fv_columns_rows_library_f64(
                out, cfg.n_out, cfg.n_out, x, ldx, D, cfg.columns, tail,
                ld_tail, grad_scale, grad, cfg.n_out,
                sgrad if _has_tail(cfg) else NULL, D, recon, r0, r1, scratch)
    elif cfg.columns != NULL:
        if floating is float:
            fv_columns_rows_f32(out, cfg.n_out, x, ldx, D, cfg.columns,
                                tail, ld_tail, grad_scale, grad, cfg.n_out,
                                sgrad if _has_tail(cfg) else NULL, D, recon,
                                r0, r1)
        else:
            fv_columns_rows_f64(out, cfg.n_out, x, ldx, D, cfg.columns,
                                tail, ld_tail, grad_scale, grad, cfg.n_out,
                                sgrad if _has_tail(cfg) else NULL, D, recon,
                                r0, r1)
    elif cfg.likelihood == FV_LIK_BERNOULLI:
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
    """Mean of p(x | z): sigmoid of the logits, the Gaussian mean, or per
    column (fastvae/columns.h)."""
    cdef int64_t i
    cdef int d, D = cfg.n_features
    cdef const floating* Y = work + cfg.layers[cfg.n_layers - 1].out_offset
    cdef const floating* y
    cdef floating* o
    if cfg.columns != NULL:
        if floating is float:
            fv_columns_means_f32(Y, cfg.n_out, D, cfg.columns, cfg.library,
                                 out, ldo, r0, r1)
        else:
            fv_columns_means_f64(Y, cfg.n_out, D, cfg.columns, cfg.library,
                                 out, ldo, r0, r1)
        return
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
    cdef int K = cfg.latent_dim, C = cfg.n_cond, W = cfg.n_in, c
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
            memcpy(z + K, work + cfg.xin_offset + r * (W + C) + W,
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
                   0, _tail_of(cfg, params, work, r), 0, 1.0, NULL, j, run,
                   tid, recon)
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


cdef void _tail_mix_grad(fv_job* j, int b, const floating* work,
                         floating* grads) noexcept nogil:
    """Block b of the tails' gradient when they come from the conditions:
    columns [64 c, 64 c + 64) of phi's row q (b = q * blocks per row + c),
    sum over the decoder rows in order of c_iq times the row's terms."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef int D = cfg.n_features
    cdef int per_row = _cdiv(D, _LOGSIGMA_BLOCK)
    cdef int q = b // per_row
    cdef int64_t c0 = <int64_t> (b % per_row) * _LOGSIGMA_BLOCK
    cdef int n = <int> (min(<int64_t> D, c0 + _LOGSIGMA_BLOCK) - c0)
    cdef floating* out = grads + cfg.logsigma_offset + <int64_t> q * D + c0
    cdef int64_t bad
    if floating is float:
        fv_tail_mix_grad_f32(work + cfg.sgrad_offset + c0, D, j.n_dec,
                             cfg.n_samples, <const float*> j.Cond, j.ldc,
                             j.rows, q, n, out)
        bad = fv_count_nonfinite_f32(out, 0, 1, n)
    else:
        fv_tail_mix_grad_f64(work + cfg.sgrad_offset + c0, D, j.n_dec,
                             cfg.n_samples, <const double*> j.Cond, j.ldc,
                             j.rows, q, n, out)
        bad = fv_count_nonfinite_f64(out, 0, 1, n)
    if bad:
        fv_atomic_add_i64(&j.bad, bad)


cdef void _encoder_rows(const fv_job* j, const floating* params,
                        floating* work, int64_t r0, int64_t r1) noexcept nogil:
    """The encoder of rows [r0, r1) for inference, each row by itself: its
    input made when it is not read in place, or the first layer from a CSR
    matrix's stored values."""
    cdef const fv_vae_config* cfg = j.cfg
    cdef int first = 0
    if j.csr != NULL:
        _csr_forward_rows(j, params, work, r0, r1)
        first = 1
    elif not _plain(cfg, False):
        _inputs_rows(j, r0, r1, work)
    _forward_rows(cfg, first, cfg.n_encoder, params, work,
                  <const floating*> j.x, j.ld_x, r0, r1)


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
        dense_forward_block(_rows_of(j, ph.layer), L.n_in, L.n_out, inp,
                            <int> ld_in,
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
                _rows_of(j, ph.layer), L.n_in, L.n_out, inp, <int> ld_in,
                work + ph.a_off,
                <int> ph.a_ld, grads + L.w_offset, grads + L.b_offset,
                _col_start(j, L.n_out, ph.n_split, b),
                _col_start(j, L.n_out, ph.n_split, b + 1))
            if bad:
                fv_atomic_add_i64(&j.bad, bad)
        else:
            nb = ph.n_blocks - ph.n_split
            input_grad_block(
                _rows_of(j, ph.layer), L.n_in, L.n_out, inp, <int> ld_in,
                params + L.w_offset,
                work + ph.a_off, <int> ph.a_ld, work + ph.x_off, L.n_in,
                FV_ACT_IDENTITY if ph.layer == cfg.n_encoder
                else cfg.layers[ph.layer - 1].activation,
                _col_start(j, L.n_in, nb, b - ph.n_split),
                _col_start(j, L.n_in, nb, b - ph.n_split + 1))
        return
    if ph.kind == PH_CSR_WGRAD:
        bad = _csr_weight_grad(j, ph, b, work, grads)
        if bad:
            fv_atomic_add_i64(&j.bad, bad)
        return
    if ph.kind == PH_CSR_T:
        _csr_transpose(j, work)
        return
    if ph.kind == PH_LOGSIGMA and cfg.tail_by_condition:
        _tail_mix_grad(j, b, work, grads)
        return
    if ph.kind == PH_LOGSIGMA:
        # d loss / d log-sigma: column sums of the per-row terms, rows in order
        c0 = <int64_t> b * _LOGSIGMA_BLOCK
        c1 = min(<int64_t> D, c0 + _LOGSIGMA_BLOCK)
        if floating is float:
            fv_column_sums_f32(work + cfg.sgrad_offset + c0, D, j.n_dec,
                               <int> (c1 - c0), grads + cfg.logsigma_offset + c0)
            bad = fv_count_nonfinite_f32(grads + cfg.logsigma_offset + c0, 0, 1,
                                         <int> (c1 - c0))
        else:
            fv_column_sums_f64(work + cfg.sgrad_offset + c0, D, j.n_dec,
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
    if ph.kind == PH_RECON:
        r0 = <int64_t> b * j.dec_block
        r1 = min(<int64_t> j.n_dec, r0 + j.dec_block)
        if cfg.n_samples > 1:
            _recon_pairs(j, params, work, r0, r1, tid)
        else:
            _loss_rows(cfg, params, work,
                       work + cfg.layers[cfg.n_layers - 1].out_offset,
                       <const floating*> j.xt, j.ld_t,
                       _tail_of(cfg, params, work, 0), _tail_ld(cfg),
                       1.0 / j.args.global_batch, work + cfg.grad_offset[0],
                       r0, r1, tid, recon)
        return
    _block_rows(j, b, &r0, &r1)
    if ph.kind == PH_INPUTS:
        _inputs_rows(j, r0, r1, work)
    elif ph.kind == PH_CSR_FORWARD:
        _csr_forward_rows(j, params, work, r0, r1)
    elif ph.kind == PH_LATENT:
        if cfg.n_samples > 1:
            _latent_samples_rows(j, work, kl, r0, r1)
        else:
            _latent_rows(cfg, work, kl, j.args.seed, FV_STREAM_REPARAM,
                         j.args.step, <uint64_t> j.args.row_offset, 0, r0, r1)
    elif ph.kind == PH_SAMPLES:
        _combine_samples(j, work, recon, kl, r0, r1)
    elif ph.kind == PH_HEAD_GRAD:
        H = work + cfg.layers[cfg.n_encoder - 1].out_offset
        if cfg.n_samples == 1:
            reparam_backward_rows(H, 2 * K, K, work + cfg.eps_offset, K,
                                  work + ph.a_off, <int> ph.a_ld,
                                  work + cfg.dh_offset, 2 * K, r0, r1)
        elif cfg.objective == FV_OBJ_ELBO:
            reparam_samples_backward_rows(
                H, 2 * K, K, work + cfg.eps_offset, K, work + cfg.z_offset,
                K + C, work + ph.a_off, <int> ph.a_ld, cfg.n_samples, NULL,
                0.0, work + cfg.dh_offset, 2 * K, r0, r1)
        else:
            reparam_samples_backward_rows(
                H, 2 * K, K, work + cfg.eps_offset, K, work + cfg.z_offset,
                K + C, work + ph.a_off, <int> ph.a_ld, cfg.n_samples,
                _pairs(cfg, work, sizeof(floating)) + 2 * m * cfg.n_samples,
                0.5 * j.args.kl_weight / j.args.global_batch,
                work + cfg.dh_offset, 2 * K, r0, r1)
        if cfg.n_samples == 1 or cfg.objective == FV_OBJ_ELBO:
            kl_backward_rows(H, 2 * K, K,
                             j.args.kl_weight * (1.0 / j.args.global_batch),
                             work + cfg.dh_offset, 2 * K, r0, r1)
    elif ph.kind == PH_ENCODE:
        _encoder_rows(j, params, work, r0, r1)
        H = work + cfg.layers[cfg.n_encoder - 1].out_offset
        nb = fv_head_width(cfg)
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
        _encoder_rows(j, params, work, r0, r1)
        ld_in = j.ld_x
        if j.csr != NULL:
            _inputs_rows(j, r0, r1, work)
            _csr_key_inputs_rows(j, r0, r1, work)
            x = work + cfg.xin_offset
            ld_in = cfg.n_in + C
        _latent_keyed_rows(cfg, work, x, ld_in, j.kl_out, j.seed, j.stream,
                           j.step, j.draw, r0, r1)
        _forward_rows(cfg, cfg.n_encoder, cfg.n_layers, params, work, x,
                      j.ld_x, r0, r1)
        _loss_rows(cfg, params, work,
                   work + cfg.layers[cfg.n_layers - 1].out_offset,
                   <const floating*> j.xt, j.ld_t,
                   _tail_of(cfg, params, work, 0), _tail_ld(cfg), 1.0, NULL,
                   r0, r1, tid, j.recon_out)
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
                   int batch, double* sums_out,
                   const fv_csr* csr=NULL) noexcept nogil:
    cdef fv_job j
    _job_init(&j, cfg, batch)
    j.csr = csr
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
    if cfg.n_samples > 1:
        j.n_dec = batch * cfg.n_samples
        j.dec_block = max(_MIN_BLOCK_ROWS, _cdiv(j.n_dec, _ROW_BLOCKS))
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


cdef int train_step_csr(const fv_vae_config* cfg, const fv_optimizer* opt,
                        const fv_step_args* args, floating* params,
                        floating* grads, floating* state1, floating* state2,
                        floating* work, double* row_losses, const fv_csr* csr,
                        const floating* Cond, int64_t ldc, const int64_t* rows,
                        int batch, double* sums_out) noexcept nogil:
    return _step_job(cfg, opt, args, params, grads, state1, state2, work,
                     row_losses, NULL, 0, Cond, ldc, rows, batch, sums_out,
                     csr)


cdef int compute_gradients_csr(const fv_vae_config* cfg,
                               const fv_step_args* args,
                               const floating* params, floating* grads,
                               floating* work, double* row_losses,
                               const fv_csr* csr, const floating* Cond,
                               int64_t ldc, const int64_t* rows, int batch,
                               double* sums_out) noexcept nogil:
    return _step_job(cfg, NULL, args, <floating*> params, grads, NULL, NULL,
                     work, row_losses, NULL, 0, Cond, ldc, rows, batch,
                     sums_out, csr)


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


cdef void apply_update(const fv_vae_config* cfg, const fv_optimizer* opt,
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
    _encode(cfg, params, work, X, ldx, NULL, Cond, ldc, n, H_out, ldh,
            n_threads)


cdef void encode_rows_csr(const fv_vae_config* cfg, const floating* params,
                          floating* work, const fv_csr* csr,
                          const floating* Cond, int64_t ldc, int n,
                          floating* H_out, int64_t ldh,
                          int n_threads) noexcept nogil:
    _encode(cfg, params, work, NULL, 0, csr, Cond, ldc, n, H_out, ldh,
            n_threads)


cdef void _encode(const fv_vae_config* cfg, const floating* params,
                  floating* work, const floating* X, int64_t ldx,
                  const fv_csr* csr, const floating* Cond, int64_t ldc, int n,
                  floating* H_out, int64_t ldh, int n_threads) noexcept nogil:
    cdef fv_job j
    _inference_job(&j, cfg, params, work, X, ldx, Cond, ldc, n)
    j.csr = csr
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
    _elbo(cfg, params, work, X, ldx, NULL, Cond, ldc, n, seed, stream, step,
          draw, recon_out, kl_out, n_threads)


cdef void elbo_rows_csr(const fv_vae_config* cfg, const floating* params,
                        floating* work, const fv_csr* csr,
                        const floating* Cond, int64_t ldc, int n,
                        uint64_t seed, uint64_t stream, uint64_t step,
                        uint64_t draw, double* recon_out, double* kl_out,
                        int n_threads) noexcept nogil:
    _elbo(cfg, params, work, NULL, 0, csr, Cond, ldc, n, seed, stream, step,
          draw, recon_out, kl_out, n_threads)


cdef void _elbo(const fv_vae_config* cfg, const floating* params,
                floating* work, const floating* X, int64_t ldx,
                const fv_csr* csr, const floating* Cond, int64_t ldc, int n,
                uint64_t seed, uint64_t stream, uint64_t step, uint64_t draw,
                double* recon_out, double* kl_out,
                int n_threads) noexcept nogil:
    cdef fv_job j
    _inference_job(&j, cfg, params, work, X, ldx, Cond, ldc, n)
    j.csr = csr
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
    log_likelihood_begin(cfg, params, work, row_losses, X, ldx, Cond, ldc, n,
                         n_threads)
    log_likelihood_pairs(cfg, params, work, row_losses, X, ldx, Cond, ldc, n,
                         k, seed, stream, row_offset, 0, n * k, n_threads)
    log_likelihood_finish(cfg, row_losses, n, k, out)


cdef void log_likelihood_begin(const fv_vae_config* cfg,
                               const floating* params, floating* work,
                               double* row_losses, const floating* X,
                               int64_t ldx, const floating* Cond, int64_t ldc,
                               int n, int n_threads) noexcept nogil:
    _ll_begin(cfg, params, work, row_losses, X, ldx, NULL, Cond, ldc, n,
              n_threads)


cdef void log_likelihood_begin_csr(const fv_vae_config* cfg,
                                   const floating* params, floating* work,
                                   double* row_losses, const fv_csr* csr,
                                   const floating* Cond, int64_t ldc, int n,
                                   int n_threads) noexcept nogil:
    _ll_begin(cfg, params, work, row_losses, NULL, 0, csr, Cond, ldc, n,
              n_threads)


cdef void _ll_begin(const fv_vae_config* cfg, const floating* params,
                    floating* work, double* row_losses, const floating* X,
                    int64_t ldx, const fv_csr* csr, const floating* Cond,
                    int64_t ldc, int n, int n_threads) noexcept nogil:
    cdef fv_job j
    # The data rows (with their conditions) stay in the workspace while the
    # decoder runs over windows of (row, sample) pairs.
    _inference_job(&j, cfg, params, work, X, ldx, Cond, ldc, n)
    j.csr = csr
    j.row_losses = row_losses
    j.x = work + cfg.xin_offset
    j.ld_x = cfg.n_in + cfg.n_cond
    _add(&j, PH_INPUTS, 0, _row_blocks(&j))
    _plan_forward(&j, 0, cfg.n_encoder)
    _run(&j, n_threads, work)


cdef void log_likelihood_pairs(const fv_vae_config* cfg,
                               const floating* params, floating* work,
                               double* row_losses, const floating* X,
                               int64_t ldx, const floating* Cond, int64_t ldc,
                               int n, int64_t k, uint64_t seed,
                               uint64_t stream, uint64_t row_offset,
                               int64_t q_begin, int64_t q_end,
                               int n_threads) noexcept nogil:
    cdef fv_job j
    cdef int64_t q0 = q_begin
    while q0 < q_end:
        _inference_job(&j, cfg, params, work, X, ldx, Cond, ldc,
                       <int> min(<int64_t> cfg.max_batch, q_end - q0))
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


cdef void log_likelihood_finish(const fv_vae_config* cfg, double* row_losses,
                                int n, int64_t k, double* out) noexcept nogil:
    cdef int64_t r
    cdef double* top = row_losses + 2 * cfg.max_batch + FV_MAX_TEAM
    cdef double* total = top + cfg.max_batch
    for r in range(n):
        out[r] = top[r] + log(total[r]) - log(<double> k)
