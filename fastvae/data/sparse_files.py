"""A CSR matrix as three .npy files, memory-mapped when read back.

A count matrix bigger than memory (10^6 cells x 2 x 10^4 genes at 4%
density is 0.8 x 10^9 stored values, 6.4 GB as float32 values and int32
columns) trains from a folder holding ``data.npy`` (the stored values),
``indices.npy`` (their columns), ``indptr.npy`` (where each row's values
start) and ``shape.npy``. `load_csr` maps the three arrays read-only, so
the operating system pages them in as minibatches read them; `fit` then
never holds more than one minibatch densified (see fastvae.data.batches).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fastvae._atomic import write_atomic

__all__ = ["load_csr", "save_csr"]

_FILES = ("data", "indices", "indptr", "shape")


def save_csr(folder: str | os.PathLike, X, *, dtype=np.float32) -> Path:
    """Write a scipy.sparse matrix to `folder` as CSR .npy files.

    Parameters
    ----------
    folder : path
        Created if missing; its four files are each written atomically.
    X : scipy.sparse matrix of shape (n_rows, n_columns)
        Converted to CSR if it is another format.
    dtype : numpy float dtype, default=float32
        The stored values' type on disk (the model's dtype avoids a copy).

    Returns
    -------
    Path of the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    X = X.tocsr()
    index = np.int32 if X.nnz < 2**31 and X.shape[1] < 2**31 else np.int64
    arrays = {
        "data": np.asarray(X.data, dtype=dtype),
        "indices": np.asarray(X.indices, dtype=np.int32),
        "indptr": np.asarray(X.indptr, dtype=index),
        "shape": np.asarray(X.shape, dtype=np.int64),
    }
    for name in _FILES:
        write_atomic(folder / f"{name}.npy", lambda f, a=arrays[name]: np.save(f, a))
    return folder


def load_csr(folder: str | os.PathLike, *, mmap: bool = True):
    """The CSR matrix in `folder` (written by `save_csr`, or by anyone as
    data.npy, indices.npy, indptr.npy and shape.npy).

    Parameters
    ----------
    folder : path
    mmap : bool, default=True
        Map the arrays read-only instead of reading them into memory.

    Returns
    -------
    scipy.sparse.csr_matrix whose arrays are the files' (memory maps when
    `mmap`; scipy keeps them without a copy).

    Raises
    ------
    FileNotFoundError
        Naming the missing file.
    ValueError
        When the arrays do not make a CSR matrix of the stated shape.
    """
    import scipy.sparse as sp

    folder = Path(folder)
    arrays = {}
    for name in _FILES:
        path = folder / f"{name}.npy"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: a CSR folder needs "
                f"{', '.join(n + '.npy' for n in _FILES)}"
            )
        mode = "r" if mmap and name != "shape" else None
        arrays[name] = np.load(path, mmap_mode=mode)
    shape = tuple(int(v) for v in arrays["shape"])
    data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(
            f"{folder}: shape.npy must hold two positive sizes, got {shape}"
        )
    if data.ndim != 1 or indices.shape != data.shape:
        raise ValueError(
            f"{folder}: data.npy and indices.npy must be 1-D of one length, got "
            f"{data.shape} and {indices.shape}"
        )
    if indptr.shape != (shape[0] + 1,) or indptr[0] != 0 or indptr[-1] != data.size:
        raise ValueError(
            f"{folder}: indptr.npy must have n_rows + 1 = {shape[0] + 1} entries "
            f"from 0 to {data.size}"
        )
    if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
        raise ValueError(f"{folder}: indices.npy and indptr.npy must hold integers")
    # One index type for both, as scipy wants: the smaller file is converted
    # (indptr, one entry per row), never the stored values' columns.
    if indptr.dtype != indices.dtype:
        indptr = np.asarray(indptr, dtype=indices.dtype)
    return sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)
