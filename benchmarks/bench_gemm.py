"""fastvae's own GEMM against scipy's BLAS on the products of a training step.

    python benchmarks/bench_gemm.py [--repeat R] [--dtype float32|float64|both]

For each shape (the three products of a dense layer, op(A) @ op(B) with C
row-major: NN forward, TN weight gradient, NT input gradient) it prints the
GFLOP/s of fastvae's own kernels (src_c/fastvae/gemm.h) at every level this
CPU can run (AVX-512, AVX2 + FMA) and of scipy's sgemm / dgemm, single-
threaded: inside a training step each thread runs one block of a GEMM on one
core. Each rate is the best of 3 alternated rounds of the median of R calls,
timed in the calling thread's CPU time (time.thread_time: single-threaded
BLAS runs in the caller too), so that time the thread spends preempted on a
shared machine does not count; other work can still only slow a round down,
hence the best round. BLAS follows OPENBLAS_CORETYPE if it is set; the caption says
which kernels it used.
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from fastvae._core import _blas

# (name, trans_a, trans_b, m, n, k): C is m x n, the sum runs over k.
SHAPES = [
    ("784-400/20/128 forward X @ W", False, False, 128, 400, 784),
    ("decoder output", False, False, 128, 784, 400),
    ("weight grad X^T @ dA", True, False, 784, 400, 128),
    ("input grad dA @ W^T", False, True, 128, 784, 400),
    ("input grad, first layer", False, True, 128, 400, 784),
    ("latent head forward", False, False, 128, 40, 400),
    ("latent head weight grad", True, False, 400, 40, 128),
    ("latent head input grad", False, True, 128, 400, 40),
    ("decoder input forward", False, False, 128, 400, 20),
    ("decoder input weight grad", True, False, 20, 400, 128),
    ("forward, batch 16", False, False, 16, 400, 784),
    ("weight grad, batch 16", True, False, 784, 400, 16),
    ("input grad, batch 16", False, True, 16, 784, 400),
    ("784-1024-1024/64/512 forward", False, False, 512, 1024, 784),
    ("forward, 1024-wide", False, False, 512, 1024, 1024),
    ("weight grad, 1024-wide", True, False, 1024, 1024, 512),
    ("input grad, 1024-wide", False, True, 512, 1024, 1024),
    ("input grad, to the 784 inputs", False, True, 512, 784, 1024),
]


def _median_seconds(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return float(np.median(times))


def _runs_at(level):
    """Whether this CPU and build can run the own GEMM at `level`."""
    try:
        _blas.gemm_memview(
            False, False, np.ones((1, 1)), np.ones((1, 1)), np.ones((1, 1)), level=level
        )
    except ValueError:
        return False
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="calls per round")
    parser.add_argument(
        "--dtype", choices=("float32", "float64", "both"), default="both"
    )
    parser.add_argument(
        "--shapes", type=int, default=len(SHAPES), help="only the first N shapes"
    )
    args = parser.parse_args(argv)
    levels = [lv for lv in ("avx512", "avx2") if _runs_at(lv)]
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    rng = np.random.default_rng(0)
    header = (
        ["product", "m x n x k", "op", "dtype"]
        + [f"own {lv}" for lv in levels]
        + ["BLAS", "best own / BLAS"]
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    with threadpool_limits(1, user_api="blas"):
        for dtype in dtypes:
            for name, ta, tb, m, n, k in SHAPES[: args.shapes]:
                a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
                b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
                c = np.empty((m, n), dtype)
                repeat = max(3, args.repeat // 4) if m * n * k > 2e8 else args.repeat
                operands = (ta, tb, a, b, c)  # bound now: the lambdas run below
                runs = {
                    lv: (lambda lv=lv, o=operands: _blas.gemm_memview(*o, level=lv))
                    for lv in levels
                }
                runs["blas"] = lambda o=operands: _blas.gemm_memview(*o, backend="blas")
                best = {key: np.inf for key in runs}
                for _ in range(3):  # alternate the implementations
                    for key, fn in runs.items():
                        best[key] = min(best[key], _median_seconds(fn, repeat))
                flops = 2.0 * m * n * k
                rate = {key: flops / t / 1e9 for key, t in best.items()}
                op = ("A^T" if ta else "A") + " @ " + ("B^T" if tb else "B")
                own = [f"{rate[lv]:.1f}" for lv in levels]
                ratio = (
                    f"{max(rate[lv] for lv in levels) / rate['blas']:.2f}x"
                    if levels
                    else "-"
                )
                print(
                    f"| {name} | {m}x{n}x{k} | {op} | {dtype} | "
                    + " | ".join(own)
                    + (" | " if own else "")
                    + f"{rate['blas']:.1f} | {ratio} |",
                    flush=True,
                )
    cores = sorted(
        {
            i.get("architecture", "?")
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        }
    )
    print(
        "\nGFLOP/s, one thread, CPU time; best of 3 alternated rounds of the median "
        f"of {args.repeat} calls; BLAS = scipy's sgemm / dgemm, kernels: "
        f"{', '.join(cores)}."
        + ("" if levels else " This CPU or build runs no own GEMM level.")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
