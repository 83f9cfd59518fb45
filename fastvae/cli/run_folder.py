"""The run folder `fastvae train` writes, and reading it back.

Layout (file names are the constants below)::

    run.json         what was trained on what: written before the first step
    metrics.jsonl    one JSON object per epoch, appended and flushed as
                     training goes (``tail -f`` it)
    history.json     settings, data summary, time and the full history_
                     (with the per-step losses), written at the end
    model.npz        the trained model
    *.png            pictures

`fastvae plot` reads run.json (to reload the data for the latent scatter),
history.json when training has finished, else metrics.jsonl.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from fastvae._atomic import write_atomic
from fastvae.callbacks import Callback
from fastvae.cli.common import UserError
from fastvae.models.history import EPOCH_FIELDS

__all__ = [
    "RUN_FILE",
    "METRICS_FILE",
    "HISTORY_FILE",
    "MODEL_FILE",
    "METRIC_FIELDS",
    "write_json",
    "MetricsLog",
    "epoch_record",
    "truncate_metrics",
    "read_run",
    "read_history",
    "RUN_FILES",
    "data_source",
    "write_run_spec",
    "clear_or_refuse",
]

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
HISTORY_FILE = "history.json"
MODEL_FILE = "model.npz"

# The fields of every metrics.jsonl line: the last entry of each per-epoch
# list of history_, the optimizer step count, and seconds since fit began.
METRIC_FIELDS = (
    "epoch",
    "step",
    "loss",
    "reconstruction",
    "kl",
    "elbo",
    "val_elbo",
    "active_units",
    "lr",
    "seconds",
    "samples_per_second",
    "elapsed",
)


def _plain(value):
    """A JSON-ready copy: NumPy scalars become Python numbers, NaN/inf None
    (JSON has no such numbers, and other readers choke on Python's NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path, record: dict) -> None:
    """Write `record` as indented JSON to `path`, atomically."""
    text = json.dumps(_plain(record), indent=1)
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def epoch_record(model, elapsed: float) -> dict:
    """The metrics.jsonl line for the epoch `model` has just finished.

    Parameters
    ----------
    model : fitted VAE or autoencoder (during or after fit)
    elapsed : float
        Seconds since training began.

    Returns
    -------
    dict with the keys METRIC_FIELDS
    """
    h = model.history_
    record = {key: h[key][-1] for key in EPOCH_FIELDS}
    record["step"] = int(model.t_)
    record["elapsed"] = float(elapsed)
    return {key: _plain(record[key]) for key in METRIC_FIELDS}


class MetricsLog(Callback):
    """metrics.jsonl of a run: one JSON line per epoch, flushed at once.

    A fit callback: as one, it writes `epoch_record` after every epoch, with
    the seconds since the log was opened.

    Parameters
    ----------
    path : str or os.PathLike
    append : bool, default=False
        Keep the lines already there (a resumed run) instead of starting an
        empty file.

    Examples
    --------
    >>> with MetricsLog(folder / METRICS_FILE) as log:   # doctest: +SKIP
    ...     model.fit(X, callbacks=[log])
    """

    def __init__(self, path, *, append: bool = False):
        self.path = Path(path)
        self._file = open(self.path, "a" if append else "w", encoding="utf-8")
        self._start = time.perf_counter()

    def on_epoch_end(self, model, logs) -> None:
        self.write(epoch_record(model, time.perf_counter() - self._start))

    def write(self, record: dict) -> None:
        """Append one line and flush it (and fsync) so readers see whole lines."""
        self._file.write(json.dumps(_plain(record)) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def truncate_metrics(path, epochs: int) -> None:
    """Keep the metrics.jsonl lines of the first `epochs` epochs only.

    A run killed after its last checkpoint may have logged epochs that the
    resumed run trains again; a line cut short by the kill is dropped too.
    """
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (
            isinstance(record, dict)
            and isinstance(record.get("epoch"), int)
            and record["epoch"] <= epochs
        ):
            kept.append(line + "\n")
    text = "".join(kept)
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return value


def read_run(folder) -> dict | None:
    """run.json of a run folder, or None when the run predates it."""
    path = Path(folder) / RUN_FILE
    return _read_json(path) if path.is_file() else None


def read_history(folder) -> tuple[dict, str]:
    """The training history of a run folder, as lists per key like history_.

    history.json when it exists (a finished run: it also holds the per-step
    losses), else the lines of metrics.jsonl so far (a run in progress; a
    last line still being written is skipped).

    Returns
    -------
    history : dict of lists
    source : str
        The file name read.

    Raises
    ------
    FileNotFoundError
        If `folder` is missing or holds neither file.
    ValueError
        If the file is not valid.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder {folder} does not exist")
    path = folder / HISTORY_FILE
    if path.is_file():
        record = _read_json(path)
        history = record.get("history")
        if not isinstance(history, dict) or not history.get("epoch"):
            raise ValueError(f"{path} holds no per-epoch history")
        return {k: list(v) for k, v in history.items()}, HISTORY_FILE
    path = folder / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} holds no {HISTORY_FILE} or {METRICS_FILE}; is it a folder "
            "written by fastvae train?"
        )
    history = {key: [] for key in METRIC_FIELDS}
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not line.endswith("\n"):
                break  # being written right now
            raise ValueError(f"{path}, line {number}: not a JSON object") from None
        for key in METRIC_FIELDS:
            history[key].append(record.get(key))
    if not history["epoch"]:
        raise ValueError(f"{path} has no finished epoch yet")
    return history, METRICS_FILE


# Everything fastvae train writes into its folder: what --overwrite removes.
RUN_FILES = (
    "run.json",
    "metrics.jsonl",
    "history.json",
    "model.npz",
    "checkpoint.npz",
    "loss_curve.png",
    "samples.png",
    "reconstructions.png",
    "latent.png",
    "latent.npy",
)


def data_source(args, dataset) -> dict:
    """Where the training data came from, as the loaders take it."""
    from fastvae import data

    source = args.data
    if source not in data.DATASET_NAMES:
        source = str(Path(source).expanduser().resolve())
    data_dir = args.data_dir or os.environ.get("FASTVAE_DATA_DIR") or None
    return {
        "data": source,
        "data_dir": None
        if data_dir is None
        else str(Path(data_dir).expanduser().resolve()),
        "name": dataset.name,
        "image_shape": None
        if dataset.image_shape is None
        else list(dataset.image_shape),
        "binarize": args.binarize,
        "scale": args.scale,
    }


def write_run_spec(out: Path, args, dataset, train_set, val_set) -> None:
    """run.json: enough to reload the training and validation rows later
    (fastvae plot), written before training so it exists while it runs."""
    from datetime import datetime, timezone

    from fastvae._version import __version__

    where = data_source(args, dataset)
    write_json(
        out / RUN_FILE,
        {
            "fastvae_version": __version__,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": args.model,
            "conditional": bool(args.conditional),
            "data": {
                "source": where["data"],
                "data_dir": where["data_dir"],
                "split": "train",
                "n_samples": args.n_samples,
                "validation": args.validation,
                "split_seed": args.seed,
                "name": dataset.name,
                "n_train": len(train_set),
                "n_validation": 0 if val_set is None else len(val_set),
                "n_features": int(dataset.X.shape[1]),
                "image_shape": dataset.image_shape,
                "n_classes": None if dataset.y is None else int(dataset.y.max()) + 1,
            },
            "settings": dict(vars(args)),
        },
    )


def clear_or_refuse(out: Path, checkpoint: Path, overwrite: bool) -> None:
    """A new run into `out`: refuse when a run is already there (one that can
    go on is named as such), or with --overwrite remove its files first, so
    that nothing of it mixes with the new one."""
    import fastvae
    from fastvae.exceptions import ModelFileError

    present = [name for name in RUN_FILES if (out / name).is_file()]
    if not present:
        return
    if overwrite:
        for name in present:
            (out / name).unlink(missing_ok=True)
        return
    unfinished = None
    if checkpoint.is_file():
        try:
            unfinished = fastvae.checkpoint_info(checkpoint)
        except ModelFileError:
            pass  # unreadable: nothing left to continue
        if unfinished is not None and unfinished["finished"]:
            unfinished = None
    if unfinished is not None:
        raise UserError(
            f"{out} holds an unfinished run ({unfinished['epochs_done']} of "
            f"{unfinished['epochs']} epochs): continue it with --resume {out}, or "
            "pass --overwrite to start over"
        )
    raise UserError(
        f"{out} already holds a run ({', '.join(present[:3])}"
        + (", ..." if len(present) > 3 else "")
        + "): pass --overwrite to replace it, or choose another --out folder"
    )
