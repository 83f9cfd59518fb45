"""The estimators: VAE, Autoencoder and DenoisingAutoencoder, and load().

All three train with the same compiled step (one nogil call per minibatch)
and share the scikit-learn conventions of fastvae.models.base.BaseAutoencoder.
"""

from __future__ import annotations

import numbers

import numpy as np

from fastvae import _atomic
from fastvae._core import _rng
from fastvae._validation import Param, check_memory
from fastvae.models import checkpoint as _ckpt
from fastvae.models import file_format as _io
from fastvae.models.base import BaseAutoencoder

__all__ = [
    "VAE",
    "Autoencoder",
    "DenoisingAutoencoder",
    "load",
    "resume",
    "checkpoint_info",
]

_COMMON_PARAMETERS = """
    input_dim : int, optional
        Number of features. Inferred from the data in `fit` when None.
    hidden : int or tuple of int, default=(400,)
        Encoder hidden layer widths.
    latent_dim : int, default=20
        Size of the code z.
    decoder_hidden : int or tuple of int, optional
        Decoder hidden layer widths; the reverse of `hidden` when None.
    likelihood : {"bernoulli", "gaussian"}, default="bernoulli"
        p(x|z): Bernoulli with logits for data in [0, 1], or Gaussian.
    sigma : float or "learned", default=1.0
        Observation noise of the Gaussian likelihood: a fixed value, or
        "learned" for one trained standard deviation per feature (its log
        clamped to [-7, 5]).
    activation : {"relu", "tanh", "sigmoid", "identity"}, default="relu"
        Activation of every hidden layer.
"""

_TRAINING_PARAMETERS = """
    dynamic_binarization : bool, default=False
        Draw binary training targets x ~ Bernoulli(X) afresh at every step
        (X in [0, 1], Bernoulli likelihood): the "dynamically binarized MNIST"
        of the VAE literature.
    optimizer : {"adam", "momentum", "sgd"} or a fastvae.optim object, default="adam"
    lr : float, optional
        Learning rate; the optimizer's default (Adam 1e-3, SGD and momentum
        0.01) when None.
    epochs : int, default=10
    batch_size : int, default=128
    dtype : numpy.float32 or numpy.float64, default=numpy.float32
        Precision of parameters and computation.
    seed : int, default=0
        Seeds initialisation, shuffling and every random draw (Philox key);
        the same seed gives bitwise identical results for any thread count.
    n_threads : int, optional
        Threads for this model; fastvae.get_num_threads() when None.
    verbose : {0, 1, 2}, default=0
        1 shows a progress bar during `fit`, 2 also prints one line per epoch.
    warm_start : bool, default=False
        When True, `fit` on a fitted model continues from its parameters and
        optimizer state instead of starting over.
"""

_ATTRIBUTES = """
    Attributes
    ----------
    params_ : ndarray of shape (n_params,)
        All weights and biases (and learned log-sigmas) in one contiguous
        buffer.
    n_features_in_ : int
    n_conditions_ : int
        Width of the condition vector the model was fitted with (0: none).
    n_iter_ : int
        Epochs trained.
    t_ : int
        Optimizer steps taken.
    history_ : dict of lists
        Per epoch: "epoch", "loss", "reconstruction", "kl", "elbo",
        "val_elbo" (None without validation data), "seconds",
        "samples_per_second"; finer: "step", "step_loss".
    loss_curve_ : list of float
        Mean training loss of each epoch.
    sigma_ : float or ndarray of shape (n_features,)
        Gaussian likelihood only: the fixed or learned standard deviations.
"""


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
        + _COMMON_PARAMETERS
        + """    beta : float, default=1.0
        Weight of the KL term (beta-VAE); 1 gives the ELBO.
    kl_warmup : int, default=0
        Number of steps over which the KL weight rises linearly from 0 to
        `beta`; 0 disables warm-up.
    corruption : float in [0, 1), default=0.0
        Training only: probability of zeroing each input value the encoder
        sees (a denoising VAE); the reconstruction target stays clean.
"""
        + _TRAINING_PARAMETERS
        + _ATTRIBUTES
        + """
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
        input_dim=None,
        hidden=(400,),
        latent_dim=20,
        *,
        decoder_hidden=None,
        likelihood="bernoulli",
        sigma=1.0,
        activation="relu",
        beta=1.0,
        kl_warmup=0,
        corruption=0.0,
        dynamic_binarization=False,
        optimizer="adam",
        lr=None,
        epochs=10,
        batch_size=128,
        dtype=np.float32,
        seed=0,
        n_threads=None,
        verbose=0,
        warm_start=False,
    ):
        self.input_dim = input_dim
        self.hidden = hidden
        self.latent_dim = latent_dim
        self.decoder_hidden = decoder_hidden
        self.likelihood = likelihood
        self.sigma = sigma
        self.activation = activation
        self.beta = beta
        self.kl_warmup = kl_warmup
        self.corruption = corruption
        self.dynamic_binarization = dynamic_binarization
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.dtype = dtype
        self.seed = seed
        self.n_threads = n_threads
        self.verbose = verbose
        self.warm_start = warm_start

    def _kl_weight(self, s, t):
        if s.kl_warmup <= 0:
            return float(s.beta)
        return float(s.beta) * min(1.0, (t + 1) / s.kl_warmup)

    def fit(
        self,
        X,
        y=None,
        *,
        condition=None,
        epochs=None,
        batch_size=None,
        optimizer=None,
        lr=None,
        validation_data=None,
        checkpoint=None,
        checkpoint_every=1,
        checkpoint_every_steps=None,
        checkpoint_meta=None,
        comm=None,
        callbacks=None,
    ):
        """Train on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; in [0, 1] for the Bernoulli likelihood.
        y : ignored
            Accepted for scikit-learn compatibility.
        condition : array-like of shape (n_samples, n_conditions), optional
            Makes the model conditional: every method then takes the matching
            condition rows.
        epochs, batch_size, optimizer, lr : optional
            Override the constructor's values for this call.
        validation_data : array-like of shape (n_val, n_features), or a tuple
            (X_val, condition_val) for a conditional model, optional.
            Its mean ELBO is recorded after every epoch in history_["val_elbo"].
        checkpoint : str or os.PathLike, optional
            Write training checkpoints to this file (or to checkpoint.npz in
            this folder): after every `checkpoint_every` epochs, after every
            `checkpoint_every_steps` steps when given, and at the end. Each
            write replaces the previous checkpoint atomically; a run that is
            killed continues exactly with `fastvae.resume`. See the
            fastvae.models.checkpoint module for the format. With `comm`, rank 0
            writes it (its arguments count, the other ranks' are ignored).
        checkpoint_every : int >= 0, default=1
            Epochs between checkpoints (a checkpoint follows every epoch whose
            number is a multiple of it); 0 for none but the final one (and
            the `checkpoint_every_steps` ones).
        checkpoint_every_steps : int >= 1, optional
            Also checkpoint after every step whose count ``t_`` is a multiple of
            it, mid-epoch too.
        checkpoint_meta : dict, optional
            JSON-serialisable data stored in the checkpoint (returned by
            `fastvae.checkpoint_info` as "meta").
        comm : mpi4py communicator or fastvae.models.distributed.Group, optional
            Train data-parallel over its ranks (e.g. ``MPI.COMM_WORLD`` in a
            script started by ``mpiexec -n 4 python -m mpi4py train.py``).
            Every rank calls fit with the same X and settings; batch_size is
            the global minibatch, of which each rank computes one share, and
            the result equals one process's training on the same minibatches
            up to float rounding (see fastvae.models.distributed). Only rank 0 shows
            progress and writes checkpoints; saving the model is the caller's
            (e.g. ``if comm.rank == 0: vae.save(path)``). When n_threads is
            None and OMP_NUM_THREADS unset, each rank uses its cores divided
            by the ranks on its node.
        callbacks : list of fastvae.callbacks.Callback, optional
            Code run at the start, after every step and epoch, and at the end
            of training; a hook returning True stops training there (see
            fastvae.callbacks). With ``verbose >= 1`` a ProgressBar runs
            first. With `comm`, every rank runs its own.

        Returns
        -------
        VAE
            The fitted model (self).

        Raises
        ------
        ValueError, TypeError
            For invalid settings or data (the message names the problem).
            With `comm`, an error on one rank before training raises on every
            rank (fastvae.exceptions.RemoteRankError, a RuntimeError, on the
            others), and so do data or settings that differ between ranks.
        FloatingPointError
            If the loss or a gradient becomes NaN or infinite; the parameters
            are those before the failing step, no checkpoint is written with
            non-finite numbers, and the message says where the last good
            checkpoint is. With `comm`, on every rank at the same step.
        ImportError
            If `comm` is given but mpi4py or an MPI library is missing.

        Notes
        -----
        With `comm`, any other exception while training (on one rank, which
        the others would wait for forever) prints the rank and the error on
        stderr and ends the whole MPI job with MPI_Abort.
        """
        return _fit_public(
            self,
            X,
            condition,
            {
                "epochs": epochs,
                "batch_size": batch_size,
                "optimizer": optimizer,
                "lr": lr,
            },
            validation_data,
            (checkpoint, checkpoint_every, checkpoint_every_steps, checkpoint_meta),
            comm,
            callbacks,
        )

    def encode(self, X, condition=None):
        """Parameters of q(z|x).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
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

    def transform(self, X, condition=None):
        """Posterior means mu(x).

        Deterministic, and row by row: each output row is a pure function of
        that input row (bitwise, for any batch, order or thread count).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples, latent_dim)
        """
        H = self._head(X, condition)
        return H[:, : H.shape[1] // 2].copy()

    def reconstruct(self, X, condition=None):
        """decode(transform(X)): reconstructions through the posterior means.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        return self.decode(self.transform(X, condition), condition)

    def sample(self, n_samples=1, *, condition=None, seed=None):
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

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        self._check_fitted()
        Param(numbers.Integral, low=1).check("n_samples", n_samples)
        seed = self.seed if seed is None else seed
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
        return self.decode(Z, condition)

    def elbo(self, X, condition=None):
        """Per-sample evidence lower bound log p(x|z) - KL(q(z|x) || p(z)).

        One z per sample, its eps drawn from a fixed evaluation stream keyed by
        the row's values: repeated calls give the same numbers, and a row's
        number does not depend on the other rows of the call (a subset or a
        permutation of X gives bitwise those rows).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        X = self._target(X)
        return self._elbo_rows(X, self._fitted_conditions(condition, X.shape[0]))

    def score_samples(self, X, condition=None):
        """Per-sample ELBO, a lower bound on log p(x); see `elbo`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        return self.elbo(X, condition)

    def score(self, X, y=None, condition=None):
        """Mean per-sample ELBO of X in nats (higher is better).

        The mean of `score_samples(X)`: a lower bound on the mean
        log-likelihood, estimated with one z per row from the fixed
        evaluation stream, so it is deterministic and what model selection
        (e.g. GridSearchCV without a `scoring`) maximises.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
            Accepted for scikit-learn compatibility.
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        float
        """
        return float(np.mean(self.elbo(X, condition)))

    def log_likelihood(self, X, condition=None, *, k=5000, seed=None):
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
        in X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
        k : int >= 1, default=5000
            Importance samples per data point.
        seed : int, optional
            Seed of the draws; the model's seed when None. Sample s of row i
            depends only on (seed, i, s).

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
        seed = self.seed if seed is None else seed
        Param(numbers.Integral, low=0, high=2**64 - 1).check("seed", seed)
        return self._call("log_likelihood", X, int(k), seed, _rng.STREAM_IS, cond=cond)


class Autoencoder(BaseAutoencoder):
    __doc__ = (
        """Plain (deterministic) autoencoder on the same compiled core.

    The encoder maps x to a code z = encoder(x) and the decoder maps z back;
    training minimises the reconstruction loss -log p(x|z) (no KL term, no
    sampling). With `corruption` > 0 the encoder sees inputs with values
    zeroed at random (a denoising autoencoder, see DenoisingAutoencoder). The
    baseline of the VAE tutorials: reconstructions are good, but decoding
    random codes does not give data-like samples, since nothing shapes the
    code distribution.

    Parameters
    ----------"""
        + _COMMON_PARAMETERS
        + """    corruption : float in [0, 1), default=0.0
        Training only: probability of zeroing each input value the encoder
        sees; the reconstruction target stays clean.
"""
        + _TRAINING_PARAMETERS
        + _ATTRIBUTES
    )

    _kind = "ae"

    def __init__(
        self,
        input_dim=None,
        hidden=(400,),
        latent_dim=20,
        *,
        decoder_hidden=None,
        likelihood="bernoulli",
        sigma=1.0,
        activation="relu",
        corruption=0.0,
        dynamic_binarization=False,
        optimizer="adam",
        lr=None,
        epochs=10,
        batch_size=128,
        dtype=np.float32,
        seed=0,
        n_threads=None,
        verbose=0,
        warm_start=False,
    ):
        self.input_dim = input_dim
        self.hidden = hidden
        self.latent_dim = latent_dim
        self.decoder_hidden = decoder_hidden
        self.likelihood = likelihood
        self.sigma = sigma
        self.activation = activation
        self.corruption = corruption
        self.dynamic_binarization = dynamic_binarization
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.dtype = dtype
        self.seed = seed
        self.n_threads = n_threads
        self.verbose = verbose
        self.warm_start = warm_start

    def fit(
        self,
        X,
        y=None,
        *,
        condition=None,
        epochs=None,
        batch_size=None,
        optimizer=None,
        lr=None,
        validation_data=None,
        checkpoint=None,
        checkpoint_every=1,
        checkpoint_every_steps=None,
        checkpoint_meta=None,
        comm=None,
        callbacks=None,
    ):
        """Train on X, as `VAE.fit`.

        history_["kl"] is all zeros and history_["val_elbo"] holds the
        validation reconstruction log-likelihood log p(x | encoder(x)).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; in [0, 1] for the Bernoulli likelihood.
        y : ignored
            Accepted for scikit-learn compatibility.
        condition : array-like of shape (n_samples, n_conditions), optional
            Makes the model conditional.
        epochs, batch_size, optimizer, lr : optional
            Override the constructor's values for this call.
        validation_data : array-like, or a tuple (X_val, condition_val), optional
            Scored after every epoch into history_["val_elbo"].
        checkpoint : str or os.PathLike, optional
            Training checkpoints, as for `VAE.fit`.
        checkpoint_every : int >= 0, default=1
            Epochs between checkpoints.
        checkpoint_every_steps : int >= 1, optional
            Also checkpoint every this many steps.
        checkpoint_meta : dict, optional
            JSON-serialisable data stored in the checkpoint.
        comm : mpi4py communicator or fastvae.models.distributed.Group, optional
            Train data-parallel over its ranks, as for `VAE.fit`.
        callbacks : list of fastvae.callbacks.Callback, optional
            Run inside fit, as for `VAE.fit`.

        Returns
        -------
        Autoencoder
            The fitted model (self).
        """
        return _fit_public(
            self,
            X,
            condition,
            {
                "epochs": epochs,
                "batch_size": batch_size,
                "optimizer": optimizer,
                "lr": lr,
            },
            validation_data,
            (checkpoint, checkpoint_every, checkpoint_every_steps, checkpoint_meta),
            comm,
            callbacks,
        )

    def transform(self, X, condition=None):
        """The codes z = encoder(x).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples, latent_dim)
        """
        return self._head(X, condition)

    def encode(self, X, condition=None):
        """The codes z = encoder(x), as `transform`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples, latent_dim)
        """
        return self._head(X, condition)

    def reconstruct(self, X, condition=None):
        """decode(transform(X)): reconstructions through the codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        return self.decode(self.transform(X, condition), condition)

    def score_samples(self, X, condition=None):
        """Per-sample reconstruction log-likelihood log p(x | z = encoder(x)).

        Not a bound on log p(x): an autoencoder defines no density.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        X = self._target(X)
        return self._elbo_rows(X, self._fitted_conditions(condition, X.shape[0]))

    def score(self, X, y=None, condition=None):
        """Mean per-sample reconstruction log-likelihood (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
            Accepted for scikit-learn compatibility.
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        float
        """
        return float(np.mean(self.score_samples(X, condition)))


class DenoisingAutoencoder(Autoencoder):
    __doc__ = (
        """Autoencoder trained to reconstruct inputs from corrupted copies.

    The same as ``Autoencoder(corruption=0.25)``: during training each input
    value the encoder sees is zeroed with probability `corruption` (masking
    noise, Vincent et al. 2008), while the loss compares the decoder's output
    with the clean input. Evaluation uses clean inputs.

    Parameters
    ----------"""
        + _COMMON_PARAMETERS
        + """    corruption : float in (0, 1), default=0.25
        Training only: probability of zeroing each input value the encoder
        sees; the reconstruction target stays clean.
"""
        + _TRAINING_PARAMETERS
        + _ATTRIBUTES
    )

    def __init__(
        self,
        input_dim=None,
        hidden=(400,),
        latent_dim=20,
        *,
        decoder_hidden=None,
        likelihood="bernoulli",
        sigma=1.0,
        activation="relu",
        corruption=0.25,
        dynamic_binarization=False,
        optimizer="adam",
        lr=None,
        epochs=10,
        batch_size=128,
        dtype=np.float32,
        seed=0,
        n_threads=None,
        verbose=0,
        warm_start=False,
    ):
        super().__init__(
            input_dim,
            hidden,
            latent_dim,
            decoder_hidden=decoder_hidden,
            likelihood=likelihood,
            sigma=sigma,
            activation=activation,
            corruption=corruption,
            dynamic_binarization=dynamic_binarization,
            optimizer=optimizer,
            lr=lr,
            epochs=epochs,
            batch_size=batch_size,
            dtype=dtype,
            seed=seed,
            n_threads=n_threads,
            verbose=verbose,
            warm_start=warm_start,
        )


ESTIMATORS = {cls.__name__: cls for cls in (VAE, Autoencoder, DenoisingAutoencoder)}


def _on_ranks(comm, run):
    """run(None) on this process, or run(group) on every rank of comm as one
    data-parallel fit (fastvae.models.distributed.fit: errors before training are
    shared, a failure of one rank during it aborts the job)."""
    if comm is None:
        return run(None)
    from fastvae.models import distributed

    return distributed.fit(comm, run)


def _fit_public(
    model, X, condition, overrides, validation_data, checkpoint_args, comm, callbacks
):
    """fit's body for every estimator: over MPI with `comm`, else settings
    checked first (the likelier mistake), then the checkpoint options."""
    if comm is not None:
        return _fit_on_ranks(
            model,
            X,
            condition,
            overrides,
            validation_data,
            checkpoint_args,
            comm,
            callbacks,
        )
    settings = model._settings(overrides)  # bad settings first: the likelier mistake
    return model._fit(
        X,
        condition,
        overrides,
        validation_data,
        _ckpt.options(*checkpoint_args),
        callbacks=callbacks,
        settings=settings,
    )


def _fit_on_ranks(
    model, X, condition, overrides, validation_data, checkpoint_args, comm, callbacks
):
    """fit over the ranks of comm. Settings and checkpoint options are checked
    inside the collective part, so that a rank they fail on cannot leave the
    others waiting; rank 0 alone writes checkpoints."""

    def run(group):
        model._settings(overrides)  # bad settings first: the likelier mistake
        options = _ckpt.options(*checkpoint_args) if group.is_root else None
        return model._fit(
            X,
            condition,
            {**overrides, **group.overrides(model)},
            validation_data,
            options,
            comm=group,
            callbacks=callbacks,
        )

    return _on_ranks(comm, run)


def _from_file(path, formats):
    """(model, metadata) from a verified model file or checkpoint."""
    meta, arrays = _io.load(path, formats=formats)
    what = "checkpoint" if meta["format"] == _io.CHECKPOINT_FORMAT else "model file"
    estimator = meta.get("estimator")
    cls = ESTIMATORS.get(estimator) if isinstance(estimator, str) else None
    if cls is None:
        raise _io.ModelFileError(
            f"{path} holds {estimator!r}, not one of {sorted(ESTIMATORS)}"
        )
    model = cls()
    try:
        model._set_state(meta, arrays)
    except KeyError as exc:
        raise _io.ModelFileError(
            f"{path} is not a valid {what}: missing {exc}"
        ) from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise _io.ModelFileError(f"{path} is not a valid {what}: {exc}") from None
    return model, meta


def load(path):
    """Load a model written by VAE.save (or an autoencoder's save), or the
    model in a training checkpoint.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    VAE, Autoencoder or DenoisingAutoencoder
        A fitted model, ready for inference or (with warm_start=True) more
        training.

    Raises
    ------
    FileNotFoundError
        If there is no file at `path`.
    fastvae.ModelFileError
        If the file is truncated, corrupted, from a newer format, holds
        invalid settings or non-finite parameters, or is not a fastvae file.
    """
    return _from_file(path, (_io.MODEL_FORMAT, _io.CHECKPOINT_FORMAT))[0]


def _read_checkpoint(checkpoint):
    """(path, model, progress, metadata) of a verified checkpoint."""
    path = _ckpt.checkpoint_path(checkpoint, must_exist=True)
    model, meta = _from_file(path, (_io.CHECKPOINT_FORMAT,))
    try:
        progress = _ckpt.read_progress(
            meta.get("progress"),
            n_iter=model.n_iter_,
            n_features=model.n_features_in_,
            n_conditions=model.n_conditions_,
        )
        if not isinstance(meta.get("user"), dict):
            raise ValueError("user must be a JSON object")
    except (TypeError, ValueError) as exc:
        raise _io.ModelFileError(f"{path} is not a valid checkpoint: {exc}") from None
    return path, model, progress, meta


def checkpoint_info(checkpoint):
    """Where a checkpointed run stands (the whole file is verified).

    Parameters
    ----------
    checkpoint : str or os.PathLike
        A checkpoint file, or a folder holding checkpoint.npz.

    Returns
    -------
    dict
        "path", "estimator" (class name), "epochs" (the run's total),
        "epochs_done" (``n_iter_``), "epoch_step" (minibatches of the next
        epoch already done), "steps" (``t_``), "finished" (bool) and "meta" (what fit
        stored as checkpoint_meta).

    Raises
    ------
    FileNotFoundError, fastvae.ModelFileError
        As for `resume`.
    """
    path, model, progress, meta = _read_checkpoint(checkpoint)
    step = progress["epoch"].step
    return {
        "path": path,
        "estimator": type(model).__name__,
        "epochs": progress["epochs"],
        "epochs_done": model.n_iter_,
        "epoch_step": step,
        "steps": model.t_,
        "finished": model.n_iter_ >= progress["epochs"] and step == 0,
        "meta": meta["user"],
    }


def resume(
    checkpoint,
    X,
    *,
    condition=None,
    validation_data=None,
    epochs=None,
    checkpoint_every=None,
    checkpoint_every_steps=None,
    n_threads=None,
    verbose=None,
    callbacks=None,
    comm=None,
):
    """Continue a checkpointed training run exactly where it stopped.

    The checkpoint (written by ``fit(..., checkpoint=...)``) holds the
    settings, parameters, optimizer state, step and epoch counters, history
    and the position inside the epoch; training continues from there, with
    the same batch size, and keeps writing checkpoints to the same file.
    Given the same training data, the final parameters are bitwise identical
    to those of a run that was never interrupted (for any thread count).

    Parameters
    ----------
    checkpoint : str or os.PathLike
        A checkpoint file, or a folder holding checkpoint.npz.
    X : array-like of shape (n_samples, n_features)
        The training data of the checkpointed run (checked by SHA-256).
    condition : array-like of shape (n_samples, n_conditions), optional
        Its conditions, when it had some.
    validation_data : optional
        As for fit; only the recorded validation ELBO depends on it.
    epochs : int, optional
        Total number of epochs to reach; the run's own total when None.
    checkpoint_every, checkpoint_every_steps : int, optional
        Checkpoint frequencies; the run's own when None.
    n_threads : int, optional
        Threads from now on; the model's setting when None.
    verbose : {0, 1, 2}, optional
        The model's setting when None.
    callbacks : list of fastvae.callbacks.Callback, optional
        Run inside the continued training, as for fit (the command line
        appends to metrics.jsonl with one).
    comm : mpi4py communicator, optional
        Continue data-parallel over its ranks, as ``fit(comm=...)``: every
        rank reads the checkpoint (a path all of them see) and rank 0 goes on
        writing it. A checkpoint holds global state only, so a run can go on
        with another number of ranks (or threads) than the one that wrote
        it, with the same global batch; results then match the uninterrupted
        run up to float rounding (bitwise with the same ranks and threads).

    Returns
    -------
    VAE, Autoencoder or DenoisingAutoencoder
        The model, trained to `epochs` epochs.

    Raises
    ------
    FileNotFoundError
        If there is no checkpoint at `checkpoint`.
    fastvae.ModelFileError
        If the checkpoint is truncated, corrupted, of a newer format or not
        a checkpoint.
    ValueError
        If X differs from the checkpointed run's data, or `epochs` is fewer
        than those already done.
    FloatingPointError
        As for fit.

    Examples
    --------
    >>> vae = fastvae.VAE(epochs=50).fit(X, checkpoint="run/")   # killed
    >>> vae = fastvae.resume("run/", X)                          # doctest: +SKIP
    """

    def run(group):
        root = group is None or group.is_root
        path, model, progress, meta = _read_checkpoint(checkpoint)
        if epochs is not None:
            Param(numbers.Integral, low=1).check("epochs", epochs)
            step = progress["epoch"].step
            if epochs < model.n_iter_ or (epochs == model.n_iter_ and step):
                raise ValueError(
                    f"epochs={epochs} but the checkpointed run has done "
                    f"{model.n_iter_} epochs"
                    + (f" and {step} steps of the next" if step else "")
                )
            progress["epochs"] = int(epochs)
        if n_threads is not None:
            model.n_threads = n_threads
        if verbose is not None:
            model.verbose = verbose
        every = (
            progress["checkpoint_every"]
            if checkpoint_every is None
            else checkpoint_every
        )
        every_steps = (
            progress["checkpoint_every_steps"]
            if checkpoint_every_steps is None
            else checkpoint_every_steps
        )
        options = None
        if root:
            options = _ckpt.options(path, every, every_steps, meta["user"])
            # The run that wrote this checkpoint is over: what a kill -9 left
            # of its temporary files is garbage.
            for tmp in _atomic.temporary_files(path):
                tmp.unlink(missing_ok=True)
        extra = {} if group is None else group.overrides(model)
        return model._fit(
            X,
            condition,
            {"batch_size": progress["batch_size"], **extra},
            validation_data,
            options,
            resume=progress,
            comm=group,
            callbacks=callbacks,
        )

    return _on_ranks(comm, run)
