"""fastvae's own GEMM against scipy's BLAS on the products of a training step.

    python benchmarks/bench_gemm.py [--repeat R]

For each shape (the three products of a dense layer, op(A) @ op(B) with C
row-major: NN forward, TN weight gradient, NT input gradient) it prints the
median GFLOP/s of fastvae's own kernels (src_c/fastvae/gemm.h) and of
scipy's sgemm, alternated call by call, single-threaded: inside a training
step each OpenMP thread runs one block of a GEMM on one core. BLAS follows
OPENBLAS_CORETYPE if it is set; the caption says which kernels it used.
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from fastvae import _blas

# (name, trans_a, trans_b, m, n, k): C is m x n, the sum runs over k.
SHAPES = [
    ("forward X @ W, 784-400/20/128", False, False, 128, 400, 784),
    ("forward, decoder output", False, False, 128, 784, 400),
    ("weight grad X^T @ dA", True, False, 784, 400, 128),
    ("input grad dA @ W^T", False, True, 128, 400, 784),
    ("forward, batch 16", False, False, 16, 400, 784),
    ("weight grad, batch 16", True, False, 784, 400, 16),
    ("input grad, batch 16", False, True, 16, 400, 784),
    ("forward, 784-1024-1024/64/512", False, False, 512, 1024, 1024),
    ("weight grad, 1024-wide", True, False, 1024, 1024, 512),
    ("input grad, 1024-wide", False, True, 512, 1024, 1024),
    ("square 2048", False, False, 2048, 2048, 2048),
]


def _median_seconds(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="calls per shape and backend")
    args = parser.parse_args(argv)
    if not _blas.own_gemm_available():
        print("fastvae's own GEMM needs AVX-512 (x86-64-v4); nothing to compare")
        return 0
    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(1, user_api="blas"):
        for name, ta, tb, m, n, k in SHAPES:
            a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
            b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
            c = np.empty((m, n), np.float32)
            repeat = max(3, args.repeat // 10) if m * n * k > 1e9 else args.repeat
            own, blas = [], []
            for _ in range(3):  # alternate the backends
                own.append(_median_seconds(
                    lambda: _blas.gemm_memview(ta, tb, a, b, c, backend="own"), repeat))
                blas.append(_median_seconds(
                    lambda: _blas.gemm_memview(ta, tb, a, b, c, backend="blas"), repeat))
            flops = 2.0 * m * n * k
            op = ("A^T" if ta else "A") + " @ " + ("B^T" if tb else "B")
            rows.append((name, f"{m}x{n}x{k}", op, flops / np.median(own) / 1e9,
                         flops / np.median(blas) / 1e9))
    print("| product | m x n x k | op | fastvae GFLOP/s | scipy sgemm GFLOP/s | ratio |")
    print("|---|---|---|---|---|---|")
    for name, shape, op, own, blas in rows:
        print(f"| {name} | {shape} | {op} | {own:.0f} | {blas:.0f} | {own / blas:.2f}x |")
    cores = sorted({i.get("architecture", "?") for i in threadpool_info()
                    if i.get("user_api") == "blas"})
    print(f"\nOne thread, float32, median of {args.repeat} calls x 3 alternated rounds; "
          f"BLAS kernels: {', '.join(cores)}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
