"""Inference on a CSR count matrix: the first layer from the nonzeros
against densified chunks.

A count VAE (zero-inflated negative binomial with the observed library
size, one hidden layer of 128, 10 latent dimensions: scVI's defaults) is
fitted briefly on 2,000 cells, then transform (the latent means) and
score_samples (the ELBO per cell) run on a 50,000 x 5,000 CSR matrix of
counts at each density, once reading the nonzeros (the default below
fastvae.data.batches.SPARSE_INFERENCE_DENSITY) and once densifying 512-row
chunks for the dense kernels (the threshold set to 0). The two alternate
over --repeats rounds; the table gives the best seconds of each and the
ratio.

    python benchmarks/bench_csr_inference.py [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.sparse as sp

import fastvae
from fastvae.data import batches

CELLS, GENES = 50_000, 5_000


def counts(density, seed=0):
    """CSR float32 counts with about `density` stored values per cell."""
    rng = np.random.default_rng(seed)
    per_row = rng.binomial(GENES, density, CELLS)
    indptr = np.concatenate(([0], np.cumsum(per_row))).astype(np.int64)
    indices = np.concatenate(
        [np.sort(rng.choice(GENES, k, replace=False)) for k in per_row]
    ).astype(np.int32)
    data = (1 + rng.geometric(0.4, indptr[-1])).astype(np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(CELLS, GENES))


def timed(fn, X):
    t = time.perf_counter()
    out = fn(X)
    return time.perf_counter() - t, out


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--densities", default="0.05,0.083,0.15,0.3")
    parser.add_argument("--methods", default="transform,score_samples")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    threshold = batches.SPARSE_INFERENCE_DENSITY
    rows = []
    for density in (float(d) for d in args.densities.split(",")):
        X = counts(density)
        vae = fastvae.VAE(
            hidden=(128,),
            latent_dim=10,
            likelihood="zinb",
            library="observed",
            epochs=1,
            n_threads=args.threads,
            random_state=0,
        ).fit(X[:2000])
        for method in args.methods.split(","):
            fn = getattr(vae, method)
            best = {"nonzeros": np.inf, "densified": np.inf}
            for _ in range(args.repeats):
                for mode, limit in (("nonzeros", 1.0), ("densified", 0.0)):
                    batches.SPARSE_INFERENCE_DENSITY = limit
                    seconds, _ = timed(fn, X)
                    best[mode] = min(best[mode], seconds)
            batches.SPARSE_INFERENCE_DENSITY = threshold
            row = {
                "density": round(X.nnz / (CELLS * GENES), 4),
                "method": method,
                "nonzeros_s": round(best["nonzeros"], 3),
                "densified_s": round(best["densified"], 3),
                "speedup": round(best["densified"] / best["nonzeros"], 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| density | method | nonzeros (s) | densified (s) | speed-up |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['density']:.1%} | {r['method']} | {r['nonzeros_s']} | "
            f"{r['densified_s']} | {r['speedup']}x |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
