"""Thread settings and keeping BLAS single-threaded around compiled calls."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastvae
from fastvae.threads import blas_single_threaded

REPO = Path(__file__).resolve().parent.parent


def _blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.fixture(autouse=True)
def _restore():
    yield
    fastvae.set_num_threads(None)


def test_openmp_enabled_is_a_bool():
    assert isinstance(fastvae.openmp_enabled(), bool)


@pytest.mark.skipif(not fastvae.openmp_enabled(), reason="built without OpenMP")
def test_set_and_get_num_threads():
    fastvae.set_num_threads(3)
    assert fastvae.get_num_threads() == 3
    fastvae.set_num_threads(None)
    assert fastvae.get_num_threads() >= 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_invalid_thread_counts(bad):
    with pytest.raises(ValueError, match="number of threads must be an integer >= 1"):
        fastvae.set_num_threads(bad)


@pytest.mark.skipif(not fastvae.openmp_enabled(), reason="built without OpenMP")
@pytest.mark.parametrize("value", ["1", "2", "3"])
def test_omp_num_threads_is_the_default(value):
    env = dict(os.environ, OMP_NUM_THREADS=value,
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", "import fastvae; print(fastvae.get_num_threads())"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == value


def test_blas_is_single_threaded_inside_and_restored_after():
    with threadpool_limits(limits=2, user_api="blas"):
        outer = _blas_threads()
        with blas_single_threaded():
            assert set(_blas_threads()) == {1}
            with blas_single_threaded():  # nested
                assert set(_blas_threads()) == {1}
            assert set(_blas_threads()) == {1}
        assert _blas_threads() == outer


def test_limit_works_from_a_worker_thread_while_another_thread_controls_blas():
    """threadpoolctl ignores limits from any thread but the first one that set
    OpenBLAS's threads; fastvae's limit must hold in a worker thread anyway."""
    seen = []

    def worker():
        with blas_single_threaded():
            seen.append(_blas_threads())
        seen.append(_blas_threads())

    with threadpool_limits(limits=2, user_api="blas"):
        outer = _blas_threads()
        t = threading.Thread(target=worker)
        t.start()
        t.join(10)
    assert set(seen[0]) == {1}
    assert seen[1] == outer


def test_overlapping_python_threads_share_one_limit():
    """The limit lasts until the last of two overlapping blocks ends."""
    entered, release_first = threading.Event(), threading.Event()
    seen = []

    def first():
        with blas_single_threaded():
            entered.set()
            release_first.wait(10)

    with threadpool_limits(limits=2, user_api="blas"):
        outer = _blas_threads()
        t = threading.Thread(target=first)
        t.start()
        entered.wait(10)
        with blas_single_threaded():
            release_first.set()
            t.join(10)
            seen.append(_blas_threads())  # the first block has ended by now
        assert set(seen[0]) == {1}
        assert _blas_threads() == outer


def test_two_models_trained_in_parallel_threads_match_serial_training():
    rng = np.random.default_rng(0)
    Xs = [(rng.random((300, 30)) < 0.3).astype(np.float32) for _ in range(2)]
    settings = dict(hidden=(24,), latent_dim=4, epochs=3, batch_size=32, n_threads=1)
    serial = [fastvae.VAE(seed=s, **settings).fit(X).params_ for s, X in enumerate(Xs)]
    models = [fastvae.VAE(seed=s, **settings) for s in range(2)]
    workers = [threading.Thread(target=m.fit, args=(X,)) for m, X in zip(models, Xs, strict=True)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for m, p in zip(models, serial, strict=True):
        np.testing.assert_array_equal(m.params_, p)
