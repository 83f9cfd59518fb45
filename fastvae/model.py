"""The estimators: VAE, Autoencoder and DenoisingAutoencoder, and load().

All three train with the same compiled step (one nogil call per minibatch)
and share the scikit-learn conventions of fastvae._base.BaseAutoencoder.
"""

from __future__ import annotations

import numbers

import numpy as np

from fastvae import _rng
from fastvae import io as _io
from fastvae._base import BaseAutoencoder
from fastvae._validation import Param

__all__ = ["VAE", "Autoencoder", "DenoisingAutoencoder", "load"]

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
        if s["kl_warmup"] <= 0:
            return float(s["beta"])
        return float(s["beta"]) * min(1.0, (t + 1) / s["kl_warmup"])

    def fit(self, X, y=None, *, condition=None, epochs=None, batch_size=None,
            optimizer=None, lr=None, validation_data=None, comm=None):
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
        comm : mpi4py communicator, optional
            Train data-parallel over its ranks (e.g. ``MPI.COMM_WORLD`` in a
            script started by ``mpiexec -n 4 python -m mpi4py train.py``).
            Every rank calls fit with the same X and settings; batch_size is
            the global minibatch, of which each rank computes one share, and
            the result equals one process's training on the same minibatches
            up to float rounding (see fastvae.distributed). Only rank 0 shows
            progress; saving is the caller's (e.g. ``if comm.rank == 0:
            vae.save(path)``). When n_threads is None and OMP_NUM_THREADS
            unset, each rank uses its cores divided by the ranks on its node.

        Returns
        -------
        self : VAE

        Raises
        ------
        ValueError, TypeError
            For invalid settings or data (the message names the problem).
            With `comm`, an error on one rank before training raises on every
            rank (a RuntimeError naming that rank on the others).
        FloatingPointError
            If the loss or a gradient becomes NaN or infinite; the parameters
            are those before the failing step. With `comm`, on every rank.
        ImportError
            If `comm` is given but mpi4py or an MPI library is missing.

        Notes
        -----
        With `comm`, any other exception while training (on one rank, which
        the others would wait for forever) prints the rank and the error on
        stderr and ends the whole MPI job with MPI_Abort.
        """
        return _train(self, X, condition,
                      {"epochs": epochs, "batch_size": batch_size,
                       "optimizer": optimizer, "lr": lr}, validation_data, comm)

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
        """Posterior means mu(x): array of shape (n_samples, latent_dim)."""
        H = self._head(X, condition)
        return H[:, : H.shape[1] // 2].copy()

    def reconstruct(self, X, condition=None):
        """decode(transform(X)): reconstructions through the posterior means."""
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
        if condition is not None and self.n_conditions_:
            condition = np.asarray(condition)
            if condition.ndim == 1:
                condition = np.broadcast_to(condition, (int(n_samples), condition.size))
        Z = _rng.normal_matrix(
            seed, _rng.STREAM_SAMPLE, 0, int(n_samples),
            self._fitted_settings["latent_dim"], dtype=self.params_.dtype,
        )
        return self.decode(Z, condition)

    def elbo(self, X, condition=None):
        """Per-sample evidence lower bound log p(x|z) - KL(q(z|x) || p(z)).

        One z per sample, drawn from a fixed evaluation stream (repeated calls
        give the same numbers).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        X = self._input(X)
        return self._elbo_rows(X, self._fitted_conditions(condition, X.shape[0]))

    def score_samples(self, X, condition=None):
        """Per-sample ELBO, a lower bound on log p(x); see `elbo`."""
        return self.elbo(X, condition)

    def score(self, X, y=None, condition=None):
        """Mean per-sample ELBO of X (higher is better)."""
        return float(np.mean(self.elbo(X, condition)))

    def log_likelihood(self, X, condition=None, *, k=5000, seed=None):
        """Importance-sampled estimate of log p(x) for every sample.

        log p(x) ~ log (1/k) sum_s p(x | z_s) p(z_s) / q(z_s | x) with
        z_s ~ q(z | x): the test log-likelihood VAE papers report (k = 5000).
        It is a lower bound in expectation that tightens as k grows (Burda et
        al., 2016); k = 1 is a single-sample ELBO with a sampled KL term.
        Computed in compiled code in windows of at most 512 (row, sample)
        pairs, so memory stays bounded for any k; the work is n_samples * k
        decoder passes.

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
        X = self._input(X)
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

    def fit(self, X, y=None, *, condition=None, epochs=None, batch_size=None,
            optimizer=None, lr=None, validation_data=None, comm=None):
        """Train on X; see VAE.fit (history_["kl"] is all zeros and
        history_["val_elbo"] holds the validation reconstruction
        log-likelihood log p(x | encoder(x))); `comm` trains over MPI."""
        return _train(self, X, condition,
                      {"epochs": epochs, "batch_size": batch_size,
                       "optimizer": optimizer, "lr": lr}, validation_data, comm)

    def transform(self, X, condition=None):
        """The codes z = encoder(x): array of shape (n_samples, latent_dim)."""
        return self._head(X, condition)

    def encode(self, X, condition=None):
        """Same as transform."""
        return self._head(X, condition)

    def reconstruct(self, X, condition=None):
        """decode(transform(X))."""
        return self.decode(self.transform(X, condition), condition)

    def score_samples(self, X, condition=None):
        """Per-sample reconstruction log-likelihood log p(x | z = encoder(x)).

        Not a bound on log p(x): an autoencoder defines no density.

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        X = self._input(X)
        return self._elbo_rows(X, self._fitted_conditions(condition, X.shape[0]))

    def score(self, X, y=None, condition=None):
        """Mean per-sample reconstruction log-likelihood (higher is better)."""
        return float(np.mean(self.score_samples(X, condition)))


class DenoisingAutoencoder(Autoencoder):
    """Autoencoder trained to reconstruct inputs from corrupted copies.

    The same as ``Autoencoder(corruption=0.25)``: during training each input
    value the encoder sees is zeroed with probability `corruption` (masking
    noise, Vincent et al. 2008), while the loss compares the decoder's output
    with the clean input. Evaluation uses clean inputs.

    Parameters
    ----------
    corruption : float in (0, 1), default=0.25
    **others
        As for Autoencoder.
    """

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
            input_dim, hidden, latent_dim, decoder_hidden=decoder_hidden,
            likelihood=likelihood, sigma=sigma, activation=activation,
            corruption=corruption, dynamic_binarization=dynamic_binarization,
            optimizer=optimizer, lr=lr, epochs=epochs, batch_size=batch_size,
            dtype=dtype, seed=seed, n_threads=n_threads, verbose=verbose,
            warm_start=warm_start)


ESTIMATORS = {cls.__name__: cls for cls in (VAE, Autoencoder, DenoisingAutoencoder)}


def _train(model, X, condition, overrides, validation_data, comm):
    """fit's body: on this process, or data-parallel over the ranks of comm."""
    if comm is None:
        return model._fit(X, condition, overrides, validation_data)
    from fastvae import distributed

    def run(group):
        return model._fit(X, condition, {**overrides, **group.overrides(model)},
                          validation_data, comm=group)

    return distributed.fit(comm, run)


def load(path):
    """Load a model written by VAE.save (or an autoencoder's save).

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
        If the file is truncated, corrupted, from a newer format, or not a
        fastvae model.
    """
    meta, arrays = _io.load(path)
    try:
        cls = ESTIMATORS.get(meta.get("estimator"))
        if cls is None:
            raise _io.ModelFileError(
                f"{path} holds {meta.get('estimator')!r}, not one of "
                f"{sorted(ESTIMATORS)}")
        opt_meta = dict(meta["optimizer"])
        params = dict(meta["params"])
        for name in ("hidden", "decoder_hidden"):  # JSON has no tuples
            if isinstance(params.get(name), list):
                params[name] = tuple(params[name])
        params["dtype"] = np.dtype(params["dtype"]).type
        model = cls(**params)
        from fastvae import optim

        model.optimizer = optim.OPTIMIZER_NAMES[opt_meta.pop("name")](**opt_meta)
        model._restore(meta["fitted"], arrays, path)
    except _io.ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _io.ModelFileError(f"{path} has invalid model settings: {exc}") from None
    return model
