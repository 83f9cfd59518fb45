# fastvae's public C-level API: `cimport fastvae` or `from fastvae cimport ...`.
#
# Only the names below are public and stable; everything else in fastvae's
# .pxd files and headers is internal and may change without notice. Stable
# means: a signature, struct layout or constant listed here changes only
# together with a bump of FASTVAE_C_API_VERSION (fastvae/version.h) and
# fastvae.C_API_VERSION; additions do not bump it. Call check_c_api_version()
# once when your module is imported (see its comment).
#
# Building against it: pass fastvae.get_include() both to the C compiler
# (include_dirs: the fastvae/*.h headers) and to Cython (cythonize's
# include_path: these .pxd files); see examples/cython_embed/.
#
# Conventions of every function here:
# - C types are float (float32) or double (float64) through Cython's fused
#   `floating`: call them with float* or double* and Cython picks the
#   specialization. All pointers of one call have the same precision.
# - Matrices are row-major: element (i, j) of an (n_rows, n_cols) matrix A
#   with leading dimension lda >= n_cols is A[i * lda + j]. Inputs are const,
#   outputs are named *_out or documented as written; outputs must not
#   overlap inputs unless a comment allows it.
# - Functions are `noexcept nogil` and trust their inputs: sizes >= 0, valid
#   pointers, codes from the FV_* constants. Validate before calling.
# - Sums (row losses, bias gradients) accumulate in double in a fixed order.
#   Functions ending in _rows do rows [r0, r1) on the calling thread and rows
#   never interact, so any split of the rows (a prange, several calls) gives
#   bitwise the same numbers; they are safe in your own parallel loops.
#   Functions taking n_threads open their own OpenMP team of that many
#   threads and give bitwise the same numbers for any n_threads; inside your
#   own parallel region pass n_threads=1.
# - GEMMs go through scipy's BLAS, which must be single-threaded while they
#   run (fastvae._core.threads.blas_single_threaded(), or threadpoolctl's
#   threadpool_limits(1, "blas")): OpenMP owns the cores.
# - `parts` (GEMM column blocks, 1 to 64) fixes how a layer's GEMM is cut
#   into blocks; results depend on it, not on the thread count. Use
#   fastvae._core.threads.partition_count() for the numbers fastvae.VAE produces.

from fastvae._core._numerics cimport (
    FV_ACT_IDENTITY, FV_ACT_RELU, FV_ACT_SIGMOID, FV_ACT_TANH, FV_KIND_AE,
    FV_KIND_VAE, FV_LIK_BERNOULLI, FV_LIK_GAUSSIAN, FV_LIK_GAUSSIAN_LEARNED,
    FV_LOGSIGMA_MAX, FV_LOGSIGMA_MIN, FV_LOGVAR_MAX, FV_LOGVAR_MIN,
    FV_OPT_ADAM, FV_OPT_MOMENTUM, FV_OPT_SGD)

# -- Codes and constants (fastvae/numerics.h) --------------------------------
# FV_ACT_IDENTITY, _RELU, _TANH, _SIGMOID   activations (stored in model files)
# FV_LIK_BERNOULLI, _GAUSSIAN, _GAUSSIAN_LEARNED   likelihoods
# FV_KIND_VAE, FV_KIND_AE                   model kinds (fv_vae_config.kind)
# FV_OPT_SGD, _MOMENTUM, _ADAM              optimizers (fv_optimizer.kind)
# FV_LOGVAR_MIN, FV_LOGVAR_MAX (-30, 20): every kernel clamps the encoder's
#   log-variance to this range before exp(), with zero gradient outside.
# FV_LOGSIGMA_MIN, FV_LOGSIGMA_MAX (-7, 5): the same for a learned Gaussian
#   log-sigma.

from fastvae._core._rng cimport (
    FV_STREAM_BINARIZE, FV_STREAM_CORRUPT, FV_STREAM_EVAL, FV_STREAM_IS,
    FV_STREAM_REPARAM, FV_STREAM_SAMPLE, FV_STREAM_USER, fv_normal4,
    fv_normal_fill_f32, fv_normal_fill_f64, fv_philox4x64_10, fv_u64_to_unit,
    fv_uniform4, fv_uniform_fill_f64)

# -- Philox4x64-10 random numbers (fastvae/philox.h, plain C) ----------------
# Counter-based: every number is a pure function of its key and counter, with
# no state, so any thread may draw any element. fastvae's convention:
#   key = {seed, stream}, counter = {block, row, step, draw}, block = e / 4,
# element e of a row is lane e % 4 of its block. fastvae's own streams are
# FV_STREAM_REPARAM, _EVAL, _SAMPLE, _BINARIZE, _CORRUPT, _IS (drawing from
# FV_STREAM_REPARAM with the seed and step of a training run reproduces the
# eps train_step used); use FV_STREAM_USER or above for your own numbers.
#
# fv_philox4x64_10(const uint64_t ctr[4], const uint64_t key[2], uint64_t out[4])
#   One raw block. Equals numpy.random.Philox(key=key, counter=c - 1)
#   .random_raw(4) (numpy steps its counter before each block).
# fv_u64_to_unit(uint64_t x) -> double
#   (x >> 11) * 2^-53: a uniform in [0, 1) from the top 53 bits.
# fv_uniform4(seed, stream, block, row, step, draw, double out[4])
#   The 4 uniforms in [0, 1) of one block.
# fv_normal4(seed, stream, block, row, step, draw, double out[4])
#   The 4 standard normals of one block: Box-Muller in double on the lane
#   pairs (0, 1) and (2, 3), |z| <= 8.57.
# fv_normal_fill_f64(seed, stream, row, step, draw, double* out, int64_t n)
# fv_normal_fill_f32(seed, stream, row, step, draw, float* out, int64_t n)
#   out[e] = normal e of (row, step, draw), e < n (float32: the double
#   rounded). These are the eps of the reparameterization below.
# fv_uniform_fill_f64(seed, stream, row, step, draw, double* out, int64_t n)
#   out[e] = uniform e of (row, step, draw) in [0, 1), e < n.

from fastvae._core._dense cimport dense_backward, dense_forward

# -- Dense layers (fastvae/_core/_dense.pyx) ---------------------------------------
# void dense_forward(int n_rows, int n_in, int n_out,
#                    const floating* X, int ldx, const floating* W,
#                    const floating* b, floating* Y, int ldy, int activation,
#                    int parts, int n_threads)
#   Y = act(X @ W + b). X (n_rows, n_in), W (n_in, n_out) contiguous
#   (leading dimension n_out), b (n_out,), Y (n_rows, n_out) written.
#   activation: FV_ACT_*. Y must not overlap X, W or b.
# void dense_backward(int n_rows, int n_in, int n_out,
#                     const floating* X, int ldx, const floating* W,
#                     const floating* dA, int ldda, floating* dW,
#                     floating* db, floating* dX, int lddx, int x_activation,
#                     int parts, int n_threads)
#   Given dA = dLoss/d(pre-activation) (n_rows, n_out) of the layer whose
#   input is X: writes dW = X^T dA (n_in, n_out) contiguous, db = column sums
#   of dA (n_out,), and, unless dX is NULL, dX = (dA W^T) * x_act'(X)
#   (n_rows, n_in), where x_act = x_activation is the activation that
#   produced X (FV_ACT_IDENTITY for raw data), so dX is the gradient with
#   respect to the previous layer's pre-activation. Outputs overwrite, never
#   accumulate, and overlap no input or each other.

from fastvae._core._reparam cimport (
    reparam_backward, reparam_backward_rows, reparam_forward,
    reparam_forward_rows)

# -- Reparameterization (fastvae/_core/_reparam.pyx) -------------------------------
# H (n_rows, 2K) is an encoder head [mu | logvar] with leading dimension ldh
# (raw log-variances; clamped to [FV_LOGVAR_MIN, FV_LOGVAR_MAX] inside).
# void reparam_forward_rows(const floating* H, int ldh, int K,
#                           floating* Z, int ldz, floating* eps, int lde,
#                           uint64_t seed, uint64_t stream, uint64_t step,
#                           uint64_t row_offset, uint64_t draw,
#                           int64_t r0, int64_t r1)
#   For rows i in [r0, r1): eps[i, :] = fv_normal_fill(seed, stream,
#   row_offset + i, step, draw) and Z[i, :] = mu + exp(logvar / 2) * eps,
#   computed in double and rounded once. Z and eps (n_rows, K) are written;
#   a row's noise depends on its global index row_offset + i only.
# void reparam_forward(int64_t n_rows, <the same from H to draw>, int n_threads)
#   All n_rows rows.
# void reparam_backward_rows(const floating* H, int ldh, int K,
#                            const floating* eps, int lde,
#                            const floating* dZ, int lddz,
#                            floating* dH, int lddh, int64_t r0, int64_t r1)
#   Given dZ = dLoss/dz: dH[:, :K] = dZ, dH[:, K:] = dZ * eps * exp(logvar / 2)
#   / 2 (0 where the clamp is active); overwrites dH (n_rows, 2K).
# void reparam_backward(int64_t n_rows, <the same from H to lddh>, int n_threads)

from fastvae._core._losses cimport (
    bernoulli_rows, gaussian_rows, kl_backward_rows, kl_rows)

# -- Losses of the negative ELBO (fastvae/_core/_losses.pyx) -----------------------
# Each writes one double per row, loss_out[i] for i in [r0, r1).
# void kl_rows(const floating* H, int ldh, int K, double* loss_out,
#              int64_t r0, int64_t r1)
#   KL(N(mu, diag exp(lv)) || N(0, I)) = 1/2 sum_j (exp(lv) + mu^2 - 1 - lv)
#   for H = [mu | logvar] as above (lv clamped).
# void kl_backward_rows(const floating* H, int ldh, int K, double scale,
#                       floating* dH, int lddh, int64_t r0, int64_t r1)
#   dH += scale * dKL/dH: d/dmu = mu, d/dlv = (exp(lv) - 1) / 2 (0 where
#   clamped). Adds, so it composes with reparam_backward_rows.
# void bernoulli_rows(const floating* L, int ldl, const floating* X, int ldx,
#                     int D, double scale, floating* grad, int ldg,
#                     double* loss_out, int64_t r0, int64_t r1)
#   Logits L and targets X in [0, 1], (n_rows, D): loss_out[i] = sum_d
#   softplus(L) - X * L (stable BCE with logits), grad = scale * (sigmoid(L)
#   - X) written. grad may be NULL (loss only); it must not overlap L or X.
# void gaussian_rows(const floating* M, int ldm, const floating* X, int ldx,
#                    int D, double sigma, double scale, floating* grad,
#                    int ldg, double* loss_out, int64_t r0, int64_t r1)
#   Means M, fixed scalar sigma: loss_out[i] = sum_d (X - M)^2 / (2 sigma^2)
#   + D (log sigma + log(2 pi) / 2), grad = scale * (M - X) / sigma^2.
#   grad may be NULL; it must not overlap M or X.

from fastvae._core._optim cimport fv_optimizer, optimizer_update, optimizer_update_range

# -- Optimizers (fastvae/_core/_optim.pyx) -----------------------------------------
# struct fv_optimizer: int kind (FV_OPT_*), double lr, momentum, beta1,
#   beta2, eps. Fill it yourself or take a Network's with network_config.
#   SGD:      p -= lr * g
#   momentum: v = momentum * v + g;  p -= lr * v
#   Adam:     m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;
#             p -= lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)
# void optimizer_update_range(const fv_optimizer* opt, int64_t t,
#                             floating* params, const floating* grads,
#                             floating* state1, floating* state2,
#                             int64_t i0, int64_t i1)
#   In place on elements [i0, i1) of flat buffers, for step t >= 1 (Adam's
#   bias correction). state1: momentum's v or Adam's m; state2: Adam's v
#   (either may be NULL when the optimizer does not use it). Element-wise,
#   so any split gives the same numbers.
# void optimizer_update(<the same up to state2>, int64_t n, int n_threads)
#   Elements [0, n).

from fastvae._core._network cimport network_config
from fastvae._core._step cimport (
    FV_MAX_LAYERS, FV_MAX_TEAM, FV_ROW_SCRATCH, compute_gradients, decode_rows,
    elbo_rows, encode_rows, fv_layer, fv_step_args, fv_vae_config,
    log_likelihood_rows, train_step)

# -- The whole training step (fastvae/_core/_step.pyx) -----------------------------
# struct fv_vae_config: a network's architecture and the layout of its flat
#   parameter buffer (layer l's W at layers[l].w_offset, b at b_offset) and
#   workspace. Offsets are in elements, not bytes, so one config serves
#   float32 and float64 buffers. Get it from a Python fastvae._core._network.Network
#   with network_config (the fields are documented in fastvae/_core/_step.pxd; do
#   not fill them by hand). Useful fields: n_params (length of the params,
#   grads and state buffers), work_size (elements of the workspace),
#   max_batch, n_features, latent_dim, n_cond, kind, n_samples and objective
#   (a Network(n_samples=k, objective="iwae") trains on the k-sample
#   importance-weighted bound; see fastvae/_core/_step.pxd).
# struct fv_step_args: uint64_t seed; uint64_t step (0-based global step: the
#   RNG counter, Adam uses t = step + 1); int64_t row_offset (global index of
#   the call's first row: 0 on one process); int global_batch (rows the loss
#   is averaged over: the batch on one process); double kl_weight (beta);
#   int n_threads (1 to FV_MAX_TEAM).
# FV_ROW_SCRATCH(max_batch) -> int64_t: doubles of the row_losses scratch
#   every entry point takes. FV_MAX_LAYERS (32), FV_MAX_TEAM (256).
# int network_config(object network, fv_vae_config* cfg_out,
#                    fv_optimizer* opt_out) except -1
#   Needs the GIL: copy a Network's config and optimizer (either pointer may
#   be NULL; the optimizer is SGD with lr 0 until Network.set_optimizer is
#   called); TypeError for anything but a fastvae._core._network.Network.
# int train_step(const fv_vae_config* cfg, const fv_optimizer* opt,
#                const fv_step_args* args, floating* params, floating* grads,
#                floating* state1, floating* state2, floating* work,
#                double* row_losses, const floating* X, int64_t ldx,
#                const floating* Cond, int64_t ldc, const int64_t* rows,
#                int batch, double* sums_out)
#   Forward, loss, backward and optimizer update on the minibatch
#   X[rows[0]], ..., X[rows[batch - 1]] (rows NULL: the first batch rows of
#   X, (., n_features) with leading dimension ldx), 1 <= batch <=
#   cfg.max_batch, with conditions Cond (NULL when cfg.n_cond is 0). params,
#   grads, state1, state2: cfg.n_params each (zero grads once before the
#   first call: the update runs over all n_params, and the alignment padding
#   between layers is never written); params, grads, state1, state2 and
#   work 64-byte aligned for speed (fastvae._core.params.aligned_zeros: with grads
#   16 bytes off, two threads wrote into shared cache lines at every block
#   edge and a 784-400/20/16 step ran at 21k instead of 56-62k samples/s);
#   work: cfg.work_size elements; row_losses: FV_ROW_SCRATCH(cfg.max_batch)
#   doubles; sums_out[0] = sum over rows of -log p(x|z), sums_out[1] = sum of
#   KL. Loss = (sums_out[0] + kl_weight * sums_out[1]) / global_batch.
#   Returns 0; 1 if the loss is not finite, 2 if a gradient is not (then
#   params and states are untouched). Exactly Network.train_step (and so
#   fastvae.VAE.fit's steps): the same inputs give bitwise the same numbers
#   for any n_threads. One call at a time per work / row_losses buffer.
# int compute_gradients(cfg, args, const floating* params, floating* grads,
#                       work, row_losses, X, ldx, Cond, ldc, rows, batch,
#                       sums_out)
#   The same without the update: grads receives the rows' share of the
#   gradient (averaged over args.global_batch), e.g. for data parallelism.
# void encode_rows(cfg, const floating* params, floating* work,
#                  const floating* X, int64_t ldx, const floating* Cond,
#                  int64_t ldc, int n, floating* H_out, int64_t ldh,
#                  int n_threads)
#   Encoder head of n <= max_batch rows: a VAE's [mu | raw logvar]
#   (n, 2 latent_dim), an autoencoder's code (n, latent_dim).
# void decode_rows(cfg, params, work, const floating* Z, int64_t ldz, Cond,
#                  ldc, int n, floating* out, int64_t ldo, int n_threads)
#   Mean of p(x | z) (sigmoid of the logits, or the Gaussian mean), (n,
#   n_features), for n <= max_batch rows of Z.
# void elbo_rows(cfg, params, work, X, ldx, Cond, ldc, int n, uint64_t seed,
#                uint64_t stream, uint64_t step, uint64_t row_offset,
#                uint64_t draw, double* recon_out, double* kl_out,
#                int n_threads)
#   Per-row -log p(x|z) with one z per row from (seed, stream, step,
#   row_offset + i, draw), and KL, for n <= max_batch rows.
# void log_likelihood_rows(cfg, params, work, double* row_losses, X, ldx,
#                          Cond, ldc, int n, int64_t k, uint64_t seed,
#                          uint64_t stream, uint64_t row_offset, double* out,
#                          int n_threads)
#   Importance-sampled log p(x) of n <= max_batch rows with k samples each
#   (a VAE), into out (n,).

cdef extern from "fastvae/version.h":
    int FASTVAE_C_API_VERSION

from fastvae._core._threads cimport fv_isa_bind as _fv_isa_bind
from fastvae._core._threads cimport fv_isa_slot as _fv_isa_slot


# Raise ImportError unless the installed fastvae has the C API this module
# was compiled against (struct layouts are not checked when your module
# loads; function signatures are). Call it at the top level of your .pyx:
#     fastvae.check_c_api_version()    (after `cimport fastvae`)
# It also binds your module to the process's ISA cap (FASTVAE_ISA,
# fastvae.set_isa; src_c/fastvae/dispatch.h). The functions above run inside
# fastvae's own modules, which follow the cap anyway; what the binding
# covers is header code your module compiles into itself. A module that
# never calls it runs such code at the CPU's best level.
cdef inline int check_c_api_version() except -1:
    import fastvae
    if fastvae.C_API_VERSION != FASTVAE_C_API_VERSION:
        raise ImportError(
            f"this module was compiled against fastvae's C API version "
            f"{FASTVAE_C_API_VERSION}, but the installed fastvae "
            f"{fastvae.__version__} has version {fastvae.C_API_VERSION}; "
            "rebuild it against the installed fastvae")
    _fv_isa_bind(_fv_isa_slot())
    return 0
