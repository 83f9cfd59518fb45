"""Memory: resident memory stays flat over long training and over repeated
fit / transform / save / load cycles, and the compiled wrappers leak no
references to their inputs or outputs.

The soak runs in a fresh subprocess so the measurement sees only its own
allocations. It is also a script for longer runs:

    python tests/test_memory.py --steps 1000000 --cycles 500
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
linux_only = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm"), reason="reads resident memory from /proc"
)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def soak(steps: int, cycles: int) -> dict:
    """Resident memory (bytes) sampled during `steps` compiled training steps
    and after each of `cycles` fit/transform/save/load cycles; the first
    tenth of each run is warm-up."""
    import fastvae
    from fastvae._core import _rng

    rng = np.random.default_rng(0)
    report = {}

    # 1. One long fit: a tiny model, one epoch of `steps` minibatches of 4.
    X = (rng.random((4 * steps, 16)) < 0.4).astype(np.float32)
    warm = fastvae.VAE(hidden=(8,), latent_dim=2, epochs=1, batch_size=4, n_threads=1)
    warm.fit(X[: 4 * max(1, steps // 10)])  # warm-up: every code path once
    gc.collect()
    samples = [_rss_bytes()]
    model = fastvae.VAE(
        hidden=(8,), latent_dim=2, epochs=1, batch_size=4, n_threads=1, warm_start=True
    )
    chunk = max(1, steps // 10)
    for start in range(0, steps, chunk):  # 10 fits continuing one another
        model.fit(X[4 * start : 4 * (start + chunk)])
        samples.append(_rss_bytes())
    assert model.t_ == steps, model.t_
    report["steps"] = {"n": steps, "rss": samples}

    # 2. Repeated cycles through the whole public API of a small model.
    Xc = (rng.random((512, 64)) < 0.4).astype(np.float32)
    Z = _rng.normal_matrix(0, 0, 0, 64, 4, dtype=np.float32)
    rss = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.npz"
        for i in range(cycles):
            m = fastvae.VAE(
                hidden=(32,),
                latent_dim=4,
                epochs=1,
                batch_size=64,
                n_threads=1,
                random_state=i,
            ).fit(Xc, validation_data=Xc[:64])
            m.transform(Xc)
            m.encode(Xc)
            m.reconstruct(Xc)
            m.decode(Z)
            m.elbo(Xc)
            m.log_likelihood(Xc[:16], k=16)
            m.sample(32)
            m.save(path)
            back = fastvae.load(path)
            back.transform(Xc)
            ae = fastvae.Autoencoder(
                hidden=(32,), latent_dim=4, epochs=1, batch_size=64, n_threads=1
            ).fit(Xc)
            ae.score_samples(Xc)
            del m, back, ae
            gc.collect()
            rss.append(_rss_bytes())
    report["cycles"] = {"n": cycles, "rss": rss}
    return report


def _growth(rss: list[int]) -> float:
    """Largest resident size after the warm-up tenth, relative to its end."""
    base = rss[max(0, len(rss) // 10 - 1)]
    return (max(rss[len(rss) // 10 :]) - base) / base


def _run_soak(steps, cycles):
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--steps",
            str(steps),
            "--cycles",
            str(cycles),
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@linux_only
def test_resident_memory_is_flat_over_10000_training_steps():
    report = _run_soak(steps=10_000, cycles=0)
    rss = report["steps"]["rss"]
    assert len(rss) == 11
    # 1% of the ~100 MB a process with NumPy, SciPy and fastvae holds: a
    # leak of one small array per step (10,000 x 100 bytes) would show.
    assert _growth(rss) < 0.01, [r / 2**20 for r in rss]


@linux_only
def test_resident_memory_is_flat_over_fit_transform_save_load_cycles():
    report = _run_soak(steps=10, cycles=40)
    rss = report["cycles"]["rss"]
    # every cycle allocates and frees ~1 MB of arrays (data, outputs, model
    # files): one leaked output per cycle would add >1% within 30 cycles
    assert _growth(rss) < 0.01, [r / 2**20 for r in rss]


# -- reference leaks, in process -------------------------------------------------------


def _calls():
    """Every compiled entry point with small arguments: name -> (fn, args)."""
    from _helpers import init_params, make_network

    from fastvae._core import _blas, _dense, _losses, _numerics, _optim, _reparam, _rng

    rng = np.random.default_rng(0)
    A, W, b = rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), np.zeros(4)
    H, e = rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    p = rng.standard_normal(40)
    net, lay, _ = make_network(5, (4,), 2, (3,), max_batch=8)
    params = init_params(lay, rng, np.float64)
    X = (rng.random((10, 5)) < 0.5).astype(np.float64)
    g, s1, s2 = (lay.zeros(np.float64) for _ in range(3))
    rows = np.arange(4, dtype=np.int64)
    return {
        "gemm": (_blas.gemm_memview, (False, False, A, W, np.zeros((6, 4)))),
        "dense_forward": (_dense.dense_forward_memview, (A, W, b, "relu")),
        "dense_backward": (_dense.dense_backward_memview, (A, W, np.ones((6, 4)))),
        "activation_grad": (
            _dense.activation_grad_memview,
            (A.copy(), np.tanh(A), "tanh"),
        ),
        "reparam_forward": (_reparam.reparam_forward_memview, (H, 1, 2, 3)),
        "reparam_backward": (_reparam.reparam_backward_memview, (H, e, e)),
        "kl": (_losses.kl_memview, (H,)),
        "kl_backward": (_losses.kl_backward_memview, (H,)),
        "bernoulli": (_losses.bernoulli_memview, (A, A)),
        "gaussian": (_losses.gaussian_memview, (A, A)),
        "optimizer": (
            _optim.optimizer_update_memview,
            ("adam", 1, p.copy(), p, p.copy(), p.copy(), 0.1),
        ),
        "normal_matrix": (_rng.normal_matrix, (0, 0, 0, 5, 3)),
        "uniform_matrix": (_rng.uniform_matrix, (0, 0, 0, 5, 3)),
        "philox": (_rng.philox4x64_10, ([1, 2, 3, 4], [5, 6])),
        "apply_f32": (_numerics.apply_f32, ("exp", p.astype(np.float32))),
        "train_step": (net.train_step, (params.copy(), g, s1, s2, X, rows, 4, 0, 0)),
        "gradients": (net.gradients, (params, g, X, None, 4, 0, 0)),
        "encode": (net.encode, (params, X)),
        "decode": (net.decode, (params, rng.standard_normal((10, 2)))),
        "elbo_terms": (net.elbo_terms, (params, X, 0, 0)),
        "log_likelihood": (net.log_likelihood, (params, X, 3, 0, 0)),
        "refused (bad threads)": (_dense.dense_forward_memview, (A, W, b, "relu", 0)),
        "refused (overlap)": (
            _optim.optimizer_update_memview,
            ("adam", 1, p, p.copy(), p, p.copy(), 0.1),
        ),
    }


def _outputs(result):
    if result is None:
        return []
    return list(result) if isinstance(result, tuple) else [result]


def test_compiled_wrappers_keep_no_references():
    """After 100 calls, every argument has the reference count it had before
    and every returned array is freed when the caller drops it, including
    calls refused with an exception."""
    for name, (fn, args) in _calls().items():

        def call(fn=fn, args=args):
            try:
                return fn(*args)
            except ValueError:
                return None

        call()  # warm-up: lazily created module state
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        before = [sys.getrefcount(a) for a in arrays]
        for _ in range(100):
            out = call()
        del out
        assert [sys.getrefcount(a) for a in arrays] == before, name
        refs = [weakref.ref(o) for o in _outputs(call()) if isinstance(o, np.ndarray)]
        gc.collect()
        assert all(r() is None for r in refs), name


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument(
        "--json", action="store_true", help="print the raw samples as JSON"
    )
    args = parser.parse_args()
    result = soak(args.steps, args.cycles)
    if args.json:
        print(json.dumps(result))
    else:
        for what, r in result.items():
            if r["rss"]:
                print(
                    f"{what}: {r['n']} -> RSS {r['rss'][0] / 2**20:.1f} .. "
                    f"{max(r['rss']) / 2**20:.1f} MiB, growth after warm-up "
                    f"{100 * _growth(r['rss']):+.3f}%"
                )
