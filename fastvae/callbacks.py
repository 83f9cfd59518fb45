"""Callbacks: code of yours that runs inside ``fit`` at fixed points.

Pass them as ``fit(X, callbacks=[...])`` (also ``partial_fit`` and
``fastvae.resume``). A callback subclasses :class:`Callback` and overrides
the hooks it needs; every hook gets the model being trained, whose
``history_``, ``t_`` (steps done) and ``n_iter_`` (epochs done) are up to
date when the hook runs. The progress bar of ``verbose >= 1`` is one of
them (:class:`ProgressBar`), and so are fit's checkpoint writer
(``checkpoint=``) and the command line's metrics file.

Stopping: a hook ``on_step_end`` or ``on_epoch_end`` that returns ``True``
ends training at that step or epoch boundary. fit then returns normally,
and, with ``checkpoint=``, writes a checkpoint there first, so
``fastvae.resume`` can continue the run exactly.

Callbacks run on the training thread between compiled steps; what they do
costs time on every step (``on_step_end``) or epoch. With ``comm=`` (MPI),
every rank runs its own callbacks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from fastvae._validation import check_number

__all__ = [
    "Callback",
    "EarlyStopping",
    "EpochProgress",
    "LambdaCallback",
    "MaxTime",
    "ProgressBar",
    "TrainingState",
    "CallbackList",
    "check_callbacks",
    "state_keys",
]


@dataclass
class EpochProgress:
    """Where training stands inside one epoch, and the sums it has so far.

    Parameters
    ----------
    step : int
        Minibatches of the current epoch already done (0 at its start).
    reconstruction, kl, loss : float
        Sums over those minibatches' samples, of which the epoch's history
        entries are made.
    window_loss : float
        Sum of the per-sample step losses not yet recorded in
        ``history_["step_loss"]``, over `window_steps` steps.
    window_steps : int
        How many steps `window_loss` covers.
    seconds : float
        Training time of the epoch so far.
    """

    step: int = 0
    reconstruction: float = 0.0
    kl: float = 0.0
    loss: float = 0.0
    window_loss: float = 0.0
    window_steps: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


Outcome = Literal["finished", "stopped", "failed"]


@dataclass
class TrainingState:
    """What fit's loop knows beyond the model, kept up to date as it runs.

    Callbacks get it as ``info["state"]`` in ``on_train_begin`` and may read
    it in any later hook; only the loop writes it.

    Parameters
    ----------
    epoch : EpochProgress
        The position inside the current epoch (a new one starts at every
        epoch boundary); exact after every step.
    outcome : {"finished", "stopped", "failed"} or None
        None while training; in ``on_train_end``: "finished" (all epochs
        done), "stopped" (a callback returned True) or "failed" (an error,
        or Ctrl-C, ended training; the model then holds the parameters
        before the failing step).
    lr : float or None
        The learning rate of the next step. The one callback that may write
        here is a learning-rate schedule (fastvae.schedules); the loop gives
        the next step the rate it finds.
    """

    epoch: EpochProgress = field(default_factory=EpochProgress)
    outcome: Outcome | None = None
    lr: float | None = None


class Callback:
    """Base class of fit's callbacks; every hook does nothing by default.

    Hooks, in the order they run:

    - ``on_train_begin(model, info)``: once, before the first step. `info`
      has ``epochs`` (the total the run trains to), ``epochs_done``,
      ``n_samples``, ``batch_size``, ``steps_per_epoch``,
      ``remaining_samples`` (samples left to train on, all epochs),
      ``validation`` (whether fit has validation data, so ``val_elbo``),
      ``lr`` (the optimizer's learning rate, what schedules scale) and
      ``state``, a live :class:`TrainingState` (the position inside the
      epoch, and in ``on_train_end`` how training ended).
    - ``on_epoch_begin(model, epoch)``: `epoch` counts from 1.
    - ``on_step_end(model, logs)``: after every step; `logs` has ``step``
      (= ``model.t_``), ``epoch``, ``batch_size`` and the step's per-sample
      ``loss``, ``reconstruction`` and ``kl``.
    - ``on_epoch_end(model, logs)``: after the epoch's history entries are
      recorded; `logs` holds them (``epoch``, ``loss``, ``reconstruction``,
      ``kl``, ``elbo``, ``val_elbo``, ``lr``, ``seconds``,
      ``samples_per_second``).
    - ``on_train_end(model)``: once, also when training stops with an
      error (then after the error, which fit raises afterwards). Every
      callback's ``on_train_end`` runs even if an earlier one raises.

    ``on_step_end`` and ``on_epoch_end`` may return True to stop training.

    A callback with state that a resumed run must continue from (a
    patience count, a best value) returns it from ``state_dict()``: a dict
    of JSON values and NumPy float arrays. Checkpoints store it, and
    ``fastvae.resume(..., callbacks=[...])`` hands it back to the callback of
    the same class (and rank among those of its class) with
    ``load_state_dict(state)`` before training goes on.

    Examples
    --------
    >>> class StopBelow(Callback):
    ...     def __init__(self, loss):
    ...         self.loss = loss
    ...     def on_epoch_end(self, model, logs):
    ...         return logs["loss"] < self.loss
    >>> vae.fit(X, callbacks=[StopBelow(100.0)])  # doctest: +SKIP
    """

    def on_train_begin(self, model, info: dict[str, Any]) -> None:
        """Before the first step of this fit."""

    def on_epoch_begin(self, model, epoch: int) -> None:
        """Before the first step of epoch number `epoch` (from 1)."""

    def on_step_end(self, model, logs: dict[str, Any]) -> bool | None:
        """After every step; return True to stop training here."""

    def on_epoch_end(self, model, logs: dict[str, Any]) -> bool | None:
        """After every epoch; return True to stop training here."""

    def on_train_end(self, model) -> None:
        """After the last step, whether training finished, stopped or failed."""

    def state_dict(self) -> dict[str, Any] | None:
        """State a checkpoint keeps for a resumed run (None: none)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state that `state_dict` returned."""


class LambdaCallback(Callback):
    """A callback from plain functions, one per hook (each optional).

    Parameters
    ----------
    on_train_begin, on_epoch_begin, on_step_end, on_epoch_end, on_train_end :
        callable, optional
        Called with the hook's arguments (see :class:`Callback`).

    Examples
    --------
    >>> losses = []
    >>> log = LambdaCallback(on_epoch_end=lambda m, logs: losses.append(logs["loss"]))
    >>> vae.fit(X, callbacks=[log])  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        on_train_begin: Callable | None = None,
        on_epoch_begin: Callable | None = None,
        on_step_end: Callable | None = None,
        on_epoch_end: Callable | None = None,
        on_train_end: Callable | None = None,
    ):
        hooks = {
            "on_train_begin": on_train_begin,
            "on_epoch_begin": on_epoch_begin,
            "on_step_end": on_step_end,
            "on_epoch_end": on_epoch_end,
            "on_train_end": on_train_end,
        }
        for name, fn in hooks.items():
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"{name} must be callable, got {fn!r}")
                setattr(self, name, fn)


class ProgressBar(Callback):
    """A tqdm bar over all training samples of all epochs (its rate is
    samples/s and its ETA covers the whole fit), with the epoch in the
    description and the mean loss, reconstruction and KL per sample over
    the last twentieth of an epoch. fit adds one when ``verbose >= 1``.

    Parameters
    ----------
    verbose : int, default=1
        2 also prints one line per epoch.
    """

    def __init__(self, verbose: int = 1):
        self.verbose = verbose
        self._bar = None

    def on_train_begin(self, model, info):
        from tqdm.auto import tqdm

        self._epochs = info["epochs"]
        self._log_every = max(1, info["steps_per_epoch"] // 20)
        self._window = [0.0, 0.0, 0.0, 0]
        self._bar = tqdm(
            total=info["remaining_samples"],
            unit="sample",
            unit_scale=True,
            dynamic_ncols=True,
            mininterval=0.2,
        )

    def on_epoch_begin(self, model, epoch):
        self._bar.set_description(f"epoch {epoch}/{self._epochs}", refresh=False)
        self._window = [0.0, 0.0, 0.0, 0]

    def on_step_end(self, model, logs):
        w = self._window
        w[0] += logs["loss"]
        w[1] += logs["reconstruction"]
        w[2] += logs["kl"]
        w[3] += 1
        if w[3] == self._log_every:
            # a dict keeps this order (keyword postfixes are sorted by name)
            self._bar.set_postfix(
                {
                    "loss": f"{w[0] / w[3]:.2f}",
                    "recon": f"{w[1] / w[3]:.2f}",
                    "kl": f"{w[2] / w[3]:.2f}",
                },
                refresh=False,
            )
            self._window = [0.0, 0.0, 0.0, 0]
        self._bar.update(logs["batch_size"])

    def on_epoch_end(self, model, logs):
        if self.verbose >= 2:
            msg = (
                f"epoch {logs['epoch']}: loss {logs['loss']:.4f}, "
                f"recon {logs['reconstruction']:.4f}, kl {logs['kl']:.4f}"
            )
            if logs["val_elbo"] is not None:
                msg += f", val {logs['val_elbo']:.4f}"
            self._bar.write(msg)

    def on_train_end(self, model):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# Per-epoch logs whose larger value is better; the other monitors are losses.
_HIGHER_IS_BETTER = {
    "val_elbo": True,
    "elbo": True,
    "loss": False,
    "reconstruction": False,
}


class EarlyStopping(Callback):
    """Stop when a per-epoch metric has not improved for `patience` epochs,
    and (by default) give the model back the parameters of its best epoch.

    Parameters
    ----------
    monitor : {"val_elbo", "elbo", "loss", "reconstruction"}, default="val_elbo"
        The epoch log to watch: the ELBOs should rise, the losses fall.
        "val_elbo" needs ``fit(validation_data=...)``.
    patience : int >= 1, default=10
        Epochs without improvement before training stops.
    min_delta : float >= 0, default=0.0
        How much better than the best so far counts as an improvement.
    restore_best : bool, default=True
        At the end of training, copy the best epoch's parameters into the
        model (the optimizer state and history stay those of the last
        epoch; checkpoints keep the last parameters, so a resume continues
        exactly).

    Attributes
    ----------
    best_ : float or None
        The best value seen.
    best_epoch_ : int or None
        The epoch (from 1) that reached it.
    stopped_epoch_ : int or None
        The epoch after which this callback stopped training, if it did.

    Notes
    -----
    Its state (best value and epoch, the epochs waited, the best parameters)
    is kept in checkpoints: ``fastvae.resume(..., callbacks=[EarlyStopping(...)])``
    continues the count exactly.

    Examples
    --------
    >>> stop = EarlyStopping(patience=5, min_delta=0.1)
    >>> vae.fit(X, validation_data=X_val, callbacks=[stop])  # doctest: +SKIP
    >>> stop.best_epoch_, stop.stopped_epoch_  # doctest: +SKIP
    """

    def __init__(
        self,
        monitor: str = "val_elbo",
        *,
        patience: int = 10,
        min_delta: float = 0.0,
        restore_best: bool = True,
    ):
        if monitor not in _HIGHER_IS_BETTER:
            raise ValueError(
                f"monitor must be one of {sorted(_HIGHER_IS_BETTER)}, got {monitor!r}"
            )
        self.monitor = monitor
        self.patience = check_number(
            "patience", patience, integer=True, low=1, strict=False
        )
        self.min_delta = check_number("min_delta", min_delta, strict=False)
        self.restore_best = bool(restore_best)
        self.best_: float | None = None
        self.best_epoch_: int | None = None
        self.stopped_epoch_: int | None = None
        self._wait = 0
        self._best_params: np.ndarray | None = None
        self._state: TrainingState | None = None

    def on_train_begin(self, model, info):
        if self.monitor == "val_elbo" and not info.get("validation", True):
            raise ValueError(
                "EarlyStopping(monitor='val_elbo') needs fit(validation_data=...); "
                "or monitor='elbo' (the training ELBO)"
            )
        self._state = info.get("state")
        self.stopped_epoch_ = None

    def on_epoch_end(self, model, logs):
        value = logs[self.monitor]
        sign = 1.0 if _HIGHER_IS_BETTER[self.monitor] else -1.0
        if self.best_ is None or sign * (value - self.best_) > self.min_delta:
            self.best_, self.best_epoch_, self._wait = float(value), logs["epoch"], 0
            if self.restore_best:
                self._best_params = np.array(model.params_, copy=True)
            return False
        self._wait += 1
        if self._wait >= self.patience:
            self.stopped_epoch_ = logs["epoch"]
            return True
        return False

    def on_train_end(self, model):
        failed = self._state is not None and self._state.outcome == "failed"
        if (
            self.restore_best
            and not failed
            and self._best_params is not None
            and self._best_params.shape == model.params_.shape
        ):
            model.params_[...] = self._best_params

    def state_dict(self):
        state: dict[str, Any] = {
            "best": self.best_,
            "best_epoch": self.best_epoch_,
            "wait": self._wait,
        }
        if self._best_params is not None:
            state["best_params"] = self._best_params
        return state

    def load_state_dict(self, state):
        self.best_ = state["best"]
        self.best_epoch_ = state["best_epoch"]
        self._wait = int(state["wait"])
        self._best_params = state.get("best_params")


class MaxTime(Callback):
    """A wall-clock budget: stop at the first step boundary after `seconds`
    of training (with ``checkpoint=``, a checkpoint is written there and
    ``fastvae.resume`` continues exactly; a resumed run gets a new budget).

    Parameters
    ----------
    seconds : float > 0
        The budget, counted from the start of this fit.

    Attributes
    ----------
    stopped_ : bool
        Whether the budget ended training.
    """

    def __init__(self, seconds: float):
        self.seconds = check_number("seconds", seconds)
        self.stopped_ = False
        self._deadline = math.inf

    def on_train_begin(self, model, info):
        self.stopped_ = False
        self._deadline = time.monotonic() + self.seconds

    def on_step_end(self, model, logs):
        if time.monotonic() >= self._deadline:
            self.stopped_ = True
        return self.stopped_


def state_keys(callbacks: Sequence[Callback]) -> list[str]:
    """The key of each callback's state in a checkpoint: its class name, with
    "#2", "#3", ... for later ones of the same class."""
    seen: dict[str, int] = {}
    keys = []
    for cb in callbacks:
        name = type(cb).__name__
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


def check_callbacks(callbacks: Iterable[Callback] | None) -> list[Callback]:
    """fit's `callbacks` argument as a list, each checked to be a Callback.

    Raises
    ------
    TypeError
        If `callbacks` is not a list or tuple of Callback instances.
    """
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        raise TypeError("callbacks must be a list of Callback instances, not one")
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(
            f"callbacks must be a list of fastvae.callbacks.Callback instances, "
            f"got {type(callbacks).__name__}"
        )
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            hint = (
                "; wrap a function as LambdaCallback(on_epoch_end=f)"
                if callable(cb)
                else ""
            )
            raise TypeError(
                f"callbacks[{i}] must be a fastvae.callbacks.Callback, got "
                f"{type(cb).__name__}{hint}"
            )
    return list(callbacks)


class CallbackList:
    """Runs fit's callbacks in order; a True from any stops training (what
    fit's loop calls at each point; not needed to write a callback).

    `first_at_end` (the checkpoint writer) runs first in train_end: its last
    checkpoint must hold the parameters training reached, before another
    callback (EarlyStopping's restore-best) changes them."""

    def __init__(self, model, callbacks, first_at_end=None):
        self.model = model
        self.callbacks = callbacks
        self.end_order = sorted(callbacks, key=lambda cb: cb is not first_at_end)

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

    def epoch_end(self, logs):
        """Each callback gets its own copy of the epoch's `logs`."""
        stop = False
        for cb in self.callbacks:
            stop = bool(cb.on_epoch_end(self.model, dict(logs))) or stop
        return stop

    def train_end(self):
        """Every callback's on_train_end, even after one raises; then the
        first error is raised."""
        error = None
        for cb in self.end_order:
            try:
                cb.on_train_end(self.model)
            except BaseException as exc:  # Ctrl-C in one must not skip the rest
                error = error or exc
        if error is not None:
            raise error
