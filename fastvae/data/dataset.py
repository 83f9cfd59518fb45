"""The Dataset: samples as rows of a float32 matrix, plus what is known
about them (labels, image shape, generative factors)."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np


@dataclass
class Dataset:
    """Samples as rows of a float32 matrix, plus what is known about them.

    The constructor's arguments are also the attributes.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32, C-contiguous
        The samples. Other float dtypes are converted once on construction.
    y : ndarray of shape (n_samples,), int64, or None
        Class labels when the data has them.
    image_shape : tuple of (int, int) or None
        ``(rows, cols)`` when each row of ``X`` is a flattened image (row-major).
    name : str
        Short name, e.g. ``"mnist"`` or the stem of a user's file.
    factors : ndarray of shape (n_samples, n_factors), float64, or None
        Generative factors (only for :func:`make_shapes`).
    factor_names : tuple of str or None
        One name per column of ``factors``.
    """

    X: np.ndarray
    y: np.ndarray | None
    image_shape: tuple[int, int] | None
    name: str
    factors: np.ndarray | None = None
    factor_names: tuple[str, ...] | None = None

    def __post_init__(self):
        self.X = np.ascontiguousarray(self.X, dtype=np.float32)
        if self.X.ndim != 2:
            raise ValueError(
                f"X must be 2-D (n_samples, n_features), got shape {self.X.shape}"
            )
        n, d = self.X.shape
        if self.y is not None:
            self.y = np.asarray(self.y, dtype=np.int64)
            if self.y.shape != (n,):
                raise ValueError(
                    f"y must have shape ({n},) to match X, got {self.y.shape}"
                )
        if self.image_shape is not None:
            self.image_shape = tuple(int(s) for s in self.image_shape)
            if len(self.image_shape) != 2 or np.prod(self.image_shape) != d:
                raise ValueError(
                    f"image_shape must be (rows, cols) with rows * cols == "
                    f"n_features ({d}), got {self.image_shape}"
                )
        if self.factors is not None:
            self.factors = np.asarray(self.factors, dtype=np.float64)
            if self.factors.ndim != 2 or self.factors.shape[0] != n:
                raise ValueError(
                    f"factors must have shape ({n}, n_factors), "
                    f"got {self.factors.shape}"
                )
            names = self.factor_names
            if names is not None and len(names) != self.factors.shape[1]:
                raise ValueError(
                    f"factor_names must name the {self.factors.shape[1]} factor "
                    f"columns, got {len(self.factor_names)} names"
                )

    def __len__(self) -> int:
        return self.X.shape[0]

    def subset(self, index) -> Dataset:
        """The rows selected by ``index``, with labels, factors and metadata.

        Parameters
        ----------
        index : slice or array-like of int or bool, 1-D
            Rows to keep, in the given order.

        Returns
        -------
        Dataset
            A new dataset whose arrays are copies (``X`` stays C-contiguous).
        """
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.ndim != 1:
                raise ValueError(
                    f"index must be a slice or a 1-D array, got shape {index.shape}"
                )
        return Dataset(
            X=np.ascontiguousarray(self.X[index]),
            y=None if self.y is None else self.y[index].copy(),
            image_shape=self.image_shape,
            name=self.name,
            factors=None if self.factors is None else self.factors[index].copy(),
            factor_names=self.factor_names,
        )


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _philox(seed) -> np.random.Generator:
    # Philox, like the kernels' RNG: a key names the same stream on every
    # platform, with no global state shared between callers.
    return np.random.Generator(np.random.Philox(key=_check_int("seed", seed, 0)))
