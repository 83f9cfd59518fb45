"""Learning-rate schedules: callbacks that set the learning rate of fit.

A schedule sets ``info["state"].lr`` (fastvae.callbacks.TrainingState) in
its hooks; fit's loop gives the next step that learning rate. The rate of
each epoch's last step is recorded in ``history_["lr"]``.

Every schedule is a pure function of the epoch (and, for
:class:`ReduceLROnPlateau`, of a state that checkpoints keep), so a resumed
run continues its schedule exactly. The optimizer's own ``lr`` (``lr=`` of
the estimator) is the base rate the schedules scale.

Examples
--------
>>> from fastvae.schedules import CosineLR
>>> vae.fit(X, callbacks=[CosineLR(min_lr=1e-5)])  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fastvae._validation import check_number
from fastvae.callbacks import Callback, TrainingState

__all__ = [
    "EpochSchedule",
    "StepLR",
    "ExponentialLR",
    "CosineLR",
    "StagedLR",
    "ReduceLROnPlateau",
    "parse_schedule",
]


def _fraction(name: str, value: Any) -> float:
    value = check_number(name, value)
    if value >= 1:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return value


class EpochSchedule(Callback):
    """A learning rate that depends on the epoch only: subclasses define
    ``rate(epoch, base_lr, epochs)``, the rate of epoch `epoch` (from 1) of a
    run of `epochs` epochs whose optimizer has `base_lr`."""

    def __init__(self) -> None:
        self._state: TrainingState | None = None
        self._base = 0.0
        self._epochs = 1

    def rate(self, epoch: int, base_lr: float, epochs: int) -> float:
        raise NotImplementedError

    def on_train_begin(self, model, info):
        self._state = info["state"]
        self._base = info["lr"]
        self._epochs = info["epochs"]

    def on_epoch_begin(self, model, epoch):
        self._state.lr = float(self.rate(epoch, self._base, self._epochs))


class StepLR(EpochSchedule):
    """lr * gamma ** floor((epoch - 1) / step_size).

    Parameters
    ----------
    step_size : int > 0
        Epochs between decays.
    gamma : float in (0, 1), default=0.5
    """

    def __init__(self, step_size: int, gamma: float = 0.5):
        super().__init__()
        self.step_size = check_number("step_size", step_size, integer=True)
        self.gamma = _fraction("gamma", gamma)

    def rate(self, epoch, base_lr, epochs):
        return base_lr * self.gamma ** ((epoch - 1) // self.step_size)


class ExponentialLR(EpochSchedule):
    """lr * gamma ** (epoch - 1).

    Parameters
    ----------
    gamma : float in (0, 1)
    """

    def __init__(self, gamma: float):
        super().__init__()
        self.gamma = _fraction("gamma", gamma)

    def rate(self, epoch, base_lr, epochs):
        return base_lr * self.gamma ** (epoch - 1)


class CosineLR(EpochSchedule):
    """Cosine annealing from lr (epoch 1) to `min_lr` (the last epoch).

    Parameters
    ----------
    min_lr : float >= 0, default=0.0
    epochs : int > 0, optional
        The length of the cosine; the run's total epochs when None.
    """

    def __init__(self, min_lr: float = 0.0, epochs: int | None = None):
        super().__init__()
        self.min_lr = check_number("min_lr", min_lr, strict=False)
        self.epochs = (
            None if epochs is None else check_number("epochs", epochs, integer=True)
        )

    def rate(self, epoch, base_lr, epochs):
        # t reaches 1 after the last epoch (as PyTorch's CosineAnnealingLR
        # with T_max = epochs), so no epoch trains at min_lr = 0.
        length = self.epochs or epochs
        t = min(epoch - 1, length) / length
        return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1 + math.cos(math.pi * t))


class StagedLR(EpochSchedule):
    """Piecewise-constant stages of (epochs, rate factor); the last stage's
    factor holds after the stages end.

    Parameters
    ----------
    stages : sequence of (int, float)
        (number of epochs, factor of the base lr) per stage.

    Notes
    -----
    :meth:`iwae` is the schedule of Burda et al. (2016): 3**i passes at
    0.001 * 10**(-i/7) for i = 0..7, 3,280 epochs in all (with Adam at
    lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-4).
    """

    def __init__(self, stages: Sequence[tuple[int, float]]):
        super().__init__()
        if not isinstance(stages, Sequence) or not stages:
            raise ValueError("stages must be a non-empty list of (epochs, factor)")
        checked = []
        for i, stage in enumerate(stages):
            if not isinstance(stage, Sequence) or len(stage) != 2:
                raise ValueError(f"stages[{i}] must be (epochs, factor), got {stage!r}")
            checked.append(
                (
                    check_number(f"stages[{i}] epochs", stage[0], integer=True),
                    check_number(f"stages[{i}] factor", stage[1]),
                )
            )
        self.stages = checked

    @classmethod
    def iwae(cls) -> StagedLR:
        """Burda et al.'s schedule, as factors of a base lr of 1e-3."""
        return cls([(3**i, 10 ** (-i / 7)) for i in range(8)])

    def rate(self, epoch, base_lr, epochs):
        end = 0
        for length, factor in self.stages:
            end += length
            if epoch <= end:
                return base_lr * factor
        return base_lr * self.stages[-1][1]


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when a per-epoch metric has not
    improved for `patience` epochs (never below `min_lr`).

    Parameters
    ----------
    monitor : {"val_elbo", "elbo", "loss", "reconstruction"}, default="val_elbo"
    factor : float in (0, 1), default=0.5
    patience : int > 0, default=5
    min_delta : float >= 0, default=0.0
    min_lr : float >= 0, default=0.0

    Notes
    -----
    Its state (best value, epochs waited, current rate) is kept in
    checkpoints, so ``fastvae.resume`` continues it exactly.
    """

    def __init__(
        self,
        monitor: str = "val_elbo",
        *,
        factor: float = 0.5,
        patience: int = 5,
        min_delta: float = 0.0,
        min_lr: float = 0.0,
    ):
        from fastvae.callbacks import EarlyStopping

        # The same rules of what to watch and when it improved.
        self._watch = EarlyStopping(
            monitor, patience=patience, min_delta=min_delta, restore_best=False
        )
        self.monitor = monitor
        self.factor = _fraction("factor", factor)
        self.patience = self._watch.patience
        self.min_delta = self._watch.min_delta
        self.min_lr = check_number("min_lr", min_lr, strict=False)
        self.lr_: float | None = None
        self._state: TrainingState | None = None

    def on_train_begin(self, model, info):
        self._watch.on_train_begin(model, info)
        self._state = info["state"]
        if self.lr_ is None:
            self.lr_ = float(info["lr"])
        self._state.lr = self.lr_

    def on_epoch_end(self, model, logs):
        if self._watch.on_epoch_end(model, logs):  # patience ran out
            self.lr_ = max(self.min_lr, self.lr_ * self.factor)
            self._state.lr = self.lr_
            self._watch._wait = 0
        return False

    def state_dict(self):
        return {**self._watch.state_dict(), "lr": self.lr_}

    def load_state_dict(self, state):
        self._watch.load_state_dict(state)
        self.lr_ = state["lr"]


def _whole(value: float) -> int | float:
    """An integral float as an int; anything else unchanged (to be refused)."""
    return int(value) if float(value).is_integer() else value


def parse_schedule(text: str, *, monitor: str = "val_elbo") -> Callback:
    """A schedule from the command line's ``--lr-schedule`` text:
    ``step:EPOCHS[:GAMMA]``, ``exponential:GAMMA``, ``cosine[:MIN_LR]``,
    ``plateau[:PATIENCE[:FACTOR]]`` (watching `monitor`) or ``iwae``.

    Parameters
    ----------
    text : str
        The specification.
    monitor : str, default="val_elbo"
        What a plateau schedule watches ("elbo" without validation data).

    Returns
    -------
    Callback
        The schedule.

    Raises
    ------
    ValueError
        Naming what is wrong.
    """
    name, *args = text.split(":")
    try:
        numbers_ = [float(a) for a in args]
    except ValueError:
        raise ValueError(
            f"--lr-schedule {text!r}: the values must be numbers"
        ) from None
    makers = {
        "step": (1, 2, lambda a: StepLR(_whole(a[0]), *a[1:])),
        "exponential": (1, 1, lambda a: ExponentialLR(a[0])),
        "cosine": (0, 1, lambda a: CosineLR(*a)),
        "plateau": (
            0,
            2,
            lambda a: ReduceLROnPlateau(
                monitor,
                patience=_whole(a[0]) if a else 5,
                factor=a[1] if len(a) > 1 else 0.5,
            ),
        ),
        "iwae": (0, 0, lambda a: StagedLR.iwae()),
    }
    if name not in makers:
        raise ValueError(
            f"--lr-schedule {text!r}: unknown schedule {name!r}; one of "
            + ", ".join(sorted(makers))
        )
    low, high, make = makers[name]
    if not low <= len(numbers_) <= high:
        raise ValueError(
            f"--lr-schedule {text!r}: {name} takes {low} to {high} values after ':'"
        )
    return make(numbers_)
