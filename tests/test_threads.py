"""Threads: thread settings, BLAS kept single-threaded around compiled calls,
the GIL released by every compiled call, and models trained and used from
several Python threads at once giving bitwise the results of serial runs."""

import ctypes
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _helpers import init_params, make_network
from threadpoolctl import threadpool_info, threadpool_limits

import fastvae
from fastvae._core import (
    _blas,
    _dense,
    _losses,
    _numerics,
    _optim,
    _reparam,
    _rng,
    _step,
    _threads,
    threads,
)
from fastvae._core.threads import blas_single_threaded

REPO = Path(__file__).resolve().parent.parent


def _blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.fixture(autouse=True)
def _restore():
    yield
    fastvae.set_num_threads(None)


# -- settings --------------------------------------------------------------------------


def test_openmp_enabled_is_a_bool():
    assert isinstance(fastvae.openmp_enabled(), bool)


@pytest.mark.skipif(not fastvae.openmp_enabled(), reason="built without OpenMP")
def test_set_and_get_num_threads():
    fastvae.set_num_threads(3)
    assert fastvae.get_num_threads() == 3
    fastvae.set_num_threads(np.int64(4))
    assert fastvae.get_num_threads() == 4
    fastvae.set_num_threads(None)
    assert 1 <= fastvae.get_num_threads() <= threads.MAX_THREADS


@pytest.mark.parametrize("bad", [0, -1, 257, 1.5, "2", True])
def test_invalid_thread_counts(bad):
    with pytest.raises(
        ValueError, match=r"number of threads must be an integer in \[1, 256\]"
    ):
        fastvae.set_num_threads(bad)


def test_one_thread_limit_for_every_layer():
    """The estimators, the compiled step and the kernel wrappers accept the
    same largest thread count."""
    assert threads.MAX_THREADS == _threads.MAX_THREADS == _step.MAX_THREADS == 256


@pytest.mark.skipif(not fastvae.openmp_enabled(), reason="built without OpenMP")
@pytest.mark.parametrize("value", ["1", "2", "3"])
def test_omp_num_threads_is_the_default(value):
    env = dict(
        os.environ,
        OMP_NUM_THREADS=value,
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    out = subprocess.run(
        [sys.executable, "-c", "import fastvae; print(fastvae.get_num_threads())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == value


@pytest.mark.skipif(not fastvae.openmp_enabled(), reason="built without OpenMP")
def test_a_huge_omp_num_threads_is_capped_not_fatal():
    env = dict(
        os.environ,
        OMP_NUM_THREADS="5000",
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    code = (
        "import numpy as np, fastvae; print(fastvae.get_num_threads()); "
        "X = (np.arange(64 * 6).reshape(64, 6) % 3 == 0).astype(np.float32); "
        "fastvae.VAE(hidden=(4,), latent_dim=2, epochs=1).fit(X).elbo(X); print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["256", "ok"]


# -- BLAS limit ------------------------------------------------------------------------


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


def _openblas_counts():
    """Thread counts of the loaded pthreads OpenBLAS libraries, read through
    the same C entry points fastvae sets (a microsecond each)."""
    if threads._openblas is None:
        with blas_single_threaded():
            pass
    return [lib.get() for lib in threads._openblas]


def test_many_threads_entering_and_leaving_the_limit_at_random():
    """8 Python threads enter and leave (sometimes nested) blocks 2,000 times
    in all, in random interleavings: inside any block every BLAS runs on one
    thread, and after the last block the outer setting is back."""
    if not _openblas_counts():
        pytest.skip("no pthreads OpenBLAS loaded")
    errors, start = [], threading.Barrier(8)

    def worker(seed):
        rnd = random.Random(seed)
        start.wait(10)
        for _ in range(250):
            with blas_single_threaded():
                if rnd.random() < 0.3:
                    with blas_single_threaded():
                        counts = _openblas_counts()
                else:
                    counts = _openblas_counts()
                if set(counts) != {1}:
                    errors.append(counts)
                if rnd.random() < 0.2:
                    time.sleep(0)  # let another thread in mid-block

    with threadpool_limits(limits=2, user_api="blas"):
        outer = _openblas_counts()
        assert set(outer) == {2}
        workers = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert threads._blas_depth == 0
        assert _openblas_counts() == outer
    assert not errors, errors[:5]


def test_a_failing_entry_leaves_blas_as_it_was(monkeypatch):
    if not _openblas_counts():
        pytest.skip("no pthreads OpenBLAS loaded")

    class Boom:
        def limit(self, **kwargs):
            raise RuntimeError("boom")

    with threadpool_limits(limits=2, user_api="blas"):
        outer = _openblas_counts()
        monkeypatch.setattr(threads, "_controller", Boom())
        with pytest.raises(RuntimeError, match="boom"):
            with blas_single_threaded():
                pass
        monkeypatch.undo()
        assert threads._blas_depth == 0
        assert _openblas_counts() == outer
        with blas_single_threaded():  # and the next entry works
            assert set(_openblas_counts()) == {1}


# -- the GIL: released by every compiled call ------------------------------------------
#
# A worker thread inside a compiled call has, as its innermost Python frame,
# the frame that made the call (Cython functions have none): _invoke's. The
# observer takes looks that hold the GIL throughout (the switch interval is
# raised so it is not asked for): a look checks that every worker is inside
# the same _invoke call at its start and end, and reads each worker's CPU
# clock around a 10 ms sleep that keeps the GIL. A worker that held the GIL,
# or needed it, could not run during the sleep; CPU time it used then was
# spent in compiled code without the GIL. The only thing measured is whether
# a worker ran at all while another thread held the GIL (at least 1 ms of
# CPU in the 10 ms); no speed is asserted.

_CALL_IDS: dict[int, int] = {}


def _invoke(fn, args, kwargs):
    ident = threading.get_ident()
    _CALL_IDS[ident] = _CALL_IDS.get(ident, 0) + 1
    return fn(*args, **kwargs)


def _calls_in_progress(idents):
    """The call id of each thread if all of them are inside _invoke, else None."""
    frames = sys._current_frames()
    ids = []
    for ident in idents:
        frame = frames.get(ident)
        if frame is None or frame.f_code is not _invoke.__code__:
            return None
        ids.append(_CALL_IDS[ident])
    return tuple(ids)


def _cpu_seconds(ident):
    """CPU time of a thread; None once it has ended (it may end between the
    observer's checks)."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (ProcessLookupError, OSError):
        return None


# libc's usleep called through ctypes.PyDLL keeps the GIL while it sleeps (a
# CDLL call would release it), and no bytecode runs during it that could
# hand the GIL over.
_usleep_holding_gil = ctypes.PyDLL(None).usleep
_usleep_holding_gil.argtypes = [ctypes.c_uint]


def _look(idents):
    """One look with the GIL held: True when every thread stayed in one
    compiled call and used >= 1 ms of CPU during a 10 ms sleep that held the
    GIL."""
    before = _calls_in_progress(idents)
    if before is None:
        return False
    cpu0 = [_cpu_seconds(i) for i in idents]
    _usleep_holding_gil(10_000)
    cpu1 = [_cpu_seconds(i) for i in idents]
    if None in cpu0 or None in cpu1:
        return False
    return _calls_in_progress(idents) == before and all(
        b - a >= 1e-3 for a, b in zip(cpu0, cpu1, strict=True)
    )


def _ran_without_gil(idents, done, attempts=300):
    """Look until one look succeeds, done() is true, or attempts run out; the
    GIL is released between looks (sleep) so the workers can move on."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        for _ in range(attempts):
            if done():
                return False
            if _look(idents):
                return True
            time.sleep(2e-4)
        return False
    finally:
        sys.setswitchinterval(old)


def _seen_without_gil(fn, *args, max_runs=50, **kwargs):
    """Run fn(*args, **kwargs) over and over in a worker thread (at most
    max_runs times) while the observer looks; True when a look succeeded."""
    stop = threading.Event()
    runs = []

    def worker():
        while not stop.is_set() and len(runs) < max_runs:
            runs.append(_invoke(fn, args, kwargs))

    t = threading.Thread(target=worker)
    t.start()
    try:
        seen = _ran_without_gil([t.ident], lambda: not t.is_alive())
    finally:
        stop.set()
        t.join(120)
    return seen, len(runs)


def _kernel_calls():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((512, 512))
    W = rng.standard_normal((512, 512))
    b = np.zeros(512)
    flat = rng.standard_normal(1 << 22)
    rows8 = flat.reshape(-1, 8)[: 1 << 18]
    eps = rng.standard_normal((rows8.shape[0], 4))
    calls = {
        "gemm": (_blas.gemm_memview, (False, False, A, W, np.zeros((512, 512))), {}),
        "dense_forward": (_dense.dense_forward_memview, (A, W, b, "tanh"), {}),
        "dense_backward": (_dense.dense_backward_memview, (A, W, A), {}),
        "activation_grad": (
            _dense.activation_grad_memview,
            (flat.reshape(-1, 64).copy(), np.tanh(flat).reshape(-1, 64), "tanh"),
            {},
        ),
        "reparam_forward": (_reparam.reparam_forward_memview, (rows8, 1, 2, 3), {}),
        "reparam_backward": (_reparam.reparam_backward_memview, (rows8, eps, eps), {}),
        "kl": (_losses.kl_memview, (rows8,), {}),
        "kl_backward": (_losses.kl_backward_memview, (rows8,), {}),
        "bernoulli": (_losses.bernoulli_memview, (rows8, rows8), {}),
        "gaussian": (_losses.gaussian_memview, (rows8, rows8), {}),
        "adam": (
            _optim.optimizer_update_memview,
            ("adam", 1, flat.copy(), flat, flat.copy(), flat.copy(), 0.1),
            {},
        ),
        "normal_matrix": (_rng.normal_matrix, (0, 0, 0, 1 << 13, 32), {}),
        "uniform_matrix": (_rng.uniform_matrix, (0, 0, 0, 1 << 15, 32), {}),
        "apply_f32": (_numerics.apply_f32, ("tanh", flat.astype(np.float32)), {}),
    }
    net, lay, _ = make_network(
        256, (256,), 16, (256,), ("tanh",), max_batch=256, dtype=np.float64
    )
    p = init_params(lay, rng, np.float64)
    X = (rng.random((512, 256)) < 0.5).astype(np.float64)
    Z = rng.standard_normal((512, 16))
    g, s1, s2 = (lay.zeros(np.float64) for _ in range(3))
    net.set_optimizer("adam", 1e-4)
    calls.update(
        {
            "Network.train_step": (
                net.train_step,
                (p.copy(), g, s1, s2, X, None, 256, 0, 0),
                {},
            ),
            "Network.gradients": (net.gradients, (p, g, X, None, 256, 0, 0), {}),
            "Network.encode": (net.encode, (p, X), {}),
            "Network.decode": (net.decode, (p, Z), {}),
            "Network.elbo_terms": (net.elbo_terms, (p, X, 0, 0), {}),
            "Network.log_likelihood": (net.log_likelihood, (p, X[:8], 64, 0, 0), {}),
        }
    )
    return calls


KERNEL_CALLS = [
    "gemm",
    "dense_forward",
    "dense_backward",
    "activation_grad",
    "reparam_forward",
    "reparam_backward",
    "kl",
    "kl_backward",
    "bernoulli",
    "gaussian",
    "adam",
    "normal_matrix",
    "uniform_matrix",
    "apply_f32",
    "Network.train_step",
    "Network.gradients",
    "Network.encode",
    "Network.decode",
    "Network.elbo_terms",
    "Network.log_likelihood",
]


@pytest.fixture(scope="module")
def kernel_calls():
    calls = _kernel_calls()
    assert sorted(calls) == sorted(KERNEL_CALLS)
    return calls


@pytest.mark.parametrize("name", KERNEL_CALLS)
def test_every_compiled_call_releases_the_gil(kernel_calls, name):
    fn, args, kwargs = kernel_calls[name]
    seen, runs = _seen_without_gil(fn, *args, **kwargs)
    assert seen, f"{name} never ran while another thread held the GIL ({runs} calls)"


def test_the_witness_catches_a_call_that_holds_the_gil():
    """Control: a C call that keeps the GIL (builtin sum over a range, tens
    of milliseconds) is never seen running while the observer holds it."""
    seen, runs = _seen_without_gil(sum, range(10**6), max_runs=30)
    assert runs >= 1
    assert not seen


# -- models in several Python threads --------------------------------------------------


def _spy_on_steps(model):
    """Route the model's compiled training steps through _invoke (arguments
    and results unchanged), so an observer can see them in progress."""
    real_network = model._network

    class Spy:
        def __init__(self, net):
            self._net = net

        def train_step(self, *args, **kwargs):
            return _invoke(self._net.train_step, args, kwargs)

        def __getattr__(self, name):
            return getattr(self._net, name)

    model._network = lambda *a, **k: Spy(real_network(*a, **k))
    return model


def test_two_models_train_inside_compiled_code_at_the_same_time():
    """Two different models fitted in two threads run their compiled steps
    concurrently (both used CPU inside one step each while the observer held
    the GIL, see above) and each ends bitwise where it ends trained alone."""
    rng = np.random.default_rng(0)
    Xs = [(rng.random((768, 256)) < 0.3).astype(np.float32) for _ in range(2)]
    settings = dict(hidden=(384,), latent_dim=16, epochs=2, batch_size=256, n_threads=1)
    kinds = [fastvae.VAE, fastvae.Autoencoder]
    serial = [
        cls(random_state=s, **settings).fit(X).params_
        for s, (cls, X) in enumerate(zip(kinds, Xs, strict=True))
    ]

    for _attempt in range(3):  # a loaded machine may keep a thread off the CPU
        models = [
            _spy_on_steps(cls(random_state=s, **settings))
            for s, cls in enumerate(kinds)
        ]
        workers = [
            threading.Thread(target=m.fit, args=(X,))
            for m, X in zip(models, Xs, strict=True)
        ]
        for w in workers:
            w.start()
        together = _ran_without_gil(
            [w.ident for w in workers],
            lambda ws=workers: not all(w.is_alive() for w in ws),
        )
        for w in workers:
            w.join(120)
        for m, p in zip(models, serial, strict=True):
            np.testing.assert_array_equal(m.params_, p)
        if together:
            break
    assert together, "the two fits were never inside compiled code at the same time"


@pytest.mark.parametrize("n_threads", [1, 2])
def test_different_models_in_parallel_threads_match_serial_training(n_threads):
    rng = np.random.default_rng(1)
    Xs = [(rng.random((200, 30)) < 0.3).astype(np.float32) for _ in range(4)]
    Xs[3] = rng.standard_normal((200, 30)).astype(np.float32)
    base = dict(
        hidden=(24,), latent_dim=4, epochs=2, batch_size=40, n_threads=n_threads
    )
    makers = [
        lambda: fastvae.VAE(random_state=0, **base),
        lambda: fastvae.VAE(
            random_state=1, dtype=np.float64, optimizer="momentum", **base
        ),
        lambda: fastvae.DenoisingAutoencoder(random_state=2, **base),
        lambda: fastvae.VAE(
            random_state=3, likelihood="gaussian", sigma="learned", **base
        ),
    ]
    serial = [make().fit(X) for make, X in zip(makers, Xs, strict=True)]
    models = [make() for make in makers]
    start = threading.Barrier(len(models))

    def run(m, X):
        start.wait(30)
        m.fit(X)

    workers = [
        threading.Thread(target=run, args=(m, X))
        for m, X in zip(models, Xs, strict=True)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    for m, ref, X in zip(models, serial, Xs, strict=True):
        np.testing.assert_array_equal(m.params_, ref.params_)
        assert m.history_["loss"] == ref.history_["loss"]
        np.testing.assert_array_equal(m.transform(X), ref.transform(X))


def test_one_model_used_from_many_threads_gives_the_serial_answers():
    """Inference calls on one fitted model from 6 threads at once (they share
    its compiled workspace, which the model's lock serialises)."""
    rng = np.random.default_rng(2)
    X = (rng.random((400, 20)) < 0.4).astype(np.float32)
    vae = fastvae.VAE(
        hidden=(16,), latent_dim=3, epochs=2, batch_size=64, n_threads=2
    ).fit(X)
    want = {
        "transform": vae.transform(X),
        "elbo": vae.elbo(X),
        "decode": vae.decode(vae.transform(X)),
        "ll": vae.log_likelihood(X[:20], k=8),
    }
    errors, start = [], threading.Barrier(6)

    def worker(i):
        start.wait(30)
        for _ in range(5):
            got = {
                "transform": vae.transform(X),
                "elbo": vae.elbo(X),
                "decode": vae.decode(want["transform"]),
                "ll": vae.log_likelihood(X[:20], k=8),
            }
            for key in want:
                if not np.array_equal(got[key], want[key]):
                    errors.append((i, key))

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not errors, errors[:5]


def test_two_threads_fitting_one_model_run_one_after_the_other():
    """fit holds the model's lock from start to end, so two fits of one model
    never mix: the model ends as one of them would leave it alone."""
    rng = np.random.default_rng(3)
    Xa = (rng.random((200, 16)) < 0.5).astype(np.float32)
    Xb = (rng.random((200, 16)) < 0.2).astype(np.float32)
    settings = dict(hidden=(12,), latent_dim=2, epochs=3, batch_size=32, n_threads=1)
    alone = {"a": fastvae.VAE(**settings).fit(Xa), "b": fastvae.VAE(**settings).fit(Xb)}
    for _ in range(3):
        shared = fastvae.VAE(**settings)
        start = threading.Barrier(2)

        def run(X, model=shared, barrier=start):
            barrier.wait(30)
            model.fit(X)

        workers = [threading.Thread(target=run, args=(X,)) for X in (Xa, Xb)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
        matches = [
            k for k, m in alone.items() if np.array_equal(shared.params_, m.params_)
        ]
        assert len(matches) == 1
        assert shared.history_["loss"] == alone[matches[0]].history_["loss"]
        assert shared.t_ == alone[matches[0]].t_


def test_one_network_refuses_a_second_thread_while_busy():
    """A compiled Network has one workspace: a call from a second thread
    while the first runs without the GIL is refused, not allowed to scribble
    over it; calls after it (and the first call's answer) are unaffected."""
    rng = np.random.default_rng(4)
    net, lay, _ = make_network(
        64, (64,), 4, (64,), ("tanh",), max_batch=64, dtype=np.float64
    )
    p = init_params(lay, rng, np.float64)
    X = (rng.random((64, 64)) < 0.5).astype(np.float64)
    want_ll = net.log_likelihood(p, X, 400, 0, 0)
    want_H = net.encode(p, X[:4])
    refused, ll = [], []

    def long_call():
        while True:  # the main thread may hold the Network when this starts
            try:
                return ll.append(net.log_likelihood(p, X, 400, 0, 0))
            except RuntimeError:
                time.sleep(1e-4)

    t = threading.Thread(target=long_call)
    t.start()
    while t.is_alive():
        try:
            np.testing.assert_array_equal(net.encode(p, X[:4]), want_H)
        except RuntimeError as exc:
            refused.append(str(exc))
        time.sleep(1e-4)
    t.join()
    assert refused, "the second thread was never refused"
    assert "in use by another thread" in refused[0]
    np.testing.assert_array_equal(ll[0], want_ll)
    np.testing.assert_array_equal(net.encode(p, X[:4]), want_H)
