"""Transforms of a data matrix: binarization, one-hot labels, and a
seeded train/validation split."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from fastvae.data.dataset import Dataset, _check_int, _philox


def _real_array(name: str, X) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {X.dtype}")
    return X


def binarize(X, *, threshold: float = 0.5) -> np.ndarray:
    """Deterministic binarization: 1 where ``X > threshold``, else 0.

    Parameters
    ----------
    X : array-like of real numbers
    threshold : float, default=0.5

    Returns
    -------
    ndarray of float32, same shape as X
    """
    X = _real_array("X", X)
    if not isinstance(threshold, Real) or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return (X > threshold).astype(np.float32)


def sample_binarize(X, *, seed: int = 0) -> np.ndarray:
    """Stochastic binarization: each value ``p`` becomes 1 with probability ``p``.

    Parameters
    ----------
    X : array-like of values in [0, 1]
    seed : int, default=0
        Philox key; the same seed and shape give the same draw.

    Returns
    -------
    ndarray of float32, same shape as X

    Raises
    ------
    ValueError
        If a value is outside [0, 1] or NaN.

    Notes
    -----
    ``x_ij = 1[u_ij < p_ij]`` with ``u_ij ~ U[0, 1)`` in float32, drawn in
    C order, so 0 stays 0 and 1 stays 1.
    """
    X = np.asarray(_real_array("X", X), dtype=np.float32)
    outside = ~((X >= 0) & (X <= 1))
    if outside.any():
        raise ValueError(
            f"X must hold probabilities in [0, 1]; {int(outside.sum())} values "
            f"are outside or NaN, e.g. {X[outside].flat[0]}"
        )
    u = _philox(seed).random(X.shape, dtype=np.float32)
    return (u < X).astype(np.float32)


def one_hot(labels, n_classes: int | None = None) -> np.ndarray:
    """Condition vectors for a conditional model: one row per label.

    Parameters
    ----------
    labels : array-like of int, shape (n_samples,)
        Class labels in [0, n_classes).
    n_classes : int, optional
        Number of classes; max(labels) + 1 when None.

    Returns
    -------
    ndarray of shape (n_samples, n_classes), float32
        Row i is 1 in column labels[i] and 0 elsewhere.

    Raises
    ------
    ValueError
        If labels are not integers in [0, n_classes) or not 1-D.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if y.size and not (
        y.dtype.kind in "iu" or (y.dtype.kind == "f" and np.all(y == np.round(y)))
    ):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if n_classes is None:
        n_classes = int(y.max()) + 1 if y.size else 0
    n_classes = _check_int("n_classes", n_classes, 1)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes}), got values in [{y.min()}, {y.max()}]"
        )
    out = np.zeros((y.size, n_classes), dtype=np.float32)
    out[np.arange(y.size), y] = 1.0
    return out


def train_validation_split(
    data: Dataset, *, n_validation: int | float = 0.1, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Split a dataset at random into training and validation parts.

    Parameters
    ----------
    data : Dataset
    n_validation : int or float, default=0.1
        Rows to hold out: a count >= 1, or a fraction in (0, 1) (rounded).
    seed : int, default=0
        Philox key of the shuffle.

    Returns
    -------
    train : Dataset
        The rows not held out, in the original row order.
    validation : Dataset
        The held-out rows, in the original row order; the two parts are
        disjoint and cover all rows.

    Raises
    ------
    ValueError
        If ``n_validation`` is not a valid count or fraction, or either part
        would be empty.
    """
    n = len(data)
    if isinstance(n_validation, Integral) and not isinstance(n_validation, bool):
        n_val = int(n_validation)
    elif isinstance(n_validation, Real) and 0 < n_validation < 1:
        n_val = round(n_validation * n)
    else:
        raise ValueError(
            "n_validation must be a count >= 1 or a fraction in (0, 1), "
            f"got {n_validation!r}"
        )
    if not 1 <= n_val <= n - 1:
        raise ValueError(
            f"n_validation={n_validation!r} gives {n_val} validation rows out of "
            f"{n}; both parts need at least one row"
        )
    order = _philox(seed).permutation(n)
    # Sorted indices keep the original order and make the copies sequential.
    return data.subset(np.sort(order[n_val:])), data.subset(np.sort(order[:n_val]))
