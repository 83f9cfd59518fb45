"""fastvae's thread pool on a busy machine (src_c/fastvae/pool.h).

Other processes competing for the cores deschedule pool threads at random
moments. Results must not change (blocks have fixed outputs, sums a fixed
order), and a step must not wait a scheduler time slice for a thread that
is off its core. Timing assertions here are deliberately lenient: the real
figures belong to benchmarks/run.py --scenarios (README, Performance).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
import pytest

import fastvae
from fastvae import VAE


@contextmanager
def busy_loops(n: int):
    """n processes that each keep one core busy with a plain Python loop."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "while True: pass"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    try:
        time.sleep(0.2)  # let them start spinning
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _data(n=512, d=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, d)) < 0.3).astype(np.float32)


def _fit(X, n_threads, **kw):
    params = dict(
        hidden=(48, 32),
        latent_dim=6,
        batch_size=40,
        epochs=2,
        n_threads=n_threads,
        random_state=3,
    )
    params.update(kw)
    return VAE(**params).fit(X)


def _state(model):
    return model.params_.copy()


@pytest.mark.parametrize(
    "model",
    [
        {},
        {"likelihood": "gaussian", "sigma": "learned"},
        {"corruption": 0.2, "dynamic_binarization": True},
    ],
)
def test_training_under_competing_load_is_bitwise_the_idle_result(model):
    X = _data() * 0.8 + 0.1
    idle = _state(_fit(X, 1, **model))
    with busy_loops(os.cpu_count() or 2):
        loaded = {t: _state(_fit(X, t, **model)) for t in (2, 3, 8)}
    for t, params in loaded.items():
        np.testing.assert_array_equal(params, idle, err_msg=f"{t} threads under load")


def test_inference_under_competing_load_is_bitwise_the_idle_result():
    X = _data(300)
    model = _fit(X, 1)
    model.set_params(n_threads=1)
    z1, s1 = model.transform(X), model.score_samples(X)
    ll1 = model.log_likelihood(X[:20], k=40)
    with busy_loops(os.cpu_count() or 2):
        model.set_params(n_threads=3)
        z3, s3 = model.transform(X), model.score_samples(X)
        ll3 = model.log_likelihood(X[:20], k=40)
    np.testing.assert_array_equal(z1, z3)
    np.testing.assert_array_equal(s1, s3)
    np.testing.assert_array_equal(ll1, ll3)


def _steps_per_second(model, X, seconds):
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds:
        model.partial_fit(X)
        n += 1
    return n / (time.perf_counter() - t0)


def test_a_busy_competitor_does_not_make_the_default_many_times_slower():
    """With one core taken by another process, the default thread count must
    not collapse against one thread (before the pool: 22x slower with a
    PyTorch job beside it). Alternated rounds, median, a lenient bound."""
    rng = np.random.default_rng(0)
    X = (rng.random((1024, 784)) < 0.3).astype(np.float32)
    models = {
        t: VAE(
            hidden=(400,),
            latent_dim=20,
            batch_size=128,
            epochs=1,
            n_threads=t,
            random_state=0,
        ).fit(X[:256])
        for t in (1, 2)
    }
    rates = {1: [], 2: []}
    with busy_loops(1):
        for _ in range(3):
            for t in (1, 2):
                rates[t].append(_steps_per_second(models[t], X, 0.6))
    one, two = np.median(rates[1]), np.median(rates[2])
    assert two > one / 3, f"2 threads at {two:.1f} vs 1 thread at {one:.1f} epochs/s"


def _fit_in_child(queue):
    model = _fit(_data(), 2)
    queue.put(model.params_)


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_gets_its_own_pool():
    X = _data()
    parent = _state(_fit(X, 2))  # the parent's pool has started its workers
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_fit_in_child, args=(queue,))
    proc.start()
    child = queue.get(timeout=120)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    np.testing.assert_array_equal(child, parent)


def test_more_threads_than_blocks_and_cores_give_the_same_numbers():
    X = _data(64, 16)
    kw = dict(hidden=(8,), latent_dim=2, batch_size=16)
    ref = _state(_fit(X, 1, **kw))
    for t in (2, 5, 16, fastvae._core.threads.MAX_THREADS):
        np.testing.assert_array_equal(_state(_fit(X, t, **kw)), ref, err_msg=f"{t}")
