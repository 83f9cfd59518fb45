"""The training loop of the estimators: fit's checks and setup, the epochs
of compiled steps, checkpoints and callbacks.

About 600 lines on purpose: what one step does, in which order (minibatch,
compiled step, sums, history, callbacks, stop decision, checkpoint), reads
in one place; the pieces around it live elsewhere (callbacks and their
runner in fastvae.callbacks, checkpoints in .checkpoint, MPI in
.distributed, settings in .settings)."""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from fastvae._core.threads import blas_single_threaded, resolve_num_threads
from fastvae._validation import check_memory, training_bytes
from fastvae.callbacks import (
    Callback,
    CallbackList,
    EpochProgress,
    ProgressBar,
    TrainingState,
    check_callbacks,
)
from fastvae.data import batches
from fastvae.latent import active_units
from fastvae.models import checkpoint as _ckpt
from fastvae.models import columns as _columns
from fastvae.models.anndata_input import training_input
from fastvae.models.history import EPOCH_FIELDS, empty_history
from fastvae.models.inference import INFERENCE_CHUNK
from fastvae.optim import Optimizer, kernel_settings

if TYPE_CHECKING:
    from typing_extensions import Self

_SHUFFLE_STREAM = 0x5EED

# Validation rows the per-epoch active-unit count encodes: enough for the
# variance of a posterior mean, bounded in cost (measured: 9.5 ms, 0.6% of
# a 1.5 s epoch of 784-400-20 on 50,000 MNIST rows, 2 threads).
DIAGNOSTIC_ROWS = 2000


# Creates each estimator's lock exactly once, even when two threads race.
_LOCK_GUARD = threading.Lock()


def _instance_lock(model):
    """The estimator's re-entrant lock, created on first use (scikit-learn's
    __init__ stores arguments only)."""
    lock = model.__dict__.get("_lock")
    if lock is None:
        with _LOCK_GUARD:
            lock = model.__dict__.setdefault("_lock", threading.RLock())
    return lock


def _epoch_order(seed, epoch, n):
    """The minibatch order of one epoch: a pure function of (seed, epoch)."""
    bitgen = np.random.Philox(key=[seed, _SHUFFLE_STREAM], counter=[0, epoch, 0, 0])
    # copy=False: for data bigger than memory this index is what grows with n
    return np.random.Generator(bitgen).permutation(n).astype(np.int64, copy=False)


def _data_summary(X, dtype, before: dict | None) -> dict:
    """training_data_ for a fit on X: its size and value range, the range
    widened to cover `before` (the summary of the fit continued), whose
    "source" stays."""
    lo, hi = batches.value_range(X, dtype)
    summary = {
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "min": lo,
        "max": hi,
    }
    if before is not None:
        summary["min"] = min(lo, before["min"])
        summary["max"] = max(hi, before["max"])
        if "source" in before:
            summary["source"] = before["source"]
    return summary


def _check_lr(lr) -> float:
    """A learning rate a schedule set: a finite number > 0."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 1e300:
        raise ValueError(f"a schedule set the learning rate to {lr!r}; it must be > 0")
    return float(lr)


class LocalStepper:
    """Training steps on this process: the compiled Network itself (`net`),
    the validation ELBO over all rows, and a stop decision (this process's
    own). fastvae.models.distributed's DataParallelNetwork has the same
    attribute and methods over MPI ranks."""

    def __init__(self, net, csr=False):
        self.net = net
        self.train_step = net.train_step  # the compiled call, unwrapped
        if csr:  # minibatches of batches.SparseRows: X holds the CSR arrays
            self.train_step = self._train_step_csr

    def _train_step_csr(self, p, g, s1, s2, X, rows, batch, *args, **kwargs):
        return self.net.train_step_csr(
            p, g, s1, s2, X.data, X.indices, X.indptr, rows, batch, *args, **kwargs
        )

    def mean_elbo(self, model, X, cond, n_threads):
        return float(np.mean(model._elbo_rows(X, cond, n_threads)))

    def any_rank(self, flag: bool) -> bool:
        """Whether any process says `flag` (a callback's stop): this one."""
        return bool(flag)


def run_on_ranks(comm, run):
    """run(None) on this process, or run(group) on every rank of comm as one
    data-parallel fit (fastvae.models.distributed.fit: errors before training are
    shared, a failure of one rank during it aborts the job)."""
    if comm is None:
        return run(None)
    from fastvae.models import distributed

    return distributed.fit(comm, run)


def fit_estimator(
    model,
    X,
    condition,
    overrides,
    validation_data,
    checkpoint_args,
    comm,
    callbacks,
    anndata_args=(None, None),
):
    """fit's body for every estimator: over MPI with `comm`, else settings
    checked first (the likelier mistake), then the checkpoint options.
    `anndata_args`: (layer, condition_key) for an AnnData X."""
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
            anndata_args,
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
        anndata_args=anndata_args,
    )


def _fit_on_ranks(
    model,
    X,
    condition,
    overrides,
    validation_data,
    checkpoint_args,
    comm,
    callbacks,
    anndata_args,
):
    """fit over the ranks of comm. Settings and checkpoint options are checked
    inside the collective part, so that a rank they fail on cannot leave the
    others waiting; rank 0 alone writes checkpoints."""

    def run(group):
        settings = model._settings(overrides)  # bad settings: the likelier mistake
        # The rank's own overrides (quiet ranks, the per-node thread default)
        # are valid by construction: they change the settings, unchecked.
        extra = group.overrides(model)
        if "n_threads" in extra:
            extra["n_threads"] = resolve_num_threads(extra["n_threads"])
        settings = settings.replace(**extra)
        options = _ckpt.options(*checkpoint_args) if group.is_root else None
        return model._fit(
            X,
            condition,
            overrides,
            validation_data,
            options,
            comm=group,
            callbacks=callbacks,
            settings=settings,
            anndata_args=anndata_args,
        )

    return run_on_ranks(comm, run)


class Training:
    """Mixin of BaseAutoencoder: fit's machinery (settings to network, the
    epoch loop, checkpoints and callbacks)."""

    def fit(
        self,
        X: ArrayLike,
        y: object = None,
        *,
        condition: ArrayLike | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        optimizer: str | Optimizer | None = None,
        lr: float | None = None,
        validation_data: ArrayLike | tuple[ArrayLike, ArrayLike] | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 1,
        checkpoint_every_steps: int | None = None,
        checkpoint_meta: dict[str, Any] | None = None,
        comm: Any = None,
        callbacks: Sequence[Callback] | None = None,
        layer: str | None = None,
        condition_key: str | None = None,
    ) -> Self:
        """Train on X.

        Parameters
        ----------
        X : array-like, sparse matrix or AnnData of shape (n_samples, n_features)
            Training data; in [0, 1] for the Bernoulli likelihood. A sparse
            matrix is read one densified minibatch at a time (CSR as it is,
            other formats converted once), bitwise like the same data dense.
            An AnnData gives ``adata.X`` (or `layer`) and, with
            `condition_key`, the condition; one read with
            ``backed="r"`` is copied block by block to a temporary
            memory-mapped CSR folder under ``TMPDIR`` for the call (see
            fastvae.data.annotated).
        y : ignored
            Accepted for scikit-learn compatibility.
        condition : array-like of shape (n_samples, n_conditions), optional
            Makes the model conditional: every method then takes the matching
            condition rows.
        epochs, batch_size, optimizer, lr : optional
            Override the constructor's values for this call.
        validation_data : array-like of shape (n_val, n_features), or a tuple
            (X_val, condition_val) for a conditional model, optional.
            An AnnData is read as X is (with its layer and condition_key).
            Its mean ELBO is recorded after every epoch in history_["val_elbo"]
            (for an autoencoder, whose history_["kl"] is all zeros, its mean
            reconstruction log-likelihood log p(x | encoder(x))).
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
        layer : str, optional
            AnnData X only: train on ``X.layers[layer]`` (e.g. raw counts in
            "counts") instead of ``X.X``.
        condition_key : str, optional
            AnnData X only: the column of ``X.obs`` (e.g. "batch") whose
            levels, one-hot encoded, are the condition; instead of
            `condition`. The levels are a categorical column's categories
            in order, else its sorted values. The layer, the key and the
            levels are kept (``anndata_layer_``, ``condition_key_``,
            ``condition_levels_``, also in model files), so transform,
            score_samples and the other methods read an AnnData the same
            way, unknown levels being an error; `validation_data` may then
            be an AnnData too.

        Returns
        -------
        self
            The fitted estimator.

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
        return fit_estimator(
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
            (layer, condition_key),
        )

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
        anndata_args=(None, None),
    ):
        """fit's body, on this rank. `anndata_args` is (layer,
        condition_key) for an AnnData X."""
        callbacks = check_callbacks(callbacks)
        continuing = partial or resume is not None
        with training_input(
            self, X, condition, validation_data, *anndata_args, continuing=continuing
        ) as (X, condition, validation_data, conversion):
            if not partial or getattr(self, "params_", None) is None:
                self._record_feature_names(X)
            # The whole fit holds the estimator's lock: two threads fitting
            # one model run one after the other instead of mixing their state.
            with _instance_lock(self):
                self._fit_locked(
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
                    conversion,
                )
        return self

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
        conversion=None,
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
        conversion : dict, optional
            The fitted attributes saying how an AnnData became X
            (fastvae.models.anndata_input), set with the other fitted
            attributes; None leaves them.
        """
        s = self._settings(overrides) if settings is None else settings
        fitted = getattr(self, "params_", None) is not None
        if partial:  # one epoch over X, continuing a fitted model
            s = s.replace(epochs=1)
        X = self._training_data(
            s, X, self.n_features_in_ if partial and fitted else s.input_dim
        )
        n, d = X.shape
        columns = None
        if _columns.per_column(s.likelihood, s.missing):
            # A continued run keeps the levels it was built with.
            keep = fitted and (partial or s.warm_start or resume is not None)
            columns = getattr(self, "columns_", None) if keep else None
            if columns is None or len(columns) != d:
                columns = _columns.resolve(s.likelihood, s.missing, X)
            _columns.check_values(columns, X, s.missing)
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
            X_val = self._data(
                s, X_val, "validation_data", n_features=d, columns=columns
            )
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

        layout = self._layout(s, d, n_cond, columns)
        check_memory(
            training_bytes(layout, batch, s.dtype.itemsize, s.n_latent_samples),
            f"training this {type(self).__name__}",
            "use smaller hidden layers, latent_dim, batch_size or n_latent_samples",
        )
        opt = s.optimizer
        writer = None
        fingerprint = None
        if checkpoint is not None or resume is not None:
            stored = None if resume is None else resume["data"]
            fingerprint = _ckpt.data_fingerprint(X, cond, s.dtype, like=stored)
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
            self.history_ = empty_history()
            self.loss_curve_ = []
        elif self._optimizer_name != opt.name:
            raise ValueError(
                f"warm_start cannot switch optimizer from {self._optimizer_name} "
                f"to {opt.name}"
            )
        self.training_data_ = _data_summary(
            X, s.dtype, getattr(self, "training_data_", None) if continuing else None
        )
        self.n_features_in_ = d
        self.n_conditions_ = n_cond
        self.columns_ = columns
        # how an AnnData became X: in the checkpoints too
        for name, value in (conversion or {}).items():
            setattr(self, name, value)
        self._fitted_layout = layout
        self._fitted_settings = s
        self._lock = getattr(self, "_lock", None) or threading.RLock()
        # Built now, not on first use, so inference never changes __dict__.
        self._infer_net = self._network(
            s, layout, INFERENCE_CHUNK, n_cond, columns=columns
        )

        epochs = resume["epochs"] if resume is not None else self.n_iter_ + s.epochs
        state = TrainingState()
        if resume is not None:
            state.epoch = resume["epoch"]
        callbacks = list(callbacks)
        if s.verbose:
            callbacks.insert(0, ProgressBar(s.verbose))
        if checkpoint is not None:
            last = None
            if resume is not None:
                last = (self.n_iter_, state.epoch.step, self.t_)
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
            writer.others = list(callbacks)
            # Last at steps and epoch ends, so a checkpoint holds the other
            # callbacks' state after them; first at the end (see CallbackList).
            callbacks.append(writer)
        net = self._network(s, layout, batch, n_cond, training=True, columns=columns)
        net.set_optimizer(**kernel_settings(opt))
        if comm is None and batches.reads_nonzeros(X, net):
            data = batches.SparseRows(X, s.dtype, cond)
        elif batches.is_out_of_core(X):
            data = batches.Chunked(X, s.dtype, batch, cond)
        else:
            data = batches.InMemory(X, cond)
        if comm is not None:  # a fastvae.models.distributed.Group: steps over MPI ranks
            stepper = comm.data_parallel(
                net,
                self,
                (X, cond, X_val, cond_val),
                (epochs, state.epoch.step, batch),
            )
        else:
            stepper = LocalStepper(net, isinstance(data, batches.SparseRows))
        grads = layout.zeros(s.dtype)
        steps_per_epoch = -(-n // batch)
        log_every = max(1, steps_per_epoch // 20)
        remaining = (epochs - self.n_iter_) * n - min(n, state.epoch.step * batch)
        hooks = CallbackList(self, callbacks, first_at_end=writer)
        state.lr = opt.lr
        hooks.train_begin(
            {
                "epochs": epochs,
                "epochs_done": self.n_iter_,
                "n_samples": n,
                "batch_size": batch,
                "steps_per_epoch": steps_per_epoch,
                "remaining_samples": remaining,
                "validation": X_val is not None,
                "lr": opt.lr,
                "state": state,
            }
        )
        stopped = None
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
                        state,
                        writer,
                    )
                    if stopped == "mid-epoch":  # state.epoch keeps the position
                        break
                    logs = {key: self.history_[key][-1] for key in EPOCH_FIELDS}
                    if stepper.any_rank(hooks.epoch_end(logs)):
                        stopped = "at the epoch's end"
                    if stopped:
                        break
            state.outcome = "stopped" if stopped else "finished"
            self._warn_if_collapsed(s)
        except BaseException:
            state.outcome = "failed"
            raise
        finally:
            hooks.train_end()
        return self

    def _active_units(self, X_val, cond_val):
        """Active units on (at most DIAGNOSTIC_ROWS of) the validation data, for
        a VAE; None for an autoencoder (no posterior)."""
        if self._kind != "vae":
            return None
        rows = slice(0, DIAGNOSTIC_ROWS)
        head = X_val[rows]
        H = self._call(
            "encode",
            head if batches.is_sparse(head) else np.ascontiguousarray(head),
            cond=None if cond_val is None else np.ascontiguousarray(cond_val[rows]),
        )
        return active_units(H[:, : H.shape[1] // 2])[0]

    def _warn_if_collapsed(self, s):
        n_active = self.history_["active_units"][-1:] or [None]
        if n_active[0] is not None and n_active[0] < s.latent_dim / 2:
            warnings.warn(
                f"only {n_active[0]} of {s.latent_dim} latent dimensions are active "
                "on the validation data (posterior collapse); KL warm-up "
                "(kl_warmup), a smaller beta or a smaller latent_dim may help",
                UserWarning,
                stacklevel=6,  # the caller of VAE.fit
            )

    def _fit_epoch(
        self,
        s,
        stepper,
        data,
        grads,
        batch,
        log_every,
        hooks,
        X_val,
        cond_val,
        state,
        writer,
    ):
        """Train the rest of one epoch from `state.epoch` (steps already done
        and their sums), which every step keeps exact; record the epoch in the
        history and start `state.epoch` afresh at its end.

        `writer` (the checkpoint callback, or None) is only named in errors.

        Returns None, or where a callback's on_step_end stopped training:
        "mid-epoch" (`state.epoch` then holds the position reached) or "at the
        epoch's end" (the epoch is complete and recorded)."""
        n = data.n_rows
        steps_per_epoch = -(-n // batch)
        epoch = state.epoch
        order = _epoch_order(s.seed, self.n_iter_, n)
        p, (s1, s2) = self.params_, self._opt_state
        seconds_before = epoch.seconds
        stop = False
        start = time.perf_counter()
        for X, rows, cond in data.minibatches(order[epoch.step * batch :], batch):
            b = rows.shape[0]
            if state.lr != stepper.net.lr:  # a schedule changed it
                stepper.net.set_optimizer(
                    **{**kernel_settings(s.optimizer), "lr": _check_lr(state.lr)}
                )
            kl_weight = self._kl_weight(s, self.t_)
            status, recon_sum, kl_sum = stepper.train_step(
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
            epoch.seconds = seconds_before + time.perf_counter() - start
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
            stop = stepper.any_rank(stop)  # over MPI, every rank stops at one step
            if stop and epoch.step < steps_per_epoch:
                return "mid-epoch"
        seconds = epoch.seconds
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
            val = stepper.mean_elbo(self, X_val, cond_val, s.n_threads)
        h["val_elbo"].append(val)
        h["active_units"].append(
            self._active_units(X_val, cond_val) if X_val is not None else None
        )
        h["lr"].append(stepper.net.lr)
        self.loss_curve_.append(loss_total / n)
        state.epoch = EpochProgress()
        return "at the epoch's end" if stop else None
