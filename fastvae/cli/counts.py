"""Count data on the command line: ``fastvae train`` on a cells x genes
count matrix (single-cell data) with scVI's model, fastvae.VAE with a count
likelihood and the observed library size.

Count data are an .h5ad file (AnnData, the anndata extra), a CSR folder
written by fastvae.data.save_csr (memory-mapped), a scipy.sparse .npz
written by scipy.sparse.save_npz, or with --counts a dense .npy or .csv.
The defaults are scVI's (128 hidden, 10 latent, batch 128, Adam with lr
1e-3 and eps 0.01, KL warm-up over 400 epochs, ZINB with the observed
library). The run folder holds model.npz, history.json, metrics.jsonl,
loss_curve.png and latent.npy (the posterior means of all cells).

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

from fastvae.cli.common import UserError, as_flags
from fastvae.cli.controls import plural, training_controls
from fastvae.models.columns import COUNT_KINDS

__all__ = ["is_counts", "refuse_count_options", "refuse_count_resume", "train_counts"]

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
    "resume": ("--resume", "count runs keep no checkpoint"),
    "checkpoint_every": ("--checkpoint-every", "count runs keep no checkpoint"),
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


def refuse_count_resume(args) -> None:
    """--resume of a count run: refused, as it keeps no checkpoint."""
    folder = Path(args.resume)
    if (
        folder.is_dir()
        and (folder / "latent.npy").is_file()
        and not (folder / "checkpoint.npz").is_file()
    ):
        raise UserError(
            f"{folder} is a run on count data, which keeps no checkpoint and "
            "cannot be resumed: train it again (--overwrite)"
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
def _open_counts(args, dtype) -> Iterator[_Counts]:
    """The count matrix --data names, for a ``with`` block (a backed
    AnnData's temporary copy lives as long as it)."""
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


def _validation_rows(validation, n: int) -> int:
    if isinstance(validation, float):
        return int(round(validation * n)) if n > 1 else 0
    return min(int(validation), n - 1)


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
    (model.npz, history.json, metrics.jsonl, loss_curve.png, latent.npy)."""
    from fastvae.cli import run_folder
    from fastvae.cli.run_lock import RunLock

    _fill_defaults(args)
    _check_options(args)
    try:  # bad settings first: no folder made, no data read for nothing
        _make_model(args, args.kl_warmup or 0)._settings()
    except (ValueError, TypeError) as exc:
        raise UserError(as_flags(str(exc))) from None
    dtype = np.float64 if args.dtype == "float64" else np.float32
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        run_folder.clear_or_refuse(out, out / "checkpoint.npz", args.overwrite)
        with _open_counts(args, dtype) as counts:
            return _train_locked(args, counts, out)


def _train_locked(args, counts: _Counts, out: Path) -> int:
    from fastvae._atomic import write_atomic
    from fastvae.cli import plotting, run_folder

    if args.n_samples is not None and args.n_samples < counts.n:
        counts.X = _rows(counts.X, 0, args.n_samples)
        if counts.condition is not None:
            counts.condition = counts.condition[: args.n_samples]
    _warn_unless_whole_numbers(args, counts)
    n = counts.n
    n_val = _validation_rows(args.validation, n) if args.validation else 0
    cond = counts.condition
    if n_val == 0:
        train_X, train_c, val_X, val_c = counts.X, cond, None, None
    elif counts.mapped:  # the last rows: slices of the files
        train_X, val_X = _rows(counts.X, 0, n - n_val), _rows(counts.X, n - n_val, n)
        train_c = None if cond is None else cond[: n - n_val]
        val_c = None if cond is None else cond[n - n_val :]
    else:
        order = np.random.default_rng(args.seed).permutation(n)
        val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
        train_X, val_X = counts.X[train_rows], counts.X[val_rows]
        train_c = None if cond is None else cond[train_rows]
        val_c = None if cond is None else cond[val_rows]
    n_train = n - n_val
    kl_warmup = args.kl_warmup
    if kl_warmup is None:  # scVI's: linear over 400 epochs
        kl_warmup = _WARMUP_EPOCHS * math.ceil(n_train / min(args.batch_size, n_train))
        args.kl_warmup = kl_warmup
    model = _make_model(args, kl_warmup)
    validation = None
    if val_X is not None:
        validation = val_X if val_c is None else (val_X, val_c)
    name = Path(args.data).name
    X = counts.X
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
    controls = training_controls(args, validation is not None)
    start = time.perf_counter()
    with run_folder.MetricsLog(out / run_folder.METRICS_FILE) as log:
        try:
            model.fit(
                train_X,
                condition=train_c,
                validation_data=validation,
                callbacks=[log, *controls.values()],
            )
        except KeyboardInterrupt:
            print(
                "fastvae: count runs keep no checkpoint; no model was written",
                file=sys.stderr,
            )
            raise
        except (ValueError, TypeError) as exc:
            raise UserError(f"{args.data}: {as_flags(str(exc))}") from None
    seconds = time.perf_counter() - start
    if args.condition_key is not None or args.layer is not None:
        # What fit(adata, layer=..., condition_key=...) records: the model
        # then reads an AnnData as this run did (transform(adata), ...).
        model.anndata_layer_ = args.layer
        model.condition_key_ = args.condition_key
        model.condition_levels_ = counts.levels
    paths = {
        "model": out / "model.npz",
        "history": out / "history.json",
        "metrics": out / run_folder.METRICS_FILE,
        "loss_curve": out / "loss_curve.png",
        "latent": out / "latent.npy",
    }
    model.save(paths["model"])
    latent = np.asarray(model.transform(X, cond), dtype=np.float32)
    write_atomic(paths["latent"], lambda f: np.save(f, latent))
    held_out = None
    if val_X is not None:
        held_out = float(np.mean(model.score_samples(val_X, val_c)))
    stopped = _how_it_stopped(controls, model, args, out)
    record = {
        "settings": {k: v for k, v in vars(args).items() if k != "resume"},
        "stopped": stopped,
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
    _summary(model, counts, n_train, n_val, density, seconds, held_out, stopped, paths)
    return 0


def _how_it_stopped(controls, model, args, out) -> dict | None:
    """As for images, but a count run cannot be resumed: --max-time's
    message says so instead of how to resume."""
    from fastvae.cli.controls import how_it_stopped

    stopped = how_it_stopped(controls, model, args, out)
    if stopped is not None and stopped["reason"] == "max_time":
        stopped["message"] = (
            f"stopped at the time budget (--max-time {args.max_time:g} s) at step "
            f"{model.t_} (epoch {model.n_iter_} done); the model is the one of "
            "that step (count runs cannot be resumed)"
        )
    return stopped


def _summary(model, counts, n_train, n_val, density, seconds, held_out, stopped, paths):
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
    line = f"trained {plural(model.n_iter_, 'epoch')} in {seconds:.1f} s"
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
