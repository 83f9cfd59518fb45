"""The ``fastvae`` command: train, sample, reconstruct, evaluate, draw the
latent space (traverse, interpolate), plot a run, and benchmark.

``fastvae train`` with no arguments trains the default model on the built-in
shapes data and writes the model, pictures and the training history into
``fastvae-run/`` (the layout is described in fastvae.cli.run_folder). Mistakes a
user can make (a missing file, an unknown option value, data of the wrong
shape, an index out of range) end with one ``fastvae: error: ...`` line and
exit status 2; internal errors keep their traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser"]

# Errors that describe a problem with the user's input or files.
_USER_ERRORS = (
    ValueError,
    TypeError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    FloatingPointError,
    MemoryError,
)

_DEFAULT_OUT = "fastvae-run"


class UserError(Exception):
    """A problem with the command line the user gave."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _fraction_or_count(text: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction in (0, 1) or a count, got {text!r}"
        ) from None
    if 0 < value < 1:
        return value
    if value >= 1 and value == int(value):
        return int(value)
    if value == 0:
        return 0
    raise argparse.ArgumentTypeError(
        f"expected a fraction in (0, 1), a count >= 1, or 0 for none, got {text!r}"
    )


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {value}"
            )
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _add_data_arguments(
    p: argparse.ArgumentParser, *, default: str | None, optional: bool = False
) -> None:
    p.add_argument(
        "--data",
        default=default,
        required=default is None and not optional,
        help="'shapes' (built in, generated), 'mnist', 'fashion-mnist', "
        "'binarized-mnist', or a .npy/.npz/.csv file (default: %(default)s)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with the MNIST-family files (or its parent); default: "
        "$FASTVAE_DATA_DIR, else ~/.cache/fastvae",
    )
    p.add_argument(
        "--n-samples",
        type=_positive_int,
        default=None,
        help="use only this many rows (shapes: how many to generate)",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="download missing MNIST-family files (checksums verified)",
    )


def _sigma(text: str):
    if text == "learned":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or 'learned', got {text!r}"
        ) from None


class _Parser(argparse.ArgumentParser):
    """argparse's parser, reporting a bad command line in the one-line form of
    every other user error (``fastvae: error: ...``, exit status 2)."""

    def error(self, message):
        self.exit(2, f"fastvae: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fastvae`` command."""
    from fastvae._version import __version__

    parser = _Parser(
        prog="fastvae",
        description="Fast Variational Autoencoders on CPUs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fastvae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    t = sub.add_parser(
        "train",
        help="train a model and write it, pictures and history",
        formatter_class=fmt,
    )
    _add_data_arguments(t, default="shapes")
    t.add_argument(
        "--model",
        default="vae",
        choices=("vae", "ae", "dae"),
        help="VAE, plain autoencoder, or denoising autoencoder",
    )
    t.add_argument(
        "--conditional",
        action="store_true",
        help="condition encoder and decoder on the data's labels (one-hot)",
    )
    t.add_argument(
        "--validation",
        type=_fraction_or_count,
        default=0.1,
        help="held-out rows: a fraction, a count, or 0 for none",
    )
    t.add_argument(
        "--hidden",
        type=_positive_int,
        nargs="+",
        default=[400],
        help="encoder hidden layer widths (the decoder mirrors them)",
    )
    t.add_argument("--latent-dim", type=int, default=20, help="size of z")
    t.add_argument(
        "--likelihood",
        default="bernoulli",
        help="'bernoulli' (data in [0, 1]) or 'gaussian'",
    )
    t.add_argument(
        "--sigma",
        type=_sigma,
        default=1.0,
        help="observation noise of the Gaussian likelihood, or 'learned' "
        "(one per feature)",
    )
    t.add_argument(
        "--activation",
        default="relu",
        help="hidden activation: relu, tanh, sigmoid or identity",
    )
    t.add_argument("--optimizer", default="adam", help="adam, momentum or sgd")
    t.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate (default: 1e-3 for adam, 0.01 otherwise)",
    )
    t.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs to train (unset: 20); with --resume, the total to "
        "reach (unset: the run's own)",
    )
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--beta", type=float, default=1.0, help="weight of the KL term")
    t.add_argument(
        "--kl-warmup",
        type=int,
        default=0,
        help="steps over which the KL weight rises linearly to beta",
    )
    t.add_argument(
        "--corruption",
        type=float,
        default=None,
        help="probability of zeroing each input value during training "
        "(denoising; default 0.25 for dae, else 0)",
    )
    t.add_argument(
        "--binarize",
        default="none",
        choices=("none", "static", "dynamic"),
        help="binary training targets: drawn once (static) or at every "
        "step (dynamic) as Bernoulli(x)",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--threads",
        type=int,
        default=None,
        help="compute threads (default: OMP_NUM_THREADS or all cores)",
    )
    t.add_argument("--dtype", default="float32", help="float32 or float64")
    t.add_argument("--out", default=_DEFAULT_OUT, help="output folder")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="write OUT/checkpoint.npz after every N epochs and at the end "
        "(unset: 1, or the run's own with --resume; 0: none, or only the "
        "final one with --resume)",
    )
    t.add_argument(
        "--resume",
        default=None,
        metavar="RUN",
        help="continue the run in folder RUN (or checkpoint file RUN) "
        "exactly where its last checkpoint stopped, with its settings",
    )
    t.add_argument(
        "--mpi",
        default="auto",
        choices=("auto", "on", "off"),
        help="data-parallel training over MPI ranks (mpiexec -n N fastvae "
        "train ...): auto = when an MPI launcher started more than one "
        "rank (PMI_RANK, PMIX_RANK, OMPI_COMM_WORLD_SIZE or "
        "MV2_COMM_WORLD_SIZE set); on = always (needs mpi4py); off = never",
    )
    t.set_defaults(handler=_train)

    s = sub.add_parser(
        "sample", help="decode draws z ~ N(0, I) into a PNG grid", formatter_class=fmt
    )
    s.add_argument("--model", required=True, help="a model file written by train")
    s.add_argument("-n", type=_positive_int, default=64, help="number of samples")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--label", type=int, default=None, help="conditional models: the class to draw"
    )
    s.add_argument("--out", default="samples.png", help="PNG file to write")
    s.set_defaults(handler=_sample)

    r = sub.add_parser(
        "reconstruct",
        help="originals and reconstructions as a PNG",
        formatter_class=fmt,
    )
    r.add_argument("--model", required=True, help="a model file written by train")
    _add_data_arguments(r, default="shapes")
    r.add_argument("--split", default="test", help="'train' or 'test' (named data)")
    r.add_argument("-n", type=_positive_int, default=16, help="number of images")
    r.add_argument("--out", default="reconstructions.png", help="PNG file to write")
    r.set_defaults(handler=_reconstruct)

    e = sub.add_parser(
        "eval",
        help="mean ELBO (and importance-sampled log p(x)) of a model on data",
        formatter_class=fmt,
    )
    e.add_argument("--model", required=True, help="a model file written by train")
    _add_data_arguments(e, default="shapes")
    e.add_argument("--split", default="test", help="'train' or 'test' (named data)")
    e.add_argument(
        "--k",
        type=_positive_int,
        default=None,
        help="also estimate log p(x) with k importance samples (VAEs; papers use 5000)",
    )
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(handler=_eval)

    v = sub.add_parser(
        "traverse",
        formatter_class=fmt,
        help="decode codes that vary one latent dimension at a time (one row each)",
        description="Latent traversals: one grid row per latent dimension, the columns "
        "moving that dimension from -RANGE to +RANGE around a point, the others fixed. "
        "The point is z = 0 (the prior mean), or with --data and --index the posterior "
        "mean of that data row. Default dimensions: the first min(latent_dim, 10); "
        "with --data, the 10 with the largest mean KL(q(z_j|x) || N(0, 1)) on the data "
        "(the variance of the codes for an autoencoder), largest first.",
    )
    v.add_argument("--model", required=True, help="a model file written by train")
    _add_data_arguments(v, default=None, optional=True)
    v.add_argument("--split", default="test", help="'train' or 'test' (named data)")
    v.add_argument(
        "--index",
        type=int,
        default=None,
        help="row of --data whose posterior mean is the centre; none: z = 0",
    )
    v.add_argument(
        "--dims",
        type=int,
        nargs="+",
        default=None,
        help="latent dimensions to traverse; none: see above",
    )
    v.add_argument(
        "--steps",
        type=_int_at_least(2),
        default=9,
        help="values per dimension (columns)",
    )
    v.add_argument(
        "--range",
        type=_positive_float,
        default=3.0,
        dest="span",
        metavar="RANGE",
        help="largest offset from the centre, in latent units (prior "
        "standard deviations for a VAE)",
    )
    v.add_argument(
        "--label",
        type=int,
        default=None,
        help="conditional models: the class to decode; none: the label "
        "of the --index row",
    )
    v.add_argument("--out", default="traverse.png", help="PNG file to write")
    v.set_defaults(handler=_traverse)

    i = sub.add_parser(
        "interpolate",
        formatter_class=fmt,
        help="decode points on the line between the posterior means of two inputs",
        description="Encode rows FROM and TO of the data, decode STEPS points from one "
        "posterior mean to the other (both included; an autoencoder's codes), and draw "
        "them in one row between the two original images. Conditional models "
        "interpolate the one-hot condition too, unless --label fixes it.",
    )
    i.add_argument("--model", required=True, help="a model file written by train")
    _add_data_arguments(i, default="shapes")
    i.add_argument("--split", default="test", help="'train' or 'test' (named data)")
    i.add_argument(
        "--from",
        type=int,
        required=True,
        dest="start",
        metavar="I",
        help="row of the first input",
    )
    i.add_argument(
        "--to",
        type=int,
        required=True,
        dest="end",
        metavar="J",
        help="row of the second input",
    )
    i.add_argument(
        "--steps",
        type=_int_at_least(2),
        default=10,
        help="decoded points, endpoints included",
    )
    i.add_argument(
        "--slerp", action="store_true", help="spherical instead of linear interpolation"
    )
    i.add_argument(
        "--label",
        type=int,
        default=None,
        help="conditional models: decode every point with this class",
    )
    i.add_argument("--out", default="interpolate.png", help="PNG file to write")
    i.set_defaults(handler=_interpolate)

    pl = sub.add_parser(
        "plot",
        formatter_class=fmt,
        help="loss curves of a run folder, and a latent scatter coloured by label",
        description="Draw loss_curve.png (train loss per epoch and over windows of "
        "steps, validation ELBO, reconstruction and KL terms) from a run folder "
        "written by train (history.json, or metrics.jsonl while training runs), and, "
        "when the run's data has labels and model.npz exists, latent.png: the "
        "posterior means of the held-out rows (the training rows when none were held "
        "out; first two principal components when latent_dim > 2), coloured by "
        "label.",
    )
    pl.add_argument("--run", required=True, help="a folder written by fastvae train")
    pl.add_argument(
        "--out", default=None, help="folder for the pictures; none: the run folder"
    )
    pl.add_argument(
        "--max-points",
        type=_positive_int,
        default=2000,
        help="at most this many points in the latent scatter",
    )
    pl.set_defaults(handler=_plot)

    from fastvae.bench import harness

    b = sub.add_parser(
        "bench",
        help="time the training step against NumPy (and PyTorch/JAX when installed)",
        formatter_class=fmt,
    )
    harness.add_arguments(b)
    b.set_defaults(handler=harness.run_from_args)
    return parser


# -- subcommands ------------------------------------------------------------------


def _load_data(args, split: str = "train"):
    from fastvae import data

    return data.load_dataset(
        args.data,
        data_dir=args.data_dir,
        split=split,
        n_samples=args.n_samples,
        download=args.download,
    )


def _conditions(model, dataset):
    """One-hot labels of the data for a conditional model, else None."""
    from fastvae import data

    if not getattr(model, "n_conditions_", 0):
        return None
    if dataset.y is None:
        raise UserError(f"the model is conditional but {dataset.name} has no labels")
    return data.one_hot(dataset.y, model.n_conditions_)


def _image_shape(dataset, n_features: int):
    """The dataset's image shape, or a square one when the features make one."""
    if dataset is not None and dataset.image_shape is not None:
        return dataset.image_shape
    side = int(round(n_features**0.5))
    return (side, side) if side * side == n_features else None


# Options of train that --resume may set; every other one comes from the run.
# --mpi too: a checkpoint holds global state, so a run may go on with another
# number of MPI ranks.
_RESUME_OPTIONS = ("resume", "epochs", "threads", "quiet", "checkpoint_every", "mpi")
_DEFAULT_EPOCHS = 20


def _mpi_group(mode: str):
    """The MPI ranks to train over (a fastvae.models.distributed.Group), or None to
    train on this process alone."""
    from fastvae.models import distributed

    if mode == "off" or (mode == "auto" and not distributed.launched_by_mpi()):
        return None
    try:
        comm = distributed.world()
    except ImportError as exc:
        if mode == "on":
            raise UserError(f"--mpi on: {exc}") from None
        found = [v for v in distributed.LAUNCHER_VARIABLES if v in os.environ]
        raise UserError(
            f"started by an MPI launcher ({found[0]} is set) but {exc}; or pass "
            "--mpi off to train on each process alone"
        ) from None
    if mode == "auto" and comm.Get_size() == 1:
        return None
    return distributed.Group(comm)


def _train(args) -> int:
    group = _mpi_group(args.mpi)
    if group is None:
        return _train_on(args, None)
    return _on_every_rank(group, lambda: _train_on(args, group))


def _on_every_rank(group, run) -> int:
    """run() on every rank of an MPI job. An error raised alike on all ranks
    is reported once by rank 0 (exit status 2 everywhere); an error on one
    rank (the others would wait for it) ends the job with MPI_Abort."""
    from fastvae.data import DataError
    from fastvae.exceptions import ModelFileError
    from fastvae.models import distributed

    try:
        return run()
    except BaseException as exc:
        shared = group.collective_failure
        if shared == "all" and group.is_root:
            raise  # reported by main like any error of one process
        if shared == "here":
            print(
                f"fastvae: rank {group.rank} of {group.size}: error: {exc}",
                file=sys.stderr,
            )
        if shared:
            return 2
        user = isinstance(exc, (UserError, DataError, ModelFileError, *_USER_ERRORS))
        debug = bool(os.environ.get("FASTVAE_DEBUG"))
        distributed.abort(
            group.comm, exc, 2 if user else 1, show_traceback=not user or debug
        )
        raise  # not reached: abort ends the process


def _train_on(args, group) -> int:
    """fastvae train on this process, or on this rank of an MPI job (group):
    every rank loads the data and trains its shards; rank 0 alone prints and
    writes the run folder."""
    import fastvae
    from fastvae import data
    from fastvae._atomic import write_atomic
    from fastvae.cli import plotting, run_folder

    root = group is None or group.is_root
    info = None
    if args.resume is not None:
        info = fastvae.checkpoint_info(args.resume)
        args = _resumed_arguments(args, info)
    else:
        args.epochs = _DEFAULT_EPOCHS if args.epochs is None else args.epochs
        if args.checkpoint_every is None:
            args.checkpoint_every = 1
        # Absolute paths, so that --resume works from any folder.
        is_file = args.data.lower().endswith((".npy", ".npz", ".csv"))
        if is_file and Path(args.data).is_file():
            args.data = str(Path(args.data).resolve())
        if args.data_dir is not None and Path(args.data_dir).is_dir():
            args.data_dir = str(Path(args.data_dir).resolve())
    if args.checkpoint_every < 0:
        raise UserError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    out = Path(args.out)
    checkpoint = out / "checkpoint.npz"
    if root:
        out.mkdir(parents=True, exist_ok=True)
        if info is None:
            _refuse_unfinished_run(out, checkpoint)
    if group is not None and args.download:  # rank 0 downloads, the others wait
        if not root:
            group.comm.Barrier()
        dataset = _load_data(args)
        if root:
            group.comm.Barrier()
    else:
        dataset = _load_data(args)
    if args.validation:
        train_set, val_set = data.train_validation_split(
            dataset, n_validation=args.validation, seed=args.seed
        )
    else:
        train_set, val_set = dataset, None
    train_X = train_set.X
    if args.binarize == "static":
        train_X = data.sample_binarize(train_X, seed=args.seed)
    cond = val_cond = None
    if args.conditional:
        if dataset.y is None:
            raise UserError(f"--conditional needs labels, and {dataset.name} has none")
        n_classes = int(dataset.y.max()) + 1
        cond = data.one_hot(train_set.y, n_classes)
        val_cond = None if val_set is None else data.one_hot(val_set.y, n_classes)
    validation = None
    if val_set is not None:
        validation = val_set.X if val_cond is None else (val_set.X, val_cond)
    settings = {k: v for k, v in vars(args).items() if k not in ("handler", "resume")}
    every = args.checkpoint_every
    comm = None if group is None else group.comm

    def train(callbacks=None):
        if info is None:
            return _make_model(args).fit(
                train_X,
                condition=cond,
                validation_data=validation,
                checkpoint=checkpoint if every else None,
                checkpoint_every=every,
                checkpoint_meta={"cli": settings},
                comm=comm,
                callbacks=callbacks,
            )
        return fastvae.resume(
            info["path"],
            train_X,
            condition=cond,
            validation_data=validation,
            epochs=args.epochs,
            checkpoint_every=every,
            n_threads=args.threads,
            verbose=0 if args.quiet else 1,
            callbacks=callbacks,
            comm=comm,
        )

    if not root:
        train()
        return 0
    if group is None:
        threads = fastvae.get_num_threads() if args.threads is None else args.threads
        how = f"{threads} threads"
    else:
        threads = group.default_threads() if args.threads is None else args.threads
        how = (
            f"{group.size} MPI ranks x {threads} threads, global batch "
            f"{args.batch_size}"
        )
    print(
        f"fastvae: training a {args.model} on {dataset.name}: {len(train_set)} "
        f"samples x {train_set.X.shape[1]} features"
        + (f", {len(val_set)} held out" if val_set is not None else "")
        + f"; {how}",
        flush=True,
    )
    if not args.quiet:
        from fastvae.config import blas_warnings

        for note in blas_warnings():
            print(f"fastvae: note: {note}", file=sys.stderr, flush=True)
    if info is None:
        _write_run_spec(out, args, dataset, train_set, val_set)
    if info is not None:
        run_folder.truncate_metrics(out / run_folder.METRICS_FILE, info["epochs_done"])
    start = time.perf_counter()
    with run_folder.MetricsLog(
        out / run_folder.METRICS_FILE, append=info is not None
    ) as log:
        if info is None:
            model = train([log])
            done_before = 0
        else:
            print(
                f"fastvae: resuming {info['path']} after {info['epochs_done']} epochs"
                + (f" and {info['epoch_step']} steps" if info["epoch_step"] else "")
                + f", to {args.epochs} epochs",
                flush=True,
            )
            model = train([log])
            batch = min(model.batch_size, len(train_set))
            done_before = len(train_set) * info["epochs_done"] + min(
                info["epoch_step"] * batch, len(train_set)
            )
    seconds = time.perf_counter() - start

    paths = {
        "model": out / "model.npz",
        "history": out / "history.json",
        "metrics": out / run_folder.METRICS_FILE,
        "run": out / run_folder.RUN_FILE,
        "loss_curve": out / "loss_curve.png",
    }
    if checkpoint.is_file():
        paths["checkpoint"] = checkpoint
    model.save(paths["model"])
    record = {
        "settings": settings,
        "data": {
            "name": dataset.name,
            "n_train": len(train_set),
            "n_validation": 0 if val_set is None else len(val_set),
            "n_features": int(train_set.X.shape[1]),
        },
        "seconds": seconds,
        "history": model.history_,
    }
    text = json.dumps(record, indent=1, default=_json_default)
    write_atomic(paths["history"], lambda f: f.write(text.encode("utf-8")))
    plotting.loss_curve(
        model.history_,
        paths["loss_curve"],
        title=f"fastvae on {dataset.name}",
        validation_label=_validation_label(args.model),
    )
    shape = _image_shape(dataset, train_set.X.shape[1])
    if shape is not None:
        paths["samples"] = out / "samples.png"
        paths["reconstructions"] = out / "reconstructions.png"
        _write_samples(model, shape, paths["samples"], 64, args.seed, None)
        shown_set = val_set if val_set is not None else train_set
        shown = shown_set.X[:16]
        shown_cond = _conditions(model, shown_set.subset(slice(0, 16)))
        plotting.reconstruction_grid(
            shown, model.reconstruct(shown, shown_cond), shape, paths["reconstructions"]
        )
    else:
        print(
            "fastvae: the data are not images; no sample or reconstruction "
            "pictures written"
        )

    h = model.history_
    n_seen = len(train_set) * model.n_iter_ - done_before
    lines = [
        f"trained {model.n_iter_} epochs ({model.t_} steps) in {seconds:.1f} s: "
        f"{n_seen / seconds:,.0f} samples/s"
        + (" since the resume" if info is not None else ""),
        f"final train loss {h['loss'][-1]:.3f} nats/sample (ELBO {h['elbo'][-1]:.3f})",
    ]
    if h["val_elbo"] and h["val_elbo"][-1] is not None:
        what = "ELBO" if args.model == "vae" else "reconstruction log-likelihood"
        lines.append(
            f"validation {what} {h['val_elbo'][0]:.3f} after epoch 1 -> "
            f"{h['val_elbo'][-1]:.3f} after epoch {model.n_iter_}"
        )
    lines += [f"{name:>15}: {path}" for name, path in paths.items()]
    print("\n".join(lines))
    return 0


def _write_run_spec(out: Path, args, dataset, train_set, val_set) -> None:
    """run.json: enough to reload the training and validation rows later
    (fastvae plot), written before training so it exists while it runs."""
    from datetime import datetime, timezone

    from fastvae import data
    from fastvae._version import __version__
    from fastvae.cli import run_folder

    source = args.data
    if source not in data.DATASET_NAMES:
        source = str(Path(source).expanduser().resolve())
    data_dir = args.data_dir or os.environ.get("FASTVAE_DATA_DIR") or None
    run_folder.write_json(
        out / run_folder.RUN_FILE,
        {
            "fastvae_version": __version__,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": args.model,
            "conditional": bool(args.conditional),
            "data": {
                "source": source,
                "data_dir": None
                if data_dir is None
                else str(Path(data_dir).expanduser().resolve()),
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
            "settings": {k: v for k, v in vars(args).items() if k != "handler"},
        },
    )


def _validation_label(kind: str) -> str:
    return "validation -ELBO" if kind == "vae" else "validation -log p(x | code)"


def _resumed_arguments(args, info):
    """The settings of the run a checkpoint belongs to, with the options
    --resume may change."""
    stored = info["meta"].get("cli")
    if not isinstance(stored, dict):
        raise UserError(
            f"{info['path']} was not written by fastvae train; continue it "
            "with fastvae.resume in Python"
        )
    defaults = vars(build_parser().parse_args(["train"]))
    for name, default in defaults.items():
        if name not in _RESUME_OPTIONS and getattr(args, name) != default:
            raise UserError(
                f"--{name.replace('_', '-')} cannot be given with --resume: the "
                "run's settings come from its checkpoint (--resume takes --epochs, "
                "--threads, --checkpoint-every, --mpi and --quiet)"
            )
    merged = {
        **defaults,
        **{
            k: v
            for k, v in stored.items()
            if k in defaults and k not in _RESUME_OPTIONS
        },
    }
    merged.update(
        resume=args.resume,
        out=str(info["path"].parent),
        quiet=args.quiet,
        mpi=args.mpi,
        epochs=info["epochs"] if args.epochs is None else args.epochs,
        threads=stored.get("threads") if args.threads is None else args.threads,
        checkpoint_every=(
            stored.get("checkpoint_every", 1)
            if args.checkpoint_every is None
            else args.checkpoint_every
        ),
    )
    return argparse.Namespace(**merged)


def _refuse_unfinished_run(out: Path, checkpoint: Path) -> None:
    """A new run must not overwrite the checkpoint of one that can go on."""
    import fastvae
    from fastvae.exceptions import ModelFileError

    if not checkpoint.is_file():
        return
    try:
        info = fastvae.checkpoint_info(checkpoint)
    except ModelFileError:
        return  # unreadable: nothing left to continue
    if not info["finished"]:
        raise UserError(
            f"{out} holds an unfinished run ({info['epochs_done']} of {info['epochs']} "
            f"epochs): continue it with --resume {out}, or delete {checkpoint} to "
            "start over"
        )


def _make_model(args):
    import fastvae

    common = dict(
        hidden=tuple(args.hidden),
        latent_dim=args.latent_dim,
        likelihood=args.likelihood,
        sigma=args.sigma,
        activation=args.activation,
        dynamic_binarization=args.binarize == "dynamic",
        optimizer=args.optimizer,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        dtype=args.dtype,
        seed=args.seed,
        n_threads=args.threads,
        verbose=0 if args.quiet else 1,
    )
    if args.corruption is not None:
        common["corruption"] = args.corruption
    if args.model == "vae":
        return fastvae.VAE(beta=args.beta, kl_warmup=args.kl_warmup, **common)
    if args.model == "ae":
        return fastvae.Autoencoder(**common)
    return fastvae.DenoisingAutoencoder(**common)


def _write_samples(model, shape, path, n, seed, label):
    """A grid of samples: a VAE's draws (per class for a conditional one, or
    of one class), or an autoencoder's decoded random codes."""
    from fastvae import data
    from fastvae._core import _rng
    from fastvae.cli import plotting

    if hasattr(model, "sample"):
        if model.n_conditions_:
            classes = model.n_conditions_
            labels = np.full(n, label) if label is not None else np.arange(n) % classes
            if labels.max() >= classes or labels.min() < 0:
                raise UserError(f"--label must be in [0, {classes})")
            images = model.sample(n, condition=data.one_hot(labels, classes), seed=seed)
            title = (
                f"samples of class {label}"
                if label is not None
                else f"samples, class = grid position mod {classes}"
            )
        else:
            if label is not None:
                raise UserError("--label needs a conditional model")
            images, title = model.sample(n, seed=seed), "samples: decoded z ~ N(0, I)"
    else:  # an autoencoder has no prior: decode codes drawn like a VAE's
        Z = _rng.normal_matrix(seed, _rng.STREAM_SAMPLE, 0, n, model.latent_dim)
        cond = None
        if model.n_conditions_:
            cond = data.one_hot(np.arange(n) % model.n_conditions_, model.n_conditions_)
        images = model.decode(Z, cond)
        title = "decoded random codes z ~ N(0, I) (an autoencoder has no prior)"
    plotting.image_grid(images, shape, path, title=title)


def _sample(args) -> int:
    import fastvae

    model = fastvae.load(args.model)
    shape = _image_shape(None, model.n_features_in_)
    if shape is None:
        raise UserError(
            f"the model's {model.n_features_in_} features are not a square image; "
            "use the Python API (VAE.sample) for non-image data"
        )
    _write_samples(model, shape, args.out, args.n, args.seed, args.label)
    print(f"wrote {args.out}")
    return 0


def _reconstruct(args) -> int:
    import fastvae
    from fastvae.cli import plotting

    model = fastvae.load(args.model)
    dataset = _load_data(args, split=_split_for(args))
    _check_width(model, dataset)
    shape = _image_shape(dataset, dataset.X.shape[1])
    if shape is None:
        raise UserError(f"{dataset.name} does not hold images; nothing to draw")
    shown = dataset.subset(slice(0, args.n))
    plotting.reconstruction_grid(
        shown.X, model.reconstruct(shown.X, _conditions(model, shown)), shape, args.out
    )
    print(f"wrote {args.out}")
    return 0


def _eval(args) -> int:
    import fastvae

    model = fastvae.load(args.model)
    dataset = _load_data(args, split=_split_for(args))
    _check_width(model, dataset)
    cond = _conditions(model, dataset)
    is_vae = hasattr(model, "log_likelihood")
    scores = model.score_samples(dataset.X, cond)
    name = "elbo" if is_vae else "reconstruction_log_likelihood"
    result = {
        "data": dataset.name,
        "split": _split_for(args),
        "n_samples": len(scores),
        name: float(np.mean(scores)),
        f"{name}_std": float(np.std(scores)),
    }
    if args.k is not None:
        if not is_vae:
            raise UserError("--k needs a VAE: an autoencoder defines no density")
        start = time.perf_counter()
        ll = model.log_likelihood(dataset.X, cond, k=args.k)
        result.update(
            log_likelihood=float(np.mean(ll)),
            k=args.k,
            nll=float(-np.mean(ll)),
            seconds=time.perf_counter() - start,
        )
    if args.json:
        print(json.dumps(result))
        return 0
    label = "ELBO" if is_vae else "reconstruction log-likelihood"
    print(
        f"{dataset.name} ({result['split']}, {len(scores)} samples): mean {label} "
        f"{result[name]:.4f} nats (std {result[name + '_std']:.4f})"
    )
    if args.k is not None:
        print(
            f"importance-sampled log p(x), k={args.k}: {result['log_likelihood']:.4f} "
            f"nats (NLL {result['nll']:.4f}) in {result['seconds']:.1f} s"
        )
    return 0


# Names of the classes of the built-in and MNIST-family data, for legends.
_CLASS_NAMES = {
    "shapes": ("square", "ellipse", "triangle"),
    "mnist": tuple(str(d) for d in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle boot",
    ),
}


def _picture_shape(model, dataset=None):
    shape = _image_shape(dataset, model.n_features_in_)
    if shape is None:
        raise UserError(
            f"the model's {model.n_features_in_} features are not a square image; "
            "there is nothing to draw"
        )
    return shape


def _check_index(option: str, index: int, dataset, split: str) -> None:
    if not 0 <= index < len(dataset):
        raise UserError(
            f"{option} {index} is out of range: {dataset.name} ({split}) has "
            f"{len(dataset)} rows, 0 to {len(dataset) - 1}"
        )


def _decode_label(model, label):
    """--label checked against the model: a class of a conditional model."""
    n = model.n_conditions_
    if label is None:
        return None
    if not n:
        raise UserError("--label needs a conditional model (train --conditional)")
    if not 0 <= label < n:
        raise UserError(f"--label must be in [0, {n}), got {label}")
    return label


def _traverse(args) -> int:
    import fastvae
    from fastvae import data, latent
    from fastvae.cli import plotting

    model = fastvae.load(args.model)
    k = int(model.latent_dim)
    label = _decode_label(model, args.label)
    center, scores, dataset = np.zeros(k), None, None
    if args.data is None:
        if args.index is not None:
            raise UserError("--index needs --data (the data holding that row)")
    else:
        split = _split_for(args)
        dataset = _load_data(args, split=split)
        _check_width(model, dataset)
        if args.index is not None:
            _check_index("--index", args.index, dataset, split)
        cond = _conditions(model, dataset)
        if hasattr(model, "sample"):  # a VAE: rank dimensions by their KL
            mu, logvar = model.encode(dataset.X, cond)
            scores, score_name = latent.kl_per_dimension(mu, logvar), "KL"
        else:  # an autoencoder has no posterior: rank by the spread of its codes
            mu = model.encode(dataset.X, cond)
            scores, score_name = np.var(mu.astype(np.float64), axis=0), "var"
        if args.index is not None:
            center = mu[args.index].astype(np.float64)
            if label is None and model.n_conditions_:
                label = int(dataset.y[args.index])
    if model.n_conditions_ and label is None:
        raise UserError(
            f"the model is conditional: give --label (a class in [0, "
            f"{model.n_conditions_})) or --data with --index"
        )
    if args.dims is not None:
        bad = [d for d in args.dims if not 0 <= d < k]
        if bad:
            raise UserError(
                f"--dims {bad[0]} is out of range: the model has {k} "
                f"latent dimensions, 0 to {k - 1}"
            )
        dims = np.asarray(args.dims, dtype=np.int64)
    elif scores is not None:
        dims = latent.top_dimensions(scores, min(k, 10))
    else:
        dims = np.arange(min(k, 10))
    values = np.linspace(-args.span, args.span, args.steps)
    Z = latent.traversal(center, dims, values).astype(model.params_.dtype)
    cond = None
    if model.n_conditions_:
        cond = data.one_hot(np.full(len(Z), label), model.n_conditions_)
    images = model.decode(Z, cond)
    rows = [
        f"z{d}" + ("" if scores is None else f"\n{score_name} {scores[d]:.2f}")
        for d in dims
    ]
    cols = [f"{v:+.3g}" if v else "0" for v in values]
    where = (
        "z = 0"
        if args.index is None
        else f"the posterior mean of {dataset.name} row {args.index}"
    )
    title = f"latent traversals around {where}" + (
        "" if label is None else f", class {label}"
    )
    plotting.labelled_grid(
        images,
        _picture_shape(model, dataset),
        args.out,
        n_cols=args.steps,
        row_labels=rows,
        col_labels=cols,
        title=title,
    )
    how = (
        "the first"
        if scores is None or args.dims is not None
        else f"the {len(dims)} with the largest {score_name} on the data,"
    )
    print(
        f"wrote {args.out}: {len(dims)} latent dimensions ({how} "
        f"{', '.join(map(str, dims))}) x {args.steps} values from "
        f"{-args.span:g} to +{args.span:g} around {where}"
    )
    return 0


def _interpolate(args) -> int:
    import fastvae
    from fastvae import data, latent
    from fastvae.cli import plotting

    model = fastvae.load(args.model)
    label = _decode_label(model, args.label)
    split = _split_for(args)
    dataset = _load_data(args, split=split)
    _check_width(model, dataset)
    shape = _picture_shape(model, dataset)
    _check_index("--from", args.start, dataset, split)
    _check_index("--to", args.end, dataset, split)
    pair = dataset.subset([args.start, args.end])
    pair_cond = _conditions(model, pair)
    z = model.transform(pair.X, pair_cond).astype(np.float64)
    Z = latent.interpolate(z[0], z[1], args.steps, spherical=args.slerp)
    cond = None
    if model.n_conditions_:
        if label is not None:
            cond = data.one_hot(np.full(args.steps, label), model.n_conditions_)
        else:
            t = np.linspace(0.0, 1.0, args.steps)[:, None]
            cond = (1.0 - t) * pair_cond[0] + t * pair_cond[1]
    decoded = model.decode(Z.astype(model.params_.dtype), cond)
    images = np.concatenate([pair.X[:1], decoded, pair.X[1:]])
    t = np.linspace(0.0, 1.0, args.steps)
    cols = [f"row {args.start}", *(f"t={v:.2g}" for v in t), f"row {args.end}"]
    kind = "spherical" if args.slerp else "linear"
    what = "posterior means" if hasattr(model, "sample") else "codes"
    plotting.labelled_grid(
        images,
        shape,
        args.out,
        n_cols=len(images),
        col_labels=cols,
        title=f"{kind} interpolation between the {what} of {dataset.name} rows "
        f"{args.start} and {args.end} (originals at the ends)",
    )
    print(
        f"wrote {args.out}: {dataset.name} ({split}) row {args.start} -> row "
        f"{args.end}, {args.steps} {kind} steps between the {what}"
    )
    return 0


def _plot(args) -> int:
    from fastvae.cli import plotting, run_folder

    run = Path(args.run)
    history, source = run_folder.read_history(run)
    spec = run_folder.read_run(run)
    out = Path(args.out) if args.out is not None else run
    if not out.is_dir():
        raise UserError(f"output folder {out} does not exist")
    kind = (spec or {}).get("model", "vae")
    name = (spec or {}).get("data", {}).get("name")
    curves = out / "loss_curve.png"
    plotting.loss_curve(
        history,
        curves,
        validation_label=_validation_label(kind),
        title=f"fastvae on {name}" if name else None,
    )
    done = "" if source == run_folder.HISTORY_FILE else " (training still running?)"
    print(f"wrote {curves}: {len(history['epoch'])} epochs from {run / source}{done}")
    why_not = _latent_scatter(run, spec, out / "latent.png", args.max_points)
    if why_not:
        print(f"no latent scatter: {why_not}")
    return 0


def _latent_scatter(run: Path, spec, path: Path, max_points: int) -> str | None:
    """Draw the run's held-out posterior means coloured by label; returns why
    not when the run cannot give them."""
    import fastvae
    from fastvae import data, latent
    from fastvae.cli import plotting, run_folder

    if spec is None:
        return f"{run} has no {run_folder.RUN_FILE} (a run from an older fastvae)"
    d = spec.get("data", {})
    if not d.get("n_classes"):
        return f"the run's data ({d.get('name')}) has no labels"
    model_path = run / run_folder.MODEL_FILE
    if not model_path.is_file():
        return f"{model_path} does not exist yet"
    model = fastvae.load(model_path)
    dataset = data.load_dataset(
        d["source"],
        data_dir=d.get("data_dir"),
        split=d.get("split", "train"),
        n_samples=d.get("n_samples"),
    )
    part = "training"
    if d.get("validation"):
        _, dataset = data.train_validation_split(
            dataset, n_validation=d["validation"], seed=d.get("split_seed", 0)
        )
        part = "held-out"
    if dataset.X.shape[1] != model.n_features_in_ or dataset.y is None:
        return f"the data at {d['source']} no longer match the model"
    dataset = dataset.subset(slice(0, max_points))
    Z = model.transform(dataset.X, _conditions(model, dataset)).astype(np.float64)
    what = "posterior means" if hasattr(model, "sample") else "codes"
    k = Z.shape[1]
    if k == 1:
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(Z))
        points = np.column_stack([Z[:, 0], dataset.y + jitter])
        axes = (f"z0 ({what})", "label (jittered)")
    elif k == 2:
        points, axes = Z, (f"z0 ({what})", f"z1 ({what})")
    else:
        points, explained = latent.principal_components(Z, 2)
        axes = tuple(
            f"PC{c + 1} of the {k}-D {what} ({explained[c]:.0%} of variance)"
            for c in range(2)
        )
    names = _CLASS_NAMES.get(dataset.name)
    if names is not None and len(names) < int(dataset.y.max()) + 1:
        names = None
    plotting.latent_scatter(
        points,
        dataset.y,
        path,
        class_names=names,
        axis_labels=axes,
        title=f"{what} of {len(Z)} {part} rows of {dataset.name}, coloured by label",
    )
    print(
        f"wrote {path}: {len(Z)} {part} rows"
        + (", first two principal components" if k > 2 else "")
    )
    return None


def _split_for(args) -> str:
    is_file = args.data.lower().endswith((".npy", ".npz", ".csv"))
    return "train" if is_file else args.split


def _check_width(model, dataset) -> None:
    if dataset.X.shape[1] != model.n_features_in_:
        raise UserError(
            f"{dataset.name} has {dataset.X.shape[1]} features per sample but the "
            f"model was trained on {model.n_features_in_}"
        )


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# -- entry point --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the ``fastvae`` command line; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        0 on success, 2 for a usage or input error, 130 when interrupted.
    """
    from fastvae.data import DataError
    from fastvae.exceptions import ModelFileError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("fastvae: interrupted", file=sys.stderr)
        return 130
    except (UserError, DataError, ModelFileError, *_USER_ERRORS) as exc:
        if os.environ.get("FASTVAE_DEBUG"):
            raise
        message = (
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        print(f"fastvae: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
