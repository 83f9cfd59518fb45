"""How many threads the compiled core uses, which instruction set it runs,
and keeping BLAS out of its way.

Training steps, gradients, inference and log-likelihoods run on fastvae's own
thread pool (src_c/fastvae/pool.h): work is cut into fixed blocks that
running threads take in turn, and a waiting thread sleeps after at most 50
microseconds, so a thread that another process keeps off its core holds
nobody up; results are bitwise the same for any thread count. The kernels'
stand-alone wrappers (tests, benchmarks) use OpenMP.

Each thread calls BLAS single-threaded on its own block. Letting OpenBLAS
spawn its own threads inside our parallel work made a dense layer 13-18x
slower on a 2-core machine (both pools spin and fight for the cores), so
every compiled call runs with BLAS limited to one thread.

OpenBLAS built with pthreads (the NumPy and SciPy wheels) has one process-wide
setting. threadpoolctl lets only the first Python thread that set it change
it again and silently ignores the others, which would leave BLAS threaded
under a model trained from a worker thread; fastvae therefore sets those
libraries directly through their C API. Other BLAS libraries (MKL, BLIS,
OpenBLAS with OpenMP threads, which runs single-threaded inside our parallel
regions anyway) go through threadpoolctl.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import threading
import warnings
from contextlib import contextmanager

from fastvae._core._threads import (
    MAX_THREADS,
    cpu_isa,
    isa_cap,
    omp_max_threads,
    openmp_enabled,
)
from fastvae._core._threads import isa as _isa
from fastvae._core._threads import set_isa as _set_isa
from fastvae._validation import check_n_threads

__all__ = [
    "get_num_threads",
    "set_num_threads",
    "openmp_enabled",
    "blas_single_threaded",
    "partition_count",
    "MAX_THREADS",
    "get_isa",
    "set_isa",
]

_num_threads: int | None = None
_controller = None


def _default_num_threads() -> int:
    # omp_get_max_threads() honours OMP_NUM_THREADS and otherwise counts the
    # cores this process may run on; a bigger machine uses MAX_THREADS (the
    # most one compiled call accepts) rather than failing by default.
    return min(max(1, omp_max_threads()), MAX_THREADS)


def get_num_threads() -> int:
    """Number of threads fastvae's kernels use.

    Returns
    -------
    int
        The value given to :func:`set_num_threads`, else OMP_NUM_THREADS when
        set, else the number of cores available; always 1 when fastvae was
        built without OpenMP.
    """
    if not openmp_enabled():
        return 1
    return _num_threads if _num_threads is not None else _default_num_threads()


def set_num_threads(n: int | None) -> None:
    """Set the number of threads fastvae's kernels use.

    Results are bitwise identical for any thread count; only speed changes.

    Parameters
    ----------
    n : int in [1, 256], or None
        None restores the default (OMP_NUM_THREADS, else all available cores,
        at most 256).

    Raises
    ------
    ValueError
        If n is not an integer in [1, 256].
    """
    global _num_threads
    if n is None:
        _num_threads = None
        return
    try:
        n = check_n_threads(n, "number of threads", maximum=MAX_THREADS)
    except TypeError as exc:  # one error type for every bad count, as before
        raise ValueError(str(exc)) from None
    if n > 1 and not openmp_enabled():
        warnings.warn(
            "fastvae was built without OpenMP; running on one thread",
            RuntimeWarning,
            stacklevel=2,
        )
    _num_threads = n


def set_isa(level: str | None) -> None:
    """Cap the instruction set of fastvae's kernels for this process.

    The kernels exist for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the
    baseline, and run the highest level the CPU has unless capped, e.g. to
    reproduce a laptop's numbers on a server, or to get the same numbers on
    every node of a cluster whose CPUs differ. ``FASTVAE_ISA`` sets the cap
    when fastvae is imported.

    Parameters
    ----------
    level : {"avx512", "avx2", "baseline"} or None
        The highest level kernels may use; None lifts the cap. A cap above
        what the CPU has is no cap.

    Raises
    ------
    ValueError
        If level is not one of the names above.

    Notes
    -----
    At one level results are bitwise equal for any thread count; between
    levels they may differ in the last bits (vector widths, FMA).

    Kernels read the cap on every call, so do not call this while a fit,
    a transform or a score runs on another thread: that call's threads
    could run different levels within one step, and its results would be
    reproducible at neither level.
    """
    _set_isa(level)


def get_isa() -> dict:
    """The instruction set fastvae's kernels use.

    Returns
    -------
    dict
        ``level``: the level used now ("avx512", "avx2" or "baseline");
        ``cpu``: the highest level this CPU and build can run; ``cap``: the
        cap from FASTVAE_ISA or :func:`set_isa`, None when there is none.
    """
    return {"level": _isa(), "cpu": cpu_isa(), "cap": isa_cap()}


_MAX_PARTS = 64  # FV_MAX_BLOCKS in src_c/fastvae/partition.h


def partition_count() -> int:
    """Column blocks of large GEMMs: the cores this process may use.

    Fixed for the life of a process (cores available at the first call), so
    results do not depend on the number of threads a computation uses; a
    process restricted to other cores (taskset, a container's CPU set) cuts
    GEMMs differently and rounds differently in the last bits.

    Returns
    -------
    int in [2, 64]
    """
    global _parts
    if _parts is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        _parts = min(max(2, cores), _MAX_PARTS)
    return _parts


_parts: int | None = None


def resolve_num_threads(n: int | None) -> int:
    """An estimator's n_threads setting as a concrete count."""
    if n is None:
        return get_num_threads()
    try:
        n = check_n_threads(n, maximum=MAX_THREADS)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    return n if openmp_enabled() else 1


class _OpenBLASThreads:
    """get/set_num_threads of one loaded pthreads OpenBLAS, through ctypes."""

    def __init__(self, path: str):
        lib = ctypes.CDLL(path)  # already loaded: the same handle, no new copy
        for prefix, suffix in itertools.product(("", "scipy_"), ("", "64_", "_64")):
            getter = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            setter = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if getter is not None and setter is not None:
                break
        else:
            raise OSError(f"{path} has no openblas_get/set_num_threads")
        getter.restype = ctypes.c_int
        setter.argtypes = [ctypes.c_int]
        self.get, self.set = getter, setter


_blas_lock = threading.Lock()
_blas_depth = 0
_openblas: list[_OpenBLASThreads] | None = None
_saved: list[tuple[_OpenBLASThreads, int]] = []
_other_limit = None


def _find_blas():
    """Split the loaded BLAS libraries into pthreads OpenBLAS and the rest."""
    global _controller, _openblas
    from threadpoolctl import ThreadpoolController

    _openblas, others = [], []
    for info in ThreadpoolController().select(user_api="blas").info():
        if (
            info["internal_api"] == "openblas"
            and info.get("threading_layer") == "pthreads"
        ):
            try:
                _openblas.append(_OpenBLASThreads(info["filepath"]))
                continue
            except OSError:
                pass
        others.append(info["filepath"])
    _controller = ThreadpoolController().select(filepath=others) if others else None


@contextmanager
def blas_single_threaded():
    """Limit every loaded BLAS to one thread for the duration of the block.

    The limit is process-wide, so nested blocks and blocks entered by several
    Python threads at once share one limit: the first entry sets it and the
    last exit restores the previous setting. Entries and exits are serialised
    by a lock, so the limit holds in every block however the threads
    interleave (tests/test_threads.py runs 8 threads through 2,000 blocks).
    """
    global _blas_depth
    with _blas_lock:
        if _blas_depth == 0:
            _limit_blas()
        _blas_depth += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                _restore_blas()


def _limit_blas():
    """Save each BLAS's thread count and set it to 1 (under _blas_lock). On
    failure nothing stays changed, so a failed entry leaves BLAS as it was."""
    global _saved, _other_limit
    if _openblas is None:
        _find_blas()
    _saved = []
    try:
        for lib in _openblas:
            _saved.append((lib, lib.get()))
            lib.set(1)
        if _controller is not None:
            _other_limit = _controller.limit(limits=1, user_api="blas")
    except BaseException:
        _restore_blas()
        raise


def _restore_blas():
    global _saved, _other_limit
    for lib, n in _saved:
        lib.set(n)
    _saved = []
    if _other_limit is not None:
        _other_limit.restore_original_limits()
        _other_limit = None
