"""How many threads the compiled core uses, and keeping BLAS out of its way.

OpenMP owns the cores; each OpenMP thread calls BLAS single-threaded on its
own block. Letting OpenBLAS spawn its own threads inside our parallel regions
made a dense layer 13-18x slower on a 2-core machine (both pools spin and
fight for the cores), so every compiled call runs under a threadpoolctl limit
of one BLAS thread.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager

from fastvae._threads import omp_max_threads, openmp_enabled

__all__ = ["get_num_threads", "set_num_threads", "openmp_enabled", "blas_single_threaded"]

_num_threads: int | None = None
_controller = None


def _default_num_threads() -> int:
    # omp_get_max_threads() honours OMP_NUM_THREADS and otherwise counts the
    # cores this process may run on.
    return max(1, omp_max_threads())


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
    n : int >= 1, or None
        None restores the default (OMP_NUM_THREADS, else all available cores).

    Raises
    ------
    ValueError
        If n is not a positive integer.
    """
    global _num_threads
    if n is None:
        _num_threads = None
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of threads must be an integer >= 1, got {n!r}")
    if n > 1 and not openmp_enabled():
        warnings.warn(
            "fastvae was built without OpenMP; running on one thread",
            RuntimeWarning,
            stacklevel=2,
        )
    _num_threads = n


def resolve_num_threads(n: int | None) -> int:
    """An estimator's n_threads setting as a concrete count."""
    if n is None:
        return get_num_threads()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n_threads must be None or an integer >= 1, got {n!r}")
    return n if openmp_enabled() else 1


_blas_lock = threading.Lock()
_blas_depth = 0
_blas_limit = None


@contextmanager
def blas_single_threaded():
    """Limit every loaded BLAS to one thread for the duration of the block.

    The limit is process-wide, so nested blocks and blocks entered by several
    Python threads at once share one limit: the first entry sets it and the
    last exit restores the original setting (a plain threadpoolctl context per
    caller would let one thread lift the limit while another still computes).
    """
    global _controller, _blas_depth, _blas_limit
    with _blas_lock:
        if _blas_depth == 0:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            _blas_limit = _controller.limit(limits=1, user_api="blas")
        _blas_depth += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                _blas_limit.restore_original_limits()
                _blas_limit = None
