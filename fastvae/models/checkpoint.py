"""Training checkpoints: the global state a run needs to continue exactly.

A checkpoint is a fastvae file (fastvae.models.file_format: an uncompressed
.npz of plain arrays plus JSON metadata, SHA-256 per array, atomic writes,
never pickle)
of format "fastvae-checkpoint", version 1. It holds exactly what a model
file holds, plus where training stands:

arrays
    ``params``, ``opt_state1``, ``opt_state2``: the flat parameter buffer and
    both optimizer state buffers (zeros where an optimizer keeps none), all
    of shape (n_params,), float32 or float64.
metadata (JSON)
    ``estimator``, ``params`` (constructor arguments), ``optimizer`` (name
    and hyper-parameters in effect), ``fitted`` (``n_features_in_``,
    ``n_conditions_``, ``n_iter_`` = epochs done, ``t_`` = optimizer steps
    done, ``history_``, ``loss_curve_``) — as in a model file — and
    ``progress``:

    - ``epochs``: the total number of epochs the run is to reach;
    - ``batch_size``: the global minibatch size in effect;
    - ``epoch``: the position inside the current epoch, ``step`` (minibatches
      of epoch ``n_iter_ + 1`` already done, 0 at an epoch boundary), and the
      running sums that epoch's history entries are made of
      (``reconstruction``, ``kl``, ``loss``, ``window_loss``,
      ``window_steps``, ``seconds``);
    - ``data``: ``n_samples``, ``n_features``, ``n_conditions`` and the
      SHA-256 of the training data (X, then the condition array) as fit
      received them after conversion to the model's dtype, so a resume on
      other data is refused; for a scipy.sparse X, ``sparse``: true and the
      SHA-256 is of its canonical CSR arrays instead of its dense bytes
      (see `data_fingerprint`);
    - ``checkpoint_every`` (epochs) and ``checkpoint_every_steps`` (steps or
      null), reused on resume;

    and ``user``: a JSON object the caller of fit stored (the command line
    stores its options there).

Every number in it is global: minibatch order, noise and optimizer steps
are pure functions of (seed, epoch, step, row position in the global
minibatch), so there is no per-process or per-thread state to keep. A
data-parallel run checkpoints the same state (written by one rank) and can
be resumed on any number of processes or threads, with bitwise identical
results for the same global batch.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from dataclasses import fields
from pathlib import Path

import numpy as np

from fastvae._validation import Param
from fastvae.callbacks import Callback, EpochProgress, state_keys
from fastvae.data import batches
from fastvae.models import file_format as _io

__all__ = [
    "EpochProgress",
    "Checkpointer",
    "checkpoint_path",
    "data_fingerprint",
    "check_same_data",
    "DataMismatchError",
    "options",
    "read_progress",
]

DEFAULT_NAME = "checkpoint.npz"


def checkpoint_path(path, *, must_exist: bool = False) -> Path:
    """The checkpoint file for `path`: the path itself, or checkpoint.npz
    inside it when it is a folder.

    Raises
    ------
    FileNotFoundError
        If the folder the file goes into does not exist, or (must_exist) the
        file does not.
    TypeError
        If `path` is not a str or os.PathLike.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a file or folder path, got {path!r}")
    as_folder = str(path).endswith(("/", os.sep))
    path = Path(path)
    if path.is_dir():
        path = path / DEFAULT_NAME
    elif as_folder:
        raise FileNotFoundError(f"folder {path} does not exist (for the checkpoint)")
    if must_exist and not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(
            f"folder {folder} does not exist (for checkpoint {path})"
        )
    return path


def data_fingerprint(X, cond: np.ndarray | None, dtype=None, *, like=None) -> dict:
    """Sizes and SHA-256 of the training data (X, then conditions).

    A dense X is hashed as its bytes; an out-of-core one (fastvae.data.batches)
    in windows of rows converted to `dtype`, which gives the digest of the
    same data held in memory. A scipy.sparse X is hashed by its stored
    values, never densified (a 10**6 x 20,000 count matrix would be 80 GB
    dense): see `_sparse_digest`; the result then has "sparse": True.

    `like`: the fingerprint of a checkpoint being resumed. One without the
    "sparse" key was made the dense way (also of a sparse X, by fastvae
    before sparse fingerprints), so a sparse X is then hashed that way too
    and those checkpoints stay valid."""
    sparse = batches.is_sparse(X) and (like is None or like.get("sparse", False))
    if sparse:
        h = _sparse_digest(X, dtype or X.dtype)
    elif batches.is_out_of_core(X):
        h = hashlib.sha256()
        for block in batches.row_blocks(X, dtype or X.dtype):
            h.update(block.view(np.uint8))
    else:
        h = hashlib.sha256(np.ascontiguousarray(X).view(np.uint8))
    if cond is not None:
        h.update(np.ascontiguousarray(cond).view(np.uint8))
    fingerprint = {
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "n_conditions": 0 if cond is None else int(cond.shape[1]),
        "sha256": h.hexdigest(),
    }
    if sparse:  # only then: dense checkpoints keep the keys they always had
        fingerprint["sparse"] = True
    return fingerprint


def _sparse_digest(X, dtype):
    """SHA-256 of a sparse matrix as canonical CSR (columns sorted within
    rows, duplicates summed): its shape and number of stored values, then
    indptr and indices as little-endian int64 and the stored values as
    little-endian `dtype`, each read in windows (a memory map's pages are
    released after each, so the files are never resident whole)."""
    X = batches.as_csr(X)
    h = hashlib.sha256()
    h.update(np.array([*X.shape, X.nnz], dtype="<i8").view(np.uint8))
    value = np.dtype(dtype).newbyteorder("<")
    for array, as_type in (
        (X.indptr, np.dtype("<i8")),
        (X.indices, np.dtype("<i8")),
        (X.data, value),
    ):
        for _, window in batches.stored_windows(np.asarray(array)):
            h.update(np.ascontiguousarray(window, dtype=as_type).view(np.uint8))
    return h


def _form(fingerprint: dict) -> str:
    return "a sparse matrix" if fingerprint.get("sparse") else "a dense array"


class DataMismatchError(ValueError):
    """The data a run is resumed on are not the data it was checkpointed on
    (the command line names the data file with it)."""


def check_same_data(stored: dict, actual: dict) -> None:
    """DataMismatchError (a ValueError) unless the data resumed on are the
    data checkpointed."""
    for key, what in (
        ("n_samples", "samples"),
        ("n_features", "features"),
        ("n_conditions", "condition columns"),
    ):
        if stored[key] != actual[key]:
            raise DataMismatchError(
                f"the data have {actual[key]} {what} but the checkpointed run "
                f"trained on {stored[key]}; resume needs the same training data"
            )
    if stored.get("sparse", False) != actual.get("sparse", False):
        raise DataMismatchError(
            f"X is {_form(actual)} but the checkpointed run trained on "
            f"{_form(stored)}; resume needs the training data in the same form"
        )
    if stored["sha256"] != actual["sha256"]:
        raise DataMismatchError(
            "X (or condition) differs from the data the checkpointed run trained on "
            "(SHA-256 mismatch); resume needs the same rows in the same order"
        )


_COUNT = Param(numbers.Integral, low=0)
_POSITIVE = Param(numbers.Integral, low=1)


def _real(name, value, *, low=None):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or (low is not None and value < low)
    ):
        bound = f" >= {low}" if low is not None else ""
        raise ValueError(
            f"progress {name} must be a finite number{bound}, got {value!r}"
        )
    return float(value)


def read_progress(progress, *, n_iter: int, n_features: int, n_conditions: int) -> dict:
    """The validated `progress` section of a checkpoint's metadata.

    Returns a dict with "epochs", "batch_size", "epoch" (an EpochProgress),
    "data", "checkpoint_every" and "checkpoint_every_steps".

    Raises
    ------
    ValueError, TypeError
        If anything is missing, of the wrong type, or inconsistent.
    """
    if not isinstance(progress, dict):
        raise ValueError("the checkpoint has no progress section")
    keys = {
        "epochs",
        "batch_size",
        "epoch",
        "data",
        "checkpoint_every",
        "checkpoint_every_steps",
    }
    if set(progress) != keys:
        raise ValueError(
            f"progress must have the keys {sorted(keys)}, got "
            f"{sorted(map(str, progress))}"
        )
    epochs = _POSITIVE.check("epochs", progress["epochs"])
    data = progress["data"]
    base = {"n_samples", "n_features", "n_conditions", "sha256"}
    if not isinstance(data, dict) or set(data) not in (base, base | {"sparse"}):
        raise ValueError(
            "progress data must have n_samples, n_features, n_conditions and sha256 "
            "(and sparse)"
        )
    if not isinstance(data.get("sparse", False), bool):
        raise ValueError("progress data sparse must be true or false")
    n = _POSITIVE.check("data n_samples", data["n_samples"])
    if data["n_features"] != n_features or data["n_conditions"] != n_conditions:
        raise ValueError("progress data sizes do not match the model")
    if not isinstance(data["sha256"], str) or len(data["sha256"]) != 64:
        raise ValueError("progress data sha256 must be 64 hex digits")
    batch = Param(numbers.Integral, low=1, high=n).check(
        "batch_size", progress["batch_size"]
    )
    every = _COUNT.check("checkpoint_every", progress["checkpoint_every"])
    every_steps = progress["checkpoint_every_steps"]
    if every_steps is not None:
        _POSITIVE.check("checkpoint_every_steps", every_steps)
    e = progress["epoch"]
    names = {f.name for f in fields(EpochProgress)}
    if not isinstance(e, dict) or set(e) != names:
        raise ValueError(f"progress epoch must have the keys {sorted(names)}")
    steps_per_epoch = -(-n // batch)
    step = Param(numbers.Integral, low=0, high=steps_per_epoch - 1).check(
        "epoch step", e["step"]
    )
    window = Param(numbers.Integral, low=0, high=step).check(
        "window_steps", e["window_steps"]
    )
    epoch = EpochProgress(
        step=int(step),
        window_steps=int(window),
        reconstruction=_real("reconstruction", e["reconstruction"]),
        kl=_real("kl", e["kl"]),
        loss=_real("loss", e["loss"]),
        window_loss=_real("window_loss", e["window_loss"]),
        seconds=_real("seconds", e["seconds"], low=0.0),
    )
    if epochs < n_iter or (epochs == n_iter and step > 0):
        raise ValueError(
            f"progress says {epochs} epochs in all but {n_iter} are done"
            + (" and one more is under way" if step else "")
        )
    return {
        "epochs": int(epochs),
        "batch_size": int(batch),
        "epoch": epoch,
        "data": dict(data),
        "checkpoint_every": int(every),
        "checkpoint_every_steps": None if every_steps is None else int(every_steps),
    }


def callback_states(callbacks) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The callbacks' state_dict()s as a checkpoint keeps them: a JSON list of
    {"key", "state", "arrays"} (arrays: the state's array entries, by the
    names of the file's arrays holding them) and those arrays."""
    entries, arrays = [], {}
    for i, (key, cb) in enumerate(zip(state_keys(callbacks), callbacks, strict=True)):
        state = cb.state_dict()
        if state is None:
            continue
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise TypeError(
                f"{key}.state_dict() must return a dict with str keys or None"
            )
        plain, names = {}, {}
        for name, value in state.items():
            if isinstance(value, np.ndarray):
                names[name] = f"callback{i}_{len(names)}"
                arrays[names[name]] = value
            else:
                plain[name] = value
        try:
            json.dumps(plain, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{key}.state_dict() must hold JSON values and NumPy arrays: {exc}"
            ) from None
        entries.append({"key": key, "state": plain, "arrays": names})
    return entries, arrays


def split_callback_states(meta: dict, arrays: dict) -> tuple[dict, dict]:
    """(the model's arrays, {key: state}) from a checkpoint's metadata and
    arrays: the inverse of callback_states.

    Raises
    ------
    ValueError
        If the "callbacks" section is malformed or names missing arrays.
    """
    entries = meta.get("callbacks", [])
    if not isinstance(entries, list):
        raise ValueError("callbacks must be a JSON list")
    arrays = dict(arrays)
    states = {}
    for entry in entries:
        if (
            not isinstance(entry, dict)
            or set(entry) != {"key", "state", "arrays"}
            or not isinstance(entry["key"], str)
            or not isinstance(entry["state"], dict)
            or not isinstance(entry["arrays"], dict)
        ):
            raise ValueError("a callbacks entry must be {key, state, arrays}")
        state = dict(entry["state"])
        for name, member in entry["arrays"].items():
            if not isinstance(member, str) or not member.startswith("callback"):
                raise ValueError(f"callback array {member!r} is not a callback's")
            if member not in arrays:
                raise ValueError(f"callback array {member!r} is missing")
            state[name] = arrays.pop(member)
        states[entry["key"]] = state
    return arrays, states


def options(checkpoint, every, every_steps, user) -> dict | None:
    """Validated checkpoint options of fit (None when checkpoint is None)."""
    if checkpoint is None:
        return None
    path = checkpoint_path(checkpoint)
    _COUNT.check("checkpoint_every", every)
    if every_steps is not None:
        _POSITIVE.check("checkpoint_every_steps", every_steps)
    if user is None:
        user = {}
    if not isinstance(user, dict):
        raise TypeError(f"checkpoint_meta must be a dict, got {type(user).__name__}")
    try:
        json.dumps(user, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"checkpoint_meta must be JSON-serialisable: {exc}") from None
    return {
        "path": path,
        "every": int(every),
        "every_steps": None if every_steps is None else int(every_steps),
        "user": user,
    }


class Checkpointer(Callback):
    """The callback that writes a run's checkpoints and remembers the last
    good one; fit adds it for ``checkpoint=``, after the other callbacks at
    steps and epoch ends (a checkpoint holds their state_dict() after that
    step) and before them when training ends.

    It writes after every step due by `every_steps` while an epoch is under
    way, after every epoch due by `every` or `every_steps`, and when training
    ends unless it failed (an error or Ctrl-C may leave the model between a
    step and its bookkeeping, so the last good checkpoint stays instead).

    Parameters
    ----------
    path : Path
        The checkpoint file (replaced atomically at every write).
    every : int
        Write after every epoch whose number (n_iter_) is a multiple of it
        (0: never at epoch ends).
    every_steps : int or None
        Also write after every step whose count (t_) is a multiple of it,
        mid-epoch too.
    progress : dict
        The constant part of the progress section: "epochs", "batch_size",
        "data", "checkpoint_every", "checkpoint_every_steps".
    user : dict
        Stored as the checkpoint's "user" section.
    last : tuple of (int, int, int), optional
        (epochs, epoch step, steps) of the checkpoint at `path` this run
        continues from.
    """

    def __init__(self, path, every, every_steps, progress, user, last=None):
        self.path = Path(path)
        self.every = every
        self.every_steps = every_steps
        self.progress = progress
        self.user = user
        self.last = last
        # The other callbacks of the fit, whose state_dict goes in too.
        self.others: list[Callback] = []
        self._state = None
        self._steps_per_epoch = 0

    def on_train_begin(self, model, info):
        self._state = info["state"]
        self._steps_per_epoch = info["steps_per_epoch"]

    def on_step_end(self, model, logs):
        # At an epoch's last step on_epoch_end writes, with the epoch recorded.
        epoch = self._state.epoch
        if epoch.step < self._steps_per_epoch and self.step_due(model.t_):
            self._write_model(model, epoch)

    def on_epoch_end(self, model, logs):
        if self.epoch_due(model.n_iter_, model.t_):
            self._write_model(model, self._state.epoch)

    def on_train_end(self, model):
        if self._state.outcome != "failed" and not self.written_at(model.t_):
            self._write_model(model, self._state.epoch)

    def _write_model(self, model, epoch):
        state, arrays = model._state()
        entries, extra = callback_states(self.others)
        if entries:
            state = dict(state, callbacks=entries)
            arrays = {**arrays, **extra}
        self.write(state, arrays, epoch)

    def step_due(self, t: int) -> bool:
        return self.every_steps is not None and t % self.every_steps == 0

    def epoch_due(self, n_iter: int, t: int) -> bool:
        return (self.every > 0 and n_iter % self.every == 0) or self.step_due(t)

    def written_at(self, t: int) -> bool:
        return self.last is not None and self.last[2] == t

    def write(self, state: dict, arrays: dict, epoch: EpochProgress) -> None:
        """Write the state atomically; refuse (FloatingPointError) when any
        number in it is not finite, so the last good checkpoint stays."""
        fitted = state["fitted"]
        where = (
            f"epoch {fitted['n_iter_'] + (1 if epoch.step else 0)}, step {fitted['t_']}"
        )
        sums = [epoch.reconstruction, epoch.kl, epoch.loss, epoch.window_loss]
        bad = [name for name, a in arrays.items() if not np.isfinite(a).all()]
        if bad or not all(math.isfinite(v) for v in sums):
            raise FloatingPointError(
                f"{' and '.join(bad) or 'the loss sums'} became NaN or infinite by "
                f"{where}; no checkpoint was written there. {self.describe_last()}"
            )
        meta = dict(state)
        meta["progress"] = {**self.progress, "epoch": epoch.to_json()}
        meta["user"] = self.user
        try:
            _io.save(self.path, meta, arrays, format=_io.CHECKPOINT_FORMAT)
        except OSError as exc:
            raise OSError(
                f"could not write checkpoint {self.path} at {where}: {exc}. "
                f"{self.describe_last()}"
            ) from exc
        self.last = (fitted["n_iter_"], epoch.step, fitted["t_"])

    def describe_last(self) -> str:
        """Where the last good checkpoint is, for error messages."""
        if self.last is None:
            return f"No checkpoint had been written to {self.path} yet."
        n_iter, step, t = self.last
        at = f"{n_iter} epochs" + (f" and {step} steps" if step else "")
        return (
            f"The last good checkpoint ({at}, step {t}) is kept at {self.path}; "
            "continue from it with fastvae.resume (or fastvae train --resume)."
        )
