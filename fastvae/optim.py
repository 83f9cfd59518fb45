"""Optimizer settings. The updates themselves are one fused compiled pass
over the flat parameter buffer (fastvae/_core/_optim.pyx)."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass

from fastvae._validation import Param

__all__ = ["SGD", "Momentum", "Adam", "make_optimizer", "OPTIMIZER_NAMES"]

_LR = Param(numbers.Real, low=0.0, low_open=True)
_UNIT_OPEN = Param(numbers.Real, low=0.0, high=1.0, high_open=True)


@dataclass(frozen=True)
class SGD:
    """Plain stochastic gradient descent: p -= lr * g.

    Parameters
    ----------
    lr : float > 0, default=0.01
        Learning rate.
    """

    lr: float = 0.01
    name = "sgd"
    n_states = 0

    def __post_init__(self):
        _LR.check("lr", self.lr)


@dataclass(frozen=True)
class Momentum:
    """SGD with heavy-ball momentum: v = momentum * v + g; p -= lr * v.

    Parameters
    ----------
    lr : float > 0, default=0.01
        Learning rate.
    momentum : float in [0, 1), default=0.9
        Decay of the velocity v.
    """

    lr: float = 0.01
    momentum: float = 0.9
    name = "momentum"
    n_states = 1

    def __post_init__(self):
        _LR.check("lr", self.lr)
        _UNIT_OPEN.check("momentum", self.momentum)


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba, 2015) with PyTorch's placement of eps.

    m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;
    p -= lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps).

    Parameters
    ----------
    lr : float > 0, default=1e-3
        Learning rate.
    beta1 : float in [0, 1), default=0.9
        Decay of the first moment m.
    beta2 : float in [0, 1), default=0.999
        Decay of the second moment v.
    eps : float > 0, default=1e-8
        Added to the denominator.
    """

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    name = "adam"
    n_states = 2

    def __post_init__(self):
        _LR.check("lr", self.lr)
        _UNIT_OPEN.check("beta1", self.beta1)
        _UNIT_OPEN.check("beta2", self.beta2)
        Param(numbers.Real, low=0.0, low_open=True).check("eps", self.eps)


OPTIMIZER_NAMES = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


# Any of the optimizer objects (annotations of the estimators).
Optimizer = SGD | Momentum | Adam


def make_optimizer(optimizer, lr: float | None = None):
    """An optimizer settings object from a name or an instance.

    Parameters
    ----------
    optimizer : {"sgd", "momentum", "adam"} or SGD, Momentum, Adam instance
    lr : float > 0, optional
        Learning rate; overrides the instance's or the optimizer's default.

    Returns
    -------
    SGD, Momentum or Adam
    """
    if isinstance(optimizer, str):
        try:
            cls = OPTIMIZER_NAMES[optimizer.lower()]
        except KeyError:
            raise ValueError(
                f"optimizer must be one of {sorted(OPTIMIZER_NAMES)} or an "
                f"optimizer object, got {optimizer!r}"
            ) from None
        return cls() if lr is None else cls(lr=float(lr))
    if isinstance(optimizer, (SGD, Momentum, Adam)):
        if lr is None:
            return optimizer
        return type(optimizer)(**{**asdict(optimizer), "lr": float(lr)})
    raise TypeError(
        "optimizer must be 'sgd', 'momentum', 'adam' or a fastvae.optim "
        f"object, got {optimizer!r}"
    )


def kernel_settings(opt) -> dict:
    """Keyword arguments of Network.set_optimizer for this optimizer."""
    settings = {"kind": opt.name, "lr": opt.lr}
    if isinstance(opt, Momentum):
        settings["momentum"] = opt.momentum
    if isinstance(opt, Adam):
        settings.update(beta1=opt.beta1, beta2=opt.beta2, eps=opt.eps)
    return settings
