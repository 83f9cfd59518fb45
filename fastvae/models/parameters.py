"""scikit-learn's parameter protocol, written once for every estimator:
get_params / set_params over the constructor's arguments, and a repr that
shows the arguments that differ from their defaults."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self


class ParameterProtocol:
    """Mixin: the constructor's arguments are the estimator's parameters
    (``__init__`` stores each under its own name)."""

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
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

    def set_params(self, **params: Any) -> Self:
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


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return False
