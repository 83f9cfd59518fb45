"""fastvae's TabularVAE against SDV's TVAE on the diamonds table.

Both synthesize the 53,940-row diamonds table (../shared/data/tables/
diamonds.csv: 7 continuous, 3 categorical columns). Each run is its own
process (so its peak memory is its own), implementations alternate, and
every run reports: preprocessing seconds, training seconds and seconds per
epoch, end-to-end wall time (preprocessing + fit), peak RSS, and the
SDMetrics QualityReport (Column Shapes, Column Pair Trends, overall) of
53,940 sampled rows against the real ones, computed in this process with
sdmetrics' default settings.

    python benchmarks/bench_tabular.py               # the full comparison
    python benchmarks/bench_tabular.py --quick       # a smoke run

TVAE runs with SDV's defaults (128-128 encoder and decoder, 128 latent
dimensions, batch 500). fastvae's TabularVAE runs with its defaults
(64-64, 16 latent dimensions, batch 500) and, for a per-epoch ratio at
equal width, once with TVAE's 128-128. Needs the bench extra's sdv and
sdmetrics (pip install sdv sdmetrics "torch==2.13.0" in one command).
Writes the results as JSON (--json) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tables"
DATA = DATA.resolve() / "diamonds.csv"


def _read(path):
    import pandas as pd

    frame = pd.read_csv(path)
    first = str(frame.columns[0])
    if first.startswith("Unnamed") or first == "":
        frame = frame.iloc[:, 1:]
    return frame


def _peak_mb() -> float:
    from fastvae.bench.memory import peak_rss_mb

    return peak_rss_mb()


# -- one run, in its own process ------------------------------------------------


def _job(args) -> dict:
    import numpy as np

    if args.impl == "tvae":
        import torch

        torch.set_num_threads(args.threads)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    frame = _read(args.data)
    report = {"impl": args.impl, "epochs": args.epochs, "threads": args.threads}
    if args.impl == "fastvae":
        report["impl"] = "fastvae " + "-".join(map(str, args.hidden))
    start = time.perf_counter()
    if args.impl == "tvae":
        from ctgan import TVAE
        from ctgan.synthesizers import tvae as tvae_module

        discrete = [c for c in frame.columns if frame[c].dtype == object]
        spent = _time_methods(tvae_module.DataTransformer, ("fit", "transform"))
        model = TVAE(epochs=args.epochs, batch_size=500, cuda=False)
        t0 = time.perf_counter()
        model.fit(frame, discrete)
        fit = time.perf_counter() - t0
        report["preprocess_seconds"] = spent[0]
        report["train_seconds"] = fit - spent[0]
        report["wall_seconds"] = fit
        t0 = time.perf_counter()
        synthetic = model.sample(len(frame))
    else:
        import fastvae

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            schema = fastvae.data.tables.infer_schema(frame)
        schema.encode(frame)
        report["preprocess_seconds"] = time.perf_counter() - t0
        model = fastvae.TabularVAE(
            hidden=tuple(args.hidden),
            latent_dim=args.latent_dim,
            epochs=args.epochs,
            batch_size=500,
            n_threads=args.threads,
            random_state=args.seed,
        )
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(frame)
        fit = time.perf_counter() - t0
        report["train_seconds"] = float(np.sum(model.history_["seconds"]))
        report["wall_seconds"] = fit
        t0 = time.perf_counter()
        synthetic = model.sample(len(frame), random_state=args.seed)
    report["sample_seconds"] = time.perf_counter() - t0
    report["seconds_per_epoch"] = report["train_seconds"] / args.epochs
    report["total_seconds"] = time.perf_counter() - start
    report["peak_mb"] = _peak_mb()
    synthetic.to_csv(args.synthetic, index=False)
    return report


def _time_methods(cls, names) -> list[float]:
    """Wrap cls's methods `names` so that the seconds spent in them add up
    in the returned one-element list (TVAE.fit's preprocessing)."""
    spent = [0.0]
    for name in names:
        method = getattr(cls, name)

        def timed(self, *a, _method=method, **k):
            t0 = time.perf_counter()
            try:
                return _method(self, *a, **k)
            finally:
                spent[0] += time.perf_counter() - t0

        setattr(cls, name, timed)
    return spent


# -- the comparison ------------------------------------------------------------------


def _quality(real, synthetic) -> dict:
    from sdmetrics.reports.single_table import QualityReport

    metadata = {
        "columns": {
            c: {"sdtype": "categorical" if real[c].dtype == object else "numerical"}
            for c in real.columns
        }
    }
    synthetic = synthetic[real.columns].astype(real.dtypes.to_dict())
    qr = QualityReport()
    qr.generate(real, synthetic, metadata, verbose=False)
    props = qr.get_properties().set_index("Property")["Score"]
    return {
        "quality": float(qr.get_score()),
        "column_shapes": float(props["Column Shapes"]),
        "column_pair_trends": float(props["Column Pair Trends"]),
    }


def _run(impl, epochs, hidden, args) -> dict:
    threads, data, latent_dim, seed = (
        args.threads, args.data, args.latent_dim, args.seed
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "synthetic.csv"
        cmd = [
            sys.executable, __file__, "--job", impl, "--epochs", str(epochs),
            "--threads", str(threads), "--data", str(data), "--synthetic", str(out),
            "--latent-dim", str(latent_dim), "--seed", str(seed),
            "--hidden", *map(str, hidden),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{impl} failed:\n{proc.stderr[-3000:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        real = _read(data)
        report.update(_quality(real, _read_csv(out)))
    print(json.dumps(report), flush=True)
    return report


def _read_csv(path):
    import pandas as pd

    return pd.read_csv(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--job", choices=("tvae", "fastvae"), help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--synthetic", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        args.impl = args.job
        print(json.dumps(_job(args)))
        return 0

    runs = []
    if args.quick:
        plan = [("fastvae", 2, args.hidden), ("tvae", 1, None)]
    else:
        # equal epochs (alternated; fastvae at its defaults and at TVAE's
        # width), then each at its quality budget
        wide = [128, 128]
        plan = [
            ("tvae", 10, None), ("fastvae", 10, args.hidden), ("fastvae", 10, wide),
            ("tvae", 10, None), ("fastvae", 10, args.hidden), ("fastvae", 10, wide),
            ("fastvae", 300, args.hidden), ("tvae", 300, None),
        ]  # fmt: skip
    for impl, epochs, hidden in plan:
        runs.append(_run(impl, epochs, hidden or args.hidden, args))
    print()
    print(
        "| implementation | epochs | preprocess s | train s | s/epoch | end-to-end s "
        "| peak MB | Shapes | Pair Trends | Quality |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r['impl']} | {r['epochs']} | {r['preprocess_seconds']:.2f} | "
            f"{r['train_seconds']:.1f} | {r['seconds_per_epoch']:.3f} | "
            f"{r['wall_seconds']:.1f} | {r['peak_mb']:.0f} | "
            f"{r['column_shapes']:.3f} | {r['column_pair_trends']:.3f} | "
            f"{r['quality']:.3f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
