"""Count data on the command line: ``fastvae train`` on a cells x genes
count matrix (single-cell data) with scVI's model, fastvae.VAE with a count
likelihood and the observed library size.

Count data are an .h5ad file (AnnData, the anndata extra), a CSR folder
written by fastvae.data.save_csr (memory-mapped), a scipy.sparse .npz
written by scipy.sparse.save_npz, or with --counts a dense .npy or .csv.
The defaults are scVI's (128 hidden, 10 latent, batch 128, Adam with lr
1e-3 and eps 0.01, KL warm-up over 400 epochs, ZINB with the observed
library). The run folder holds model.npz, checkpoint.npz, history.json,
metrics.jsonl, loss_curve.png and latent.npy (the posterior means of all
cells).

``fastvae train --resume RUN`` continues a count run from its checkpoint:
it reads the data again from the absolute path the run recorded, with the
run's options (--layer, --condition-key, --backed, --counts, --n-samples,
--validation, --seed), so the training and validation rows are the same,
and the checkpoint's SHA-256 of the training data refuses a file that
changed in between.

Validation rows of an in-memory matrix are drawn at random by --seed; from
a memory-mapped one (a CSR folder, or an .h5ad read with --backed) they are
the last rows, a slice of the files that nothing loads whole.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastvae.cli.common import UserError, as_flags, validation_rows
from fastvae.cli.controls import plural, training_controls
from fastvae.cli.resume import RUN_KIND, check_checkpoint_every, resumed_run
from fastvae.models.columns import COUNT_KINDS

__all__ = [
    "refuse_count_run_without_checkpoint",
    "is_counts",
    "refuse_count_options",
    "resume_counts",
    "train_counts",
]

_CSR_FILES = ("data.npy", "indices.npy", "indptr.npy", "shape.npy")
_SPARSE_NPZ_KEYS = {"format", "shape", "data", "indices", "indptr"}
# scVI's defaults (scvi.model.SCVI and its training plan).
_DEFAULTS = {"hidden": [128], "latent_dim": 10, "likelihood": "zinb"}
_ADAM_EPS = 0.01
_WARMUP_EPOCHS = 400
_DEFAULT_EPOCHS = 20
# Stored values checked for whole numbers: a prefix of the matrix, so a
# memory-mapped one is read no further than its first few megabytes.
_INTEGER_CHECK_VALUES = 2**20

# The checkpoint_meta key that marks a count run's checkpoint (beside
# "cli", the options): --resume then takes the count path.

# Options of the count path only, by attribute (refused elsewhere).
_COUNT_ONLY = {
    "counts": "--counts",
    "library": "--library",
    "dispersion": "--dispersion",
    "layer": "--layer",
    "condition_key": "--condition-key",
    "backed": "--backed",
}
# Options of images and arrays that count data do not take, with why.
_NOT_FOR_COUNTS = {
    "conditional": ("--conditional", "use --condition-key with an .h5ad file"),
    "binarize": ("--binarize", "counts are not binarized"),
    "corruption": ("--corruption", "count models are not denoising"),
    "scale": ("--scale", "counts are modelled as they are"),
    "download": ("--download", "it fetches the MNIST family"),
    "data_dir": ("--data-dir", "it is the MNIST family's folder"),
}


def _is_csr_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in _CSR_FILES)


def _is_sparse_npz(path: Path) -> bool:
    """A scipy.sparse.save_npz file, by its keys (nothing is unpickled)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return _SPARSE_NPZ_KEYS <= set(npz.files)
    except (OSError, ValueError):
        return False  # not an .npz: the array path says why


def is_counts(args) -> bool:
    """Whether ``fastvae train`` should fit a count model: --counts, an .h5ad
    file, a CSR folder (a directory with data.npy, indices.npy, indptr.npy,
    shape.npy) or a scipy.sparse .npz."""
    if getattr(args, "counts", False):
        return True
    path = Path(args.data)
    suffix = path.suffix.lower()
    if suffix == ".h5ad":
        return True
    if _is_csr_folder(path):
        return True
    return suffix == ".npz" and path.is_file() and _is_sparse_npz(path)


def refuse_count_options(args) -> None:
    """On the image, array and table paths: a count likelihood or an option
    of count data is an error naming what would make it count data."""
    for name, flag in _COUNT_ONLY.items():
        if getattr(args, name, None):
            raise UserError(
                f"{flag} is for count data (an .h5ad file, a CSR folder, a sparse "
                f".npz, or --counts), and --data {args.data} is not"
            )
    if getattr(args, "likelihood", None) in COUNT_KINDS:
        raise UserError(
            f"--likelihood {args.likelihood} needs count data: an .h5ad file, a "
            "CSR folder written by fastvae.data.save_csr, a sparse .npz written "
            "by scipy.sparse.save_npz, or --counts for a .npy/.csv of counts; "
            f"--data {args.data} is not (for it: --likelihood bernoulli or "
            "gaussian)"
        )


def refuse_count_run_without_checkpoint(resume) -> None:
    """UserError for --resume of a count run folder that holds no checkpoint
    (--checkpoint-every 0, or a fastvae that kept none for count data)."""
    folder = Path(resume)
    if (
        folder.is_dir()
        and (folder / "latent.npy").is_file()
        and not (folder / "checkpoint.npz").is_file()
    ):
        raise UserError(
            f"{folder} is a run on count data that kept no checkpoint "
            "(--checkpoint-every 0, or trained by a fastvae that kept none for "
            "count data), so it cannot be resumed: train it again (--overwrite)"
        )


@dataclass
class _Counts:
    """A count matrix as the model reads it."""

    X: Any  # scipy CSR (maybe over memory maps) or a dense ndarray
    condition: np.ndarray | None
    levels: list | None
    kind: str  # "h5ad", "backed h5ad", "CSR folder", "sparse .npz", "array"
    mapped: bool  # rows live in files: contiguous slices only
    layers: tuple[str, ...] = ()  # an AnnData's layers, for hints

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


def _read_h5ad(path: Path, backed: bool):
    try:
        import anndata
    except ImportError:
        raise UserError(
            f"{path}: reading .h5ad files needs anndata: pip install 'fastvae[anndata]'"
        ) from None
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return anndata.read_h5ad(path, backed="r" if backed else None)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: cannot be read as an .h5ad file: {exc}") from None


@contextmanager
def _open_counts(args, dtype, levels=None) -> Iterator[_Counts]:
    """The count matrix --data names, for a ``with`` block (a backed
    AnnData's temporary copy lives as long as it). `levels`: those of
    --condition-key a resumed run recorded, so its columns keep their
    meaning."""
    import scipy.sparse as sp

    from fastvae.data.annotated import anndata_input
    from fastvae.data.sparse_files import load_csr

    path = Path(args.data)
    suffix = path.suffix.lower()
    if suffix == ".h5ad":
        adata = _read_h5ad(path, args.backed)
        with ExitStack() as stack:
            if args.backed:
                stack.callback(_close_backed, adata)
            try:
                X, condition, levels = stack.enter_context(
                    anndata_input(
                        adata,
                        layer=args.layer,
                        condition_key=args.condition_key,
                        levels=levels,
                        dtype=dtype,
                    )
                )
            except (ValueError, TypeError) as exc:
                raise UserError(f"{path}: {exc}") from None
            if sp.issparse(X):
                X = X.tocsr()
            elif isinstance(X, np.ndarray):
                pass
            elif args.backed:
                raise UserError(
                    f"--backed reads a sparse CSR matrix from the file, and "
                    f"{path}'s matrix is dense: drop --backed to read it into memory"
                )
            else:
                X = np.asarray(X)
            mapped = args.backed and args.layer is None
            kind = "backed .h5ad" if args.backed else ".h5ad"
            layers = tuple(str(k) for k in adata.layers.keys())
            yield _Counts(X, condition, levels, kind, mapped, layers)
        return
    if _is_csr_folder(path):
        try:
            X = load_csr(path)
        except (FileNotFoundError, ValueError) as exc:
            raise UserError(str(exc)) from None
        yield _Counts(X, None, None, "CSR folder", True)
        return
    if suffix == ".npz" and path.is_file() and _is_sparse_npz(path):
        try:
            X = sp.load_npz(path).tocsr()
        except (OSError, ValueError) as exc:
            raise UserError(
                f"{path}: cannot be read as a sparse matrix: {exc}"
            ) from None
        yield _Counts(X, None, None, "sparse .npz", False)
        return
    from fastvae.cli.common import load_data

    saved = args.n_samples
    args.n_samples = None  # applied below, alike for every kind
    try:
        dataset = load_data(args)
    finally:
        args.n_samples = saved
    yield _Counts(np.asarray(dataset.X), None, None, "array", False)


def _close_backed(adata) -> None:
    try:
        adata.file.close()
    except Exception:  # noqa: BLE001 - closing is best effort
        pass


def _rows(X, start: int, stop: int):
    """Rows start:stop of X. A CSR matrix's are made from slices of its
    arrays, never copying the stored values (memory maps stay maps)."""
    import scipy.sparse as sp

    if not sp.issparse(X):
        return X[start:stop]
    indptr = X.indptr[start : stop + 1]
    first, last = int(indptr[0]), int(indptr[-1])
    if first:
        indptr = np.subtract(indptr, indptr.dtype.type(first))
    # Set on an empty matrix: scipy's constructor copies a slice much
    # smaller than the array it views (scipy._lib._util._prune_array).
    part = sp.csr_matrix((stop - start, X.shape[1]), dtype=X.dtype)
    part.data = X.data[first:last]
    part.indices = X.indices[first:last]
    part.indptr = indptr
    return part


def _warn_unless_whole_numbers(args, counts: _Counts) -> None:
    """Counts are whole numbers: a matrix of other values is most often
    normalised data given instead of the raw counts (an AnnData's X beside
    a layer of counts), which trains but models the wrong thing."""
    import scipy.sparse as sp

    X = counts.X
    if sp.issparse(X):
        values = np.asarray(X.data[:_INTEGER_CHECK_VALUES])
    else:
        values = np.asarray(X[: max(1, _INTEGER_CHECK_VALUES // X.shape[1])])
    if values.dtype.kind in "iub" or np.array_equal(values, np.round(values)):
        return
    where = "adata.X" if counts.kind.endswith(".h5ad") else args.data
    if args.layer is not None:
        where = f"adata.layers[{args.layer!r}]"
    hint = ""
    if counts.layers and args.layer is None:
        hint = f"; the file's layers are {list(counts.layers)} (--layer NAME)"
    print(
        f"fastvae: warning: {where} holds values that are not whole numbers; "
        f"--likelihood {args.likelihood} models raw counts{hint}",
        file=sys.stderr,
    )


def _fill_defaults(args) -> None:
    """scVI's defaults for the options left unset."""
    for name, default in _DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.library is None:
        args.library = "observed"
    if args.dispersion is None:
        args.dispersion = "gene"
    if args.epochs is None:
        args.epochs = _DEFAULT_EPOCHS


def _make_model(args, kl_warmup: int):
    import fastvae
    from fastvae.optim import Adam

    optimizer: Any = args.optimizer
    if optimizer == "adam":
        optimizer = Adam(eps=_ADAM_EPS)
    return fastvae.VAE(
        hidden=tuple(args.hidden),
        latent_dim=args.latent_dim,
        likelihood=args.likelihood,
        library=None if args.library == "none" else args.library,
        dispersion=args.dispersion,
        activation=args.activation,
        beta=args.beta,
        kl_warmup=kl_warmup,
        objective=args.objective,
        n_latent_samples=args.latent_samples,
        optimizer=optimizer,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        dtype=np.float64 if args.dtype == "float64" else np.float32,
        random_state=args.seed,
        n_threads=args.threads,
        verbose=0 if args.quiet else 1,
    )


def _check_options(args) -> None:
    for name, (flag, why) in _NOT_FOR_COUNTS.items():
        value = getattr(args, name, None)
        if value and value != "none":
            raise UserError(f"{flag} is not available for count data ({why})")
    if args.model != "vae":
        raise UserError("count data train a VAE (--model vae)")
    if args.likelihood not in COUNT_KINDS:
        raise UserError(
            "count data need a count likelihood: --likelihood poisson, negbin "
            f"or zinb (default: zinb), got {args.likelihood}"
        )
    if args.sigma != 1.0:
        raise UserError("--sigma is for the Gaussian likelihood, not count data")
    if args.mpi == "on" or (args.mpi == "auto" and _launched_by_mpi()):
        raise UserError(
            "count data train on one process, not over MPI ranks: run it "
            "without mpiexec (one rank of a launcher: --mpi off)"
        )
    if Path(args.data).suffix.lower() != ".h5ad":
        for name, flag in (
            ("layer", "--layer"),
            ("condition_key", "--condition-key"),
            ("backed", "--backed"),
        ):
            if getattr(args, name):
                raise UserError(
                    f"{flag} reads an .h5ad file (AnnData); --data {args.data} is not "
                    "one"
                )
    if args.dispersion == "gene-batch" and args.condition_key is None:
        raise UserError(
            "--dispersion gene-batch needs batches: --condition-key KEY of an "
            ".h5ad file"
        )


def _launched_by_mpi() -> bool:
    from fastvae.models import distributed

    return distributed.launched_by_mpi()


def train_counts(args) -> int:
    """``fastvae train`` on count data: scVI's model into the run folder
    (model.npz, checkpoint.npz, history.json, metrics.jsonl, loss_curve.png,
    latent.npy)."""
    from fastvae.cli import run_folder
    from fastvae.cli.run_lock import RunLock

    _fill_defaults(args)
    _check_options(args)
    try:  # bad settings first: no folder made, no data read for nothing
        _make_model(args, args.kl_warmup or 0)._settings()
    except (ValueError, TypeError) as exc:
        raise UserError(as_flags(str(exc))) from None
    check_checkpoint_every(args)
    # Absolute, so that --resume finds the data from any folder.
    if Path(args.data).exists():
        args.data = str(Path(args.data).resolve())
    dtype = np.float64 if args.dtype == "float64" else np.float32
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        run_folder.clear_or_refuse(out, out / "checkpoint.npz", args.overwrite)
        with _open_counts(args, dtype) as counts:
            return _train_locked(args, counts, out, None)


def resume_counts(args) -> int:
    """``fastvae train --resume RUN`` of a count run: its data read again as
    the run read them, training continued from its checkpoint, and the run
    folder written as a new run's is."""
    import fastvae

    with resumed_run(args) as (args, info, out):
        _fill_defaults(args)
        _check_options(args)
        if not Path(args.data).exists():
            raise UserError(
                f"{args.data}: no such file or folder; the run in {out} trained "
                "on it, and resuming reads it again"
            )
        levels = fastvae.load(info["path"]).condition_levels_
        dtype = np.float64 if args.dtype == "float64" else np.float32
        with _open_counts(args, dtype, levels) as counts:
            return _train_locked(args, counts, out, info)


def _split(args, counts: _Counts):
    """(train_X, train_c, val_X, val_c), alike on every run of the same
    options: a resumed run trains on the rows the run began with."""
    if args.n_samples is not None and args.n_samples < counts.n:
        counts.X = _rows(counts.X, 0, args.n_samples)
        if counts.condition is not None:
            counts.condition = counts.condition[: args.n_samples]
    n = counts.n
    n_val = validation_rows(args.validation, n) if args.validation else 0
    cond = counts.condition
    if n_val == 0:
        return counts.X, cond, None, None
    if counts.mapped:  # the last rows: slices of the files
        train_c = None if cond is None else cond[: n - n_val]
        val_c = None if cond is None else cond[n - n_val :]
        return (
            _rows(counts.X, 0, n - n_val),
            train_c,
            _rows(counts.X, n - n_val, n),
            val_c,
        )
    order = np.random.default_rng(args.seed).permutation(n)
    val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
    train_c = None if cond is None else cond[train_rows]
    val_c = None if cond is None else cond[val_rows]
    return counts.X[train_rows], train_c, counts.X[val_rows], val_c


def _recorder(args, counts: _Counts):
    """A callback recording at train begin how the run read an AnnData, as
    fit(adata, layer=..., condition_key=...) does: the checkpoints and the
    model file then read an AnnData as this run did (transform(adata))."""
    from fastvae.callbacks import LambdaCallback

    def record(model, info):
        if args.condition_key is not None or args.layer is not None:
            model.anndata_layer_ = args.layer
            model.condition_key_ = args.condition_key
            model.condition_levels_ = counts.levels

    return LambdaCallback(on_train_begin=record)


def _train_locked(args, counts: _Counts, out: Path, info) -> int:
    """Train (or with `info`, a checkpoint_info, resume) into `out`."""
    import fastvae
    from fastvae._atomic import write_atomic
    from fastvae.cli import plotting, run_folder
    from fastvae.cli.controls import reporting_interrupts
    from fastvae.models.checkpoint import DataMismatchError

    train_X, train_c, val_X, val_c = _split(args, counts)
    _warn_unless_whole_numbers(args, counts)
    n, n_train = counts.n, int(train_X.shape[0])
    n_val = n - n_train
    if args.kl_warmup is None:  # scVI's: linear over 400 epochs
        steps = math.ceil(n_train / min(args.batch_size, n_train))
        args.kl_warmup = _WARMUP_EPOCHS * steps
    validation = None
    if val_X is not None:
        validation = val_X if val_c is None else (val_X, val_c)
    name = Path(args.data).name
    X, cond = counts.X, counts.condition
    stored = X.nnz if hasattr(X, "nnz") else int(np.count_nonzero(X))
    density = stored / max(1, X.shape[0] * X.shape[1])
    print(
        f"fastvae: training a count VAE ({args.likelihood}, library "
        f"{args.library}) on {name} ({counts.kind}): {plural(n_train, 'cell')} x "
        f"{plural(X.shape[1], 'gene')}"
        + (f", {n_val} held out" if n_val else "")
        + (
            f"; condition {args.condition_key} ({len(counts.levels or [])} levels)"
            if args.condition_key
            else ""
        ),
        flush=True,
    )
    settings = {k: v for k, v in vars(args).items() if k != "resume"}
    checkpoint = out / "checkpoint.npz"
    every = args.checkpoint_every
    controls = training_controls(args, validation is not None)
    metrics = out / run_folder.METRICS_FILE
    if info is not None:
        # epochs logged after the checkpoint by the run that stopped
        run_folder.truncate_metrics(metrics, info["epochs_done"])
        print(
            f"fastvae: resuming {info['path']} after "
            f"{plural(info['epochs_done'], 'epoch')}"
            + (
                f" and {plural(info['epoch_step'], 'step')}"
                if info["epoch_step"]
                else ""
            )
            + f", to {plural(args.epochs, 'epoch')}",
            flush=True,
        )
    start = time.perf_counter()
    with (
        reporting_interrupts(out, checkpoint),
        run_folder.MetricsLog(metrics, append=info is not None) as log,
    ):
        callbacks = [_recorder(args, counts), log, *controls.values()]
        try:
            if info is None:
                model = _make_model(args, args.kl_warmup).fit(
                    train_X,
                    condition=train_c,
                    validation_data=validation,
                    checkpoint=checkpoint if every else None,
                    checkpoint_every=every,
                    checkpoint_meta={"cli": settings, RUN_KIND: "counts"},
                    callbacks=callbacks,
                )
            else:
                model = fastvae.resume(
                    info["path"],
                    train_X,
                    condition=train_c,
                    validation_data=validation,
                    epochs=args.epochs,
                    checkpoint_every=every,
                    n_threads=args.threads,
                    verbose=0 if args.quiet else 1,
                    callbacks=callbacks,
                )
        except DataMismatchError as exc:
            raise UserError(
                f"{args.data} is not the data the run in {out} trained on: it has "
                f"changed since ({as_flags(str(exc))})"
            ) from None
        except (ValueError, TypeError) as exc:
            raise UserError(f"{args.data}: {as_flags(str(exc))}") from None
    seconds = time.perf_counter() - start
    paths = {
        "model": out / "model.npz",
        "history": out / "history.json",
        "metrics": metrics,
        "loss_curve": out / "loss_curve.png",
        "latent": out / "latent.npy",
    }
    if checkpoint.is_file():
        paths["checkpoint"] = checkpoint
    model.save(paths["model"])
    latent = np.asarray(model.transform(X, cond), dtype=np.float32)
    write_atomic(paths["latent"], lambda f: np.save(f, latent))
    held_out = None
    if val_X is not None:
        held_out = float(np.mean(model.score_samples(val_X, val_c)))
    stopped = _how_it_stopped(controls, model, args, out, checkpoint)
    record = {
        "settings": settings,
        "stopped": stopped,
        "resumed_after_epochs": None if info is None else info["epochs_done"],
        "data": {
            "name": name,
            "kind": counts.kind,
            "n_train": n_train,
            "n_validation": n_val,
            "validation_rows": "last" if counts.mapped else "random",
            "n_features": int(X.shape[1]),
            "density": density,
            "condition_levels": counts.levels,
        },
        "seconds": seconds,
        "held_out_elbo": held_out,
        "history": model.history_,
    }
    run_folder.write_json(paths["history"], record)
    if model.history_["epoch"]:
        plotting.loss_curve(
            model.history_, paths["loss_curve"], title=f"fastvae on {name}"
        )
    else:  # stopped (--max-time) before the first epoch ended
        del paths["loss_curve"]
    note = "" if info is None else f" ({info['epochs_done']} before the resume)"
    sizes = (n_train, n_val, density)
    _summary(model, counts, sizes, (seconds, note), held_out, stopped, paths)
    return 0


def _how_it_stopped(controls, model, args, out, checkpoint) -> dict | None:
    """As for images (--max-time says how to resume), but a run that kept
    no checkpoint (--checkpoint-every 0) says it cannot be resumed."""
    from fastvae.cli.controls import how_it_stopped

    stopped = how_it_stopped(controls, model, args, out)
    if (
        stopped is not None
        and stopped["reason"] == "max_time"
        and not checkpoint.is_file()
    ):
        stopped["message"] = (
            f"stopped at the time budget (--max-time {args.max_time:g} s) at step "
            f"{model.t_} (epoch {model.n_iter_} done); the model is the one of "
            "that step (no checkpoint was kept, --checkpoint-every 0: the run "
            "cannot be resumed)"
        )
    return stopped


def _summary(model, counts, sizes, timing, held_out, stopped, paths):
    n_train, n_val, density = sizes
    seconds, note = timing
    h = model.history_
    X = counts.X
    print(
        f"counts: {plural(counts.n, 'cell')} x {plural(X.shape[1], 'gene')}, "
        f"{100 * density:.2f}% nonzero; {n_train} training cells"
        + (
            f", {n_val} held out ({'the last rows' if counts.mapped else 'at random'})"
            if n_val
            else ""
        )
    )
    line = f"trained {plural(model.n_iter_, 'epoch')}{note} in {seconds:.1f} s"
    if h["loss"]:
        line += (
            f"; final loss {h['loss'][-1]:.3f}, ELBO {h['elbo'][-1]:.3f} nats per cell"
        )
    print(line)
    if held_out is not None:
        print(f"held-out ELBO {held_out:.3f} nats per cell")
    if stopped is not None:
        print(stopped["message"])
    out = paths["model"].parent
    print(
        f"wrote {out}: "
        + ", ".join(p.name for p in paths.values())
        + f" (posterior means, {counts.n} x {model.latent_dim})"
    )
