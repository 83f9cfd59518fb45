# The whole training step of a VAE or autoencoder as one nogil call, and the
# forward passes the models' inference methods use.
#
# Network: encoder layers [0, n_encoder) map [x | c] (n_features + n_cond)
# to the head: [mu | logvar] (2 * latent_dim) for a VAE, the code z
# (latent_dim) for an autoencoder (identity activation). Decoder layers
# [n_encoder, n_layers) map [z | c] (latent_dim + n_cond) to the likelihood's
# parameters (n_features: Bernoulli logits or Gaussian means, identity
# activation). c is the condition of a conditional model (n_cond = 0: none).
# Parameters: one flat buffer; layer l's W (n_in, n_out) row-major starts at
# w_offset and b (n_out,) at b_offset; a learned Gaussian likelihood keeps
# n_features log-sigmas at logsigma_offset. Gradients and optimizer states use
# the same layout. The workspace holds every activation for up to max_batch
# rows; the struct stores offsets, not pointers, so it is the same for
# float32 and float64.

from cython cimport floating
from libc.stdint cimport int32_t, int64_t, uint64_t

from fastvae._core._columns cimport fv_column
from fastvae._core._numerics cimport FV_KIND_VAE
from fastvae._core._optim cimport fv_optimizer

cdef enum:
    FV_MAX_LAYERS = 32
    # Training objectives of a step with n_samples > 1 (fv_vae_config.objective).
    FV_OBJ_ELBO = 0     # the ELBO averaged over the samples (closed-form KL)
    FV_OBJ_IWAE = 1     # the importance-weighted bound (Burda et al. 2016)
    # Most threads one call may use: the step keeps one per-thread slot for
    # its cross-thread verdicts in row_losses.
    FV_MAX_TEAM = 256

# Doubles of the row_losses buffer every entry point takes.
cdef inline int64_t FV_ROW_SCRATCH(int64_t max_batch) noexcept nogil:
    return 4 * max_batch + FV_MAX_TEAM

ctypedef struct fv_layer:
    int n_in
    int n_out
    int activation
    int64_t w_offset
    int64_t b_offset
    int64_t out_offset      # output (max_batch rows, decoder: max_batch * n_samples)

ctypedef struct fv_vae_config:
    int n_layers
    int n_encoder
    fv_layer layers[FV_MAX_LAYERS]
    int kind                # FV_KIND_VAE or FV_KIND_AE (numerics.h)
    int n_features
    int latent_dim
    int n_cond              # width of the condition vector (0: none)
    int likelihood          # FV_LIK_BERNOULLI, _GAUSSIAN or _GAUSSIAN_LEARNED
    # Per-column likelihoods (fastvae/columns.h; NULL: `likelihood` for every
    # feature): n_features columns, read through the pointer (the Network
    # owns the array). The encoder reads each row expanded to n_in values
    # (one-hot levels, log1p counts, missingness indicators at mask_offset,
    # -1: none), the decoder writes n_out; both are n_features without
    # columns. logsigma_offset then holds one tail parameter per column.
    const fv_column* columns
    int n_in
    int n_out
    int mask_offset
    # With columns, all of them counts: column d's mean is softmax over the D
    # count outputs times the row's library size (its total count; scVI).
    int library
    double sigma            # fixed Gaussian observation noise
    int64_t logsigma_offset  # learned log-sigmas in params (n_features)
    # With columns and n_cond > 0: the tail holds n_cond rows of n_features
    # (phi) and row i's tails are sum_b c_ib phi_b (fv_tail_mix; scVI's
    # dispersion "gene-batch" with one-hot batches), made with the inputs
    # into the tails region.
    int tail_by_condition
    double corrupt          # training: probability of zeroing an input value
    int binarize            # training: targets ~ Bernoulli(x), redrawn each step
    int parts               # GEMM column blocks (fastvae/partition.h)
    int max_batch
    # Training only: z samples per row. 1 is the plain step; with k > 1 the
    # decoder runs on the k * batch (row, sample) pairs, pair q being sample
    # q % k of row q // k, and its regions below hold max_batch * k rows.
    int n_samples
    int objective           # FV_OBJ_ELBO or FV_OBJ_IWAE (used when n_samples > 1)
    int64_t n_params
    int64_t xin_offset      # encoder input [x~ | c] (max_batch, n_in + n_cond)
    int64_t xtgt_offset     # reconstruction target (max_batch, n_features)
    int64_t eps_offset      # (max_batch * n_samples, latent_dim)
    # decoder input [z | c] (max_batch * n_samples, latent_dim + n_cond)
    int64_t z_offset
    int64_t dh_offset       # gradient at the VAE head (max_batch, 2 * latent_dim)
    # per-row log-sigma gradient terms (max_batch * n_samples, n_features)
    int64_t sgrad_offset
    int64_t scratch_offset  # per-thread scratch (FV_MAX_TEAM, n_features)
    int64_t tails_offset    # tail_by_condition: row tails (max_batch, n_features)
    # n_samples > 1: three doubles per pair (reconstruction term, log p(z) -
    # log q(z | x), head-gradient weight), 2 * 3 * max_batch * n_samples
    # elements (enough doubles for float32 and float64 workspaces)
    int64_t pairs_offset
    int64_t grad_offset[2]  # ping-pong gradients (max_batch * n_samples, max width)
    int64_t work_size

ctypedef struct fv_step_args:
    uint64_t seed
    uint64_t step           # 0-based global step: the RNG counter; Adam's t = step + 1
    int64_t row_offset      # global index of this call's first minibatch row
    int global_batch        # rows the loss is averaged over (all ranks)
    double kl_weight        # beta, times any warm-up factor
    int n_threads

# Forward, loss, backward and optimizer update for the minibatch
# X[rows[0]], ..., X[rows[batch - 1]] (rows NULL: the first `batch` rows),
# with conditions Cond (n, n_cond, leading dimension ldc; NULL when n_cond is
# 0) gathered alike. batch <= cfg.max_batch; args.n_threads <= FV_MAX_TEAM;
# row_losses holds FV_ROW_SCRATCH(cfg.max_batch) doubles (per-row
# reconstruction and KL terms, then scratch). sums_out[0] = sum of
# per-row reconstruction terms, sums_out[1] = sum of per-row KL terms.
# With cfg.n_samples = k > 1, row i draws k samples z_s (eps from counter
# (block, row_offset + i, step, s): sample 0 is the plain step's) and the
# loss is, for FV_OBJ_ELBO, the mean over s of -log p(x | z_s) plus
# kl_weight * KL; for FV_OBJ_IWAE, -log (1/k) sum_s w_s with log w_s =
# log p(x | z_s) + kl_weight * (log p(z_s) - log q(z_s | x)). The per-row KL
# term stays the closed-form KL and an IWAE row's reconstruction term is its
# loss minus kl_weight * KL, so that loss = (sums_out[0] + kl_weight *
# sums_out[1]) / global_batch holds for every objective.
# Returns 0; 1 when the loss is not finite; 2 when the loss is finite but a
# gradient is not. On 1 and 2 params and optimizer state are left untouched.
cdef int train_step(const fv_vae_config* cfg, const fv_optimizer* opt,
                    const fv_step_args* args, floating* params,
                    floating* grads, floating* state1, floating* state2,
                    floating* work, double* row_losses,
                    const floating* X, int64_t ldx,
                    const floating* Cond, int64_t ldc, const int64_t* rows,
                    int batch, double* sums_out) noexcept nogil

# A CSR matrix the training step reads its minibatch rows from, and scratch
# for the minibatch's transpose. The first layer then runs on the nonzeros:
# forward h_i = b + sum over row i's stored values v at column d of f(v) W[d]
# (f = log1p with count columns, else the value itself), and the weight
# gradient dW[d] = sum over column d's values, rows in minibatch order, of
# f(v) dA_i, each feature by one thread, so results do not depend on the
# thread count. It serves a network whose encoder reads the data values as
# they are (one likelihood, no binarize or corrupt) or log1p of counts
# (every column a count, no missingness indicators).
ctypedef struct fv_csr:
    const void* data            # stored values, the step's floating type
    const int32_t* indices      # their columns
    const int64_t* indptr       # row r's values: [indptr[r], indptr[r + 1])
    int64_t* col_start          # scratch: n_features + 2 entries
    int32_t* t_rows             # scratch: one per stored value of the minibatch
    void* t_vals                # scratch: as many values of the floating type

# train_step and compute_gradients on the rows of a CSR matrix (above).
cdef int train_step_csr(const fv_vae_config* cfg, const fv_optimizer* opt,
                        const fv_step_args* args, floating* params,
                        floating* grads, floating* state1, floating* state2,
                        floating* work, double* row_losses, const fv_csr* csr,
                        const floating* Cond, int64_t ldc, const int64_t* rows,
                        int batch, double* sums_out) noexcept nogil
cdef int compute_gradients_csr(const fv_vae_config* cfg,
                               const fv_step_args* args,
                               const floating* params, floating* grads,
                               floating* work, double* row_losses,
                               const fv_csr* csr, const floating* Cond,
                               int64_t ldc, const int64_t* rows, int batch,
                               double* sums_out) noexcept nogil

# The same without the update: grads receives this call's rows' gradient
# contribution (averaged over args.global_batch), for data-parallel training.
cdef int compute_gradients(const fv_vae_config* cfg, const fv_step_args* args,
                           const floating* params, floating* grads,
                           floating* work, double* row_losses,
                           const floating* X, int64_t ldx,
                           const floating* Cond, int64_t ldc,
                           const int64_t* rows, int batch,
                           double* sums_out) noexcept nogil

# Inference (encode_rows, decode_rows, elbo_rows) runs the row-invariant
# dense kernel (fastvae/dense_rows.h): each output row is a pure function of
# its input row, bitwise, for any batch, order, chunk and thread count.
# Training and log_likelihood_rows use BLAS.

# Encoder head (VAE: [mu | raw logvar]; autoencoder: z) of n <= max_batch
# rows of X (conditions Cond) into H_out with leading dimension ldh.
cdef void encode_rows(const fv_vae_config* cfg, const floating* params,
                      floating* work, const floating* X, int64_t ldx,
                      const floating* Cond, int64_t ldc, int n,
                      floating* H_out, int64_t ldh, int n_threads) noexcept nogil

# Mean of p(x | z, c) (sigmoid of the logits, or the Gaussian mean) for n <=
# max_batch rows of Z into out (n, n_features) with leading dimension ldo.
cdef void decode_rows(const fv_vae_config* cfg, const floating* params,
                      floating* work, const floating* Z, int64_t ldz,
                      const floating* Cond, int64_t ldc, int n,
                      floating* out, int64_t ldo, int n_threads) noexcept nogil

# Per-row reconstruction (-log p(x|z), one z per row from stream `stream`;
# the code itself for an autoencoder) and KL terms of the negative ELBO for
# n <= max_batch rows of X. Row i's eps comes from counter (block, key(row),
# step, draw), key the hash of its encoder input [x | c]
# (fastvae/row_hash.h): a pure function of the row.
cdef void elbo_rows(const fv_vae_config* cfg, const floating* params,
                    floating* work, const floating* X, int64_t ldx,
                    const floating* Cond, int64_t ldc, int n,
                    uint64_t seed, uint64_t stream, uint64_t step,
                    uint64_t draw, double* recon_out, double* kl_out,
                    int n_threads) noexcept nogil

# encode_rows and elbo_rows on the n <= max_batch rows of a CSR matrix
# (csr.indptr[0], ..., csr.indptr[n]; no transpose scratch needed): the
# first layer runs on the stored values, every row by itself, so the
# numbers do not depend on the thread count; they differ from the dense
# call's by the order of the first layer's sums only. A row's evaluation
# noise is keyed by the hash of its dense encoder input, as in elbo_rows.
# For a network that can read a CSR matrix (Network.supports_csr).
cdef void encode_rows_csr(const fv_vae_config* cfg, const floating* params,
                          floating* work, const fv_csr* csr,
                          const floating* Cond, int64_t ldc, int n,
                          floating* H_out, int64_t ldh,
                          int n_threads) noexcept nogil
cdef void elbo_rows_csr(const fv_vae_config* cfg, const floating* params,
                        floating* work, const fv_csr* csr,
                        const floating* Cond, int64_t ldc, int n,
                        uint64_t seed, uint64_t stream, uint64_t step,
                        uint64_t draw, double* recon_out, double* kl_out,
                        int n_threads) noexcept nogil

# Importance-sampled log p(x | c) of n <= max_batch rows of X (a VAE):
# log (1/k) sum_s p(x | z_s) p(z_s) / q(z_s | x), z_s ~ q(z | x), for s < k,
# summed with a running maximum in sample order. Sample s of data row r (the
# row's global index is row_offset + r) draws its eps from counter
# (block, row_offset + r, s, 0) under key (seed, stream), so results do not
# depend on max_batch or the thread count. out receives n doubles; row_losses
# is scratch of FV_ROW_SCRATCH(max_batch) doubles.
cdef void log_likelihood_rows(const fv_vae_config* cfg, const floating* params,
                              floating* work, double* row_losses,
                              const floating* X, int64_t ldx,
                              const floating* Cond, int64_t ldc, int n,
                              int64_t k, uint64_t seed, uint64_t stream,
                              uint64_t row_offset, double* out,
                              int n_threads) noexcept nogil

# log_likelihood_rows in three parts, so a caller can stop between windows
# (Ctrl-C) when k is large: the encoder pass over the n rows; the (row,
# sample) pairs [q_begin, q_end) of those rows, pair q being sample q % k of
# row q // k (q_begin a multiple of max_batch: the same windows, so the same
# numbers, as one call); and the estimates once every pair is done. The
# workspace and row_losses must be left alone in between.
cdef void log_likelihood_begin(const fv_vae_config* cfg,
                               const floating* params, floating* work,
                               double* row_losses, const floating* X,
                               int64_t ldx, const floating* Cond, int64_t ldc,
                               int n, int n_threads) noexcept nogil
# log_likelihood_begin on the n rows of a CSR matrix (as encode_rows_csr);
# log_likelihood_pairs then reads the workspace alone (pass X NULL).
cdef void log_likelihood_begin_csr(const fv_vae_config* cfg,
                                   const floating* params, floating* work,
                                   double* row_losses, const fv_csr* csr,
                                   const floating* Cond, int64_t ldc, int n,
                                   int n_threads) noexcept nogil
cdef void log_likelihood_pairs(const fv_vae_config* cfg,
                               const floating* params, floating* work,
                               double* row_losses, const floating* X,
                               int64_t ldx, const floating* Cond, int64_t ldc,
                               int n, int64_t k, uint64_t seed,
                               uint64_t stream, uint64_t row_offset,
                               int64_t q_begin, int64_t q_end,
                               int n_threads) noexcept nogil
cdef void log_likelihood_finish(const fv_vae_config* cfg, double* row_losses,
                                int n, int64_t k, double* out) noexcept nogil

# Workspace regions start on 64-byte boundaries (16 float32 / 8 float64).
cdef inline int64_t fv_round_up(int64_t n) noexcept nogil:
    return (n + 15) // 16 * 16


cdef inline int fv_head_width(const fv_vae_config* cfg) noexcept nogil:
    return 2 * cfg.latent_dim if cfg.kind == FV_KIND_VAE else cfg.latent_dim


# The optimizer update train_step applies after its backward pass, alone:
# the same blocks and denormal flushing, so the same numbers.
cdef void apply_update(const fv_vae_config* cfg, const fv_optimizer* opt,
                       int64_t t, floating* params, const floating* grads,
                       floating* state1, floating* state2,
                       int n_threads) noexcept nogil
