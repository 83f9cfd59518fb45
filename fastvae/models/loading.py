"""Models back from files: load a saved model or the model in a checkpoint,
see where a run stands, and resume it."""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from numpy.typing import ArrayLike

from fastvae import _atomic
from fastvae._validation import Param
from fastvae.callbacks import Callback, check_callbacks, state_keys
from fastvae.data.tables import TableSchema
from fastvae.models import checkpoint as _ckpt
from fastvae.models import file_format as _io
from fastvae.models.autoencoders import Autoencoder, DenoisingAutoencoder
from fastvae.models.tabular import TABULAR_CHECKPOINT_KEY, TabularVAE
from fastvae.models.training import run_on_ranks
from fastvae.models.vae import VAE

if TYPE_CHECKING:
    from fastvae.models.base import BaseAutoencoder

ESTIMATORS = {
    cls.__name__: cls for cls in (VAE, Autoencoder, DenoisingAutoencoder, TabularVAE)
}


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
        if meta["format"] == _io.CHECKPOINT_FORMAT:
            arrays, meta["callback_states"] = _ckpt.split_callback_states(meta, arrays)
        model._set_state(meta, arrays)
    except KeyError as exc:
        raise _io.ModelFileError(
            f"{path} is not a valid {what}: missing {exc}"
        ) from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise _io.ModelFileError(f"{path} is not a valid {what}: {exc}") from None
    return model, meta


def load(path: str | os.PathLike[str]) -> BaseAutoencoder:
    """Load a model written by VAE.save (or an autoencoder's save), or the
    model in a training checkpoint.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    VAE, Autoencoder, DenoisingAutoencoder or TabularVAE
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


def checkpoint_info(checkpoint: str | os.PathLike[str]) -> dict[str, Any]:
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
        epoch already done), "steps" (``t_``), "finished" (bool), "meta" (what fit
        stored as checkpoint_meta) and "callbacks" (the JSON part of each
        callback's saved state, by its key, e.g. "EarlyStopping").

    Raises
    ------
    FileNotFoundError, fastvae.ModelFileError
        As for `resume`.
    """
    path, model, progress, meta = _read_checkpoint(checkpoint)
    step = progress["epoch"].step
    return {
        "path": path,
        "estimator": (
            "TabularVAE"
            if TABULAR_CHECKPOINT_KEY in meta["user"]
            else type(model).__name__
        ),
        "epochs": progress["epochs"],
        "epochs_done": model.n_iter_,
        "epoch_step": step,
        "steps": model.t_,
        "finished": model.n_iter_ >= progress["epochs"] and step == 0,
        "meta": meta["user"],
        "callbacks": {
            key: {k: v for k, v in state.items() if not hasattr(v, "shape")}
            for key, state in meta.get("callback_states", {}).items()
        },
    }


def resume(
    checkpoint: str | os.PathLike[str],
    X: ArrayLike,
    *,
    condition: ArrayLike | None = None,
    validation_data: ArrayLike | tuple[ArrayLike, ArrayLike] | None = None,
    epochs: int | None = None,
    checkpoint_every: int | None = None,
    checkpoint_every_steps: int | None = None,
    n_threads: int | None = None,
    verbose: int | None = None,
    callbacks: Sequence[Callback] | None = None,
    comm: Any = None,
) -> BaseAutoencoder:
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
    X : array-like of shape (n_samples, n_features), or a table
        The training data of the checkpointed run (checked by SHA-256). For a
        checkpoint of ``TabularVAE.fit``, the table (a DataFrame), encoded
        with the checkpointed schema.
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
    VAE, Autoencoder, DenoisingAutoencoder or TabularVAE
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
        table = meta["user"].get(TABULAR_CHECKPOINT_KEY)
        train, validation = X, validation_data
        if table is not None:  # a TabularVAE's run: its table, encoded alike
            try:
                schema = TableSchema.from_dict(table["schema"])
            except (KeyError, TypeError, ValueError) as exc:
                raise _io.ModelFileError(
                    f"{path} is not a valid checkpoint: its table schema: {exc}"
                ) from None
            train = schema.encode(X)
            if validation_data is not None:
                validation = schema.encode(validation_data)
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
        checked = check_callbacks(callbacks)
        states = dict(meta.get("callback_states", {}))
        for key, cb in zip(state_keys(checked), checked, strict=True):
            if key in states:
                cb.load_state_dict(states.pop(key))
        if states and root:
            warnings.warn(
                f"{path} holds the state of {', '.join(sorted(states))}, but no "
                "such callback was passed to resume; the run goes on without it "
                "(pass callbacks=[...] as the original fit did to continue them)",
                UserWarning,
                stacklevel=4,  # the caller of fastvae.resume
            )
        fitted = model._fit(
            train,
            condition,
            {"batch_size": progress["batch_size"], **extra},
            validation,
            options,
            resume=progress,
            comm=group,
            callbacks=checked,
        )
        return fitted if table is None else TabularVAE()._adopt(table, fitted)

    return run_on_ranks(comm, run)
