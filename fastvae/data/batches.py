"""Minibatches for training, from memory or from data bigger than memory.

`fit` trains on minibatches X[rows] with rows taken in the order of a
shuffled index (a pure function of the seed and the epoch). For an array in
memory the compiled step reads the rows in place. For a `numpy.memmap`
(e.g. ``np.load(path, mmap_mode="r")``) or any other array-like with a 2-D
``shape`` and NumPy-style row indexing (``X[index_array]``, e.g. an h5py
dataset), the rows of a few consecutive minibatches are gathered into a
reusable buffer in sorted order, chunk after chunk, and the step reads them
from there: each minibatch holds the same rows in the same order as in
memory, so the trained parameters are bitwise those of in-memory training.

Memory stays bounded whatever the number of rows: one chunk buffer
(`CHUNK_BYTES`), the shuffled index (8 bytes per row) and, for a memmap, the
file pages being read. Pages of a mapped file that are read count in the
process's resident memory, so a memmap is read in windows of at most
`WINDOW_BYTES` of the file whose pages are released (``madvise
(MADV_DONTNEED)``; they stay in the page cache) before the next window, for
memmaps opened read-only or shared (modes "r", "r+", "w+"; a copy-on-write
"c" memmap may hold private changes and is read without releasing).

A scipy.sparse matrix (or array) is read the same way, one minibatch at a
time: its CSR rows are densified into the buffer, never more than one
minibatch of them (a CSC or other format is converted to CSR once, with a
warning), so a count matrix of millions of cells trains in the memory of
its nonzeros.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import warnings

import numpy as np

__all__ = [
    "CHUNK_BYTES",
    "SPARSE_INFERENCE_DENSITY",
    "SPARSE_LAYER_DENSITY",
    "SparseRows",
    "release",
    "stored_windows",
    "WINDOW_BYTES",
    "InMemory",
    "Chunked",
    "as_csr",
    "csr_row_chunks",
    "is_out_of_core",
    "is_sparse",
    "value_range",
]

# Rows of a chunk (rounded down to whole minibatches): 16 MB keeps the buffer
# small next to the interpreter (about 70 MB with NumPy and SciPy) while a
# chunk still spans tens of minibatches of a 784-feature model.
CHUNK_BYTES = 16 * 2**20
# Span of a memmap read before its pages are released. Each read of a row
# maps its page and, through the kernel's fault-around, up to 15 neighbours
# (64 kB), so a window bounds resident file pages to about this size.
WINDOW_BYTES = 4 * 2**20
# Below this fraction of stored values, training on a CSR matrix runs the
# first layer on the nonzeros (Network.train_step_csr, the SIMD kernel of
# src_c/fastvae/sparse_rows.h) instead of densifying each minibatch for the
# GEMM. benchmarks/bench_sparse_layer.py on this project's 2-core AVX2
# machine (a count VAE's whole step, 2 threads, otherwise idle), 2,000 /
# 20,000 features: 1.25x / 1.24x faster at 2%, 1.14x / 1.18x at 5%, 1.15x /
# 1.00x at 10%, 1.09x / 1.04x at 20%, 0.98x / 1.01x at 30% and 0.98x /
# 0.93x at 40%; the break-even is between 20% and 30%.
SPARSE_LAYER_DENSITY = 0.25
# The same choice for inference (transform, encode, score_samples,
# log_likelihood), where the first layer is most of the encoder: reading
# the nonzeros of 512-row chunks against densifying them for the dense
# kernels, benchmarks/bench_csr_inference.py (50,000 x 5,000 counts, a ZINB
# VAE with 128 hidden units, 2 threads, a busy machine) measured transform
# 7.4x faster at 5%, 5.6x at 8.3%, 4.1x at 15% and 2.3x at 30% stored
# values, and score_samples, where the decoder and the likelihood terms
# dominate, 1.3x at 8.3% and 1.1x at 15%. Not measured above 30%.
SPARSE_INFERENCE_DENSITY = 0.3

_PAGE = mmap.PAGESIZE
_SHARED_MODES = ("r", "r+", "w+", "readonly", "readwrite", "write")


def is_sparse(X) -> bool:
    """True for a scipy.sparse matrix or array."""
    return type(X).__module__.startswith("scipy.sparse") and hasattr(X, "tocsr")


def as_csr(X, name: str = "X"):
    """X as CSR with sorted indices and no duplicates: as it is when it
    already is, else converted once (another format with a warning: a CSC
    matrix's rows are scattered)."""
    if X.format != "csr":
        warnings.warn(
            f"{name} is a {X.format.upper()} sparse matrix; converting it to CSR "
            "once (pass CSR to skip the copy)",
            UserWarning,
            stacklevel=4,
        )
        X = X.tocsr()
    if not _canonical(X):
        # columns sorted and duplicate entries added up, as toarray sees
        # them: the sparse first layer reads log1p of each stored value, so
        # there must be one per cell. The user's matrix stays as it was.
        X = X.copy()
        X.sum_duplicates()
    return X


def is_out_of_core(X) -> bool:
    """True for data that `fit` reads in chunks rather than converts whole: a
    numpy.memmap (or a view of one), a scipy.sparse matrix (densified one
    minibatch at a time), or an array-like that is not a NumPy array but has
    a 2-D `shape` and `__getitem__` (pandas objects excepted: they
    convert)."""
    if isinstance(X, np.ndarray):
        return _memmap_of(X) is not None
    if is_sparse(X):
        return len(X.shape) == 2
    if hasattr(X, "toarray") or hasattr(X, "iloc"):
        return False
    if type(X).__module__.split(".")[0] in ("pandas", "polars", "scipy"):
        return False
    shape = getattr(X, "shape", None)
    return shape is not None and hasattr(X, "__getitem__") and len(tuple(shape)) == 2


def _memmap_of(a):
    """The numpy.memmap whose mapping `a` views, or None."""
    while isinstance(a, np.ndarray):
        if isinstance(a, np.memmap):
            return a
        a = a.base
    return None


class InMemory:
    """Minibatches of a validated C-contiguous array: the step reads X[rows]
    in place."""

    def __init__(self, X, cond=None):
        self.X = X
        self.cond = cond
        self.n_rows, self.n_features = X.shape

    def minibatches(self, order, batch):
        """(X, rows, cond) for each minibatch order[i:i + batch] (order may be
        the rest of an epoch's order, when resuming mid-epoch)."""
        for i in range(0, order.shape[0], batch):
            yield self.X, order[i : i + batch], self.cond


def _canonical(X) -> bool:
    """Whether every row's column indices increase strictly (sorted, no
    duplicates), checked in windows (scipy's has_sorted_indices would page a
    memory-mapped file in whole)."""
    indptr = np.asarray(X.indptr)
    last = None
    for start, window in stored_windows(X.indices):
        rising = np.empty(window.size, dtype=bool)
        rising[1:] = window[1:] > window[:-1]
        rising[0] = last is None or window[0] > last
        # a row may start lower than the one before ends
        starts = indptr[(indptr >= start) & (indptr < start + window.size)]
        rising[starts - start] = True
        if not rising.all():
            return False
        last = window[-1]
    return True


def stored_windows(a):
    """(start, a[start:start + w]) over a 1-D array in windows of about
    WINDOW_BYTES; a memory map's pages are released after each window, so
    a pass over a mapped CSR file does not keep it resident."""
    step = max(1, WINDOW_BYTES // max(1, a.itemsize))
    for start in range(0, a.size, step):
        window = a[start : start + step]
        yield start, window
        release(window)


def release(a) -> None:
    """Release the pages of a view of a shared memory map from this process
    (they stay in the page cache); a no-op for anything else (madvise would
    zero anonymous memory) and where there is no madvise."""
    mm = _memmap_of(a)
    if _madvise is None or not a.nbytes or mm is None:
        return
    if getattr(mm, "mode", "c") not in _SHARED_MODES:
        return
    begin = a.ctypes.data - a.ctypes.data % _PAGE
    _madvise(begin, a.ctypes.data + a.nbytes - begin)


class SparseRows:
    """Minibatches of a CSR matrix for a first layer that reads its nonzeros:
    the step gathers X[rows] itself, nothing is densified.

    A matrix whose stored values and columns are memory maps of files
    (fastvae.data.load_csr) is read row by row with pread into a buffer of
    one minibatch instead: a page fault on a file mapping maps whole large
    folios around it (megabytes), so random rows read through the mapping
    would make the whole file resident.

    Parameters
    ----------
    X : scipy.sparse CSR matrix of shape (n_rows, n_features)
        Validated (see `check`).
    dtype : numpy.float32 or numpy.float64
        The model's dtype (the stored values are converted if needed).
    cond : ndarray of shape (n_rows, n_conditions), optional
    """

    def __init__(self, X, dtype, cond=None):
        self.cond = cond
        self.n_rows, self.n_features = (int(v) for v in X.shape)
        indptr = np.ascontiguousarray(X.indptr, dtype=np.int64)
        self._files = None
        files = [_file_of(a) for a in (X.data, X.indices)]
        if all(f is not None for f in files) and X.data.dtype == dtype:
            self._files = [(os.open(path, os.O_RDONLY), at) for path, at in files]
            self._indptr = indptr
            self._item = (X.data.dtype.itemsize, X.indices.dtype.itemsize)
            self._types = (X.data.dtype, X.indices.dtype)
            self.X = None
        else:
            self.X = CSRArrays(
                np.ascontiguousarray(X.data, dtype=dtype),
                np.ascontiguousarray(X.indices, dtype=np.int32),
                indptr,
            )

    def __del__(self):
        for fd, _ in self._files or ():
            os.close(fd)

    def minibatches(self, order, batch):
        """(arrays, rows, cond) for each minibatch order[i:i + batch]; from
        files, the arrays hold the minibatch's rows alone (rows 0..b-1) and
        cond its conditions."""
        for i in range(0, order.shape[0], batch):
            rows = order[i : i + batch]
            if self._files is None:
                yield self.X, rows, self.cond
                continue
            cond = None if self.cond is None else np.ascontiguousarray(self.cond[rows])
            yield self._read(rows), np.arange(rows.shape[0], dtype=np.int64), cond

    def _read(self, rows):
        """The rows' stored values and columns, read from the files."""
        starts, ends = self._indptr[rows], self._indptr[rows + 1]
        counts = ends - starts
        local = np.zeros(rows.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=local[1:])
        data = np.empty(int(local[-1]), dtype=self._types[0])
        indices = np.empty(int(local[-1]), dtype=self._types[1])
        arrays = (data, indices)
        for (fd, at), size, out in zip(self._files, self._item, arrays, strict=True):
            view = memoryview(out).cast("B")
            for k in range(rows.shape[0]):
                n = int(counts[k]) * size
                if n:
                    o = int(local[k]) * size
                    _pread_into(fd, view[o : o + n], at + int(starts[k]) * size)
        return CSRArrays(data, indices.astype(np.int32, copy=False), local)


def _file_of(a):
    """(path, byte offset of a[0]) when `a` views a memory map of a file,
    contiguously; else None."""
    mm = _memmap_of(a)
    if mm is None or getattr(mm, "filename", None) is None or not a.flags.c_contiguous:
        return None
    return mm.filename, int(mm.offset) + (a.ctypes.data - mm.ctypes.data)


def _pread_into(fd, view, offset) -> None:
    """Fill `view` from the file at `offset` (pread may return short)."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise OSError(f"the CSR file ended early (at byte {offset + done})")
        done += n


class CSRArrays:
    """The three arrays of a CSR matrix, as the compiled step reads them."""

    __slots__ = ("data", "indices", "indptr")

    def __init__(self, data, indices, indptr):
        self.data, self.indices, self.indptr = data, indices, indptr


def csr_row_chunks(X, dtype, rows):
    """(r0, r1, CSRArrays of rows [r0, r1)) over a validated CSR matrix in
    chunks of `rows` rows, in order, for a first layer that reads the
    nonzeros (Network.encode_csr and co.): the stored values and columns
    are views (a copy only when their types differ from `dtype` / int32),
    and the pages of a memory-mapped file's chunk are released once the
    caller is done with it, so reading the whole matrix keeps about one
    chunk of the file resident."""
    indptr = X.indptr
    for r0 in range(0, X.shape[0], rows):
        r1 = min(X.shape[0], r0 + rows)
        a, b = int(indptr[r0]), int(indptr[r1])
        data, indices = X.data[a:b], X.indices[a:b]
        local = np.asarray(indptr[r0 : r1 + 1], dtype=np.int64) - a
        yield (
            r0,
            r1,
            CSRArrays(
                np.ascontiguousarray(data, dtype=dtype),
                np.ascontiguousarray(indices, dtype=np.int32),
                local,
            ),
        )
        release(data)
        release(indices)


def reads_nonzeros(X, net, density=None) -> bool:
    """Whether the first layer should read X's nonzeros: a CSR matrix with
    fewer stored values than `density` (SPARSE_LAYER_DENSITY, training's,
    when None; inference passes SPARSE_INFERENCE_DENSITY), and a network
    that can."""
    if not is_sparse(X) or not net.supports_csr:
        return False
    n, d = X.shape
    limit = SPARSE_LAYER_DENSITY if density is None else density
    return X.nnz < limit * n * d


class Chunked:
    """Minibatches gathered chunk by chunk from an array too big for memory.

    Parameters
    ----------
    X : numpy.memmap or array-like of shape (n_rows, n_features)
        Validated (see `check`): only read, never copied whole.
    dtype : numpy.float32 or numpy.float64
        The model's dtype; rows are converted as they are gathered.
    batch : int
        Minibatch size; a chunk holds whole minibatches.
    cond : ndarray of shape (n_rows, n_conditions), optional
        Conditions in memory, gathered alike.
    chunk_bytes : int, default=CHUNK_BYTES
    """

    def __init__(self, X, dtype, batch, cond=None, chunk_bytes=None):
        self.X = X
        self.cond = cond
        self.n_rows, self.n_features = (int(v) for v in X.shape)
        self.dtype = np.dtype(dtype)
        row_bytes = max(1, self.n_features * self.dtype.itemsize)
        per_chunk = (chunk_bytes or CHUNK_BYTES) // row_bytes // batch * batch
        if is_sparse(X):
            per_chunk = batch  # densify one minibatch at a time
        self.chunk_rows = int(min(max(batch, per_chunk), self.n_rows))
        self._buf = np.empty((self.chunk_rows, self.n_features), self.dtype)
        self._reader = _RowReader(X)

    def minibatches(self, order, batch):
        """(rows_buffer, local_rows, cond_rows) for each minibatch
        order[i:i + batch]: the chunk's rows sit in the buffer in sorted
        order and local_rows index them in the minibatch's order."""
        n, size = order.shape[0], self.chunk_rows
        for c0 in range(0, n, size):
            rows = order[c0 : c0 + size]
            m = rows.shape[0]
            sorted_rows = np.sort(rows)
            buf = self._buf[:m]
            self._reader.gather(sorted_rows, buf)
            local = np.searchsorted(sorted_rows, rows).astype(np.int64, copy=False)
            cond = None
            if self.cond is not None:
                cond = np.ascontiguousarray(self.cond[sorted_rows])
            for i in range(0, m, batch):
                yield buf, local[i : i + batch], cond


def check(X, *, dtype, name="X", n_features=None, owner=None, unit_interval=False):
    """Validate an out-of-core array with one sequential pass in windows.

    The checks and messages are those of fastvae._validation.check_array
    (numeric, 2-D, non-empty, the expected width, finite after conversion to
    `dtype`) and, with unit_interval, values in [0, 1].

    Returns
    -------
    X, unchanged
    """
    shape = tuple(int(v) for v in X.shape)
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features), got shape {shape}"
        )
    if is_sparse(X):
        return _check_sparse(X, shape, dtype, name, n_features, owner, unit_interval)
    n, d = shape
    if n == 0:
        raise ValueError(f"{name} is empty: it has 0 samples, shape {shape}")
    if d == 0:
        raise ValueError(
            f"{name} has 0 feature(s) (shape={shape}) while a minimum of 1 is required."
        )
    if n_features is not None and d != n_features:
        raise ValueError(
            f"{name} has {d} features, but {owner or 'the model'} is "
            f"expecting {n_features} features as input"
        )
    kind = np.asarray(X[0:1]).dtype.kind
    if kind == "c":
        raise ValueError(f"Complex data not supported: {name} has complex values")
    if kind not in "biufO":
        raise TypeError(
            f"{name} must hold numbers, got dtype {np.asarray(X[0:1]).dtype}"
        )
    reader = _RowReader(X)
    step = max(1, WINDOW_BYTES // max(1, d * np.dtype(dtype).itemsize))
    lo, hi = np.inf, -np.inf
    for r0 in range(0, n, step):
        block = reader.rows(r0, min(n, r0 + step), dtype)
        finite = np.isfinite(block)
        if not finite.all():
            row = r0 + int(np.argmax(~finite.all(axis=1)))
            raise ValueError(
                f"{name} contains NaN or infinite values (first in row {row}); "
                "remove or impute them before training"
            )
        if unit_interval:
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if unit_interval and (lo < 0.0 or hi > 1.0):
        raise ValueError(
            f"{name} must lie in [0, 1] for the Bernoulli likelihood, got values "
            f"in [{lo:g}, {hi:g}]; scale the data (e.g. divide pixels by 255) or "
            "use likelihood='gaussian'"
        )
    return X


def _check_sparse(X, shape, dtype, name, n_features, owner, unit_interval):
    """check() of a sparse matrix, on its stored values; returns it as CSR
    of `dtype`."""
    n, d = shape
    if n == 0 or d == 0:
        raise ValueError(f"{name} is empty: shape {shape}")
    if n_features is not None and d != n_features:
        raise ValueError(
            f"{name} has {d} features, but {owner or 'the model'} is "
            f"expecting {n_features} features as input"
        )
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    X = as_csr(X, name)
    if X.dtype != dtype:
        X = X.astype(dtype)
    lo, hi = 0.0, 0.0
    for a, window in stored_windows(X.data):
        finite = np.isfinite(window)
        if not finite.all():
            bad = a + int(np.argmin(finite))
            row = int(np.searchsorted(X.indptr, bad, side="right") - 1)
            raise ValueError(
                f"{name} contains NaN or infinite values (first in row {row}); "
                "remove or impute them before training"
            )
        if unit_interval and window.size:
            lo, hi = min(lo, float(window.min())), max(hi, float(window.max()))
    if unit_interval and X.nnz:
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name} must lie in [0, 1] for the Bernoulli likelihood, got "
                f"values in [{lo:g}, {hi:g}]; scale the data or use another "
                "likelihood (e.g. 'negbin' for counts)"
            )
    return X


def value_range(X, dtype) -> tuple[float, float]:
    """(min, max) of X's observed values (NaN, a missing entry, is left
    out; 0.0 for both when nothing is observed), read in windows of rows
    when X is out of core (as `dtype`, the values training sees)."""
    if is_sparse(X):
        lo, hi = float("inf"), float("-inf")
        for _, window in stored_windows(X.data):
            if window.size:
                lo, hi = min(lo, float(window.min())), max(hi, float(window.max()))
        if X.nnz == 0:
            lo = hi = 0.0
        if X.nnz < X.shape[0] * X.shape[1]:  # implicit zeros
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        return lo, hi
    if not is_out_of_core(X):
        if np.isnan(X).any():
            seen = X[~np.isnan(X)]
            return (float(seen.min()), float(seen.max())) if seen.size else (0.0, 0.0)
        return float(X.min()), float(X.max())
    lo, hi = float("inf"), float("-inf")
    for block in row_blocks(X, dtype):
        if block.size:
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    return lo, hi


def row_blocks(X, dtype):
    """Consecutive C-contiguous blocks of rows of X as `dtype`, each about
    WINDOW_BYTES, a memmap's pages released after each."""
    n, d = (int(v) for v in X.shape)
    reader = _RowReader(X)
    step = max(1, WINDOW_BYTES // max(1, d * np.dtype(dtype).itemsize))
    for r0 in range(0, n, step):
        yield np.ascontiguousarray(reader.rows(r0, min(n, r0 + step), dtype))


class _RowReader:
    """Reads rows of an out-of-core array, releasing a memmap's pages."""

    def __init__(self, X):
        self.X = X
        self._sparse = is_sparse(X)
        mm = _memmap_of(X) if isinstance(X, np.ndarray) else None
        self._release = mm is not None and getattr(mm, "mode", "c") in _SHARED_MODES
        self._release = self._release and _madvise is not None
        if self._release:
            a = np.asarray(X)  # a view: addresses of the rows in the mapping
            self._addr = a.ctypes.data
            self._stride = a.strides[0]
            d = a.shape[1]
            # bytes a row covers around its first element
            self._lead = min(0, (d - 1) * a.strides[1]) if d else 0
            self._tail = (max(0, (d - 1) * a.strides[1]) if d else 0) + a.itemsize

    def _free(self, first, last):
        """Release the pages of the rows first..last (sorted)."""
        a = self._addr + first * self._stride
        b = self._addr + last * self._stride
        lo = min(a, b) + self._lead
        hi = max(a, b) + self._tail
        start = lo - lo % _PAGE
        _madvise(start, hi - start)

    def rows(self, r0, r1, dtype):
        """Rows [r0, r1) as an array of dtype (its pages released after)."""
        if self._sparse:
            return self.X[r0:r1].toarray().astype(dtype, copy=False)
        block = np.array(self.X[r0:r1], dtype=dtype)
        if self._release:
            self._free(r0, r1 - 1)
        return block

    def gather(self, sorted_rows, out):
        """out[:] = X[sorted_rows] (converted to out's dtype), in windows of
        WINDOW_BYTES of the file for a memmap."""
        m = sorted_rows.shape[0]
        if self._sparse:
            out[:m] = self.X[sorted_rows].toarray()
            return
        if not self._release:
            out[:m] = self.X[sorted_rows]
            return
        X = self.X
        span = max(1, abs(self._stride))
        window = (sorted_rows * span) // WINDOW_BYTES
        cuts = np.flatnonzero(np.diff(window)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [m]))
        same = X.dtype == out.dtype
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            idx = sorted_rows[a:b]
            if same:
                # mode="clip": indices are valid, and "raise" would buffer
                np.take(X, idx, axis=0, out=out[a:b], mode="clip")
            else:
                out[a:b] = X[idx]
            self._free(int(idx[0]), int(idx[-1]))


def _load_madvise():
    """libc's madvise(addr, length, MADV_DONTNEED) as a function of (addr,
    length), or None where there is none (the data are then read without
    releasing pages)."""
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_DONTNEED"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    advice = mmap.MADV_DONTNEED

    def release(addr, length):
        # A failure only means the pages stay resident (the kernel may still
        # reclaim them: they are clean file pages); training is unaffected.
        fn(addr, length, advice)

    return release


_madvise = _load_madvise()
