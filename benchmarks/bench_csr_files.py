"""Train on a count matrix bigger than memory: a memory-mapped CSR.

Writes an n_cells x n_genes CSR matrix at the given density as .npy files
(fastvae.data.save_csr's layout; 1,000,000 x 20,000 at 4% is 800M stored
values, 6.4 GB), then, in a fresh process, loads it with
fastvae.data.load_csr and trains one epoch of a count VAE (negative
binomial with the observed library size, one hidden layer of 128, 10 latent
dimensions, batch 128), and reports the peak RSS of that process (VmHWM),
the time and the cells per second.

    python benchmarks/bench_csr_files.py --folder /tmp/csr1m
    python benchmarks/bench_csr_files.py --folder /tmp/csr --cells 100000 --genes 2000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

TRAIN = """
import json, sys, time
import fastvae
from fastvae.bench.memory import peak_rss_mb
X = fastvae.data.load_csr(sys.argv[1])
before = peak_rss_mb()
vae = fastvae.VAE(hidden=(128,), latent_dim=10, likelihood="negbin",
                  library="observed", batch_size=128, epochs=1,
                  n_threads=int(sys.argv[2]), random_state=0)
t0 = time.perf_counter()
vae.fit(X)
print(json.dumps({"shape": list(X.shape), "nnz": int(X.nnz),
                  "fit_seconds": time.perf_counter() - t0,
                  "train_seconds": float(sum(vae.history_["seconds"])),
                  "cells_per_second": vae.history_["samples_per_second"][0],
                  "rss_before_mb": before, "peak_rss_mb": peak_rss_mb()}))
"""


def write(folder, n, d, density, seed=0) -> float:
    """The files of an n x d CSR with round(density * d) stored counts per
    row, one in each run of d / per_row columns; returns seconds taken."""
    from numpy.lib.format import open_memmap

    per_row = max(1, round(density * d))
    step = d // per_row
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    data = open_memmap(f"{folder}/data.npy", "w+", np.float32, (n * per_row,))
    indices = open_memmap(f"{folder}/indices.npy", "w+", np.int32, (n * per_row,))
    index = np.int32 if n * per_row < 2**31 else np.int64
    np.save(f"{folder}/indptr.npy", np.arange(0, n * per_row + 1, per_row, dtype=index))
    np.save(f"{folder}/shape.npy", np.array([n, d], dtype=np.int64))
    rng = np.random.default_rng(seed)
    columns = np.arange(per_row, dtype=np.int32) * step
    for a in range(0, n, 20_000):
        m = min(20_000, n - a)
        span = slice(a * per_row, (a + m) * per_row)
        indices[span] = (
            rng.integers(0, step, (m, 1), dtype=np.int32) + columns
        ).ravel()
        data[span] = 1 + rng.poisson(1.0, m * per_row).astype(np.float32)
    data.flush()
    indices.flush()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", required=True)
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--density", type=float, default=0.04)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    seconds = write(args.folder, args.cells, args.genes, args.density)
    print(f"wrote {args.folder} in {seconds:.0f} s", flush=True)
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN, args.folder, str(args.threads)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return proc.returncode
    print(json.dumps(json.loads(proc.stdout.strip().splitlines()[-1]), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
