"""A CSR matrix as three .npy files, memory-mapped when read back.

A count matrix bigger than memory (10^6 cells x 2 x 10^4 genes at 4%
density is 0.8 x 10^9 stored values, 6.4 GB as float32 values and int32
columns) trains from a folder holding ``data.npy`` (the stored values),
``indices.npy`` (their columns), ``indptr.npy`` (where each row's values
start) and ``shape.npy``. `load_csr` maps the three arrays read-only, so
the operating system pages them in as minibatches read them; `fit` then
never holds more than one minibatch densified (see fastvae.data.batches).

`save_csr` also copies a matrix that is itself too big for memory, such as
AnnData's h5py-backed CSR dataset: any object with a 2-D ``shape`` whose
row slices ``X[a:b]`` are scipy.sparse matrices is read in blocks of about
`BLOCK_NNZ` stored values, each written to the files as it arrives.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fastvae._atomic import write_atomic
from fastvae.data.batches import is_sparse

__all__ = ["BLOCK_NNZ", "load_csr", "save_csr"]

_FILES = ("data", "indices", "indptr", "shape")
# Stored values per block when copying a row-sliceable source: 4M values
# hold 32 MB of values and columns (float32 + int32), plus scipy's copies
# of one block, small next to the matrices this path is for.
BLOCK_NNZ = 4 * 2**20
# Every header this module streams is 128 bytes: NumPy pads a 1.0 header to
# a multiple of 64, and a 1-D array's dict stays under 118 characters for
# any length up to 2**63, so the final header overwrites the placeholder.
_HEADER_BYTES = 128


def save_csr(
    folder: str | os.PathLike, X, *, dtype=np.float32, block_nnz: int = BLOCK_NNZ
) -> Path:
    """Write a sparse matrix to `folder` as CSR .npy files.

    Parameters
    ----------
    folder : path
        Created if missing; its four files are each written atomically.
    X : scipy.sparse matrix, or a row-sliceable sparse source, of shape
        (n_rows, n_columns)
        A scipy.sparse matrix is converted to CSR if it is another format.
        Any other object with a 2-D ``shape`` whose slices ``X[a:b]`` are
        scipy.sparse matrices (e.g. ``anndata.abc.CSRDataset``, the ``X``
        of an AnnData read with ``backed="r"``) is copied in row blocks of
        about `block_nnz` stored values, never whole; its files then hold
        duplicate entries summed and columns sorted, and 64-bit `indptr`.
    dtype : numpy float dtype, default=float32
        The stored values' type on disk (the model's dtype avoids a copy).
    block_nnz : int >= 1, default=BLOCK_NNZ
        Stored values per block read from a row-sliceable source.

    Returns
    -------
    Path of the folder.

    Raises
    ------
    TypeError
        If X is neither, or a row slice of it is not a scipy.sparse matrix.
    """
    folder = Path(folder)
    if not is_sparse(X):
        shape = getattr(X, "shape", None)
        if shape is None or len(tuple(shape)) != 2 or not hasattr(X, "__getitem__"):
            raise TypeError(
                f"X must be a scipy.sparse matrix or have a 2-D shape and row "
                f"slices, got {type(X).__name__}"
            )
        if isinstance(block_nnz, bool) or not isinstance(block_nnz, int | np.integer):
            raise TypeError(f"block_nnz must be an integer, got {block_nnz!r}")
        if block_nnz < 1:
            raise ValueError(f"block_nnz must be >= 1, got {block_nnz}")
        folder.mkdir(parents=True, exist_ok=True)
        _save_blocks(folder, X, np.dtype(dtype), int(block_nnz))
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    X = X.tocsr()
    index = np.int32 if X.nnz < _INT32_LIMIT and X.shape[1] < _INT32_LIMIT else np.int64
    arrays = {
        "data": np.asarray(X.data, dtype=dtype),
        "indices": np.asarray(X.indices, dtype=index),
        "indptr": np.asarray(X.indptr, dtype=index),
        "shape": np.asarray(X.shape, dtype=np.int64),
    }
    for name in _FILES:
        write_atomic(folder / f"{name}.npy", lambda f, a=arrays[name]: np.save(f, a))
    return folder


_INT32_LIMIT = 2**31


def _stored_values(X) -> int | None:
    """The number of stored values of a row-sliceable sparse source, when
    it can be read without loading the matrix: an h5py-backed CSR's last
    indptr entry (anndata's backed X keeps its arrays in `group`)."""
    group = getattr(X, "group", None)
    try:
        return int(group["indptr"][-1])  # type: ignore[index]
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        return None


def _save_blocks(folder: Path, X, dtype: np.dtype, block_nnz: int) -> None:
    """save_csr of a row-sliceable source: one pass over its row blocks,
    each appended to data.npy, indices.npy and indptr.npy behind a
    placeholder header that is rewritten with the final length at the end
    (the number of stored values is known only then)."""
    n, d = (int(v) for v in X.shape)
    # scipy wants one index type for indices and indptr, and load_csr keeps
    # the columns as written: 64-bit columns when the count of stored values
    # will not fit 32 bits (known ahead for an h5py-backed CSR such as a
    # backed AnnData's X; otherwise 32-bit, and an error if it overflows)
    total = _stored_values(X)
    wide = (total is not None and total >= _INT32_LIMIT) or d >= _INT32_LIMIT
    column = np.dtype(np.int64 if wide else np.int32)
    dtypes = (dtype, column, np.dtype(np.int64))

    def write(files):
        for f, dt in zip(files, dtypes, strict=True):
            _npy_header(f, dt, 0)
        data, indices, indptr = files
        indptr.write(np.zeros(1, dtype=np.int64))
        nnz, r0 = 0, 0
        # The first block is bounded even if its rows are dense; later
        # ones follow the density seen so far.
        rows = max(1, block_nnz // max(1, d))
        while r0 < n:
            r1 = min(n, r0 + rows)
            block = X[r0:r1]
            if not is_sparse(block):
                raise TypeError(
                    f"X[{r0}:{r1}] is a {type(block).__name__}, not a scipy.sparse "
                    "matrix"
                )
            if block.shape != (r1 - r0, d):
                raise ValueError(
                    f"X[{r0}:{r1}] has shape {block.shape}, expected {(r1 - r0, d)}"
                )
            block = block.tocsr()
            if not block.has_canonical_format:
                # one stored value per cell, as the sparse first layer reads
                # them (a slice is the source's copy, not its data)
                block = block.copy()
                block.sum_duplicates()
            if not wide and nnz + block.nnz >= _INT32_LIMIT:
                raise ValueError(
                    f"{folder}: X has more than 2**31 - 1 stored values, which need "
                    "64-bit columns: pass a source whose stored-value count is "
                    "known ahead (an h5py-backed CSR, or a scipy matrix)"
                )
            data.write(np.ascontiguousarray(block.data, dtype=dtype))
            indices.write(np.ascontiguousarray(block.indices, dtype=column))
            indptr.write(np.asarray(block.indptr[1:], dtype=np.int64) + nnz)
            nnz += int(block.nnz)
            rows = min(4 * rows, max(1, block_nnz * (r1 - r0) // max(1, block.nnz)))
            r0 = r1
        for f, dt, length in zip(files, dtypes, (nnz, nnz, n + 1), strict=True):
            f.seek(0)
            _npy_header(f, dt, length)
            f.seek(0, os.SEEK_END)

    _write_together([folder / f"{name}.npy" for name in _FILES[:3]], write)
    shape = np.asarray((n, d), dtype=np.int64)
    write_atomic(folder / "shape.npy", lambda f: np.save(f, shape))


def _npy_header(f, dtype: np.dtype, length: int) -> None:
    """Write the .npy (format 1.0) header of a 1-D array of `length`."""
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": (int(length),),
    }
    start = f.tell()
    np.lib.format.write_array_header_1_0(f, header)
    if f.tell() - start != _HEADER_BYTES:  # the padding rule changed
        raise RuntimeError(f"unexpected .npy header size {f.tell() - start}")


def _write_together(paths, write) -> None:
    """write(files) with each of `paths` opened by write_atomic: every file
    appears complete or not at all (one after the other; load_csr checks
    that they fit together)."""

    def nest(i, files):
        if i == len(paths):
            write(files)
        else:
            write_atomic(paths[i], lambda f: nest(i + 1, [*files, f]))

    nest(0, [])


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
    # (indptr, one entry per row), never the stored values' columns, so
    # 32-bit columns cannot serve 2**31 or more stored values (the offsets
    # would wrap).
    if indptr.dtype != indices.dtype:
        if int(indptr[-1]) > np.iinfo(indices.dtype).max:
            raise ValueError(
                f"{folder}: {int(indptr[-1])} stored values need 64-bit offsets, "
                f"but indices.npy holds {indices.dtype}: write it as int64 "
                "(save_csr does for matrices this large)"
            )
        indptr = np.asarray(indptr, dtype=indices.dtype)
    return sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)
