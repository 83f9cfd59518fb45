"""scikit-learn's output protocol for the estimators: feature names in and
out, and ``set_output(transform="pandas")``.

pandas is optional: it is imported only when a DataFrame is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Self

_OUTPUTS = (None, "default", "pandas")


def input_feature_names(X: Any) -> np.ndarray | None:
    """The column names of a DataFrame whose columns are all strings (what
    scikit-learn records as ``feature_names_in_``), else None."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "iloc"):
        return None
    names = [str(c) if isinstance(c, str) else None for c in columns]
    if any(n is None for n in names):
        return None
    return np.asarray(names, dtype=object)


class OutputMixin:
    """set_output, feature_names_in_ and wrapping of transform's output."""

    def set_output(self, *, transform: str | None = None) -> Self:
        """Choose the container of `transform`, `fit_transform` and
        `inverse_transform`, as scikit-learn's transformers do.

        Parameters
        ----------
        transform : {"default", "pandas"} or None
            "pandas": DataFrames with the names of `get_feature_names_out`
            (and the input's index); "default": NumPy arrays; None: unchanged.

        Returns
        -------
        self
            The estimator.

        Raises
        ------
        ValueError
            For another value.
        ImportError
            For "pandas" when pandas is not installed.
        """
        if transform not in _OUTPUTS:
            raise ValueError(
                f"transform must be 'default', 'pandas' or None, got {transform!r}"
            )
        if transform is None:
            return self
        if transform == "pandas":
            _pandas()
        # The attribute scikit-learn's clone copies.
        self._sklearn_output_config = {"transform": transform}
        return self

    def _record_feature_names(self, X) -> None:
        names = input_feature_names(X)
        if names is None:
            self.__dict__.pop("feature_names_in_", None)
        else:
            self.feature_names_in_ = names

    def _as_output(self, array: np.ndarray, like, columns) -> Any:
        """`array` as the configured container: a DataFrame with `columns`
        (and `like`'s index when it is a DataFrame), or unchanged."""
        config = getattr(self, "_sklearn_output_config", {})
        if config.get("transform") != "pandas":
            return array
        index = getattr(like, "index", None) if hasattr(like, "iloc") else None
        return _pandas().DataFrame(array, columns=list(columns), index=index)

    def _input_names(self) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            return [str(n) for n in names]
        return [f"x{i}" for i in range(self.n_features_in_)]  # type: ignore[attr-defined]


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "set_output(transform='pandas') needs pandas: pip install pandas"
        ) from None
    return pandas
