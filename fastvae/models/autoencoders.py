"""The plain and the denoising autoencoder: codes without a density."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from fastvae.models.anndata_input import accepts_anndata
from fastvae.models.base import BaseAutoencoder
from fastvae.models.docstrings import ATTRIBUTES, COMMON_PARAMETERS, TRAINING_PARAMETERS
from fastvae.optim import Optimizer


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
        + COMMON_PARAMETERS
        + """    corruption : float in [0, 1), default=0.0
        Training only: probability of zeroing each input value the encoder
        sees; the reconstruction target stays clean.
"""
        + TRAINING_PARAMETERS
        + ATTRIBUTES
    )

    _kind = "ae"

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

    @accepts_anndata
    def transform(self, X: ArrayLike, condition: ArrayLike | None = None) -> np.ndarray:
        """The codes z = encoder(x).

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples, latent_dim)
        """
        return self._as_output(
            self._head(X, condition), X, self.get_feature_names_out()
        )

    @accepts_anndata
    def encode(self, X: ArrayLike, condition: ArrayLike | None = None) -> np.ndarray:
        """The codes z = encoder(x), as `transform`.

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples, latent_dim)
        """
        return self._head(X, condition)

    @accepts_anndata
    def reconstruct(
        self, X: ArrayLike, condition: ArrayLike | None = None
    ) -> np.ndarray:
        """decode(transform(X)): reconstructions through the codes.

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        return self.decode(self.transform(X, condition), condition)

    @accepts_anndata
    def score_samples(
        self, X: ArrayLike, condition: ArrayLike | None = None
    ) -> np.ndarray:
        """Per-sample reconstruction log-likelihood log p(x | z = encoder(x)).

        Not a bound on log p(x): an autoencoder defines no density.

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples,), float64
        """
        X = self._target(X)
        return self._elbo_rows(X, self._fitted_conditions(condition, X.shape[0]))

    @accepts_anndata
    def score(
        self, X: ArrayLike, y: object = None, condition: ArrayLike | None = None
    ) -> float:
        """Mean per-sample reconstruction log-likelihood (higher is better).

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
        + COMMON_PARAMETERS
        + """    corruption : float in (0, 1), default=0.25
        Training only: probability of zeroing each input value the encoder
        sees; the reconstruction target stays clean.
"""
        + TRAINING_PARAMETERS
        + ATTRIBUTES
    )

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
        corruption: float = 0.25,
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
            random_state=random_state,
            n_threads=n_threads,
            verbose=verbose,
            warm_start=warm_start,
            seed=seed,
        )
