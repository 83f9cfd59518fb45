"""Inference throughput of a fitted model: transform, score_samples, decode.

python benchmarks/bench_inference.py [--rows 10000] [--dtype float32] [--repeats 7]

Prints rows/s (best of --repeats calls: noise from other processes only
slows calls down) for 1 and 2 threads of a 784-400-20 VAE (Bernoulli
likelihood), trained for one short epoch on random binary data (the weights'
values do not change the cost).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import fastvae


def _rate(fn, X, repeats):
    fn(X)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(X)
        times.append(time.perf_counter() - t0)
    return len(X) / min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    X = (rng.random((a.rows, 784)) < 0.3).astype(a.dtype)
    vae = fastvae.VAE(
        hidden=(400,),
        latent_dim=20,
        epochs=1,
        batch_size=128,
        dtype=a.dtype,
        random_state=0,
    ).fit(X[:2048])
    Z = vae.transform(X)
    cpu = platform.processor() or platform.machine()
    print(
        f"# 784-400-20 VAE, {a.rows} rows, {a.dtype}; {cpu}, "
        f"fastvae {fastvae.__version__}, best of {a.repeats}"
    )
    print("| threads | transform rows/s | score_samples rows/s | decode rows/s |")
    print("|---|---|---|---|")
    for nt in (1, 2):
        vae.n_threads = nt
        t = _rate(vae.transform, X, a.repeats)
        s = _rate(vae.score_samples, X, a.repeats)
        d = _rate(vae.decode, Z, a.repeats)
        print(f"| {nt} | {t:,.0f} | {s:,.0f} | {d:,.0f} |")


if __name__ == "__main__":
    main()
