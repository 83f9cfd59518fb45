"""A user's own data: .npy, .npz and .csv files read into a Dataset with
every problem named (shape, dtype, non-finite values, labels)."""

from __future__ import annotations

import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from fastvae.data.dataset import Dataset
from fastvae.exceptions import DataError

ARRAY_SUFFIXES = (".npy", ".npz", ".csv")
_NPY_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def load_array(path, *, key: str | None = None) -> Dataset:
    """Load a user's own data from a ``.npy``, ``.npz`` or ``.csv`` file.

    Parameters
    ----------
    path : str or path-like
        The file. Rows are samples: a 2-D array (n, d), or a 3-D stack of
        images (n, h, w) which is flattened row-major.
    key : str, optional
        For ``.npz``: the array to use. By default the only array, or ``"X"``
        when there are several.

    Returns
    -------
    Dataset
        ``X`` float32 (n, d) or (n, h * w); ``image_shape`` (h, w) for 3-D
        input, else None; ``y`` from an ``.npz`` array ``"y"`` of n integer
        values, else None; ``name`` the file's stem.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the suffix is not supported, or ``key`` is missing or needed.
    DataError
        If the file is corrupted or holds pickled objects; the array is not
        2-D or 3-D, is empty, is not real-valued numbers, or holds NaN or
        infinity; or a CSV cell is not a number.

    Notes
    -----
    Values are not rescaled: 8-bit images stored as 0-255 stay 0-255. Scale
    them to [0, 1] yourself before training a Bernoulli decoder.

    A CSV is comma-separated numbers; a first line without any number is
    taken as a header and skipped. A first column with an empty name (or
    pandas' ``Unnamed: 0``) that holds the row numbers 0, 1, ... (or 1, 2,
    ...) is the index pandas' ``to_csv`` writes by default: it is dropped,
    with a warning.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported file type {suffix or '(no suffix)'!r}; "
            f"supported: {', '.join(ARRAY_SUFFIXES)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if suffix == ".csv":
        return _to_dataset(_read_csv(path), None, path)
    return _to_dataset(*_np_load(path, key), path)


def _unreadable(path: Path, exc: Exception) -> DataError:
    return DataError(
        f"{path} could not be read as {path.suffix} (corrupted, or holds pickled "
        f"Python objects, which are refused): {exc}"
    )


def _np_load(path: Path, key: str | None):
    """(array, labels or None) from an .npy or .npz file."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except _NPY_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return loaded, None
    with loaded:
        keys = list(loaded.files)
        if not keys:
            raise DataError(f"{path} holds no arrays")
        if key is None:
            if len(keys) == 1:
                key = keys[0]
            elif "X" in keys:
                key = "X"
            else:
                raise ValueError(
                    f"{path} holds several arrays {keys} and none is named 'X'; "
                    "choose one with key="
                )
        elif key not in keys:
            raise ValueError(f"key {key!r} is not in {path}; it holds {keys}")
        # Members are decompressed and parsed only on access, so a damaged
        # archive can fail here rather than in np.load.
        try:
            array = loaded[key]
            y = loaded["y"] if key != "y" and "y" in keys else None
        except _NPY_ERRORS as exc:
            raise _unreadable(path, exc) from exc
    if y is not None:
        y = _as_labels(y, len(array) if array.ndim else -1, path)
    return array, y


def _as_labels(y: np.ndarray, n: int, path: Path) -> np.ndarray | None:
    integral = y.dtype.kind in "iu" or (
        y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all()
    )
    if y.shape == (n,) and integral:
        return y.astype(np.int64)
    warnings.warn(
        f"{path}: array 'y' ignored as labels; expected {n} integer values, "
        f"got shape {y.shape} of dtype {y.dtype}",
        stacklevel=4,
    )
    return None


def _read_csv(path: Path) -> np.ndarray:
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a text file: {exc}") from exc
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    header = None
    if first is not None and not any(is_number(c) for c in lines[first].split(",")):
        header = [c.strip().strip('"') for c in lines[first].split(",")]
        lines[first] = ""
    if not any(line.strip() for line in lines):
        raise DataError(f"{path} holds no data rows")
    try:
        table = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        # loadtxt's message varies by NumPy version; find the line ourselves.
        width = None
        for number, line in enumerate(lines, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cells = line.split("#")[0].split(",")
            if not all(is_number(c) for c in cells):
                raise DataError(
                    f"{path}, line {number}: expected comma-separated numbers, "
                    f"got {line[:80]!r}"
                ) from exc
            if width is not None and len(cells) != width:
                raise DataError(
                    f"{path}, line {number}: expected {width} columns like the "
                    f"lines before, got {len(cells)}"
                ) from exc
            width = len(cells)
        raise DataError(f"{path} could not be read as CSV: {exc}") from exc
    if header and header[0] in ("", "Unnamed: 0") and table.shape[1] > 1:
        rows = np.arange(len(table), dtype=np.float64)
        if np.array_equal(table[:, 0], rows) or np.array_equal(table[:, 0], rows + 1):
            warnings.warn(
                f"{path}: dropped the first column, an unnamed index of row "
                "numbers (what pandas' to_csv writes unless index=False)",
                UserWarning,
                stacklevel=4,
            )
            table = table[:, 1:]
    return table


def is_number(text: str) -> bool:
    """Whether float() reads `text` (a CSV cell)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _to_dataset(array: np.ndarray, y: np.ndarray | None, path: Path) -> Dataset:
    if array.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: expected real numbers (bool, int or float), got dtype "
            f"{array.dtype}"
        )
    if array.ndim not in (2, 3):
        raise DataError(
            f"{path}: expected a 2-D array (n_samples, n_features) or a 3-D "
            f"stack of images (n_samples, rows, cols), got shape {array.shape}"
        )
    if array.size == 0:
        raise DataError(f"{path}: the array is empty, shape {array.shape}")
    image_shape = array.shape[1:] if array.ndim == 3 else None
    with np.errstate(over="ignore"):  # overflow to inf is reported just below
        X = np.ascontiguousarray(array.reshape(len(array), -1), dtype=np.float32)
    bad = ~np.isfinite(X)
    if bad.any():
        raise DataError(
            f"{path}: {int(bad.sum())} non-finite values (NaN, inf, or beyond "
            f"float32 range); the first is in row {np.flatnonzero(bad.any(axis=1))[0]}"
        )
    return Dataset(X=X, y=y, image_shape=image_shape, name=path.stem)
