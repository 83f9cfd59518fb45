"""Training throughput from a memory-mapped file against the same data in memory.

python benchmarks/bench_memmap.py [--rows 100000] [--features 784] [--rounds 3]

Writes a float32 file of binary data (rows x features) into --dir, then fits
a VAE (default 784-400-20, batch 128, Adam, one epoch) in fresh processes that
take turns: "memory" reads the whole file into RAM first (np.fromfile),
"memmap" passes np.memmap(mode="r") to fit, which gathers shuffled chunks of
minibatches and releases the file's pages as it goes (fastvae.data.batches). Both
give bitwise the same parameters. Prints the median epoch samples/s (the
chunked reads happen inside the epoch), the whole fit's wall time (memmap:
plus its validation pass over the file), and each process's peak resident
memory (VmHWM). The file stays in the page cache between runs, so this
measures the cost of gathering rows, not of a disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_WORKER = r"""
import json, sys, time
import numpy as np
import fastvae

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024

mode, path, n, d, hidden, latent, batch, epochs, threads = sys.argv[1:10]
n, d, batch, epochs = int(n), int(d), int(batch), int(epochs)
if mode == "memory":
    X = np.fromfile(path, dtype=np.float32).reshape(n, d)
else:
    X = np.memmap(path, dtype=np.float32, mode="r", shape=(n, d))
vae = fastvae.VAE(hidden=tuple(int(h) for h in hidden.split(",")),
                  latent_dim=int(latent), batch_size=batch, epochs=epochs,
                  random_state=0, n_threads=int(threads) if threads != "0" else None)
before = status("VmRSS")
t0 = time.perf_counter()
vae.fit(X)
wall = time.perf_counter() - t0
print(json.dumps({"samples_per_second": vae.history_["samples_per_second"],
                  "fit_seconds": wall, "rss_before": before,
                  "peak_rss": status("VmHWM"),
                  "checksum": float(np.sum(vae.params_, dtype=np.float64))}))
"""


def _write_data(path: Path, n: int, d: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        for r0 in range(0, n, 8192):
            rows = min(8192, n - r0)
            (rng.random((rows, d), dtype=np.float32) < 0.3).astype(np.float32).tofile(f)


def _run(mode, path, a):
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _WORKER,
            mode,
            str(path),
            str(a.rows),
            str(a.features),
            a.hidden,
            str(a.latent_dim),
            str(a.batch_size),
            str(a.epochs),
            str(a.threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--features", type=int, default=784)
    p.add_argument("--hidden", default="400", help="comma-separated widths")
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="0: fastvae's default")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default=None, help="where to write the data file")
    a = p.parse_args(argv)
    import fastvae

    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        path = Path(tmp) / "data.f32"
        _write_data(path, a.rows, a.features)
        size = path.stat().st_size
        runs = {"memory": [], "memmap": []}
        for _ in range(a.rounds):
            for mode in runs:
                runs[mode].append(_run(mode, path, a))
    sums = {m: {r["checksum"] for r in rs} for m, rs in runs.items()}
    same = sums["memory"] == sums["memmap"] and len(sums["memory"]) == 1
    mb = 2**20
    rates = {
        m: statistics.median(r["samples_per_second"][-1] for r in rs)
        for m, rs in runs.items()
    }
    print(
        f"# {a.rows} x {a.features} float32 file, {size / mb:.0f} MB; VAE "
        f"{a.features}-{a.hidden.replace(',', '-')}/{a.latent_dim}/{a.batch_size}, "
        f"{a.epochs} epoch(s), threads {a.threads or fastvae.get_num_threads()}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"fastvae {fastvae.__version__}; median of {a.rounds} alternated rounds; "
        f"same parameters both ways: {same}"
    )
    print("| data | epoch samples/s | fit wall s | RSS before fit MB | peak RSS MB |")
    print("|---|---|---|---|---|")
    for mode, rs in runs.items():
        print(
            f"| {mode} | {rates[mode]:,.0f} | "
            f"{statistics.median(r['fit_seconds'] for r in rs):.2f} | "
            f"{statistics.median(r['rss_before'] for r in rs) / mb:.0f} | "
            f"{statistics.median(r['peak_rss'] for r in rs) / mb:.0f} |"
        )
    print(f"memmap / memory throughput: {rates['memmap'] / rates['memory']:.3f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
