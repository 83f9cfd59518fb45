"""Inference plumbing of the estimators: input checks, compiled calls in
chunks of INFERENCE_CHUNK rows, decode and the ELBO per row."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from fastvae._core._numerics import LOGSIGMA_RANGE
from fastvae._core.threads import blas_single_threaded, resolve_num_threads
from fastvae._validation import check_array
from fastvae.data import batches
from fastvae.exceptions import NotFittedError
from fastvae.models import columns as _columns

if TYPE_CHECKING:
    from fastvae.models.settings import Settings

# Rows per compiled call in encode/decode/elbo/log_likelihood: bounds the
# workspace (about 4 kB per row for a 784-400-20 model) whatever the input.
INFERENCE_CHUNK = 512


def _check_unit_interval(X, name):
    lo, hi = float(X.min()), float(X.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1] for the Bernoulli likelihood, got values "
            f"in [{lo:g}, {hi:g}]; scale the data (e.g. divide pixels by 255; in a "
            "scikit-learn Pipeline, MinMaxScaler(clip=True) keeps held-out data in "
            "[0, 1]) or use likelihood='gaussian'"
        )


def _joined(parts):
    """The chunks' results as one: arrays, or tuples of arrays, joined."""
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))
    return np.concatenate(parts)


class Inference:
    """Mixin of BaseAutoencoder: checked inputs and chunked compiled calls
    for the public methods."""

    # Fitted state and helpers of BaseAutoencoder that these methods use.
    params_: np.ndarray
    n_features_in_: int
    _fitted_settings: Settings

    if TYPE_CHECKING:

        def _fitted_conditions(
            self, cond: ArrayLike | None, n_rows: int, name: str = "condition"
        ) -> np.ndarray | None: ...

    def _check_fitted(self):
        if getattr(self, "params_", None) is None:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(X) first or "
                "use fastvae.load"
            )

    def _inference_network(self):
        if getattr(self, "_infer_net", None) is None:
            self._infer_net = self._network(
                self._fitted_settings,
                self._fitted_layout,
                INFERENCE_CHUNK,
                self.n_conditions_,
                columns=getattr(self, "columns_", None),
            )
        return self._infer_net

    def _threads(self):
        return resolve_num_threads(self.n_threads)

    def _input(self, X, name="X") -> np.ndarray:
        """Checked data for the encoder: NaN only for a model fitted with
        missing='mask', each column's values against its likelihood."""
        self._check_fitted()
        s = self._fitted_settings
        columns = getattr(self, "columns_", None)
        if batches.is_sparse(X):
            # kept sparse: _call and _elbo_rows read INFERENCE_CHUNK rows at a
            # time, their nonzeros or (denser) the densified rows
            X = batches.check(
                X,
                dtype=self.params_.dtype,
                name=name,
                n_features=self.n_features_in_,
                owner=type(self).__name__,
            )
        else:
            X = check_array(
                X,
                name=name,
                dtype=self.params_.dtype,
                n_features=self.n_features_in_,
                owner=type(self).__name__,
                allow_nan=s.missing is not None,
            )
        if columns is not None:
            _columns.check_values(columns, X, s.missing, name)
        return X

    def _target(self, X, name="X") -> np.ndarray:
        """_input for data whose likelihood is evaluated: a Bernoulli
        likelihood of values outside [0, 1] is no probability at all."""
        X = self._input(X, name)
        if getattr(self, "columns_", None) is None and (
            self._fitted_settings.likelihood == "bernoulli"
        ):
            if batches.is_sparse(X):
                batches.check(X, dtype=X.dtype, name=name, unit_interval=True)
            else:
                _check_unit_interval(X, name)
        return X

    def _reads_nonzeros(self, X) -> bool:
        """Whether inference on X reads its nonzeros (Network.*_csr) rather
        than densified chunks: a CSR matrix below
        batches.SPARSE_INFERENCE_DENSITY, for a network that can."""
        return batches.reads_nonzeros(
            X, self._inference_network(), batches.SPARSE_INFERENCE_DENSITY
        )

    def _call(self, method, *args, **kwargs):
        """The network's `method` on the fitted parameters; a sparse X (the
        first argument) goes in chunks of INFERENCE_CHUNK rows, read from its
        nonzeros below batches.SPARSE_INFERENCE_DENSITY, else densified
        (log_likelihood's rows keep their index: the same draws as dense)."""
        if args and batches.is_sparse(args[0]):
            if self._reads_nonzeros(args[0]):
                return self._call_csr(method, *args, **kwargs)
            return self._call_sparse(method, *args, **kwargs)
        with self._lock, blas_single_threaded():
            net = self._inference_network()
            return getattr(net, method)(
                self.params_, *args, n_threads=self._threads(), **kwargs
            )

    def _call_sparse(self, method, X, *args, cond=None, progress=None, **kwargs):
        parts = []
        for r0 in range(0, X.shape[0], INFERENCE_CHUNK):
            r1 = min(X.shape[0], r0 + INFERENCE_CHUNK)
            extra = dict(kwargs)
            if method == "log_likelihood":
                extra["row_offset"] = r0
                if progress is not None:
                    extra["progress"] = lambda done, r0=r0: progress(r0 + done)
            parts.append(
                self._call(
                    method,
                    X[r0:r1].toarray(),
                    *args,
                    cond=None if cond is None else cond[r0:r1],
                    **extra,
                )
            )
        return _joined(parts)

    def _call_csr(self, method, X, *args, cond=None, progress=None, **kwargs):
        """`method` ("encode", "elbo_terms" or "log_likelihood") on a CSR
        matrix's rows without densifying them: the network's *_csr variant,
        one chunk of INFERENCE_CHUNK rows per call, so that a memory-mapped
        matrix is read window by window (batches.csr_row_chunks)."""
        parts = []
        for r0, r1, A in batches.csr_row_chunks(X, self.params_.dtype, INFERENCE_CHUNK):
            extra = dict(kwargs)
            if method == "log_likelihood":
                extra["row_offset"] = r0
                if progress is not None:
                    extra["progress"] = lambda done, r0=r0: progress(r0 + done)
            with self._lock, blas_single_threaded():
                net = self._inference_network()
                parts.append(
                    getattr(net, method + "_csr")(
                        self.params_,
                        A.data,
                        A.indices,
                        A.indptr,
                        *args,
                        n_threads=extra.pop("n_threads", None) or self._threads(),
                        cond=None if cond is None else cond[r0:r1],
                        **extra,
                    )
                )
        return _joined(parts)

    def _head(self, X, condition):
        X = self._input(X)
        cond = self._fitted_conditions(condition, X.shape[0])
        return self._call("encode", X, cond=cond)

    def decode(self, Z: ArrayLike, condition: ArrayLike | None = None) -> np.ndarray:
        """Mean of p(x | z): sigmoid(logits) for Bernoulli, the mean for Gaussian.

        With one likelihood per column: each column's mean, but a
        categorical column's most probable level.

        Parameters
        ----------
        Z : array-like of shape (n_samples, latent_dim)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        self._check_fitted()
        Z = check_array(
            Z,
            name="Z",
            dtype=self.params_.dtype,
            n_features=self._fitted_settings.latent_dim,
            feature_name="latent dims",
            owner=type(self).__name__,
        )
        cond = self._fitted_conditions(condition, Z.shape[0])
        means = self._call("decode", Z, cond=cond)
        columns = getattr(self, "columns_", None)
        return means if columns is None else _columns.point(columns, means)

    def _elbo_rows(self, X, cond=None, n_threads=None):
        """Per-row -(reconstruction + KL) with the fixed evaluation stream."""
        from fastvae._core import _rng

        if batches.is_sparse(X):
            if self._reads_nonzeros(X):
                # the draws are keyed by each row's dense values: the same
                # as the dense rows'
                recon, kl = self._call_csr(
                    "elbo_terms",
                    X,
                    self._fitted_settings.seed,
                    _rng.STREAM_EVAL,
                    cond=cond,
                    n_threads=n_threads,
                )
                return -(recon + kl)
            return np.concatenate(
                [
                    self._elbo_rows(
                        X[r0 : r0 + INFERENCE_CHUNK].toarray(),
                        None if cond is None else cond[r0 : r0 + INFERENCE_CHUNK],
                        n_threads,
                    )
                    for r0 in range(0, X.shape[0], INFERENCE_CHUNK)
                ]
            )

        with self._lock, blas_single_threaded():
            net = self._inference_network()
            recon, kl = net.elbo_terms(
                self.params_,
                X,
                self._fitted_settings.seed,
                _rng.STREAM_EVAL,
                n_threads=n_threads or self._threads(),
                cond=cond,
            )
        return -(recon + kl)

    @property
    def sigma_(self):
        """Observation noise of the Gaussian likelihood: the fixed value, or an
        array of shape (n_features,) of learned values."""
        self._check_fitted()
        s = self._fitted_settings
        if s.likelihood != "gaussian":
            raise AttributeError("sigma_ exists only for likelihood='gaussian'")
        if s.sigma != "learned":
            return float(s.sigma)
        logsigma = self._fitted_tail().astype(np.float64)
        return np.exp(np.clip(logsigma, *LOGSIGMA_RANGE))
