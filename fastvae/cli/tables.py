"""Tables on the command line: ``fastvae train`` on a CSV or Parquet table
(a fastvae.TabularVAE), and ``fastvae sample`` / ``fastvae impute`` of a
table model into a CSV or Parquet file."""

from __future__ import annotations

import csv
import time
import warnings
from pathlib import Path

import numpy as np

from fastvae.cli.common import UserError, validation_rows
from fastvae.cli.controls import how_it_stopped, plural, training_controls
from fastvae.cli.resume import RUN_KIND, check_checkpoint_every, resumed_run
from fastvae.data.arrays import is_number

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
# Rows of a CSV read to decide whether it is a table of mixed types.
_SNIFF_ROWS = 200
_MISSING_TEXT = {"", "na", "nan", "null", "none", "n/a", "#n/a"}


def is_table(args) -> bool:
    """Whether ``fastvae train`` should fit a TabularVAE: --tabular, a
    Parquet file, or a CSV with a header and a column of text."""
    if getattr(args, "tabular", False):
        return True
    path = Path(args.data)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return True
    if suffix != ".csv" or not path.is_file():
        return False
    return _csv_has_text(path)


def _csv_has_text(path: Path) -> bool:
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = []
        for row in csv.reader(f):
            rows.append(row)
            if len(rows) > _SNIFF_ROWS:
                break
    if len(rows) < 2:
        return False
    header = rows[0]
    if all(is_number(cell) for cell in header if cell.strip()):
        return False  # no header: a matrix of numbers
    for row in rows[1:]:
        for cell in row:
            if cell.strip().lower() not in _MISSING_TEXT and not is_number(cell):
                return True
    return False


def read_table(path):
    """A DataFrame from a CSV or Parquet file (pandas, and pyarrow for
    Parquet, are optional: a clear error says what to install). A CSV's
    unnamed first column of row numbers is dropped, as for arrays."""
    try:
        import pandas as pd
    except ImportError:
        raise UserError("tables need pandas: pip install 'fastvae[pandas]'") from None
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except ImportError:
        raise UserError(
            f"{path}: reading Parquet needs pyarrow (pip install pyarrow)"
        ) from None
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: cannot be read as a table: {exc}") from None
    first = str(frame.columns[0]) if len(frame.columns) else ""
    if first.startswith("Unnamed: 0") or first == "":
        values = frame.iloc[:, 0]
        if values.dtype.kind in "iu" and (values.diff().dropna() == 1).all():
            frame = frame.iloc[:, 1:]
    return frame


def write_table(frame, path) -> None:
    """Write a DataFrame as CSV or Parquet (by suffix), atomically."""
    from fastvae._atomic import write_atomic

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise UserError(f"--out must end in {', '.join(TABLE_SUFFIXES)}, got {path}")
    if suffix == ".csv":
        text = frame.to_csv(index=False)
        write_atomic(path, lambda f: f.write(text.encode("utf-8")))
        return
    import io

    buffer = io.BytesIO()
    try:
        frame.to_parquet(buffer, index=False)
    except ImportError:
        raise UserError(
            f"{path}: writing Parquet needs pyarrow (pip install pyarrow)"
        ) from None
    write_atomic(path, lambda f: f.write(buffer.getvalue()))


_IMAGE_ONLY = {
    "conditional": "--conditional",
}


def train_table(args) -> int:
    """``fastvae train`` on a table: a TabularVAE into the run folder
    (model.npz, history.json, metrics.jsonl, loss_curve.png, checkpoint.npz,
    and 1,000 synthetic rows in synthetic.csv)."""
    import fastvae
    from fastvae.cli.run_lock import RunLock

    for name, flag in _IMAGE_ONLY.items():
        if getattr(args, name, None):
            raise UserError(f"{flag} is not available for tables")
    if args.model != "vae":
        raise UserError("tables train a VAE (--model vae)")
    check_checkpoint_every(args)
    frame = read_table(args.data)
    args.data = str(Path(args.data).resolve())  # --resume works from anywhere
    args.epochs = 20 if args.epochs is None else args.epochs
    try:
        model = fastvae.TabularVAE(
            hidden=tuple(args.hidden),
            latent_dim=args.latent_dim,
            activation=args.activation,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            beta=args.beta,
            kl_warmup=args.kl_warmup,
            objective=args.objective,
            n_latent_samples=args.latent_samples,
            dtype=np.float64 if args.dtype == "float64" else np.float32,
            random_state=args.seed,
            n_threads=args.threads,
            verbose=0 if args.quiet else 1,
        )
    except (ValueError, TypeError) as exc:
        raise UserError(str(exc)) from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        from fastvae.cli import run_folder

        run_folder.clear_or_refuse(out, out / "checkpoint.npz", args.overwrite)
        return _train_locked(args, frame, out, model, None)


def resume_table(args) -> int:
    """``fastvae train --resume RUN`` of a table run: the table read again
    from the recorded path, split as the run split it, and the training
    continued from the checkpoint (fastvae.resume refuses another table)."""
    with resumed_run(args) as (args, info, out):
        if not Path(args.data).is_file():
            raise UserError(
                f"{args.data}: no such file; the run in {out} trained on it, and "
                "resuming reads it again"
            )
        return _train_locked(args, read_table(args.data), out, None, info)


def _train_locked(args, frame, out: Path, model, info) -> int:
    """Train `model` (info None) or continue the run of checkpoint `info`,
    then write the run folder."""
    import fastvae
    from fastvae.cli import plotting, run_folder
    from fastvae.cli.controls import reporting_interrupts

    n_val = validation_rows(args.validation, len(frame))
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(frame))
    val = frame.iloc[order[:n_val]] if n_val else None
    train = frame.iloc[order[n_val:]]
    checkpoint = out / "checkpoint.npz"
    every = args.checkpoint_every
    settings = {k: v for k, v in vars(args).items() if k != "resume"}
    controls = training_controls(args, val is not None)
    if info is not None:
        run_folder.truncate_metrics(out / run_folder.METRICS_FILE, info["epochs_done"])
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with (
            reporting_interrupts(out, checkpoint),
            run_folder.MetricsLog(
                out / run_folder.METRICS_FILE, append=info is not None
            ) as log,
        ):
            callbacks = [log, *controls.values()]
            try:
                if info is None:
                    model.fit(
                        train,
                        validation_data=val,
                        callbacks=callbacks,
                        checkpoint=checkpoint if every else None,
                        checkpoint_every=every,
                        checkpoint_meta={"cli": settings, RUN_KIND: "table"},
                    )
                else:
                    model = fastvae.resume(
                        info["path"],
                        train,
                        validation_data=val,
                        epochs=args.epochs,
                        checkpoint_every=every,
                        n_threads=args.threads,
                        verbose=0 if args.quiet else 1,
                        callbacks=callbacks,
                    )
            except (ValueError, TypeError) as exc:
                raise UserError(f"{args.data}: {exc}") from None
    seconds = time.perf_counter() - start
    for w in caught:
        print(f"warning: {w.message}")
    model.save(out / "model.npz")
    stopped = how_it_stopped(controls, model.vae_, args, out)
    history = dict(model.history_)
    history["stopped"] = stopped
    run_folder.write_json(out / "history.json", history)
    plotting.loss_curve(model.history_, out / "loss_curve.png")
    synthetic = model.sample(1000, random_state=args.seed)
    write_table(synthetic, out / "synthetic.csv")
    _summary(model, train, val, seconds, out, stopped)
    return 0


def _summary(model, train, val, seconds, out, stopped) -> None:
    schema = model.schema_
    kinds: dict[str, list[str]] = {}
    for c in schema.columns:
        kinds.setdefault(c.kind, []).append(c.name)
    h = model.history_
    print(
        f"table: {len(train)} training rows"
        + (f", {len(val)} validation rows" if val is not None else "")
        + f"; {len(schema.columns)} columns modelled"
        + (
            f", {len(schema.dropped)} dropped ({', '.join(schema.dropped)})"
            if schema.dropped
            else ""
        )
    )
    print("columns: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in kinds.items()))
    line = (
        f"trained {plural(model.vae_.n_iter_, 'epoch')} in {seconds:.1f} s; "
        f"ELBO {h['elbo'][-1]:.3f} nats per row"
    )
    if h["val_elbo"] and h["val_elbo"][-1] is not None:
        line += f", validation ELBO {h['val_elbo'][-1]:.3f}"
    print(line)
    if stopped is not None:
        print(stopped["message"])
    print(
        f"wrote {out}/model.npz, history.json, metrics.jsonl, loss_curve.png, "
        + ("checkpoint.npz " if (out / "checkpoint.npz").is_file() else "")
        + "and synthetic.csv (1,000 sampled rows)"
    )


def sample_table(model, args) -> int:
    """``fastvae sample`` of a table model: rows into a CSV or Parquet file."""
    out = Path(args.out)
    if out.suffix.lower() not in TABLE_SUFFIXES:
        raise UserError(
            f"a table model samples rows: --out must end in .csv or .parquet, got {out}"
        )
    frame = model.sample(args.n, random_state=args.seed)
    write_table(frame, out)
    print(f"wrote {out}: {len(frame)} synthetic rows of {len(frame.columns)} columns")
    return 0


def impute_command(args) -> int:
    """``fastvae impute``: a table's missing values filled by a table model."""
    import fastvae

    model = fastvae.load(args.model)
    if not isinstance(model, fastvae.TabularVAE):
        raise UserError(
            f"{args.model} is a {type(model).__name__}; impute needs a model trained "
            "on a table"
        )
    frame = read_table(args.data)
    missing = set(model.schema_.names) - set(map(str, frame.columns))
    if missing:
        raise UserError(f"{args.data} lacks the model's columns {sorted(missing)}")
    try:
        filled = model.impute(frame, random_state=args.seed)
    except ValueError as exc:
        raise UserError(f"{args.data}: {exc}") from None
    write_table(filled, args.out)
    n_gaps = int(frame[model.schema_.names].isna().to_numpy().sum())
    print(f"wrote {args.out}: {len(filled)} rows, {n_gaps} missing values filled")
    return 0


__all__ = [
    "impute_command",
    "is_table",
    "read_table",
    "resume_table",
    "sample_table",
    "train_table",
    "write_table",
]
