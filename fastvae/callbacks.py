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

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "Callback",
    "EpochProgress",
    "LambdaCallback",
    "ProgressBar",
    "TrainingState",
    "check_callbacks",
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
    """

    epoch: EpochProgress = field(default_factory=EpochProgress)
    outcome: Outcome | None = None


class Callback:
    """Base class of fit's callbacks; every hook does nothing by default.

    Hooks, in the order they run:

    - ``on_train_begin(model, info)``: once, before the first step. `info`
      has ``epochs`` (the total the run trains to), ``epochs_done``,
      ``n_samples``, ``batch_size``, ``steps_per_epoch``,
      ``remaining_samples`` (samples left to train on, all epochs) and
      ``state``, a live :class:`TrainingState` (the position inside the
      epoch, and in ``on_train_end`` how training ended).
    - ``on_epoch_begin(model, epoch)``: `epoch` counts from 1.
    - ``on_step_end(model, logs)``: after every step; `logs` has ``step``
      (= ``model.t_``), ``epoch``, ``batch_size`` and the step's per-sample
      ``loss``, ``reconstruction`` and ``kl``.
    - ``on_epoch_end(model, logs)``: after the epoch's history entries are
      recorded; `logs` holds them (``epoch``, ``loss``, ``reconstruction``,
      ``kl``, ``elbo``, ``val_elbo``, ``seconds``, ``samples_per_second``).
    - ``on_train_end(model)``: once, also when training stops with an
      error (then after the error, which fit raises afterwards). Every
      callback's ``on_train_end`` runs even if an earlier one raises.

    ``on_step_end`` and ``on_epoch_end`` may return True to stop training.

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
