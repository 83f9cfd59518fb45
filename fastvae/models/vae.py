"""The variational autoencoder."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

import fastvae._core._rng as _rng
from fastvae import latent
from fastvae._validation import Param, check_memory
from fastvae.latent import ACTIVE_THRESHOLD
from fastvae.models import columns as _columns
from fastvae.models.anndata_input import accepts_anndata
from fastvae.models.base import BaseAutoencoder
from fastvae.models.docstrings import ATTRIBUTES, COMMON_PARAMETERS, TRAINING_PARAMETERS
from fastvae.optim import Optimizer

# Philox key word of impute's draws (distinct from the kernels' streams).
_IMPUTE_STREAM = 0x1397
# The encoder's log-variance clamp (src_c/fastvae/numerics.h).
_LOGVAR_RANGE = (-30.0, 20.0)


class VAE(BaseAutoencoder):
    __doc__ = (
        """Variational autoencoder trained by fastvae's compiled core.

    Encoder q(z|x) = N(mu(x), diag exp(logvar(x))) and decoder p(x|z) are
    MLPs; the prior is N(0, I). Training minimises the negative ELBO,
    recon + beta * KL, averaged over minibatches, with one compiled nogil
    call per step (forward, loss, backward and optimizer update). Passing
    `condition` to `fit` makes it a conditional VAE: the condition vector
    (e.g. one-hot labels, see fastvae.data.one_hot) is appended to the inputs
    of the encoder and the decoder.

    Parameters
    ----------"""
        + COMMON_PARAMETERS
        + """    beta : float, default=1.0
        Weight of the KL term (beta-VAE); 1 gives the ELBO.
    kl_warmup : int, default=0
        Number of steps over which the KL weight rises linearly from 0 to
        `beta`; 0 disables warm-up.
    objective : {"elbo", "iwae"}, default="elbo"
        The bound training maximises with ``n_latent_samples = k`` draws of z
        per row: "elbo", the ELBO with its reconstruction term averaged over
        the k draws (closed-form KL); "iwae", the importance-weighted bound
        log (1/k) sum_s p(x, z_s) / q(z_s | x) of Burda et al. (2016), tighter
        as k grows (with `beta` < 1 or warm-up, log p(z) - log q(z | x) is
        weighted by it). With k = 1 both are the plain ELBO step, bitwise.
        For "iwae", ``history_["reconstruction"]`` is the bound minus the
        weighted KL, so that loss = reconstruction + beta * kl still holds.
    n_latent_samples : int, default=1
        Draws of z per row and training step (k). A step costs about one
        encoder pass and k decoder passes; the decoder's workspace grows k
        times. Inference (``elbo``, ``score_samples``, ``log_likelihood``)
        does not depend on it.
    missing : {None, "mask"}, default=None
        "mask": NaN in X marks a missing entry. Training and every
        likelihood count only the observed entries; the encoder reads the
        missing ones as 0 together with one missingness indicator per
        column. ``impute`` fills the gaps. None: NaN is an error.
    library : {None, "observed"}, default=None
        "observed": scVI's decoder for count data. Every column counts
        (likelihood "negbin", "zinb" or "poisson"), and column d's mean is
        softmax(f(z))_d times the row's library size, its observed total
        count. ``decode`` and ``sample`` then give expression per unit of
        library size (each row sums to 1 over the columns' means) unless
        ``sample`` is given ``library_size``; ``reconstruct`` scales by each
        row's own total.
    dispersion : {"gene", "gene-batch"}, default="gene"
        The per-column tail parameters: the log-dispersion theta of every
        "negbin" and "zinb" column and the log-sigma of a Gaussian column
        with ``sigma="learned"`` (per-column likelihoods). "gene": one per
        column. "gene-batch": one per condition column and column, phi of
        shape (n_conditions, n_features), and row i's log-dispersion of
        column d is sum_b c_ib phi_bd (clamped like a shared one), scVI's
        ``dispersion="gene-batch"``: with the batches one-hot as
        ``condition``, one dispersion per gene and batch. Needs conditions
        in `fit` and such a column (a model with one Gaussian likelihood and
        ``sigma="learned"`` but no per-column path is refused).
    corruption : float in [0, 1), default=0.0
        Training only: probability of zeroing each input value the encoder
        sees (a denoising VAE); the reconstruction target stays clean.
"""
        + TRAINING_PARAMETERS
        + ATTRIBUTES
        + """    dispersion_ : ndarray of shape (n_features,) or \
(n_conditions, n_features)
        Models with a "negbin" or "zinb" column only: the learned
        dispersions theta (NaN for columns without one); with
        ``dispersion="gene-batch"`` one row per condition column (with
        one-hot batches, row b holds batch b's dispersions).

    Examples
    --------
    >>> import numpy as np, fastvae
    >>> X = (np.random.default_rng(0).random((256, 64)) > 0.5).astype(np.float32)
    >>> vae = fastvae.VAE(hidden=(32,), latent_dim=4, epochs=2).fit(X)
    >>> vae.transform(X).shape
    (256, 4)
    """
    )

    _kind = "vae"
    _estimator_type_tag = "density_estimator"

    def __init__(
        self,
        input_dim: int | None = None,
        hidden: Sequence[int] = (400,),
        latent_dim: int = 20,
        *,
        decoder_hidden: Sequence[int] | None = None,
        likelihood: str = "bernoulli",
        sigma: float | str = 1.0,
        activation: str = "relu",
        beta: float = 1.0,
        kl_warmup: int = 0,
        objective: str = "elbo",
        n_latent_samples: int = 1,
        missing: str | None = None,
        library: str | None = None,
        dispersion: str = "gene",
        corruption: float = 0.0,
        dynamic_binarization: bool = False,
        optimizer: str | Optimizer = "adam",
        lr: float | None = None,
        epochs: int = 20,
        batch_size: int = 128,
        dtype: DTypeLike = np.float32,
        random_state: int = 0,
        n_threads: int | None = None,
        verbose: int = 0,
        warm_start: bool = False,
        seed: int | None = None,
    ) -> None:
        self.input_dim = input_dim
        self.hidden = hidden
        self.latent_dim = latent_dim
        self.decoder_hidden = decoder_hidden
        self.likelihood = likelihood
        self.sigma = sigma
        self.activation = activation
        self.beta = beta
        self.kl_warmup = kl_warmup
        self.objective = objective
        self.n_latent_samples = n_latent_samples
        self.missing = missing
        self.library = library
        self.dispersion = dispersion
        self.corruption = corruption
        self.dynamic_binarization = dynamic_binarization
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.dtype = dtype
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose
        self.warm_start = warm_start
        self.seed = seed

    def _kl_weight(self, s, t):
        if s.kl_warmup <= 0:
            return float(s.beta)
        return float(s.beta) * min(1.0, (t + 1) / s.kl_warmup)

    @accepts_anndata
    def encode(
        self, X: ArrayLike, condition: ArrayLike | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Parameters of q(z|x).

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        mu : ndarray of shape (n_samples, latent_dim)
        logvar : ndarray of shape (n_samples, latent_dim)
            Log-variance, clamped to the range the model uses ([-30, 20]).
        """
        H = self._head(X, condition)
        k = H.shape[1] // 2
        return H[:, :k].copy(), np.clip(H[:, k:], -30.0, 20.0)

    @accepts_anndata
    def transform(self, X: ArrayLike, condition: ArrayLike | None = None) -> np.ndarray:
        """Posterior means mu(x).

        Deterministic, and row by row: each output row is a pure function of
        that input row (bitwise, for any batch, order or thread count).

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples, latent_dim)
        """
        H = self._head(X, condition)
        mu = H[:, : H.shape[1] // 2].copy()
        return self._as_output(mu, X, self.get_feature_names_out())

    @accepts_anndata
    def reconstruct(
        self, X: ArrayLike, condition: ArrayLike | None = None
    ) -> np.ndarray:
        """decode(transform(X)): reconstructions through the posterior means.

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            With ``library="observed"``: each row's expected counts, the
            decoded proportions times the row's total count.
        """
        out = self.decode(self.transform(X, condition), condition)
        if self._fitted_settings.library is not None:
            # the rows' own totals (X was checked by transform above)
            sparse: Any = X
            rows = sparse.sum(axis=1) if hasattr(X, "tocsr") else np.sum(X, axis=1)
            totals = np.asarray(rows, dtype=np.float64).ravel()
            out *= np.maximum(totals, 1.0).astype(out.dtype)[:, None]
        return out

    def sample(
        self,
        n_samples: int = 1,
        *,
        condition: ArrayLike | None = None,
        seed: int | None = None,
        library_size: float | ArrayLike | None = None,
    ) -> np.ndarray:
        """Draw x-space means by decoding z ~ N(0, I).

        Parameters
        ----------
        n_samples : int >= 1
        condition : array-like of shape (n_conditions,) or (n_samples, n_conditions)
            Conditional models only: one condition for all samples, or one per
            sample.
        seed : int, optional
            Seed of the latent draws; the model's seed when None, so repeated
            calls return the same samples.
        library_size : float or array-like of shape (n_samples,), optional
            Models with ``library="observed"`` only: the total counts to
            scale the decoded proportions by (one for all, or one per sample).

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        self._check_fitted()
        if library_size is not None:
            if self._fitted_settings.library is None:
                raise ValueError(
                    "library_size needs a model fitted with library='observed'"
                )
            library_size = np.asarray(library_size, dtype=np.float64)
            if library_size.ndim > 1 or library_size.size not in (1, int(n_samples)):
                raise ValueError(
                    f"library_size must be one number or {n_samples} numbers, got "
                    f"shape {library_size.shape}"
                )
            if not (np.isfinite(library_size).all() and (library_size > 0).all()):
                raise ValueError("library_size must be finite and > 0")
        Param(numbers.Integral, low=1).check("n_samples", n_samples)
        seed = self._fitted_settings.seed if seed is None else seed
        Param(numbers.Integral, low=0, high=2**64 - 1).check("seed", seed)
        check_memory(
            int(n_samples)
            * (self._fitted_settings.latent_dim + self.n_features_in_)
            * self.params_.dtype.itemsize,
            f"sample({n_samples})",
            "draw fewer samples per call",
        )
        if condition is not None and self.n_conditions_:
            condition = np.asarray(condition)
            if condition.ndim == 1:
                condition = np.broadcast_to(condition, (int(n_samples), condition.size))
        Z = _rng.normal_matrix(
            seed,
            _rng.STREAM_SAMPLE,
            0,
            int(n_samples),
            self._fitted_settings.latent_dim,
            dtype=self.params_.dtype,
        )
        out = self.decode(Z, condition)
        if library_size is not None:
            out *= library_size.reshape(-1, 1).astype(out.dtype)
        return out

    @accepts_anndata
    def diagnostics(
        self,
        X: ArrayLike,
        condition: ArrayLike | None = None,
        *,
        threshold: float = ACTIVE_THRESHOLD,
    ) -> dict:
        """Signs of posterior collapse on data X.

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
        threshold : float, default=0.01
            Burda et al.'s activity threshold on Cov_x(E_q[z_j]).

        Returns
        -------
        dict
            "active_units" (int), "latent_dim", "posterior_mean_variance"
            and "kl_per_dimension" (lists of floats, nats per sample, one
            per latent dimension) and "collapsed" (True when most
            dimensions are inactive).
        """
        mu, logvar = self.encode(X, condition)
        n_active, variance = latent.active_units(mu, threshold)
        k = mu.shape[1]
        return {
            "active_units": n_active,
            "latent_dim": k,
            "posterior_mean_variance": variance.tolist(),
            "kl_per_dimension": latent.kl_per_dimension(mu, logvar).tolist(),
            "collapsed": n_active < k / 2,
        }

    @accepts_anndata
    def elbo(self, X: ArrayLike, condition: ArrayLike | None = None) -> np.ndarray:
        """Per-sample evidence lower bound log p(x|z) - KL(q(z|x) || p(z)).

        One z per sample, its eps drawn from a fixed evaluation stream keyed by
        the row's values: repeated calls give the same numbers, and a row's
        number does not depend on the other rows of the call (a subset or a
        permutation of X gives bitwise those rows).

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        X = self._target(X)
        return self._elbo_rows(X, self._fitted_conditions(condition, X.shape[0]))

    @accepts_anndata
    def impute(
        self,
        X: ArrayLike,
        condition: ArrayLike | None = None,
        *,
        n_imputations: int | None = None,
        random_state: int | None = None,
    ) -> np.ndarray:
        """Fill the missing entries (NaN) of X from the model.

        Needs a model fitted with ``missing="mask"``. Each row is encoded
        from its observed entries (and which ones are missing).

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
        n_imputations : int >= 1, optional
            None: fill every gap with the decoder's mean at the posterior
            mean code (a categorical column: its most probable level; a
            Bernoulli column: its probability). An int m: m draws per gap,
            each from z ~ q(z | x) and then x ~ p(x | z), as in multiple
            imputation.
        random_state : int, optional
            Seed of the draws; the model's when None.

        Returns
        -------
        ndarray of shape (n_samples, n_features), or (n_imputations,
        n_samples, n_features) with n_imputations; observed entries are
        returned unchanged.
        """
        self._check_fitted()
        s = self._fitted_settings
        if s.missing is None:
            raise ValueError(
                "impute needs a model fitted with missing='mask' (this one was "
                "trained without missing values)"
            )
        X = self._input(X)
        cond = self._fitted_conditions(condition, X.shape[0])
        gone = np.isnan(X)
        columns = self.columns_
        head = self._call("encode", X, cond=cond)
        k = s.latent_dim
        mu, logvar = np.ascontiguousarray(head[:, :k]), head[:, k:]
        if n_imputations is None:
            filled = _columns.point(columns, self._call("decode", mu, cond=cond))
            return np.where(gone, filled, X)
        Param(numbers.Integral, low=1).check("n_imputations", n_imputations)
        seed = s.seed if random_state is None else random_state
        Param(numbers.Integral, low=0, high=2**64 - 1).check("random_state", seed)
        check_memory(
            int(n_imputations) * X.size * X.itemsize,
            f"impute(n_imputations={n_imputations})",
            "ask for fewer imputations per call",
        )
        rng = np.random.Generator(np.random.Philox(key=[seed, _IMPUTE_STREAM]))
        tail = self._fitted_tail(cond)  # per row with dispersion="gene-batch"
        sd = np.exp(0.5 * np.clip(logvar, *_LOGVAR_RANGE))
        out = np.empty((int(n_imputations), *X.shape), dtype=X.dtype)
        for m in range(int(n_imputations)):
            z = (mu + sd * rng.standard_normal(mu.shape)).astype(X.dtype)
            means = self._call("decode", z, cond=cond)
            out[m] = np.where(
                gone, _columns.draw(columns, means, tail, s.sigma, rng), X
            )
        return out

    @property
    def dispersion_(self) -> np.ndarray:
        """The negative binomials' dispersions theta: shape (n_features,), or
        (n_conditions, n_features) with dispersion="gene-batch"; NaN for
        columns without one."""
        self._check_fitted()
        columns = getattr(self, "columns_", None)
        negbin = [kind in ("negbin", "zinb") for kind, _ in columns or ()]
        if not any(negbin):
            raise AttributeError(
                "dispersion_ exists only for a model with a 'negbin' or 'zinb' column"
            )
        tail = self._fitted_tail().astype(np.float64)
        theta = np.exp(np.clip(tail, *_columns.LOGDISP_RANGE))
        return np.where(negbin, theta, np.nan)

    @accepts_anndata
    def score_samples(
        self, X: ArrayLike, condition: ArrayLike | None = None
    ) -> np.ndarray:
        """Per-sample ELBO, a lower bound on log p(x); see `elbo`.

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        return self.elbo(X, condition)

    @accepts_anndata
    def score(
        self, X: ArrayLike, y: object = None, condition: ArrayLike | None = None
    ) -> float:
        """Mean per-sample ELBO of X in nats (higher is better).

        The mean of `score_samples(X)`: a lower bound on the mean
        log-likelihood, estimated with one z per row from the fixed
        evaluation stream, so it is deterministic and what model selection
        (e.g. GridSearchCV without a `scoring`) maximises.

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        y : ignored
            Accepted for scikit-learn compatibility.
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        float
        """
        return float(np.mean(self.elbo(X, condition)))

    @accepts_anndata
    def log_likelihood(
        self,
        X: ArrayLike,
        condition: ArrayLike | None = None,
        *,
        k: int = 5000,
        seed: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Importance-sampled estimate of log p(x) for every sample.

        log p(x) ~ log (1/k) sum_s p(x | z_s) p(z_s) / q(z_s | x) with
        z_s ~ q(z | x): the test log-likelihood VAE papers report (k = 5000).
        It is a lower bound in expectation that tightens as k grows (Burda et
        al., 2016); k = 1 is a single-sample ELBO with a sampled KL term.
        Computed in compiled code in windows of at most 512 (row, sample)
        pairs, so memory stays bounded for any k; the work is n_samples * k
        decoder passes. Unlike the other inference methods it runs its
        layers through BLAS (fastest for these large batches), whose rounding
        depends on a row's position in a call: a row's estimate can differ in
        the last bits between batches; its samples depend on the row's index
        in X. The work is n_samples * k decoder passes (about 8 µs each for
        a 784-200-200-50 model on one core: k = 5000 over 10,000 rows takes
        several minutes); Ctrl-C stops it within about a second.

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
        k : int >= 1, default=5000
            Importance samples per data point.
        seed : int, optional
            Seed of the draws; the model's seed when None. Sample s of row i
            depends only on (seed, i, s).
        progress : bool, default=False
            Show a progress bar (rows done, rate and time left) on stderr.

        Returns
        -------
        ndarray of shape (n_samples,), float64
            Estimates in nats.

        References
        ----------
        Burda, Grosse and Salakhutdinov, "Importance Weighted Autoencoders",
        ICLR 2016.
        """
        X = self._target(X)
        cond = self._fitted_conditions(condition, X.shape[0])
        Param(numbers.Integral, low=1, high=2**40).check("k", k)
        seed = self._fitted_settings.seed if seed is None else seed
        Param(numbers.Integral, low=0, high=2**64 - 1).check("seed", seed)
        if not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress must be True or False, got {progress!r}")
        if not progress:
            return self._call(
                "log_likelihood", X, int(k), seed, _rng.STREAM_IS, cond=cond
            )
        from tqdm.auto import tqdm

        with tqdm(
            total=X.shape[0],
            unit="row",
            desc=f"log p(x), k={k}",
            dynamic_ncols=True,
            mininterval=0.5,
        ) as bar:

            def advance(rows_done):
                bar.update(rows_done - bar.n)

            return self._call(
                "log_likelihood",
                X,
                int(k),
                seed,
                _rng.STREAM_IS,
                cond=cond,
                progress=advance,
            )
