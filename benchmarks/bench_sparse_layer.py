"""The sparse first layer against the dense one, by density and width.

One training step of a count VAE (negative binomial with the observed
library size, one hidden layer of 128, 10 latent dimensions, batch 128) on
random count matrices of 2,000 rows at 2%, 5%, 10%, 20%, 30% and 40%
stored values, with 2,000 and 20,000 features: Network.train_step on the
dense matrix (the minibatch's first layer is a GEMM) against
Network.train_step_csr on the same matrix as CSR (the first layer reads
the nonzeros). The two
alternate in rounds of 10 steps; the table gives the median milliseconds
per step and the ratio. fastvae.data.batches.SPARSE_LAYER_DENSITY is set
from the break-even.

    python benchmarks/bench_sparse_layer.py [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import scipy.sparse as sp

import fastvae
from fastvae.models.base import BaseAutoencoder

ROWS, BATCH, ROUNDS, STEPS = 2000, 128, 4, 10


def _network(n_features, threads):
    vae = fastvae.VAE(
        hidden=(128,),
        latent_dim=10,
        likelihood="negbin",
        library="observed",
        batch_size=BATCH,
        n_threads=threads,
    )
    s = vae._settings()
    columns = (("negbin", 1),) * n_features
    layout = BaseAutoencoder._layout(vae, s, n_features, 0, columns)
    net = vae._network(s, layout, BATCH, 0, training=True, columns=columns)
    net.set_optimizer("adam", 1e-3)
    params = vae._init_params(s, layout)
    return net, layout, params


def _measure(n_features, density, threads, seed=0):
    rng = np.random.default_rng(seed)
    A = sp.random(
        ROWS,
        n_features,
        density=density,
        format="csr",
        dtype=np.float32,
        rng=rng,
        data_rvs=lambda k: rng.integers(1, 6, k),
    )
    dense = A.toarray()
    arrays = (A.data, A.indices.astype(np.int32), A.indptr.astype(np.int64))
    net, layout, p = _network(n_features, threads)
    state = [layout.zeros(np.float32) for _ in range(3)]
    times = {"dense": [], "csr": []}
    t = 0
    for _ in range(ROUNDS):
        for mode in ("dense", "csr"):
            for _ in range(STEPS):
                rows = np.sort(rng.choice(ROWS, BATCH, replace=False)).astype(np.int64)
                t0 = time.perf_counter()
                if mode == "dense":
                    net.train_step(p, *state, dense, rows, BATCH, 0, t, 1.0, threads)
                else:
                    net.train_step_csr(
                        p, *state, *arrays, rows, BATCH, 0, t, 1.0, threads
                    )
                times[mode].append(time.perf_counter() - t0)
                t += 1
    # the first round warms caches and the pool
    dense_ms = 1e3 * float(np.median(times["dense"][STEPS:]))
    csr_ms = 1e3 * float(np.median(times["csr"][STEPS:]))
    return {
        "features": n_features,
        "density": density,
        "threads": threads,
        "dense_ms": dense_ms,
        "csr_ms": csr_ms,
        "speedup": dense_ms / csr_ms,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = []
    for n_features in (2000, 20000):
        for density in (0.02, 0.05, 0.10, 0.20, 0.30, 0.40):
            r = _measure(n_features, density, args.threads)
            print(json.dumps(r), flush=True)
            results.append(r)
    print()
    print("| features | density | dense ms/step | sparse ms/step | sparse speed-up |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['features']:,} | {r['density']:.0%} | {r['dense_ms']:.2f} | "
            f"{r['csr_ms']:.2f} | {r['speedup']:.2f}x |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
