"""Kernel micro-benchmarks: each compiled kernel against NumPy doing the same.

The shapes are those of the 784-400/20/128 training step (float32): the
first encoder layer's forward (128x784 @ 784x400 + bias, ReLU) and backward
(dX, dW, db through ReLU), the reparameterization of a 128x20 latent and its
backward, the closed-form KL and its gradient, the Bernoulli (logits) and
Gaussian reconstruction losses with their gradients over 128x784, and one
Adam update of the step's 652,824 parameters. The latent-sized kernels are
tiny at batch 128 (2,560 values: call overhead dominates on both sides), so
they are timed at batch 16,384 too. The NumPy side is written the
way a user would write it (tests/reference.py has the same formulas in
float64).

Both sides run in this process, alternated round by round (so a slow spell
of the machine hits both), for several rounds; the table gives medians.
BLAS runs single-threaded inside fastvae's calls (OpenMP owns the cores) and
with `threads` threads for NumPy; `fastvae bench` times one thread only,
because a threaded BLAS and fastvae's OpenMP team in one process fight for
the cores.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from fastvae._core import _dense, _losses, _optim, _reparam, _rng
from fastvae._core.threads import partition_count

BATCH, N_IN, N_HIDDEN, LATENT = 128, 784, 400, 20
# Parameters of the 784-400/20/128 VAE: 784-400-40 encoder, 20-400-784 decoder.
N_PARAMS = (
    N_IN * N_HIDDEN
    + N_HIDDEN
    + N_HIDDEN * 2 * LATENT
    + 2 * LATENT
    + LATENT * N_HIDDEN
    + N_HIDDEN
    + N_HIDDEN * N_IN
    + N_IN
)


def _softplus(x):
    return np.logaddexp(0, x)


def _kernels(rng, threads: int, big: int = 16384):
    """(name, what it does, fastvae callable, numpy callable) of every kernel."""
    f32 = np.float32
    X = rng.random((BATCH, N_IN), dtype=f32)
    W = (rng.standard_normal((N_IN, N_HIDDEN)) * 0.05).astype(f32)
    b = (rng.standard_normal(N_HIDDEN) * 0.05).astype(f32)
    A = X @ W + b
    Y = np.maximum(A, 0)
    dY = rng.standard_normal((BATCH, N_HIDDEN)).astype(f32)
    dA = dY * (Y > 0)
    logits = rng.standard_normal((BATCH, N_IN)).astype(f32) * 3
    target = (rng.random((BATCH, N_IN)) < 0.13).astype(f32)
    p = rng.standard_normal(N_PARAMS).astype(f32)
    g = rng.standard_normal(N_PARAMS).astype(f32) * 1e-2
    m1, v1 = np.zeros_like(p), np.zeros_like(p)
    m2, v2 = np.zeros_like(p), np.zeros_like(p)
    p2 = p.copy()
    parts = partition_count()
    scale = 1.0 / BATCH

    def np_forward():
        return np.maximum(X @ W + b, 0)

    def np_backward():
        return dA @ W.T, X.T @ dA, dA.sum(axis=0)

    def latent_kernels(n):
        H = rng.standard_normal((n, 2 * LATENT)).astype(f32)
        eps = rng.standard_normal((n, LATENT)).astype(f32)
        dZ = rng.standard_normal((n, LATENT)).astype(f32)
        step = {"t": 0}

        def np_reparam():
            mu, logvar = H[:, :LATENT], H[:, LATENT:]
            e = rng.standard_normal((n, LATENT), dtype=f32)
            return mu + np.exp(0.5 * logvar) * e, e

        def fv_reparam():
            step["t"] += 1
            return _reparam.reparam_forward_memview(
                H, 0, _rng.STREAM_SAMPLE, step["t"], n_threads=threads
            )

        def np_reparam_backward():
            logvar = H[:, LATENT:]
            return np.concatenate([dZ, dZ * eps * 0.5 * np.exp(0.5 * logvar)], axis=1)

        def np_kl():
            mu, logvar = H[:, :LATENT], H[:, LATENT:]
            kl = 0.5 * np.sum(np.exp(logvar) + mu**2 - 1 - logvar, axis=1)
            grad = np.concatenate([mu, 0.5 * (np.exp(logvar) - 1)], axis=1) * scale
            return kl, grad

        shape = f"{n}x{LATENT}"
        return [
            (
                "reparameterization",
                f"z = mu + exp(logvar/2) eps with eps, {shape}",
                fv_reparam,
                np_reparam,
            ),
            (
                "reparam. backward",
                f"d(mu, logvar) from dz, {shape}",
                lambda: _reparam.reparam_backward_memview(H, eps, dZ, threads),
                np_reparam_backward,
            ),
            (
                "KL + gradient",
                f"closed-form KL per row and its gradient, {shape}",
                lambda: (
                    _losses.kl_memview(H, threads),
                    _losses.kl_backward_memview(H, scale),
                ),
                np_kl,
            ),
        ]

    def np_bernoulli():
        loss = np.sum(_softplus(logits) - target * logits, axis=1)
        return loss, (1 / (1 + np.exp(-logits)) - target) * scale

    def np_gaussian():
        diff = logits - target
        nll = 0.5 * np.sum(diff**2, axis=1) + 0.5 * N_IN * np.log(2 * np.pi)
        return nll, diff * scale

    state = {"t": 0}

    def np_adam():
        state["t"] += 1
        t = state["t"]
        m2[:] = 0.9 * m2 + 0.1 * g
        v2[:] = 0.999 * v2 + 0.001 * g * g
        mhat = m2 / (1 - 0.9**t)
        vhat = v2 / (1 - 0.999**t)
        p2[:] -= 1e-3 * mhat / (np.sqrt(vhat) + 1e-8)

    fv_state = {"t": 0}

    def fv_adam():
        fv_state["t"] += 1
        _optim.optimizer_update_memview(
            "adam", fv_state["t"], p, g, m1, v1, 1e-3, n_threads=threads
        )

    return [
        (
            "dense forward",
            "128x784 @ 784x400 + b, ReLU",
            lambda: _dense.dense_forward_memview(X, W, b, "relu", threads, parts),
            np_forward,
        ),
        (
            "dense backward",
            "dX, dW, db of that layer",
            lambda: _dense.dense_backward_memview(
                X, W, dA, "identity", True, threads, parts
            ),
            np_backward,
        ),
        *latent_kernels(BATCH),
        *latent_kernels(big),
        (
            "Bernoulli loss + grad",
            "BCE with logits per row and its gradient, 128x784",
            lambda: _losses.bernoulli_memview(logits, target, scale, threads),
            np_bernoulli,
        ),
        (
            "Gaussian loss + grad",
            "squared error per row and its gradient, 128x784",
            lambda: _losses.gaussian_memview(logits, target, 1.0, scale, threads),
            np_gaussian,
        ),
        (
            "Adam update",
            f"one fused pass over {N_PARAMS:,} float32 parameters",
            fv_adam,
            np_adam,
        ),
    ]


def _time_calls(fn, seconds: float) -> float:
    """Seconds per call of fn, over at least `seconds` (after one warm-up)."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls


def run(thread_counts, rounds: int = 5, seconds: float = 0.2, log=print) -> list[dict]:
    """Time every kernel against NumPy; one dict per (kernel, threads)."""
    results = []
    for threads in thread_counts:
        log(f"  kernels, {threads} thread(s)")
        for name, what, fv, npy in _kernels(np.random.default_rng(0), threads):
            fv_times, np_times = [], []
            for r in range(rounds):
                pair = [("fv", fv), ("np", npy)]
                for tag, fn in pair if r % 2 == 0 else pair[::-1]:
                    if tag == "fv":
                        with threadpool_limits(1, user_api="blas"):
                            fv_times.append(_time_calls(fn, seconds))
                    else:
                        with threadpool_limits(threads, user_api="blas"):
                            np_times.append(_time_calls(fn, seconds))
            results.append(
                {
                    "kernel": name,
                    "what": what,
                    "threads": threads,
                    "fastvae_us": 1e6 * statistics.median(fv_times),
                    "numpy_us": 1e6 * statistics.median(np_times),
                }
            )
    return results


def format_table(results: list[dict]) -> str:
    """The kernel results as a markdown table."""
    lines = [
        "| kernel | shape | threads | fastvae µs | numpy µs | numpy / fastvae |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['kernel']} | {r['what']} | {r['threads']} | "
            f"{r['fastvae_us']:,.1f} | {r['numpy_us']:,.1f} | "
            f"{r['numpy_us'] / r['fastvae_us']:.2f}x |"
        )
    return "\n".join(lines)
