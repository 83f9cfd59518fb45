"""Checks for everything that enters fastvae from a user.

Errors name the argument, what was expected and what was received. Arrays
are converted once (dtype, C order) so the kernels can trust them.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype, name: str = "dtype") -> np.dtype:
    """float32 or float64, given as a NumPy dtype, type or string."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


def check_array(
    X: Any,
    *,
    name: str = "X",
    dtype=np.float32,
    n_features: int | None = None,
    feature_name: str = "features",
    owner: str | None = None,
    allow_nan: bool = False,
    nan_hint: str = "",
) -> np.ndarray:
    """A finite, non-empty, C-contiguous 2-D array of `dtype` (with
    allow_nan, NaN marks missing entries; infinities are still refused).

    Integer, boolean and numeric object input is converted; complex, string
    and sparse input is refused. A copy is made only when the dtype or memory
    layout must change; read-only and memory-mapped arrays are fine. The
    messages follow scikit-learn's where its estimator checks read them.

    Parameters
    ----------
    owner : str, optional
        Name of the fitted model that expects `n_features` (for the message).

    Raises
    ------
    TypeError
        For non-numeric data.
    ValueError
        For sparse matrices, complex data, wrong dimensions, empty arrays,
        NaN/inf or a feature count different from `n_features`.
    """
    if X is None:
        raise TypeError(f"{name} must be an array, got None")
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise ValueError(
            f"{name} is a sparse matrix; fastvae needs dense data "
            f"(use {name}.toarray() if it fits in memory)"
        )
    if isinstance(X, np.ma.MaskedArray):
        # np.asarray drops the mask: masked entries would be trained on as
        # whatever numbers happen to sit under them.
        n_masked = int(np.ma.count_masked(X))
        if n_masked:
            raise ValueError(
                f"{name} is a masked array with {n_masked} masked values; fill "
                f"them ({name}.filled(value)) or drop those rows first"
            )
        X = np.ma.getdata(X)
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{name} cannot be read as a 2-D array of numbers (rows of different "
            f"lengths?): {exc}"
        ) from None
    kind = arr.dtype.kind
    if kind == "c":
        raise ValueError(
            f"Complex data not supported: {name} has dtype {arr.dtype}; pass real "
            f"values (e.g. np.abs({name}) or its real part)"
        )
    if kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} has dtype object and cannot be read as numbers: {exc}"
            ) from None
        kind = "f"
    if kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = (
            f". Reshape your data: {name}.reshape(-1, 1) for one feature or "
            f"{name}.reshape(1, -1) for one sample"
            if arr.ndim == 1
            else (
                f"; flatten images with {name}.reshape(len({name}), -1)"
                if arr.ndim > 2
                else ""
            )
        )
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_{feature_name}), got shape "
            f"{arr.shape}{hint}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 samples, shape {arr.shape}")
    if arr.shape[1] == 0:
        one = feature_name[:-1] if feature_name.endswith("s") else feature_name
        raise ValueError(
            f"{name} has 0 {one}(s) (shape={arr.shape}) while a minimum of 1 is "
            "required."
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} {feature_name}, but "
            f"{owner or 'the model'} is expecting {n_features} {feature_name} as "
            "input"
        )
    source = arr
    with np.errstate(over="ignore"):  # overflow is reported below, by name
        arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        bad = np.isinf(arr) if allow_nan else ~np.isfinite(arr)
        if not bad.any():
            return arr
        row = int(np.argmax(bad.any(axis=1)))
        if kind == "f" and np.isfinite(source[bad]).all():
            raise ValueError(
                f"{name} has {int(bad.sum())} values too large for "
                f"{np.dtype(dtype).name} (|x| > {np.finfo(dtype).max:.3g}; first in "
                f"row {row}); rescale the data or use dtype=float64"
            )
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or infinite values "
            f"(first in row {row}); remove or impute them before training{nan_hint}"
        )
    return arr


def check_number(
    name: str, value, *, integer: bool = False, low: float = 0, strict: bool = True
) -> int | float:
    """A finite number (an int when `integer`) above `low` (or at it when not
    `strict`), as int or float; ValueError naming it otherwise, bools too."""
    kind = numbers.Integral if integer else numbers.Real
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or not (integer or np.isfinite(value))
        or (value <= low if strict else value < low)
    ):
        what = "an integer" if integer else "a number"
        raise ValueError(
            f"{name} must be {what} {'>' if strict else '>='} {low:g}, got {value!r}"
        )
    return int(value) if integer else float(value)


@dataclass(frozen=True)
class Param:
    """One hyperparameter's rule: a type and an optional closed/open range."""

    kind: type | tuple
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    allow_none: bool = False

    def check(self, name: str, value):
        if value is None and self.allow_none:
            return value
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(
                    f"{name} must be one of {list(self.choices)}, got {value!r}"
                )
            return value
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        if isinstance(value, bool) or not isinstance(value, kinds):
            wanted = " or ".join(k.__name__ for k in kinds)
            raise TypeError(f"{name} must be {wanted}, got {value!r}")
        # ints are always finite (and np.isfinite fails on ints >= 2**64)
        if (
            isinstance(value, numbers.Real)
            and not isinstance(value, numbers.Integral)
            and not np.isfinite(value)
        ):
            raise ValueError(f"{name} must be finite, got {value!r}")
        if self.low is not None and (
            value <= self.low if self.low_open else value < self.low
        ):
            op = ">" if self.low_open else ">="
            raise ValueError(f"{name} must be {op} {self.low}, got {value!r}")
        if self.high is not None and (
            value >= self.high if self.high_open else value > self.high
        ):
            op = "<" if self.high_open else "<="
            raise ValueError(f"{name} must be {op} {self.high}, got {value!r}")
        return value


def check_params(values: dict, rules: dict[str, Param]) -> None:
    """Apply each rule to values[name]."""
    for name, rule in rules.items():
        rule.check(name, values[name])


def check_layer_sizes(value, name: str, *, allow_empty: bool = True) -> tuple[int, ...]:
    """A tuple of positive ints from an int or a sequence of ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    try:
        sizes = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {value!r}") from None
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"{name} must contain integers >= 1, got {value!r}")
        if s > 2**31 - 1:  # the kernels take widths as C ints
            raise ValueError(f"{name} must contain integers < 2**31, got {value!r}")
    if not sizes and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    return tuple(int(s) for s in sizes)


def check_n_threads(n, name: str = "n_threads", *, maximum: int) -> int:
    """An integer thread count in [1, maximum] (NumPy integers included)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an integer in [1, {maximum}], got {n!r}")
    if not 1 <= n <= maximum:
        raise ValueError(f"{name} must be an integer in [1, {maximum}], got {n!r}")
    return int(n)


def memory_limit_bytes() -> int | None:
    """Physical memory this process may use: the machine's RAM, or a smaller
    cgroup (container) limit; None when neither can be read."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        pass
    for path in (
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    limits = [v for v in limits if v > 0]
    return min(limits) if limits else None


def check_memory(n_bytes: int, what: str, hint: str) -> None:
    """Refuse, before allocating, work that cannot fit in memory.

    Linux overcommits: a huge np.zeros can succeed and the process is then
    killed when the pages are touched, so the size is checked up front.

    Raises
    ------
    MemoryError
        If `n_bytes` exceeds the physical memory (or cgroup limit).
    """
    limit = memory_limit_bytes()
    if limit is not None and n_bytes > limit:
        raise MemoryError(
            f"{what} needs about {_gib(n_bytes)} but this machine has "
            f"{_gib(limit)}; {hint}"
        )


def training_bytes(
    layout, max_batch: int, itemsize: int, latent_samples: int = 1
) -> int:
    """Lower bound of the memory one fit allocates: the parameters, gradients
    and two optimizer states, plus the step's activations and gradients for
    max_batch rows, the decoder's for max_batch * latent_samples (see
    fastvae._core._network.Network)."""
    n_enc = layout.n_encoder
    widths = [n_out for _, n_out in layout.shapes]
    max_width = max(max(n_in, n_out) for n_in, n_out in layout.shapes)
    per_row = sum(widths[:n_enc]) + 2 * layout.encoder_dims[0]
    per_pair = sum(widths[n_enc:]) + 2 * max_width + layout.decoder_dims[0]
    return (
        4 * layout.size + max_batch * (per_row + latent_samples * per_pair)
    ) * itemsize


def _gib(n_bytes: int) -> str:
    if n_bytes >= 2**40:
        return f"{n_bytes / 2**40:,.1f} TiB"
    return f"{n_bytes / 2**30:,.1f} GiB"
