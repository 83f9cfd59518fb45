"""The Python face of the compiled engine: a Network turns a model's
architecture into the C config of fastvae._core._step once, owns the
workspace, checks every array it passes to C, and releases the GIL for each
call (training step, gradients, update, encode, decode, ELBO and
importance-sampled log-likelihood terms).

About 650 lines on purpose: one class with one method per C entry point,
each holding the checks that guard its call, so that no check is far from
the pointer arithmetic it protects.
"""

import numpy as np

from cpython.exc cimport PyErr_CheckSignals
from cython cimport floating
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc

from fastvae._core._columns cimport (
    FV_COL_BERNOULLI, FV_COL_CATEGORICAL, FV_COL_GAUSSIAN,
    FV_COL_GAUSSIAN_LEARNED, FV_COL_NEGBIN, FV_COL_POISSON, FV_COL_ZINB,
    fv_column)
from fastvae._core._checks cimport (
    check_disjoint, check_finite, check_threads, check_u64)
from fastvae._core._numerics cimport (
    FV_ACT_IDENTITY, FV_KIND_AE, FV_KIND_VAE, FV_LIK_BERNOULLI, FV_LIK_COLUMNS,
    FV_LIK_GAUSSIAN, FV_LIK_GAUSSIAN_LEARNED, FV_OPT_ADAM, FV_OPT_SGD)
from fastvae._core._optim cimport fv_optimizer, make_optimizer
from fastvae._core._partition cimport FV_MAX_BLOCKS
from fastvae._core._row_hash cimport fv_row_key_f32, fv_row_key_f64
from fastvae._core._step cimport (
    FV_MAX_LAYERS, FV_MAX_TEAM, FV_OBJ_ELBO, FV_OBJ_IWAE, FV_ROW_SCRATCH,
    apply_update,
    compute_gradients, compute_gradients_csr, decode_rows, elbo_rows,
    elbo_rows_csr, encode_rows, encode_rows_csr, fv_csr, fv_head_width,
    fv_round_up, fv_step_args, fv_vae_config, log_likelihood_begin,
    log_likelihood_begin_csr, log_likelihood_finish, log_likelihood_pairs,
    train_step, train_step_csr)
from fastvae._core._threads cimport fv_isa_bind, fv_isa_slot

# The row hash (fastvae/row_hash.h) runs at the process's ISA cap
# (src_c/fastvae/dispatch.h), like the engine's kernels.
fv_isa_bind(fv_isa_slot())

LIKELIHOODS = {"bernoulli": FV_LIK_BERNOULLI, "gaussian": FV_LIK_GAUSSIAN,
               "gaussian_learned": FV_LIK_GAUSSIAN_LEARNED,
               "columns": FV_LIK_COLUMNS}
# Kinds of a column of a per-column likelihood (fastvae/columns.h).
COLUMN_KINDS = {"gaussian": FV_COL_GAUSSIAN,
                "gaussian_learned": FV_COL_GAUSSIAN_LEARNED,
                "bernoulli": FV_COL_BERNOULLI,
                "categorical": FV_COL_CATEGORICAL,
                "poisson": FV_COL_POISSON, "negbin": FV_COL_NEGBIN,
                "zinb": FV_COL_ZINB}
# Kinds with a trained per-column parameter (log-sigma, log-dispersion).
TAIL_KINDS = ("gaussian_learned", "negbin", "zinb")
COUNT_KINDS = ("poisson", "negbin", "zinb")
KINDS = {"vae": FV_KIND_VAE, "ae": FV_KIND_AE}
OBJECTIVES = {"elbo": FV_OBJ_ELBO, "iwae": FV_OBJ_IWAE}
MAX_LAYERS = FV_MAX_LAYERS

# (row, sample) pairs per compiled log-likelihood call: about 0.25 s for
# the default 784-400-20 model on 2 threads (measured: 65k pairs took 1.1 s),
# so that Ctrl-C and progress reports come that often even with k = 5000
# (Ctrl-C is only seen between compiled calls).
LL_PAIRS_PER_CALL = 1 << 14


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
    likelihood : {"bernoulli", "gaussian", "gaussian_learned", "columns"}
        "columns": one likelihood per column, given by `columns`.
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
    n_samples : int, default=1
        Training only (a VAE): latent samples per row. The decoder's
        workspace grows with it (max_batch * n_samples rows).
    objective : {"elbo", "iwae"}, default="elbo"
        Training with n_samples > 1: the ELBO averaged over the samples, or
        the importance-weighted bound (fastvae/_core/_step.pxd).
    columns : sequence of (kind, width, sigma), optional
        With likelihood="columns": one entry per data column, kind one of
        COLUMN_KINDS, width the levels of a categorical column (else 1),
        sigma a fixed Gaussian's standard deviation (else ignored). The
        encoder then reads (sum of widths [+ n_columns with missing]) +
        n_cond inputs and the decoder writes sum of widths outputs, then one
        zero-inflation logit per "zinb" column; the learned log-sigmas and
        log-dispersions are n_columns parameters at logsigma_offset
        (fastvae/columns.h).
    missing : bool, default=False
        With columns: NaN entries are missing (left out of the loss) and the
        encoder also reads one missingness indicator per column.
    library : bool, default=False
        With columns, all of them counts and none missing: column d's mean
        is softmax over the count outputs times the row's total count (its
        library size), scVI's decoder.
    tail_by_condition : bool, default=False
        With columns that have a tail and n_cond > 0: the tail holds n_cond
        rows of n_columns values phi, and a data row's tails are sum_b c_b
        phi_b for its condition c (one log-dispersion per gene and batch
        with one-hot batches, scVI's dispersion="gene-batch").
    """

    cdef fv_vae_config cfg
    cdef fv_optimizer opt
    cdef fv_column* _columns
    cdef readonly object dtype
    cdef object _work
    cdef object _row_losses
    cdef object _csr_start
    cdef object _csr_rows
    cdef object _csr_vals
    cdef readonly bint supports_csr
    # set while a call runs in the workspace (without the GIL): a second
    # thread using the same Network would overwrite it mid-call
    cdef bint _busy

    def __init__(self, encoder_dims, decoder_dims, activations, w_offsets,
                 b_offsets, int64_t n_params, str likelihood, double sigma,
                 int max_batch, dtype, int parts=2, str kind="vae",
                 int n_cond=0, int64_t logsigma_offset=-1, double corrupt=0.0,
                 bint binarize=False, int n_samples=1, str objective="elbo",
                 columns=None, bint missing=False, bint library=False,
                 bint tail_by_condition=False):
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
        if (likelihood == "columns") != (columns is not None):
            raise ValueError('columns go with likelihood="columns", and only then')
        if missing and columns is None:
            raise ValueError("missing needs columns")
        if library and (columns is None or missing):
            raise ValueError("library needs columns and no missing values")
        D = dims[1][len(dims[1]) - 1]
        n_inputs = n_outputs = D
        specs = []
        if columns is not None:
            specs = _column_specs(columns)
            D = len(specs)
            n_inputs = sum(width for _, width, _ in specs)
            n_outputs = n_inputs + sum(name == "zinb" for name, _, _ in specs)
            n_inputs += D if missing else 0
            if library and not all(name in COUNT_KINDS for name, _, _ in specs):
                raise ValueError("library needs every column to be a count "
                                 f"column ({', '.join(COUNT_KINDS)})")
            if binarize or corrupt > 0:
                raise ValueError("per-column likelihoods take neither binarize "
                                 "nor corrupt")
        K = dims[1][0] - n_cond
        head = 2 * K if kind == "vae" else K
        if (K < 1 or dims[0][n_enc] != head or dims[0][0] != n_inputs + n_cond
                or dims[1][len(dims[1]) - 1] != n_outputs):
            raise ValueError(
                f"a {kind} with {n_cond} condition columns needs encoder dims "
                f"({n_inputs} inputs + n_cond, ..., head) and decoder dims "
                f"(latent_dim + n_cond, ..., {n_outputs} outputs) with head = "
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
        has_tail = likelihood == "gaussian_learned" or any(
            name in TAIL_KINDS for name, _, _ in specs)
        if tail_by_condition and not (specs and has_tail and n_cond > 0):
            raise ValueError("tail_by_condition needs columns with a tail "
                             "(learned Gaussian, negbin, zinb) and n_cond > 0")
        n_tail = D * n_cond if tail_by_condition else D
        if has_tail and not (
                0 <= logsigma_offset and logsigma_offset + n_tail <= n_params):
            raise ValueError(f"the {n_tail} log-sigmas do not fit in {n_params} "
                             f"parameters at offset {logsigma_offset}")
        if not 0.0 <= corrupt < 1.0:
            raise ValueError(f"corrupt must be in [0, 1), got {corrupt}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if objective not in OBJECTIVES:
            raise ValueError(
                f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if kind != "vae" and (n_samples > 1 or objective != "elbo"):
            raise ValueError("an autoencoder has one code per row: n_samples "
                             "and objective='iwae' need a VAE")
        if <int64_t> max_batch * n_samples >= 2**31:
            raise ValueError(f"max_batch * n_samples must be < 2**31, got "
                             f"{max_batch} * {n_samples}")
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
        c.logsigma_offset = logsigma_offset if has_tail else -1
        c.n_in = n_inputs
        c.n_out = n_outputs
        c.mask_offset = n_inputs - D if missing else -1
        c.library = library
        c.tail_by_condition = tail_by_condition
        c.columns = NULL
        # the sparse first layer reads values as they are or log1p of counts
        self.supports_csr = (
            (not specs and not binarize and corrupt == 0)
            or (specs and not missing
                and all(name in COUNT_KINDS for name, _, _ in specs)))
        if specs:
            self._columns = <fv_column*> malloc(D * sizeof(fv_column))
            if self._columns == NULL:
                raise MemoryError("no memory for the column layout")
            at_in = 0
            at_aux = sum(width for _, width, _ in specs)
            for d, (name, width, col_sigma) in enumerate(specs):
                self._columns[d].kind = COLUMN_KINDS[name]
                self._columns[d].width = width
                self._columns[d].in_offset = at_in
                self._columns[d].out_offset = at_in
                self._columns[d].aux_offset = at_aux if name == "zinb" else -1
                self._columns[d].sigma = col_sigma
                at_in += width
                at_aux += name == "zinb"
            c.columns = self._columns
        c.corrupt = corrupt
        c.binarize = binarize
        c.parts = parts
        c.max_batch = max_batch
        c.n_samples = n_samples
        c.objective = OBJECTIVES[objective]
        c.n_params = n_params
        sizes = [(dims[0][i], dims[0][i + 1]) for i in range(n_enc)] + [
            (dims[1][i], dims[1][i + 1]) for i in range(len(dims[1]) - 1)]
        cdef int64_t off = 0
        cdef int64_t rows = max_batch
        # the decoder's regions hold every (row, sample) pair of a step
        cdef int64_t pairs = <int64_t> max_batch * n_samples
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
            off += fv_round_up((rows if l < n_enc else pairs) * n_out)
            max_width = max(max_width, n_in, n_out)
        regions = [("xin", rows * (n_inputs + n_cond)), ("xtgt", rows * D),
                   ("eps", pairs * K), ("z", pairs * (K + n_cond)),
                   ("dh", rows * 2 * K),
                   ("sgrad", pairs * D if has_tail else 0),
                   ("scratch", FV_MAX_TEAM * fv_round_up(max(D, n_outputs))
                    if likelihood == "gaussian_learned" or library else 0),
                   ("tails", rows * D if tail_by_condition else 0),
                   ("pairs", 2 * 3 * pairs if n_samples > 1 else 0),
                   ("grad0", pairs * max_width), ("grad1", pairs * max_width)]
        at = {}
        for name, size in regions:
            at[name] = off
            off += fv_round_up(size)
        c.xin_offset, c.xtgt_offset = at["xin"], at["xtgt"]
        c.eps_offset, c.z_offset, c.dh_offset = at["eps"], at["z"], at["dh"]
        c.sgrad_offset, c.scratch_offset = at["sgrad"], at["scratch"]
        c.tails_offset = at["tails"]
        c.pairs_offset = at["pairs"]
        c.grad_offset[0], c.grad_offset[1] = at["grad0"], at["grad1"]
        c.work_size = off
        self._work = _aligned_empty(off, self.dtype)
        self._row_losses = np.zeros(FV_ROW_SCRATCH(max_batch), dtype=np.float64)
        self.opt = make_optimizer("sgd", 0.0, 0.0, 0.0, 0.0, 0.0)

    def __dealloc__(self):
        free(self._columns)

    @property
    def n_in(self):
        """Encoder inputs per row before the conditions."""
        return self.cfg.n_in

    @property
    def n_out(self):
        """Decoder outputs per row."""
        return self.cfg.n_out

    @property
    def max_batch(self):
        return self.cfg.max_batch

    @property
    def n_samples(self):
        return self.cfg.n_samples

    @property
    def objective(self):
        return "iwae" if self.cfg.objective == FV_OBJ_IWAE else "elbo"

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
        return fv_head_width(&self.cfg)

    @property
    def lr(self):
        """The learning rate train_step and apply_update use (set_optimizer's)."""
        return self.opt.lr

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

    cdef int64_t _check_csr(self, Py_ssize_t n_data,
                            const int32_t[::1] indices,
                            const int64_t[::1] indptr,
                            const int64_t[::1] rows, Py_ssize_t n) except -1:
        """Check rows rows[i] (rows None: i) for i < n of a CSR matrix whose
        row indices _check_rows has checked, for training and inference
        alike; returns their count of stored values."""
        cdef int64_t nnz = 0, k, r, a, b
        cdef int D = self.cfg.n_features
        cdef Py_ssize_t i
        for i in range(n):
            r = rows[i] if rows is not None else i
            a, b = indptr[r], indptr[r + 1]
            if not 0 <= a <= b <= n_data:
                raise ValueError(f"indptr of row {r} is out of range")
            for k in range(a, b):
                if not 0 <= indices[k] < D:
                    raise IndexError(f"column index {indices[k]} of row {r} out "
                                     f"of range for {D} columns")
            nnz += b - a
        return nnz

    cdef Py_ssize_t _check_csr_shape(self, Py_ssize_t n_data,
                                     const int32_t[::1] indices,
                                     const int64_t[::1] indptr) except -1:
        """Refuse a CSR matrix this network cannot read; returns its rows."""
        if not self.supports_csr:
            raise ValueError(
                "this network's first layer cannot read a CSR matrix: it needs "
                "one likelihood without binarize or corrupt, or count columns "
                "without missing values")
        if indptr.shape[0] < 2 or indices.shape[0] != n_data:
            raise ValueError("a CSR matrix needs indptr of n_rows + 1 >= 2 "
                             "entries and one index per stored value")
        return indptr.shape[0] - 1

    cdef int64_t _check_csr_batch(self, Py_ssize_t n_data,
                                  const int32_t[::1] indices,
                                  const int64_t[::1] indptr,
                                  const int64_t[::1] rows,
                                  int batch) except -1:
        """Check the minibatch's rows of a CSR matrix and size the transpose
        scratch; returns the minibatch's count of stored values."""
        cdef Py_ssize_t n_rows = self._check_csr_shape(n_data, indices, indptr)
        cdef int D = self.cfg.n_features
        self._check_rows(n_rows, D, batch, rows)
        cdef int64_t nnz = self._check_csr(n_data, indices, indptr, rows, batch)
        if self._csr_start is None:
            self._csr_start = np.empty(D + 2, dtype=np.int64)
        if self._csr_rows is None or self._csr_rows.shape[0] < nnz:
            size = max(1, nnz + nnz // 4)
            self._csr_rows = np.empty(size, dtype=np.int32)
            self._csr_vals = np.empty(size, dtype=self.dtype)
        return nnz

    cdef Py_ssize_t _check_csr_all(self, Py_ssize_t n_data,
                                   const int32_t[::1] indices,
                                   const int64_t[::1] indptr) except -1:
        """Check every row of a CSR matrix read by inference; returns the
        number of rows."""
        cdef Py_ssize_t n = self._check_csr_shape(n_data, indices, indptr)
        self._check_csr(n_data, indices, indptr, None, n)
        return n

    cdef fv_csr _csr(self, const void* data, const int32_t[::1] indices,
                     const int64_t[::1] indptr, bint scratch=True):
        """The fv_csr of a CSR matrix's arrays (data of the network's dtype)
        with this network's transpose scratch, as _check_csr_batch sized it
        (scratch False: none, for inference, which reads rows alone)."""
        cdef int64_t[::1] start
        cdef int32_t[::1] t_rows
        cdef fv_csr A
        A.data = data
        A.indices = &indices[0] if indices.shape[0] else NULL
        A.indptr = &indptr[0]
        A.col_start = NULL
        A.t_rows = NULL
        A.t_vals = NULL
        if scratch:
            start = self._csr_start
            t_rows = self._csr_rows
            A.col_start = &start[0]
            A.t_rows = &t_rows[0]
            A.t_vals = <void*> <size_t> self._csr_vals.ctypes.data
        return A

    def train_step_csr(self, floating[::1] params, floating[::1] grads,
                       floating[::1] state1, floating[::1] state2,
                       const floating[::1] data, const int32_t[::1] indices,
                       const int64_t[::1] indptr, const int64_t[::1] rows,
                       int batch, seed, step, double kl_weight=1.0,
                       int n_threads=1, row_offset=0, global_batch=None,
                       const floating[:, ::1] cond=None):
        """train_step on rows of a CSR matrix (data, int32 indices, int64
        indptr; values of the network's dtype): the first layer runs on the
        stored values (fastvae/_core/_step.pxd, fv_csr). Only for networks
        with supports_csr.
        """
        self._check_buffers(params.shape[0], floating is float)
        if (grads.shape[0] != params.shape[0] or state1.shape[0] != params.shape[0]
                or state2.shape[0] != params.shape[0]):
            raise ValueError("grads and optimizer states must match params")
        self._check_csr_batch(data.shape[0], indices, indptr, rows, batch)
        self._check_cond(cond, indptr.shape[0] - 1)
        cdef fv_step_args a = self._args(seed, step, row_offset, global_batch,
                                         batch, kl_weight, n_threads)
        cdef Py_ssize_t nbytes = params.shape[0] * sizeof(floating)
        check_disjoint("params", &params[0], nbytes, "grads", &grads[0], nbytes)
        if self.opt.kind != FV_OPT_SGD:
            check_disjoint("params", &params[0], nbytes, "state1", &state1[0], nbytes)
            check_disjoint("grads", &grads[0], nbytes, "state1", &state1[0], nbytes)
        if self.opt.kind == FV_OPT_ADAM:
            check_disjoint("params", &params[0], nbytes, "state2", &state2[0], nbytes)
            check_disjoint("grads", &grads[0], nbytes, "state2", &state2[0], nbytes)
            check_disjoint("state1", &state1[0], nbytes, "state2", &state2[0], nbytes)
        cdef floating[::1] work = self._work
        cdef double[::1] row_losses = self._row_losses
        cdef fv_csr A = self._csr(
            <const void*> &data[0] if data.shape[0] else NULL, indices, indptr)
        cdef double sums[2]
        cdef int status
        cdef const int64_t* rows_ptr = NULL if rows is None else &rows[0]
        cdef const floating* c_ptr = NULL if cond is None else &cond[0, 0]
        cdef int64_t ldc = 0 if cond is None else cond.shape[1]
        self._claim()
        with nogil:
            status = train_step_csr(&self.cfg, &self.opt, &a, &params[0],
                                    &grads[0], &state1[0], &state2[0], &work[0],
                                    &row_losses[0], &A, c_ptr, ldc, rows_ptr,
                                    batch, sums)
        self._busy = False
        return status, sums[0], sums[1]

    def gradients_csr(self, const floating[::1] params, floating[::1] grads,
                      const floating[::1] data, const int32_t[::1] indices,
                      const int64_t[::1] indptr, const int64_t[::1] rows,
                      int batch, seed, step, double kl_weight=1.0,
                      int n_threads=1, row_offset=0, global_batch=None,
                      const floating[:, ::1] cond=None):
        """gradients on rows of a CSR matrix (see train_step_csr)."""
        self._check_buffers(params.shape[0], floating is float)
        if grads.shape[0] != params.shape[0]:
            raise ValueError("grads must match params")
        self._check_csr_batch(data.shape[0], indices, indptr, rows, batch)
        self._check_cond(cond, indptr.shape[0] - 1)
        cdef fv_step_args a = self._args(seed, step, row_offset, global_batch,
                                         batch, kl_weight, n_threads)
        cdef Py_ssize_t nbytes = params.shape[0] * sizeof(floating)
        check_disjoint("params", &params[0], nbytes, "grads", &grads[0], nbytes)
        cdef floating[::1] work = self._work
        cdef double[::1] row_losses = self._row_losses
        cdef fv_csr A = self._csr(
            <const void*> &data[0] if data.shape[0] else NULL, indices, indptr)
        cdef double sums[2]
        cdef int status
        cdef const int64_t* rows_ptr = NULL if rows is None else &rows[0]
        cdef const floating* c_ptr = NULL if cond is None else &cond[0, 0]
        cdef int64_t ldc = 0 if cond is None else cond.shape[1]
        self._claim()
        with nogil:
            status = compute_gradients_csr(&self.cfg, &a, &params[0], &grads[0],
                                           &work[0], &row_losses[0], &A, c_ptr,
                                           ldc, rows_ptr, batch, sums)
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
            apply_update(&self.cfg, &self.opt, t, &params[0], &grads[0],
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
        return self._encode(params, _rows_ptr(X), X.shape[1], NULL, X.shape[0],
                            n_threads, cond)

    def encode_csr(self, const floating[::1] params, const floating[::1] data,
                   const int32_t[::1] indices, const int64_t[::1] indptr,
                   int n_threads=1, const floating[:, ::1] cond=None):
        """encode on the rows of a CSR matrix (data, int32 indices, int64
        indptr of n_rows + 1 entries; values of the network's dtype): the
        first layer runs on the stored values (_step.pxd, encode_rows_csr).
        Only for networks with supports_csr."""
        self._check_buffers(params.shape[0], floating is float)
        cdef Py_ssize_t n = self._check_csr_all(data.shape[0], indices, indptr)
        self._check_cond(cond, n)
        check_threads(n_threads)
        cdef fv_csr A = self._csr(
            <const void*> &data[0] if data.shape[0] else NULL, indices, indptr,
            False)
        return self._encode(params, <const floating*> NULL, 0, &A, n, n_threads,
                            cond)

    cdef _encode(self, const floating[::1] params, const floating* X,
                 int64_t ldx, const fv_csr* A, int64_t n, int n_threads,
                 const floating[:, ::1] cond):
        """encode's chunks of max_batch rows, of X (ldx its leading
        dimension) or, A not NULL, of A."""
        cdef int64_t start
        cdef int chunk
        cdef int width = fv_head_width(&self.cfg)
        cdef int64_t ldc = 0 if cond is None else cond.shape[1]
        cdef fv_csr rows_of_A
        out_arr = np.empty((n, width), dtype=self.dtype)
        cdef floating[:, ::1] out = out_arr
        cdef floating[::1] work = self._work
        if n == 0:
            return out_arr
        self._claim()
        try:
            start = 0
            while start < n:
                chunk = <int> min(<int64_t> self.cfg.max_batch, n - start)
                if A != NULL:
                    rows_of_A = A[0]
                    rows_of_A.indptr = A.indptr + start
                    with nogil:
                        encode_rows_csr(&self.cfg, &params[0], &work[0],
                                        &rows_of_A,
                                        NULL if ldc == 0 else &cond[start, 0],
                                        ldc, chunk, &out[start, 0], width,
                                        n_threads)
                else:
                    with nogil:
                        encode_rows(&self.cfg, &params[0], &work[0],
                                    X + start * ldx, ldx,
                                    NULL if ldc == 0 else &cond[start, 0], ldc,
                                    chunk, &out[start, 0], width, n_threads)
                start += chunk
                PyErr_CheckSignals()
        finally:
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
        cdef int D = self.cfg.n_out
        cdef int64_t ldc = 0 if cond is None else cond.shape[1]
        out_arr = np.empty((n, D), dtype=self.dtype)
        cdef floating[:, ::1] out = out_arr
        cdef floating[::1] work = self._work
        if n == 0:
            return out_arr
        self._claim()
        try:
            start = 0
            while start < n:
                chunk = <int> min(<int64_t> self.cfg.max_batch, n - start)
                with nogil:
                    decode_rows(&self.cfg, &params[0], &work[0], &Z[start, 0],
                                Z.shape[1],
                                NULL if ldc == 0 else &cond[start, 0], ldc,
                                chunk, &out[start, 0], D, n_threads)
                start += chunk
                PyErr_CheckSignals()
        finally:
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
        return self._elbo_terms(params, _rows_ptr(X), X.shape[1], NULL,
                                X.shape[0], seed, stream, step, draw,
                                n_threads, cond)

    def elbo_terms_csr(self, const floating[::1] params,
                       const floating[::1] data, const int32_t[::1] indices,
                       const int64_t[::1] indptr, seed, stream, step=0, draw=0,
                       int n_threads=1, const floating[:, ::1] cond=None):
        """elbo_terms on the rows of a CSR matrix (see encode_csr). A row's
        draws are keyed by its dense values, so a row gets the numbers of
        elbo_terms on the dense row up to the order of the first layer's
        sums."""
        self._check_buffers(params.shape[0], floating is float)
        cdef Py_ssize_t n = self._check_csr_all(data.shape[0], indices, indptr)
        self._check_cond(cond, n)
        cdef fv_csr A = self._csr(
            <const void*> &data[0] if data.shape[0] else NULL, indices, indptr,
            False)
        return self._elbo_terms(params, <const floating*> NULL, 0, &A, n,
                                seed, stream, step, draw, n_threads, cond)

    cdef _elbo_terms(self, const floating[::1] params, const floating* X,
                     int64_t ldx, const fv_csr* A, int64_t n, seed, stream,
                     step, draw, int n_threads, const floating[:, ::1] cond):
        """elbo_terms' chunks of max_batch rows, of X (ldx its leading
        dimension) or, A not NULL, of A."""
        check_threads(n_threads)
        cdef int64_t start
        cdef int chunk
        cdef uint64_t s = check_u64(seed, "seed"), st = check_u64(stream, "stream")
        cdef uint64_t t = check_u64(step, "step"), d = check_u64(draw, "draw")
        cdef int64_t ldc = 0 if cond is None else cond.shape[1]
        cdef fv_csr rows_of_A
        recon_arr = np.empty(n, dtype=np.float64)
        kl_arr = np.empty(n, dtype=np.float64)
        cdef double[::1] recon = recon_arr
        cdef double[::1] kl = kl_arr
        cdef floating[::1] work = self._work
        if n == 0:
            return recon_arr, kl_arr
        self._claim()
        try:
            start = 0
            while start < n:
                chunk = <int> min(<int64_t> self.cfg.max_batch, n - start)
                if A != NULL:
                    rows_of_A = A[0]
                    rows_of_A.indptr = A.indptr + start
                    with nogil:
                        elbo_rows_csr(&self.cfg, &params[0], &work[0],
                                      &rows_of_A,
                                      NULL if ldc == 0 else &cond[start, 0],
                                      ldc, chunk, s, st, t, d, &recon[start],
                                      &kl[start], n_threads)
                else:
                    with nogil:
                        elbo_rows(&self.cfg, &params[0], &work[0],
                                  X + start * ldx, ldx,
                                  NULL if ldc == 0 else &cond[start, 0], ldc,
                                  chunk, s, st, t, d, &recon[start],
                                  &kl[start], n_threads)
                start += chunk
                PyErr_CheckSignals()
        finally:
            self._busy = False
        return recon_arr, kl_arr

    def log_likelihood(self, const floating[::1] params,
                       const floating[:, ::1] X, k, seed, stream,
                       int n_threads=1, const floating[:, ::1] cond=None,
                       row_offset=0, progress=None):
        """Importance-sampled log p(x | c) of every row with k samples.

        Row i's samples are a pure function of (seed, stream, row_offset + i,
        sample index), whatever the chunking. Rows go to C in chunks of about
        LL_PAIRS_PER_CALL (row, sample) pairs; between chunks Ctrl-C is
        checked and `progress(rows_done)` is called when given.

        Returns
        -------
        float64 array of shape (n_rows,)
        """
        self._check_buffers(params.shape[0], floating is float)
        if X.shape[1] != self.cfg.n_features:
            raise ValueError(f"X must have {self.cfg.n_features} columns")
        return self._log_likelihood(params, _rows_ptr(X), X.shape[1], NULL,
                                    X.shape[0], k, seed, stream, n_threads,
                                    cond, row_offset, progress)

    def log_likelihood_csr(self, const floating[::1] params,
                           const floating[::1] data,
                           const int32_t[::1] indices,
                           const int64_t[::1] indptr, k, seed, stream,
                           int n_threads=1, const floating[:, ::1] cond=None,
                           row_offset=0, progress=None):
        """log_likelihood on the rows of a CSR matrix (see encode_csr):
        row i's samples are those of dense row row_offset + i."""
        self._check_buffers(params.shape[0], floating is float)
        cdef Py_ssize_t n = self._check_csr_all(data.shape[0], indices, indptr)
        cdef fv_csr A = self._csr(
            <const void*> &data[0] if data.shape[0] else NULL, indices, indptr,
            False)
        return self._log_likelihood(params, <const floating*> NULL, 0, &A, n,
                                    k, seed, stream, n_threads, cond,
                                    row_offset, progress)

    cdef _log_likelihood(self, const floating[::1] params, const floating* X,
                         int64_t ldx, const fv_csr* A, int64_t n, k, seed,
                         stream, int n_threads, const floating[:, ::1] cond,
                         row_offset, progress):
        """log_likelihood's calls on the n rows of X (ldx its leading
        dimension) or, A not NULL, of A."""
        if self.cfg.kind != FV_KIND_VAE:
            raise ValueError("log-likelihoods need a VAE (an autoencoder "
                             "defines no density)")
        k = check_u64(k, "k")
        if not 1 <= k * max(n, 1) < 2**62:
            raise ValueError(f"k must be >= 1 with k * n_rows < 2**62, got k={k} "
                             f"for {n} rows")
        self._check_cond(cond, n)
        check_threads(n_threads)
        cdef int64_t start, kk = k
        cdef int chunk
        cdef uint64_t s = check_u64(seed, "seed"), st = check_u64(stream, "stream")
        cdef uint64_t ro = check_u64(row_offset, "row_offset")
        cdef int64_t ldc = 0 if cond is None else cond.shape[1]
        out_arr = np.empty(n, dtype=np.float64)
        cdef double[::1] out = out_arr
        cdef floating[::1] work = self._work
        cdef double[::1] row_losses = self._row_losses
        cdef int64_t mb = self.cfg.max_batch
        cdef int64_t rows_per_call = min(mb, max(<int64_t> 1,
                                                 LL_PAIRS_PER_CALL // kk))
        # Pairs per call for a row whose k alone exceeds LL_PAIRS_PER_CALL: a
        # multiple of max_batch, so the windows (and numbers) of one call.
        cdef int64_t pair_step = max(mb, LL_PAIRS_PER_CALL // mb * mb)
        cdef int64_t q, q_end, n_pairs
        cdef const floating* c_ptr
        # the pairs read the workspace alone; X is passed for the dense call's
        # signature (NULL for a CSR matrix)
        cdef const floating* x_ptr
        cdef fv_csr rows_of_A
        if n == 0:
            return out_arr
        self._claim()
        try:
            start = 0
            while start < n:
                chunk = <int> min(rows_per_call, n - start)
                c_ptr = NULL if ldc == 0 else &cond[start, 0]
                if A != NULL:
                    x_ptr = NULL
                    rows_of_A = A[0]
                    rows_of_A.indptr = A.indptr + start
                    with nogil:
                        log_likelihood_begin_csr(&self.cfg, &params[0],
                                                 &work[0], &row_losses[0],
                                                 &rows_of_A, c_ptr, ldc, chunk,
                                                 n_threads)
                else:
                    x_ptr = X + start * ldx
                    with nogil:
                        log_likelihood_begin(&self.cfg, &params[0], &work[0],
                                             &row_losses[0], x_ptr, ldx,
                                             c_ptr, ldc, chunk, n_threads)
                n_pairs = chunk * kk
                q = 0
                while q < n_pairs:
                    q_end = min(q + pair_step, n_pairs)
                    with nogil:
                        log_likelihood_pairs(&self.cfg, &params[0], &work[0],
                                             &row_losses[0], x_ptr, ldx, c_ptr,
                                             ldc, chunk, kk, s, st,
                                             ro + <uint64_t> start, q, q_end,
                                             n_threads)
                    q = q_end
                    PyErr_CheckSignals()
                    if progress is not None and q < n_pairs:
                        progress(start + <double> q / kk)
                with nogil:
                    log_likelihood_finish(&self.cfg, &row_losses[0], chunk, kk,
                                          &out[start])
                start += chunk
                if progress is not None:
                    progress(start)
        finally:
            self._busy = False
        return out_arr


cdef inline const floating* _rows_ptr(const floating[:, ::1] X):
    """X's first element (NULL for no rows)."""
    return &X[0, 0] if X.shape[0] else NULL


def _column_specs(columns):
    """Checked (kind, width, sigma) of every column."""
    specs = []
    for d, entry in enumerate(columns):
        try:
            name, width, col_sigma = entry
        except (TypeError, ValueError):
            raise ValueError(f"column {d} must be (kind, width, sigma), got "
                             f"{entry!r}") from None
        if name not in COLUMN_KINDS:
            raise ValueError(f"column {d}: kind must be one of "
                             f"{sorted(COLUMN_KINDS)}, got {name!r}")
        width = int(width)
        if name == "categorical" and not 2 <= width < 2**31:
            raise ValueError(f"column {d}: a categorical column needs 2 or "
                             f"more levels, got {width}")
        if name != "categorical" and width != 1:
            raise ValueError(f"column {d}: a {name} column has width 1")
        col_sigma = float(col_sigma)
        if name == "gaussian" and not (col_sigma > 0 and col_sigma < float("inf")):
            raise ValueError(f"column {d}: sigma must be > 0, got {col_sigma}")
        specs.append((name, width, col_sigma))
    if not specs:
        raise ValueError("columns must not be empty")
    if sum(w for _, w, _ in specs) >= 2**31:
        raise ValueError("the columns' widths must add up to less than 2**31")
    return specs


cdef int network_config(object network, fv_vae_config* cfg_out,
                        fv_optimizer* opt_out) except -1:
    cdef Network net
    if not isinstance(network, Network):
        raise TypeError(f"network must be a fastvae._core._network.Network, got "
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
