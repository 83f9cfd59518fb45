"""What VAE and the autoencoders share: settings, the compiled network, the
training loop, conditions, inference calls and model-file metadata.

The public estimators (fastvae.models.estimators) add the methods that depend on what
the model is: sampling and likelihoods for a VAE, codes for an autoencoder.
"""

from __future__ import annotations

import inspect
import math
import numbers
import threading
import time
import warnings

import numpy as np

from fastvae._core import _dense, _step
from fastvae._core._numerics import LOGSIGMA_RANGE
from fastvae._core.params import Layout
from fastvae._core.threads import (
    blas_single_threaded,
    partition_count,
    resolve_num_threads,
)
from fastvae._validation import (
    check_array,
    check_dtype,
    check_memory,
    training_bytes,
)
from fastvae._version import __version__
from fastvae.callbacks import ProgressBar, check_callbacks
from fastvae.data import batches
from fastvae.exceptions import NotFittedError
from fastvae.models import checkpoint as _ckpt
from fastvae.models.settings import Settings
from fastvae.optim import kernel_settings

# Rows per compiled call in encode/decode/elbo/log_likelihood: bounds the
# workspace (about 4 kB per row for a 784-400-20 model) whatever the input.
INFERENCE_CHUNK = 512

# Distinct key words so initialisation and shuffling never share a stream
# with each other or with the kernels' Philox streams.
_INIT_STREAM = 0x1A17
_SHUFFLE_STREAM = 0x5EED

# Creates each estimator's lock exactly once, even when two threads race.
_LOCK_GUARD = threading.Lock()


class BaseAutoencoder:
    """Shared machinery; see fastvae.VAE and fastvae.Autoencoder."""

    _kind = "vae"  # the compiled network's kind: "vae" or "ae"

    # -- scikit-learn parameter protocol --------------------------------------

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep=True):
        """Constructor arguments as a dict (scikit-learn protocol).

        Parameters
        ----------
        deep : bool, default=True
            Accepted for scikit-learn compatibility; no argument is itself an
            estimator, so it changes nothing.

        Returns
        -------
        dict
            Argument name to value.
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor arguments (scikit-learn protocol).

        Parameters
        ----------
        **params
            Constructor arguments by name; an unknown name raises ValueError.

        Returns
        -------
        self
            The estimator.
        """
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"invalid parameter {name!r} for {type(self).__name__}; valid "
                    f"parameters: {sorted(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {
            p.name: p.default
            for p in inspect.signature(type(self).__init__).parameters.values()
        }
        changed = [
            f"{k}={v!r}"
            for k, v in self.get_params().items()
            if not _same(v, defaults.get(k))
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    # -- scikit-learn estimator protocol (without importing scikit-learn) -----

    _estimator_type_tag = None  # scikit-learn's estimator_type tag

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
            input_tags=InputTags(allow_nan=False, sparse=False),
        )

    def __sklearn_is_fitted__(self):
        return getattr(self, "params_", None) is not None

    def partial_fit(self, X, y=None, *, condition=None, callbacks=None):
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
        X : array-like of shape (n_samples, n_features)
        y : ignored
        condition : array-like of shape (n_samples, n_conditions), optional
        callbacks : list of fastvae.callbacks.Callback, optional
            Run inside this pass, as for `fit`.

        Returns
        -------
        self
            The estimator.
        """
        return self._fit(X, condition, {}, None, partial=True, callbacks=callbacks)

    def fit_transform(self, X, y=None, *, condition=None, **fit_params):
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

    def get_feature_names_out(self, input_features=None):
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
        return Settings.from_params(values)

    def _layout(self, s, n_features, n_cond):
        k = s.latent_dim
        head = 2 * k if self._kind == "vae" else k
        return Layout(
            (n_features + n_cond, *s.hidden, head),
            (k + n_cond, *s.decoder_hidden, n_features),
            n_tail=n_features if s.sigma == "learned" else 0,
        )

    def _activation_codes(self, s, layout):
        act = _dense.ACTIVATIONS[s.activation]
        ident = _dense.ACTIVATIONS["identity"]
        n_enc = layout.n_encoder
        n = len(layout.shapes)
        return [ident if i in (n_enc - 1, n - 1) else act for i in range(n)]

    def _network(self, s, layout, max_batch, n_cond):
        learned = s.sigma == "learned"
        return _step.Network(
            layout.encoder_dims,
            layout.decoder_dims,
            self._activation_codes(s, layout),
            layout.w_offsets,
            layout.b_offsets,
            layout.size,
            "gaussian_learned" if learned else s.likelihood,
            1.0 if learned else float(s.sigma),
            int(max_batch),
            s.dtype,
            partition_count(),
            kind=self._kind,
            n_cond=n_cond,
            logsigma_offset=layout.tail_offset if learned else -1,
            corrupt=float(s.corruption),
            binarize=bool(s.dynamic_binarization),
        )

    def _init_params(self, s, layout):
        """Glorot-uniform weights (He gain for ReLU layers), zero biases; a
        learned Gaussian starts at sigma = 1 (log-sigma 0)."""
        rng = np.random.Generator(np.random.Philox(key=[s.seed, _INIT_STREAM]))
        params = layout.zeros(s.dtype)
        codes = self._activation_codes(s, layout)
        for (W, _), code in zip(layout.views(params), codes, strict=True):
            gain = math.sqrt(2.0) if code == _dense.ACTIVATIONS["relu"] else 1.0
            limit = gain * math.sqrt(6.0 / (W.shape[0] + W.shape[1]))
            W[...] = rng.uniform(-limit, limit, size=W.shape)
        return params

    def _kl_weight(self, s, t):
        return 0.0

    # -- data and conditions ----------------------------------------------------

    def _data(self, s, X, name="X", n_features=None):
        X = check_array(
            X,
            name=name,
            dtype=s.dtype,
            n_features=n_features,
            owner=type(self).__name__,
        )
        if s.likelihood == "bernoulli":
            _check_unit_interval(X, name)
        return X

    def _training_data(self, s, X, n_features):
        """Validated training data: an array in memory, or an out-of-core X
        (a memmap or array-like, see fastvae.data.batches) checked in one
        sequential pass and left where it is."""
        if batches.is_out_of_core(X):
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

    # -- training ---------------------------------------------------------------

    def _fit(
        self,
        X,
        condition,
        overrides,
        validation_data,
        checkpoint=None,
        resume=None,
        partial=False,
        comm=None,
        callbacks=None,
        settings=None,
    ):
        callbacks = check_callbacks(callbacks)
        # The whole fit holds the estimator's lock: two threads fitting one
        # model run one after the other instead of mixing their state.
        with _instance_lock(self):
            return self._fit_locked(
                X,
                condition,
                overrides,
                validation_data,
                checkpoint,
                resume,
                partial,
                comm,
                callbacks,
                settings,
            )

    def _fit_locked(
        self,
        X,
        condition,
        overrides,
        validation_data,
        checkpoint,
        resume,
        partial,
        comm=None,
        callbacks=(),
        settings=None,
    ):
        """Train (fit's body), holding the estimator's lock.

        checkpoint : dict, optional
            Validated options from fastvae.models.checkpoint.options: where and how
            often to write checkpoints.
        resume : dict, optional
            The validated progress of the checkpoint whose state `_set_state`
            restored: training continues from its position, to its total of
            epochs, with its batch size.
        partial : bool
            partial_fit: one epoch over X, continuing a fitted model.
        comm : fastvae.models.distributed.Group, optional
            Train data-parallel over its MPI ranks.
        callbacks : list of fastvae.callbacks.Callback
            Checked by the caller; a ProgressBar goes first when verbose.
        settings : Settings, optional
            `self._settings(overrides)` when the caller has made it already.
        """
        s = self._settings(overrides) if settings is None else settings
        fitted = getattr(self, "params_", None) is not None
        if partial:  # one epoch over X, continuing a fitted model
            s = s.replace(epochs=1)
        X = self._training_data(
            s, X, self.n_features_in_ if partial and fitted else s.input_dim
        )
        n, d = X.shape
        cond = self._conditions(condition, n, s.dtype)
        n_cond = 0 if cond is None else cond.shape[1]
        X_val = cond_val = None
        if validation_data is not None:
            if isinstance(validation_data, tuple):
                if len(validation_data) != 2:
                    raise ValueError(
                        "validation_data must be X_val or (X_val, condition_val)"
                    )
                X_val, cond_val = validation_data
            else:
                X_val = validation_data
            X_val = self._data(s, X_val, "validation_data", n_features=d)
            if (cond_val is None) != (cond is None):
                raise ValueError(
                    "validation_data must be (X_val, condition_val) exactly when fit "
                    "is given condition"
                )
            cond_val = self._conditions(
                cond_val, X_val.shape[0], s.dtype, n_cond, "condition_val"
            )
        batch = s.batch_size
        if batch > n and not partial:
            warnings.warn(
                f"batch_size={batch} is larger than the {n} samples; using {n}",
                UserWarning,
                stacklevel=5,  # the caller of VAE.fit
            )
        batch = min(batch, n)

        layout = self._layout(s, d, n_cond)
        check_memory(
            training_bytes(layout, batch, s.dtype.itemsize),
            f"training this {type(self).__name__}",
            "use smaller hidden layers, latent_dim or batch_size",
        )
        opt = s.optimizer
        writer = None
        fingerprint = None
        if checkpoint is not None or resume is not None:
            fingerprint = _ckpt.data_fingerprint(X, cond, s.dtype)
            if resume is not None:
                _ckpt.check_same_data(resume["data"], fingerprint)
        if resume is not None:
            if self._fitted_layout != layout or self._optimizer_name != opt.name:
                raise ValueError("the data do not fit the checkpointed model")
            continuing = True
        else:
            continuing = (
                (s.warm_start or partial)
                and fitted
                and self._fitted_layout == layout
                and self.params_.dtype == s.dtype
            )
        if partial and fitted and not continuing:
            raise ValueError(
                f"partial_fit got data or settings that do not match the fitted "
                f"{type(self).__name__} ({d} features and {n_cond} condition columns "
                f"now, {self.n_features_in_} and {self.n_conditions_} before, or a "
                "changed architecture or dtype); call fit to start over"
            )
        if not continuing:
            self.params_ = self._init_params(s, layout)
            self._opt_state = [layout.zeros(s.dtype) for _ in range(2)]
            self._optimizer_name = opt.name
            self.t_ = 0
            self.n_iter_ = 0
            self.history_ = _empty_history()
            self.loss_curve_ = []
        elif self._optimizer_name != opt.name:
            raise ValueError(
                f"warm_start cannot switch optimizer from {self._optimizer_name} "
                f"to {opt.name}"
            )
        self.n_features_in_ = d
        self.n_conditions_ = n_cond
        self._fitted_layout = layout
        self._fitted_settings = s
        self._lock = getattr(self, "_lock", None) or threading.RLock()
        # Built now, not on first use, so inference never changes __dict__.
        self._infer_net = self._network(s, layout, INFERENCE_CHUNK, n_cond)
        data = (
            batches.Chunked(X, s.dtype, batch, cond)
            if batches.is_out_of_core(X)
            else batches.InMemory(X, cond)
        )

        epochs = resume["epochs"] if resume is not None else self.n_iter_ + s.epochs
        epoch = resume["epoch"] if resume is not None else _ckpt.EpochProgress()
        if checkpoint is not None:
            last = None
            if resume is not None:
                last = (self.n_iter_, epoch.step, self.t_)
            writer = _ckpt.Checkpointer(
                checkpoint["path"],
                checkpoint["every"],
                checkpoint["every_steps"],
                {
                    "epochs": epochs,
                    "batch_size": batch,
                    "data": fingerprint,
                    "checkpoint_every": checkpoint["every"],
                    "checkpoint_every_steps": checkpoint["every_steps"],
                },
                checkpoint["user"],
                last=last,
            )
        net = self._network(s, layout, batch, n_cond)
        net.set_optimizer(**kernel_settings(opt))
        if comm is not None:  # a fastvae.models.distributed.Group: steps over MPI ranks
            stepper = comm.data_parallel(
                net, self, (X, cond, X_val, cond_val), (epochs, epoch.step, batch)
            )
        else:
            stepper = LocalStepper(net)
        grads = layout.zeros(s.dtype)
        steps_per_epoch = -(-n // batch)
        log_every = max(1, steps_per_epoch // 20)
        remaining = (epochs - self.n_iter_) * n - min(n, epoch.step * batch)
        if s.verbose:
            callbacks = [ProgressBar(s.verbose), *callbacks]
        hooks = _Hooks(self, callbacks)
        hooks.train_begin(
            {
                "epochs": epochs,
                "epochs_done": self.n_iter_,
                "n_samples": n,
                "batch_size": batch,
                "steps_per_epoch": steps_per_epoch,
                "remaining_samples": remaining,
            }
        )
        try:
            with self._lock, blas_single_threaded():
                while self.n_iter_ < epochs:
                    hooks.epoch_begin(self.n_iter_ + 1)
                    stopped = self._fit_epoch(
                        s,
                        stepper,
                        data,
                        grads,
                        batch,
                        log_every,
                        hooks,
                        X_val,
                        cond_val,
                        epoch,
                        writer,
                    )
                    if stopped == "mid-epoch":  # the checkpoint keeps the position
                        break
                    epoch = _ckpt.EpochProgress()
                    if hooks.epoch_end(self.history_) or stopped:
                        break
                if writer is not None and not writer.written_at(self.t_):
                    self._write_checkpoint(writer, epoch)
        finally:
            hooks.train_end()
        return self

    def _write_checkpoint(self, writer, epoch):
        state, arrays = self._state()
        writer.write(state, arrays, epoch)

    def _fit_epoch(
        self,
        s,
        net,
        data,
        grads,
        batch,
        log_every,
        hooks,
        X_val,
        cond_val,
        epoch,
        writer,
    ):
        """Train the rest of one epoch from `epoch` (an EpochProgress: steps
        already done and their sums), writing checkpoints when due.

        Returns None, or where a callback's on_step_end stopped training:
        "mid-epoch" (`epoch` then holds the position reached) or "at the
        epoch's end" (the epoch is complete and recorded)."""
        n = data.n_rows
        steps_per_epoch = -(-n // batch)
        order = _epoch_order(s.seed, self.n_iter_, n)
        p, (s1, s2) = self.params_, self._opt_state
        seconds_before = epoch.seconds
        stop = False
        start = time.perf_counter()
        for X, rows, cond in data.minibatches(order[epoch.step * batch :], batch):
            b = rows.shape[0]
            kl_weight = self._kl_weight(s, self.t_)
            status, recon_sum, kl_sum = net.train_step(
                p,
                grads,
                s1,
                s2,
                X,
                rows,
                b,
                s.seed,
                self.t_,
                kl_weight,
                s.n_threads,
                cond=cond,
            )
            if status != 0:
                what = "loss" if status == 1 else "gradient"
                raise FloatingPointError(
                    f"the {what} became NaN or infinite at step {self.t_} "
                    f"(epoch {self.n_iter_ + 1}, reconstruction sum {recon_sum:.4g}, "
                    f"KL sum {kl_sum:.4g}); parameters are those before this step. "
                    f"Try a lower learning rate (lr={s.optimizer.lr:g} now), "
                    "a smaller batch, or check X for extreme values."
                    + ("" if writer is None else " " + writer.describe_last())
                )
            self.t_ += 1
            epoch.step += 1
            loss = (recon_sum + kl_weight * kl_sum) / b
            epoch.reconstruction += recon_sum
            epoch.kl += kl_sum
            epoch.loss += loss * b
            epoch.window_loss += loss
            epoch.window_steps += 1
            if epoch.window_steps == log_every:
                self.history_["step"].append(self.t_)
                self.history_["step_loss"].append(
                    epoch.window_loss / epoch.window_steps
                )
                epoch.window_loss, epoch.window_steps = 0.0, 0
            stop = hooks.step_end(
                {
                    "step": self.t_,
                    "epoch": self.n_iter_ + 1,
                    "batch_size": b,
                    "loss": loss,
                    "reconstruction": recon_sum / b,
                    "kl": kl_sum / b,
                }
            )
            if epoch.step < steps_per_epoch and (
                stop or (writer is not None and writer.step_due(self.t_))
            ):
                epoch.seconds = seconds_before + time.perf_counter() - start
                if writer is not None and writer.step_due(self.t_):
                    self._write_checkpoint(writer, epoch)
                if stop:
                    return "mid-epoch"
        seconds = seconds_before + time.perf_counter() - start
        recon_total, kl_total, loss_total = epoch.reconstruction, epoch.kl, epoch.loss
        self.n_iter_ += 1
        h = self.history_
        h["epoch"].append(self.n_iter_)
        h["loss"].append(loss_total / n)
        h["reconstruction"].append(recon_total / n)
        h["kl"].append(kl_total / n)
        h["elbo"].append(-(recon_total + kl_total) / n)
        h["seconds"].append(seconds)
        h["samples_per_second"].append(n / seconds if seconds > 0 else float("inf"))
        val = None
        if X_val is not None:
            val = net.mean_elbo(self, X_val, cond_val, s.n_threads)
        h["val_elbo"].append(val)
        self.loss_curve_.append(loss_total / n)
        if writer is not None and writer.epoch_due(self.n_iter_, self.t_):
            self._write_checkpoint(writer, _ckpt.EpochProgress())
        return "at the epoch's end" if stop else None

    # -- inference --------------------------------------------------------------

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
            )
        return self._infer_net

    def _threads(self):
        return resolve_num_threads(self.n_threads)

    def _input(self, X, name="X"):
        self._check_fitted()
        return check_array(
            X,
            name=name,
            dtype=self.params_.dtype,
            n_features=self.n_features_in_,
            owner=type(self).__name__,
        )

    def _target(self, X, name="X"):
        """_input for data whose likelihood is evaluated: a Bernoulli
        likelihood of values outside [0, 1] is no probability at all."""
        X = self._input(X, name)
        if self._fitted_settings.likelihood == "bernoulli":
            _check_unit_interval(X, name)
        return X

    def _call(self, method, *args, **kwargs):
        with self._lock, blas_single_threaded():
            net = self._inference_network()
            return getattr(net, method)(
                self.params_, *args, n_threads=self._threads(), **kwargs
            )

    def _head(self, X, condition):
        X = self._input(X)
        cond = self._fitted_conditions(condition, X.shape[0])
        return self._call("encode", X, cond=cond)

    def decode(self, Z, condition=None):
        """Mean of p(x | z): sigmoid(logits) for Bernoulli, the mean for Gaussian.

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
        return self._call("decode", Z, cond=cond)

    def _elbo_rows(self, X, cond=None, n_threads=None):
        """Per-row -(reconstruction + KL) with the fixed evaluation stream."""
        from fastvae._core import _rng

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
        logsigma = self._fitted_layout.tail(self.params_).astype(np.float64)
        return np.exp(np.clip(logsigma, *LOGSIGMA_RANGE))

    # -- persistence --------------------------------------------------------------

    def _state(self):
        """The fitted model's complete state, as (metadata, arrays).

        metadata (JSON-serialisable): "estimator" (class name), "params"
        (constructor arguments but the optimizer), "optimizer" (name and
        hyper-parameters in effect), "fitted" (n_features_in_, n_conditions_,
        n_iter_, t_, history_, loss_curve_) and "fastvae_version". arrays:
        "params", "opt_state1", "opt_state2", the flat buffers of shape
        (n_params,) (the model's own buffers, not copies). Nothing in it
        depends on a process, a thread count or a machine: `_set_state`
        restores exactly this state anywhere, model files are it written by
        fastvae.models.file_format, and checkpoints are it plus the training progress.
        """

        self._check_fitted()
        s = self._fitted_settings
        params = {
            k: _jsonable(v) for k, v in self.get_params().items() if k != "optimizer"
        }
        params["dtype"] = np.dtype(s.dtype).name
        opt = s.optimizer
        state = {
            "estimator": type(self).__name__,
            "params": params,
            "optimizer": {"name": opt.name, **_fields(opt)},
            "fitted": {
                "n_features_in_": self.n_features_in_,
                "n_conditions_": self.n_conditions_,
                "n_iter_": self.n_iter_,
                "t_": self.t_,
                "history_": self.history_,
                "loss_curve_": self.loss_curve_,
            },
            "fastvae_version": __version__,
        }
        arrays = {
            "params": self.params_,
            "opt_state1": self._opt_state[0],
            "opt_state2": self._opt_state[1],
        }
        return state, arrays

    def _set_state(self, state, arrays):
        """Restore a state returned by `_state` (possibly read from a file).

        Everything is checked before anything is changed: the constructor
        arguments and optimizer against their rules, the fitted counters and
        history for types and consistency, and the arrays for dtype, the
        length the architecture implies, and finiteness. The estimator's
        class must match state["estimator"].

        Raises
        ------
        ValueError, TypeError
            Naming what is missing or wrong; the model is then unchanged.
        """
        from fastvae import optim

        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        if state.get("estimator") != type(self).__name__:
            raise ValueError(
                f"the state is of a {state.get('estimator')!r}, not a "
                f"{type(self).__name__}"
            )
        params = _section(state, "params")
        allowed = set(self._param_names()) - {"optimizer"}
        unknown = sorted(map(str, set(params) - allowed))
        if unknown:
            raise ValueError(f"unknown parameters {unknown}")
        params = dict(params)
        for name in ("hidden", "decoder_hidden"):  # JSON has no tuples
            if isinstance(params.get(name), list):
                params[name] = tuple(params[name])
        if "dtype" in params:
            params["dtype"] = check_dtype(str(params["dtype"])).type
        opt_meta = dict(_section(state, "optimizer"))
        opt_cls = optim.OPTIMIZER_NAMES.get(str(opt_meta.pop("name", None)))
        if opt_cls is None:
            raise ValueError(
                f"optimizer must be one of {sorted(optim.OPTIMIZER_NAMES)}"
            )
        # The optimizer object holds the learning rate in effect, so lr is
        # None: a fit(lr=...) override must not be undone by the constructor's.
        values = {
            **self.get_params(),
            **params,
            "optimizer": opt_cls(**opt_meta),
            "lr": None,
        }
        s = self._settings(params=values)
        fitted = _check_fitted(_section(state, "fitted"))
        layout = self._layout(s, fitted["n_features_in_"], fitted["n_conditions_"])
        if not isinstance(arrays, dict) or set(arrays) != _STATE_ARRAYS:
            raise ValueError(f"the arrays must be {sorted(_STATE_ARRAYS)}")
        for name in sorted(_STATE_ARRAYS):
            a = arrays[name]
            if (
                not isinstance(a, np.ndarray)
                or a.dtype != s.dtype
                or a.shape != (layout.size,)
            ):
                got = (
                    f"{a.dtype}{list(a.shape)}"
                    if isinstance(a, np.ndarray)
                    else type(a).__name__
                )
                raise ValueError(
                    f"array {name!r} does not match the model's architecture (expected "
                    f"{np.dtype(s.dtype)}[{layout.size}], got {got})"
                )
            if not np.isfinite(a).all():
                raise ValueError(f"array {name!r} holds NaN or inf")

        for name, value in values.items():
            setattr(self, name, value)
        self.params_ = _aligned_copy(arrays["params"], layout)
        self._opt_state = [
            _aligned_copy(arrays[n], layout) for n in ("opt_state1", "opt_state2")
        ]
        self._optimizer_name = s.optimizer.name
        self.n_features_in_ = fitted["n_features_in_"]
        self.n_conditions_ = fitted["n_conditions_"]
        self.n_iter_ = fitted["n_iter_"]
        self.t_ = fitted["t_"]
        self.history_ = fitted["history_"]
        self.loss_curve_ = fitted["loss_curve_"]
        self._fitted_layout = layout
        self._fitted_settings = s
        self._lock = getattr(self, "_lock", None) or threading.RLock()
        self._infer_net = self._network(s, layout, INFERENCE_CHUNK, self.n_conditions_)

    # -- pickling (in memory: scikit-learn's clone of fitted models, joblib) --

    def __getstate__(self):
        """Constructor arguments and fitted state, without the compiled
        networks and the lock (rebuilt by __setstate__). Model files use
        save/load, which never pickle."""
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state.pop("_infer_net", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if getattr(self, "params_", None) is None:
            return
        layout = self._fitted_layout
        # An unpickled buffer may be unaligned, or a read-only memmap (joblib)
        self.params_ = _aligned_copy(self.params_, layout)
        self._opt_state = [_aligned_copy(a, layout) for a in self._opt_state]
        self._lock = threading.RLock()
        self._infer_net = self._network(
            self._fitted_settings, layout, INFERENCE_CHUNK, self.n_conditions_
        )

    def save(self, path):
        """Write the fitted model to `path` (.npz + JSON, atomic, no pickle).

        The file holds the constructor arguments, the parameter buffer, the
        optimizer state and the training history; `fastvae.load` restores it.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced atomically if it exists).
        """
        from fastvae.models import file_format as _io

        state, arrays = self._state()
        _io.save(path, state, arrays, format=_io.MODEL_FORMAT)


# -- helpers --------------------------------------------------------------------


_STATE_ARRAYS = {"params", "opt_state1", "opt_state2"}
# How each history list's entries may look: (type, allow None, allow inf).
_HISTORY_ENTRIES = {
    "epoch": (numbers.Integral, False, False),
    "loss": (numbers.Real, False, False),
    "reconstruction": (numbers.Real, False, False),
    "kl": (numbers.Real, False, False),
    "elbo": (numbers.Real, False, False),
    "val_elbo": (numbers.Real, True, False),
    "seconds": (numbers.Real, False, False),
    "samples_per_second": (numbers.Real, False, True),
    "step": (numbers.Integral, False, False),
    "step_loss": (numbers.Real, False, False),
}
_PER_STEP = ("step", "step_loss")


def _section(state, key):
    value = state.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{key!r} must be a JSON object, got {type(value).__name__}")
    return value


def _count(name, value, low=0, high=2**63 - 1):
    """An integer in [low, high] (steps are uint64 in the kernels; 2**63 is
    far beyond any run)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not low <= value <= high
    ):
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _check_fitted(fitted):
    """The fitted counters and history of a state, checked and copied."""
    keys = {
        "n_features_in_",
        "n_conditions_",
        "n_iter_",
        "t_",
        "history_",
        "loss_curve_",
    }
    missing = keys - set(fitted) - {"n_conditions_"}  # absent in early files: 0
    if missing or set(fitted) - keys:
        raise ValueError(
            f"fitted must have the keys {sorted(keys)}, got {sorted(map(str, fitted))}"
        )
    out = {
        "n_features_in_": _count("n_features_in_", fitted["n_features_in_"], low=1),
        "n_conditions_": _count("n_conditions_", fitted.get("n_conditions_", 0)),
        "n_iter_": _count("n_iter_", fitted["n_iter_"]),
        "t_": _count("t_", fitted["t_"]),
    }
    history = fitted["history_"]
    if not isinstance(history, dict) or set(history) != set(_HISTORY_ENTRIES):
        raise ValueError(f"history_ must have the keys {sorted(_HISTORY_ENTRIES)}")
    for key, (kind, allow_none, allow_inf) in _HISTORY_ENTRIES.items():
        values = history[key]
        if not isinstance(values, list):
            raise ValueError(f"history_[{key!r}] must be a list")
        for v in values:
            if v is None and allow_none:
                continue
            if (
                isinstance(v, bool)
                or not isinstance(v, kind)
                or math.isnan(v)
                or (math.isinf(v) and not allow_inf)
            ):
                raise ValueError(f"history_[{key!r}] holds {v!r}")
    lengths = {key: len(history[key]) for key in _HISTORY_ENTRIES}
    if (
        any(lengths[k] != out["n_iter_"] for k in lengths if k not in _PER_STEP)
        or lengths["step"] != lengths["step_loss"]
    ):
        raise ValueError(
            f"history_ lengths {lengths} do not fit n_iter_={out['n_iter_']}"
        )
    curve = fitted["loss_curve_"]
    if (
        not isinstance(curve, list)
        or len(curve) != out["n_iter_"]
        or any(
            isinstance(v, bool)
            or not isinstance(v, numbers.Real)
            or not math.isfinite(v)
            for v in curve
        )
    ):
        raise ValueError(
            f"loss_curve_ must be a list of {out['n_iter_']} finite numbers"
        )
    out["history_"] = {k: list(v) for k, v in history.items()}
    out["loss_curve_"] = [float(v) for v in curve]
    return out


def _instance_lock(model):
    """The estimator's re-entrant lock, created on first use (scikit-learn's
    __init__ stores arguments only)."""
    lock = model.__dict__.get("_lock")
    if lock is None:
        with _LOCK_GUARD:
            lock = model.__dict__.setdefault("_lock", threading.RLock())
    return lock


def _empty_history():
    keys = (
        "epoch",
        "loss",
        "reconstruction",
        "kl",
        "elbo",
        "val_elbo",
        "seconds",
        "samples_per_second",
        "step",
        "step_loss",
    )
    return {k: [] for k in keys}


def _epoch_order(seed, epoch, n):
    """The minibatch order of one epoch: a pure function of (seed, epoch)."""
    bitgen = np.random.Philox(key=[seed, _SHUFFLE_STREAM], counter=[0, epoch, 0, 0])
    # copy=False: for data bigger than memory this index is what grows with n
    return np.random.Generator(bitgen).permutation(n).astype(np.int64, copy=False)


def _check_unit_interval(X, name):
    lo, hi = float(X.min()), float(X.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1] for the Bernoulli likelihood, got values "
            f"in [{lo:g}, {hi:g}]; scale the data (e.g. divide pixels by 255) or "
            "use likelihood='gaussian'"
        )


class LocalStepper:
    """Training steps on this process: the compiled Network itself, and the
    validation ELBO over all rows. fastvae.models.distributed's
    DataParallelNetwork has the same two methods over MPI ranks."""

    def __init__(self, net):
        self.net = net

    def train_step(self, *args, **kwargs):
        return self.net.train_step(*args, **kwargs)

    def mean_elbo(self, model, X, cond, n_threads):
        return float(np.mean(model._elbo_rows(X, cond, n_threads)))


class _Hooks:
    """Runs fit's callbacks in order; a True from any stops training."""

    _EPOCH_KEYS = (
        "epoch",
        "loss",
        "reconstruction",
        "kl",
        "elbo",
        "val_elbo",
        "seconds",
        "samples_per_second",
    )

    def __init__(self, model, callbacks):
        self.model = model
        self.callbacks = callbacks

    def train_begin(self, info):
        for cb in self.callbacks:
            cb.on_train_begin(self.model, dict(info))

    def epoch_begin(self, epoch):
        for cb in self.callbacks:
            cb.on_epoch_begin(self.model, epoch)

    def step_end(self, logs):
        stop = False
        for cb in self.callbacks:
            stop = bool(cb.on_step_end(self.model, logs)) or stop
        return stop

    def epoch_end(self, history):
        logs = {key: history[key][-1] for key in self._EPOCH_KEYS}
        stop = False
        for cb in self.callbacks:
            stop = bool(cb.on_epoch_end(self.model, dict(logs))) or stop
        return stop

    def train_end(self):
        for cb in self.callbacks:
            cb.on_train_end(self.model)


def _aligned_copy(a, layout):
    out = layout.zeros(a.dtype)
    out[...] = a
    return out


def _fields(opt):
    from dataclasses import asdict

    return asdict(opt)


def _jsonable(v):
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, type) or isinstance(v, np.dtype):
        return np.dtype(v).name
    return v


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return False
