"""AnnData in: the matrix and the condition an estimator reads, from an
AnnData object (single-cell data: cells x genes in ``X`` or a layer, cell
annotations in ``obs``).

anndata is an optional extra (``pip install fastvae[anndata]``) and is never
imported here: an AnnData is recognised by its class's module, and only
what it hands out (NumPy arrays, scipy.sparse matrices, a pandas
DataFrame, anndata's backed datasets) is used.

A condition is one column of ``adata.obs`` (e.g. the batch), one-hot
encoded in the order of its levels: a categorical column's categories as
they are ordered (unused ones included), else its sorted distinct values.
A fitted model keeps the levels, so held-out cells get the same columns.

An AnnData read with ``anndata.read_h5ad(path, backed="r")`` keeps ``X`` in
the file as an h5py-backed CSR dataset, written in compressed chunks that
cannot be memory-mapped. `anndata_input` then copies it, one block of rows
at a time, into a temporary folder of .npy files (fastvae.data.sparse_files)
that is memory-mapped for the call and deleted when it ends: memory stays
that of one block, and the disk needs room for the matrix uncompressed
(8 bytes per stored value plus 8 per row) under ``TMPDIR``.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from fastvae.data.batches import is_sparse
from fastvae.data.sparse_files import BLOCK_NNZ, load_csr, save_csr

__all__ = ["anndata_input", "condition_matrix", "data_matrix", "is_anndata"]


def is_anndata(obj: Any) -> bool:
    """True for an anndata.AnnData (or a view of one), without importing
    anndata."""
    return type(obj).__module__.startswith("anndata") and hasattr(obj, "obs")


def data_matrix(adata: Any, layer: str | None = None) -> Any:
    """``adata.X``, or ``adata.layers[layer]``, as fastvae reads it.

    Parameters
    ----------
    adata : anndata.AnnData
    layer : str, optional
        A key of ``adata.layers``; None for ``adata.X``.

    Returns
    -------
    ndarray, scipy.sparse matrix, or anndata's backed dataset
        Arrays and sparse matrices as they are (anndata's views of them as
        plain NumPy and scipy objects sharing their memory); the backed
        dataset of an AnnData read with ``backed="r"`` unchanged.

    Raises
    ------
    ValueError
        If the layer does not exist (naming the ones that do), or X is None.
    """
    if layer is None:
        X = adata.X
        if X is None:
            raise ValueError(
                "adata.X is None; pass layer=... naming one of adata.layers "
                f"{_names(adata.layers.keys())}"
            )
    else:
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a str, got {type(layer).__name__}")
        names = list(adata.layers.keys())
        if layer not in names:
            raise ValueError(
                f"layer {layer!r} is not in adata.layers; its layers are "
                f"{_names(names)}"
            )
        X = adata.layers[layer]
    return _plain(X)


def _names(keys) -> str:
    keys = [str(k) for k in keys]
    return str(keys) if keys else "none"


def _plain(X):
    """anndata's views of an array or sparse matrix (subclasses living in
    anndata) as NumPy and scipy objects over the same memory, which
    fastvae's checks recognise."""
    if isinstance(X, np.ndarray):
        return np.asarray(X)
    if is_sparse(X) or not hasattr(X, "tocsr") or not hasattr(X, "indptr"):
        return X
    import scipy.sparse as sp

    if X.format == "csr":
        return sp.csr_matrix(X)  # shares data, indices and indptr
    if X.format == "csc":
        return sp.csc_matrix(X)
    return X.tocsr()


def _backed_format(X) -> str | None:
    """The format, "csr" or "csc", of anndata's h5py-backed sparse dataset, or
    None for anything else."""
    if type(X).__module__.startswith("anndata") and not is_sparse(X):
        fmt = getattr(X, "format", None)
        if fmt in ("csr", "csc"):
            return fmt
    return None


def condition_matrix(
    adata: Any,
    key: str,
    levels: Sequence[Any] | None = None,
    dtype: Any = np.float32,
) -> tuple[np.ndarray, list[Any]]:
    """One-hot rows of ``adata.obs[key]``.

    Parameters
    ----------
    adata : anndata.AnnData
    key : str
        A column of ``adata.obs``.
    levels : sequence, optional
        The levels, in column order (a fitted model's). None: taken from the
        column, its categories in order for a categorical one, else its
        sorted distinct values.
    dtype : numpy float dtype, default=float32

    Returns
    -------
    condition : ndarray of shape (n_obs, len(levels))
        Row i is 1 in the column of cell i's level.
    levels : list of str, int, float or bool

    Raises
    ------
    ValueError
        If the column does not exist (naming the ones that do), has missing
        values, holds a level not in `levels` (naming it), or levels that
        are not strings or numbers.
    """
    import pandas as pd  # anndata's obs is a DataFrame: pandas is there

    if not isinstance(key, str):
        raise TypeError(f"condition_key must be a str, got {type(key).__name__}")
    obs = adata.obs
    if key not in obs.columns:
        raise ValueError(
            f"condition_key {key!r} is not a column of adata.obs; its columns are "
            f"{_names(obs.columns)}"
        )
    column = obs[key]
    missing = np.asarray(column.isna())
    if missing.any():
        first = int(np.argmax(missing))
        raise ValueError(
            f"adata.obs[{key!r}] has {int(missing.sum())} missing values (NaN), the "
            f"first for cell {obs.index[first]!r}; give every cell a level or drop "
            "those cells"
        )
    if levels is None:
        levels = _levels(column, key)
    levels = list(levels)
    codes = pd.Index(levels).get_indexer(column)
    unknown = codes < 0
    if unknown.any():
        value = column.iloc[int(np.argmax(unknown))]
        raise ValueError(
            f"adata.obs[{key!r}] has the level {value!r}, which the model was not "
            f"fitted with (its levels of {key!r} are {levels})"
        )
    out = np.zeros((codes.size, len(levels)), dtype=dtype)
    out[np.arange(codes.size), codes] = 1.0
    return out, levels


def _levels(column, key) -> list[Any]:
    """A column's levels as JSON-representable Python values (a model file
    keeps them)."""
    if hasattr(column, "cat"):
        levels = column.cat.categories.tolist()
    else:
        try:
            levels = sorted(column.unique().tolist())
        except TypeError:
            raise ValueError(
                f"adata.obs[{key!r}] mixes values that cannot be ordered; make it "
                "categorical (adata.obs[key].astype('category')) to fix the levels"
            ) from None
    for v in levels:
        ok = isinstance(v, str | bool | int) or (
            isinstance(v, float) and math.isfinite(v)
        )
        if not ok:
            raise ValueError(
                f"adata.obs[{key!r}] has the level {v!r} ({type(v).__name__}); "
                "levels must be strings or numbers (convert the column, e.g. "
                ".astype(str))"
            )
    return levels


@contextmanager
def anndata_input(
    adata: Any,
    *,
    layer: str | None = None,
    condition_key: str | None = None,
    levels: Sequence[Any] | None = None,
    dtype: Any = np.float32,
    block_nnz: int = BLOCK_NNZ,
) -> Iterator[tuple[Any, np.ndarray | None, list[Any] | None]]:
    """The (X, condition, levels) an estimator reads from `adata`, for the
    duration of a ``with`` block.

    Parameters
    ----------
    adata : anndata.AnnData
        In memory, or read with ``backed="r"``.
    layer : str, optional
        Read ``adata.layers[layer]`` instead of ``adata.X``.
    condition_key : str, optional
        A column of ``adata.obs`` to one-hot encode (see `condition_matrix`).
    levels : sequence, optional
        The levels of `condition_key` (a fitted model's); from the column
        when None.
    dtype : numpy float dtype, default=float32
        Of the condition, and of the values of a backed matrix's copy.
    block_nnz : int, default=BLOCK_NNZ
        Stored values per block copied from a backed matrix.

    Yields
    ------
    X : ndarray, scipy.sparse matrix or array-like
        A backed CSR matrix as a memory-mapped CSR matrix over a temporary
        folder, removed when the block ends (normally, by an exception or
        by Ctrl-C); anything else as `data_matrix` gives it.
    condition : ndarray of shape (n_obs, n_levels), or None
    levels : list, or None without `condition_key`

    Raises
    ------
    ValueError
        For a backed CSC matrix (its rows are scattered over the file), and
        as `data_matrix` and `condition_matrix` do.
    """
    X = data_matrix(adata, layer)
    condition = None
    if condition_key is not None:
        condition, levels = condition_matrix(adata, condition_key, levels, dtype)
    else:
        levels = None
    fmt = _backed_format(X)
    if fmt is None:
        yield X, condition, levels
        return
    if fmt != "csr":
        where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        raise ValueError(
            f"{where} is a backed {fmt.upper()} matrix, whose cells' values are "
            "scattered over the file; fastvae reads cells: write it as CSR "
            "(adata.X = adata.X.tocsr() before write_h5ad) or load it into memory "
            "(adata.to_memory())"
        )
    folder = tempfile.mkdtemp(prefix="fastvae-anndata-")
    try:
        save_csr(folder, X, dtype=dtype, block_nnz=block_nnz)
        yield load_csr(folder), condition, levels
    finally:
        # The maps of the files may outlive the folder: POSIX keeps an
        # unlinked file's pages until the last map closes.
        shutil.rmtree(folder, ignore_errors=True)
