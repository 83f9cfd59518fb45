"""What VAE and the autoencoders share: scikit-learn's parameter protocol,
settings to architecture (layout, compiled network, initial parameters),
and the checks of data and conditions.

The training loop (fastvae.models.training), the inference plumbing
(fastvae.models.inference) and persistence (fastvae.models.persistence) are
mixins of BaseAutoencoder. The public estimators (fastvae.models.vae and
fastvae.models.autoencoders) add the methods that depend on what the model
is: sampling and likelihoods for a VAE, codes for an autoencoder.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

import fastvae._core._dense as _dense
import fastvae._core._network as _network
from fastvae._core.params import Layout
from fastvae._core.threads import partition_count
from fastvae._validation import check_array
from fastvae.callbacks import Callback
from fastvae.data import batches
from fastvae.models import columns as _columns
from fastvae.models.inference import Inference, _check_unit_interval
from fastvae.models.output import OutputMixin
from fastvae.models.parameters import ParameterProtocol
from fastvae.models.persistence import Persistence
from fastvae.models.settings import Settings
from fastvae.models.training import Training

if TYPE_CHECKING:
    from typing_extensions import Self

# Distinct key words so initialisation and shuffling never share a stream
# with each other or with the kernels' Philox streams.
_INIT_STREAM = 0x1A17


class BaseAutoencoder(ParameterProtocol, Training, Inference, Persistence, OutputMixin):
    """Shared machinery; see fastvae.VAE and fastvae.Autoencoder."""

    if TYPE_CHECKING:  # every estimator defines it (fit_transform calls it)

        def transform(
            self, X: ArrayLike, condition: ArrayLike | None = None
        ) -> np.ndarray: ...

    _kind = "vae"  # the compiled network's kind: "vae" or "ae"

    # -- scikit-learn estimator protocol (without importing scikit-learn) -----

    _estimator_type_tag: str | None = None  # scikit-learn's estimator_type tag

    def __sklearn_tags__(self):
        """Tags for scikit-learn's tools and checks (called only by
        scikit-learn, so importing it here adds no dependency)."""
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        try:
            dtype = np.dtype(self.dtype).name
        except TypeError:
            dtype = "float32"
        return Tags(
            estimator_type=self._estimator_type_tag,
            target_tags=TargetTags(required=False),
            # transform returns the model's dtype whatever the input's
            transformer_tags=TransformerTags(preserves_dtype=[dtype]),
            # scipy.sparse X trains and is scored a minibatch at a time
            input_tags=InputTags(allow_nan=False, sparse=True),
        )

    def __sklearn_is_fitted__(self):
        return getattr(self, "params_", None) is not None

    def partial_fit(
        self,
        X: ArrayLike,
        y: object = None,
        *,
        condition: ArrayLike | None = None,
        callbacks: Sequence[Callback] | None = None,
        layer: str | None = None,
        condition_key: str | None = None,
    ) -> Self:
        """One pass over X, continuing from the current parameters.

        "One pass" is one epoch over X: its rows in minibatches of
        `batch_size` (all of X in one step when it has fewer rows), shuffled
        by (seed, number of epochs trained so far), with the optimizer state
        (Adam's moments and step count) kept across calls. The first call on
        an unfitted model initialises it as `fit` does; later calls need the
        same number of features and condition columns and ignore
        `warm_start`. Each call adds one to `n_iter_`; X may be a memmap or
        other out-of-core array, as for `fit`.

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
        y : ignored
        condition : array-like of shape (n_samples, n_conditions), optional
        callbacks : list of fastvae.callbacks.Callback, optional
            Run inside this pass, as for `fit`.
        layer, condition_key : str, optional
            AnnData X only, as for `fit`. When neither they nor `condition`
            are given, a model fitted on an AnnData reads X as it read that
            one; with the fitted condition_key, the fitted levels are kept
            (a categorical column's unused categories count, so later
            passes may bring cells of levels the first one lacked).

        Returns
        -------
        self
            The estimator.
        """
        return self._fit(
            X,
            condition,
            {},
            None,
            partial=True,
            callbacks=callbacks,
            anndata_args=(layer, condition_key),
        )

    def fit_transform(
        self,
        X: ArrayLike,
        y: object = None,
        *,
        condition: ArrayLike | None = None,
        **fit_params: Any,
    ) -> np.ndarray:
        """fit(X, ...) then transform(X): the codes of the training data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
            Accepted for scikit-learn compatibility.
        condition : array-like of shape (n_samples, n_conditions), optional
            Makes the model conditional, as for `fit`.
        **fit_params
            Further keyword arguments of `fit`.

        Returns
        -------
        ndarray of shape (n_samples, latent_dim)
        """
        return self.fit(X, condition=condition, **fit_params).transform(X, condition)

    def inverse_transform(
        self, Z: ArrayLike, condition: ArrayLike | None = None
    ) -> np.ndarray:
        """Data from codes: `decode(Z)`, the mean of p(x | z) (for a VAE) or
        the decoder's output (for an autoencoder), so that
        ``inverse_transform(transform(X))`` reconstructs X.

        Parameters
        ----------
        Z : array-like of shape (n_samples, latent_dim)
        condition : array-like of shape (n_samples, n_conditions), optional
            Required exactly when the model was fitted with conditions.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            A DataFrame with the input's feature names after
            ``set_output(transform="pandas")``.
        """
        return self._as_output(self.decode(Z, condition), Z, self._input_names())

    def get_feature_names_out(
        self, input_features: Sequence[str] | np.ndarray | None = None
    ) -> np.ndarray:
        """Names of transform's output columns: the lower-cased class name
        and the latent index ("vae0", "vae1", ..., like scikit-learn's
        class-name prefix convention).

        Parameters
        ----------
        input_features : array-like of str, optional
            Only checked for length (``n_features_in_``); the names of the codes
            do not depend on them.

        Returns
        -------
        ndarray of str objects, shape (latent_dim,)
        """
        self._check_fitted()
        if input_features is not None and len(input_features) != self.n_features_in_:
            raise ValueError(
                f"input_features has {len(input_features)} names, but "
                f"{type(self).__name__} is expecting {self.n_features_in_}"
            )
        prefix = type(self).__name__.lower()
        k = self._fitted_settings.latent_dim
        return np.asarray([f"{prefix}{i}" for i in range(k)], dtype=object)

    # -- settings and architecture --------------------------------------------

    def _settings(self, overrides=None, params=None) -> Settings:
        """Validated settings: the constructor's values (or `params`) with
        fit's overrides."""
        values = dict(self.get_params() if params is None else params)
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        if values.get("seed") is not None:
            warnings.warn(
                f"{type(self).__name__}(seed=...) is deprecated and will be removed "
                "in fastvae 0.3; use random_state=..., as in scikit-learn",
                FutureWarning,
                stacklevel=4,
            )
        return Settings.from_params(values)

    def _layout(self, s, n_features, n_cond, columns=None):
        """The parameter layout; with per-column likelihoods (`columns`,
        fastvae.models.columns) the encoder reads the expanded row (one-hot
        levels, missingness indicators) and the decoder writes one output
        per level."""
        k = s.latent_dim
        head = 2 * k if self._kind == "vae" else k
        n_in = n_out = n_features
        tail = s.sigma == "learned"
        if columns is not None:
            n_in = sum(levels for _, levels in columns)
            n_out = _columns.n_outputs(columns)
            n_in += n_features if s.missing else 0
            tail = _columns.has_tail(columns, s.sigma)
        by_batch = s.dispersion == "gene-batch"
        if by_batch and n_cond == 0:
            raise ValueError(
                "dispersion='gene-batch' needs conditions: pass the batches "
                "one-hot as fit(X, condition=...), one dispersion per gene and batch"
            )
        return Layout(
            (n_in + n_cond, *s.hidden, head),
            (k + n_cond, *s.decoder_hidden, n_out),
            n_tail=n_features * (n_cond if by_batch else 1) if tail else 0,
        )

    def _fitted_tail(self, cond=None):
        """The per-column tail parameters: shape (n_features,), with
        dispersion="gene-batch" (n_conditions, n_features), or with `cond`
        (checked conditions) each row's own, cond @ tail in float64 rounded
        once, (n_rows, n_features), as the compiled step makes them. In the
        parameters' dtype; None without a tail."""
        layout = self._fitted_layout
        if not layout.n_tail:
            return None
        tail = layout.tail(self.params_)
        if self._fitted_settings.dispersion != "gene-batch":
            return tail
        tail = tail.reshape(self.n_conditions_, self.n_features_in_)
        if cond is None:
            return tail
        mixed = cond.astype(np.float64) @ tail.astype(np.float64)
        return mixed.astype(tail.dtype)

    def _activation_codes(self, s, layout):
        act = _dense.ACTIVATIONS[s.activation]
        ident = _dense.ACTIVATIONS["identity"]
        n_enc = layout.n_encoder
        n = len(layout.shapes)
        return [ident if i in (n_enc - 1, n - 1) else act for i in range(n)]

    def _network(self, s, layout, max_batch, n_cond, training=False, columns=None):
        """The compiled network; a training one draws the settings' latent
        samples per row (inference draws its own)."""
        learned = s.sigma == "learned"
        if columns is not None:
            likelihood, sigma = "columns", 1.0
            tail = bool(layout.n_tail)
            options = {
                "columns": _columns.network_spec(columns, s.sigma),
                "missing": s.missing is not None,
                "library": s.library is not None,
                "tail_by_condition": s.dispersion == "gene-batch",
            }
        else:
            likelihood = "gaussian_learned" if learned else s.likelihood
            sigma = 1.0 if learned else float(s.sigma)
            tail = learned
            options = {
                "corrupt": float(s.corruption),
                "binarize": bool(s.dynamic_binarization),
            }
        return _network.Network(
            layout.encoder_dims,
            layout.decoder_dims,
            self._activation_codes(s, layout),
            layout.w_offsets,
            layout.b_offsets,
            layout.size,
            likelihood,
            sigma,
            int(max_batch),
            s.dtype,
            partition_count(),
            kind=self._kind,
            n_cond=n_cond,
            logsigma_offset=layout.tail_offset if tail else -1,
            n_samples=int(s.n_latent_samples) if training else 1,
            objective=s.objective if training else "elbo",
            **options,
        )

    def _init_params(self, s, layout):
        """Glorot-uniform weights (He gain for ReLU layers), zero biases; a
        learned Gaussian starts at sigma = 1 (log-sigma 0), a dispersion at 1.

        scVI's model (``library="observed"``) starts like scVI's PyTorch
        layers instead: weights and biases uniform in +-1/sqrt(fan_in). Its
        first layer reads thousands of log1p counts, where Glorot's limit
        is about 3x larger. benchmarks/bench_counts.py's matrix, held-out
        ELBO after 5 epochs: -1298.9 against -1309.3 nats per cell at lr
        3e-3, -1309.0 against -1339.1 at scVI's lr 1e-3.
        """
        rng = np.random.Generator(np.random.Philox(key=[s.seed, _INIT_STREAM]))
        params = layout.zeros(s.dtype)
        codes = self._activation_codes(s, layout)
        fan_in = getattr(s, "library", None) == "observed"
        for (W, b), code in zip(layout.views(params), codes, strict=True):
            if fan_in:
                limit = 1.0 / math.sqrt(W.shape[0])
                W[...] = rng.uniform(-limit, limit, size=W.shape)
                b[...] = rng.uniform(-limit, limit, size=b.shape)
                continue
            gain = math.sqrt(2.0) if code == _dense.ACTIVATIONS["relu"] else 1.0
            limit = gain * math.sqrt(6.0 / (W.shape[0] + W.shape[1]))
            W[...] = rng.uniform(-limit, limit, size=W.shape)
        return params

    def _kl_weight(self, s, t):
        return 0.0

    # -- data and conditions ----------------------------------------------------

    def _data(self, s, X, name="X", n_features=None, columns=None):
        """Checked data; with `columns`, each column's values against its
        likelihood (NaN only with missing='mask'). A scipy.sparse X stays
        sparse (CSR of the model's dtype)."""
        if batches.is_sparse(X) and s.missing is None:
            X = batches.check(
                X,
                dtype=s.dtype,
                name=name,
                n_features=n_features,
                owner=type(self).__name__,
                unit_interval=columns is None and s.likelihood == "bernoulli",
            )
            if columns is not None:
                _columns.check_values(columns, X, s.missing, name)
            return X
        X = check_array(
            X,
            name=name,
            dtype=s.dtype,
            n_features=n_features,
            owner=type(self).__name__,
            allow_nan=s.missing is not None,
            nan_hint=", or train a VAE with missing='mask'"
            if self._kind == "vae"
            else "",
        )
        if columns is not None:
            _columns.check_values(columns, X, s.missing, name)
        elif s.likelihood == "bernoulli":
            _check_unit_interval(X, name)
        return X

    def _training_data(self, s, X, n_features):
        """Validated training data: an array in memory, or an out-of-core X
        (a memmap or array-like, see fastvae.data.batches) checked in one
        sequential pass and left where it is."""
        if batches.is_out_of_core(X):
            if (
                _columns.per_column(s.likelihood, s.missing)
                and not batches.is_sparse(X)
            ) or s.missing is not None:
                raise ValueError(
                    "per-column likelihoods and missing='mask' need X in memory "
                    "(a NumPy array or a scipy.sparse matrix), not an out-of-core "
                    "array"
                )
            return batches.check(
                X,
                dtype=s.dtype,
                n_features=n_features,
                owner=type(self).__name__,
                unit_interval=s.likelihood == "bernoulli",
            )
        return self._data(s, X, n_features=n_features)

    def _conditions(self, cond, n_rows, dtype, n_cond=None, name="condition"):
        """None, or a validated (n_rows, n_cond) array of dtype."""
        if cond is None:
            return None
        cond = check_array(
            cond,
            name=name,
            dtype=dtype,
            n_features=n_cond,
            feature_name="condition columns",
            owner=type(self).__name__,
        )
        if cond.shape[0] != n_rows:
            raise ValueError(
                f"{name} has {cond.shape[0]} rows but the data have {n_rows}"
            )
        return cond

    def _fitted_conditions(self, cond, n_rows, name="condition"):
        """Conditions for a fitted model: required iff it was fitted with some."""
        self._check_fitted()
        if self.n_conditions_ == 0:
            if cond is not None:
                raise ValueError(
                    f"{name} given, but this model was fitted without conditions"
                )
            return None
        if cond is None:
            raise ValueError(
                f"this model was fitted with {self.n_conditions_} condition columns; "
                f"pass {name}= (an array of shape (n_samples, {self.n_conditions_}))"
            )
        return self._conditions(
            cond, n_rows, self.params_.dtype, self.n_conditions_, name
        )
