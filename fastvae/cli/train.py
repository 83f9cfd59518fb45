"""``fastvae train``: train a model into a run folder (model, checkpoint,
history, metrics, pictures), resume it, or train over MPI ranks."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from fastvae.callbacks import LambdaCallback
from fastvae.cli.common import (
    USER_ERRORS,
    UserError,
    as_flags,
    check_unit_interval,
    conditions_for,
    image_shape,
    json_default,
    load_data,
    validation_label,
    write_samples,
)
from fastvae.cli.parser import build_parser

# Options of train that --resume may set; every other one comes from the run.
# --mpi too: a checkpoint holds global state, so a run may go on with another
# number of MPI ranks.
_RESUME_OPTIONS = (
    "resume",
    "epochs",
    "threads",
    "quiet",
    "checkpoint_every",
    "mpi",
    "max_time",
)

# Everything fastvae train writes into its folder: what --overwrite removes.
_RUN_FILES = (
    "run.json",
    "metrics.jsonl",
    "history.json",
    "model.npz",
    "checkpoint.npz",
    "loss_curve.png",
    "samples.png",
    "reconstructions.png",
    "latent.png",
)


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


def train_command(args) -> int:
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
        user = isinstance(exc, (UserError, DataError, ModelFileError, *USER_ERRORS))
        debug = bool(os.environ.get("FASTVAE_DEBUG"))
        distributed.abort(
            group.comm, exc, 2 if user else 1, show_traceback=not user or debug
        )
        raise  # not reached: abort ends the process


def _train_on(args, group) -> int:
    """fastvae train on this process, or on this rank of an MPI job (group):
    every rank loads the data and trains its shards; rank 0 alone prints,
    locks the run folder and writes it."""
    from contextlib import nullcontext

    from fastvae.cli.run_lock import RunLock

    root = group is None or group.is_root
    if args.resume is None:
        args.epochs = _DEFAULT_EPOCHS if args.epochs is None else args.epochs
        try:  # bad settings first: no folder made, no data loaded for nothing
            make_model(args)._settings()
        except (ValueError, TypeError) as exc:
            raise UserError(as_flags(str(exc))) from None
        out = Path(args.out)
    else:
        from fastvae.models.checkpoint import checkpoint_path

        try:
            out = checkpoint_path(args.resume, must_exist=True).parent
        except FileNotFoundError as exc:
            raise UserError(str(exc)) from None
    if root:
        out.mkdir(parents=True, exist_ok=True)
    with RunLock(out) if root else nullcontext():
        return _train_locked(args, group, root)


def _train_locked(args, group, root: bool) -> int:
    """_train_on's body, holding the run folder's lock on rank 0."""
    import fastvae
    from fastvae import data
    from fastvae._atomic import write_atomic
    from fastvae.cli import plotting, run_folder

    info = None
    if args.resume is not None:
        info = fastvae.checkpoint_info(args.resume)
        args = _resumed_arguments(args, info)
        if info["finished"] and args.epochs <= info["epochs_done"]:
            raise UserError(
                f"the run in {info['path'].parent} is finished "
                f"({info['epochs_done']} of {info['epochs']} epochs); nothing to "
                f"resume. Pass --epochs N with N > {info['epochs_done']} to train "
                "it further"
            )
    else:
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
    if root and info is None:
        _clear_or_refuse(out, checkpoint, args.overwrite)
    if group is not None and args.download:  # rank 0 downloads, the others wait
        if not root:
            group.comm.Barrier()
        dataset = load_data(args)
        if root:
            group.comm.Barrier()
    else:
        dataset = load_data(args)
    if args.likelihood == "bernoulli":
        check_unit_interval(dataset, "--likelihood bernoulli")
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
    settings = {k: v for k, v in vars(args).items() if k != "resume"}
    every = args.checkpoint_every
    comm = None if group is None else group.comm
    source = _data_source(args, dataset)

    def name_the_data(model, info):
        # fit has made training_data_; the model file and checkpoints then
        # say where the data came from, for eval and the pictures.
        model.training_data_["source"] = source

    controls = _training_controls(args, validation is not None)

    def train(callbacks=None):
        callbacks = [
            LambdaCallback(on_train_begin=name_the_data),
            *(callbacks or []),
            *controls.values(),
        ]
        if info is None:
            return make_model(args).fit(
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
        how = _plural(threads, "thread")
    else:
        threads = group.default_threads() if args.threads is None else args.threads
        how = (
            f"{group.size} MPI ranks x {_plural(threads, 'thread')}, global batch "
            f"{args.batch_size}"
        )
    print(
        f"fastvae: training a {args.model} on {dataset.name}: "
        f"{_plural(len(train_set), 'sample')} x "
        f"{_plural(train_set.X.shape[1], 'feature')}"
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
    with (
        _reporting_interrupts(out, checkpoint),
        run_folder.MetricsLog(
            out / run_folder.METRICS_FILE, append=info is not None
        ) as log,
    ):
        if info is None:
            model = train([log])
            done_before = 0
        else:
            print(
                f"fastvae: resuming {info['path']} after "
                f"{_plural(info['epochs_done'], 'epoch')}"
                + (
                    f" and {_plural(info['epoch_step'], 'step')}"
                    if info["epoch_step"]
                    else ""
                )
                + f", to {_plural(args.epochs, 'epoch')}",
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
    stops = _how_it_stopped(controls, model, args, out)
    record = {
        "settings": settings,
        "stopped": stops,
        "data": {
            "name": dataset.name,
            "n_train": len(train_set),
            "n_validation": 0 if val_set is None else len(val_set),
            "n_features": int(train_set.X.shape[1]),
        },
        "seconds": seconds,
        "history": model.history_,
    }
    text = json.dumps(record, indent=1, default=json_default)
    write_atomic(paths["history"], lambda f: f.write(text.encode("utf-8")))
    if model.history_["epoch"]:
        plotting.loss_curve(
            model.history_,
            paths["loss_curve"],
            title=f"fastvae on {dataset.name}",
            validation_label=validation_label(args.model),
        )
    else:  # stopped (--max-time) before the first epoch ended
        del paths["loss_curve"]
    shape = image_shape(dataset, train_set.X.shape[1])
    if shape is not None:
        paths["samples"] = out / "samples.png"
        paths["reconstructions"] = out / "reconstructions.png"
        write_samples(model, shape, paths["samples"], 64, args.seed, None)
        shown_set = val_set if val_set is not None else train_set
        shown = shown_set.X[:16]
        shown_cond = conditions_for(model, shown_set.subset(slice(0, 16)))
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
    trained = (
        f"trained {_plural(model.n_iter_, 'epoch')} "
        f"({_plural(model.t_, 'step')}) in {seconds:.1f} s: "
        f"{n_seen / seconds:,.0f} samples/s"
        + (" since the resume" if info is not None else "")
    )
    lines = [trained]
    if h["loss"]:
        lines.append(
            f"final train loss {h['loss'][-1]:.3f} nats/sample "
            f"(ELBO {h['elbo'][-1]:.3f})"
        )
    if h["val_elbo"] and h["val_elbo"][-1] is not None:
        what = "ELBO" if args.model == "vae" else "reconstruction log-likelihood"
        last = f"{h['val_elbo'][-1]:.3f} after epoch {model.n_iter_}"
        if model.n_iter_ > 1:
            last = f"{h['val_elbo'][0]:.3f} after epoch 1 -> {last}"
        lines.append(f"validation {what} {last}")
    if stops is not None:
        lines.append(stops["message"])
    if args.quiet:  # the files in one line
        lines.append(f"wrote {out}: " + ", ".join(path.name for path in paths.values()))
    else:
        lines += [f"{name:>15}: {path}" for name, path in paths.items()]
    print("\n".join(lines))
    return 0


@contextmanager
def _reporting_interrupts(out: Path, checkpoint: Path):
    """On Ctrl-C, say where the last checkpoint is and how to go on from it
    (fastvae.cli.main then prints "interrupted" and exits with 130)."""
    try:
        yield
    except KeyboardInterrupt:
        import fastvae
        from fastvae.exceptions import ModelFileError

        try:
            info = fastvae.checkpoint_info(checkpoint)
        except (FileNotFoundError, ModelFileError):
            info = None
        if info is None:
            print(
                f"fastvae: no checkpoint was written to {checkpoint} before the "
                "interrupt; the run cannot be resumed",
                file=sys.stderr,
            )
        else:
            at = f"{info['epochs_done']} of {info['epochs']} epochs done" + (
                f", {_plural(info['epoch_step'], 'step')} into epoch "
                f"{info['epochs_done'] + 1}"
                if info["epoch_step"]
                else ""
            )
            print(
                f"fastvae: the last checkpoint ({at}) is "
                f"{checkpoint}; continue with: fastvae train --resume {out}",
                file=sys.stderr,
            )
        raise


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _training_controls(args, validation: bool) -> dict:
    """The callbacks of --early-stopping and --max-time, by name."""
    from fastvae.callbacks import EarlyStopping, MaxTime

    controls = {}
    if args.early_stopping is not None:
        try:
            controls["early_stopping"] = EarlyStopping(
                "val_elbo" if validation else "elbo",
                patience=args.early_stopping,
                min_delta=args.min_delta,
            )
        except ValueError as exc:
            raise UserError(f"--min-delta: {exc}") from None
    if args.max_time is not None:
        controls["max_time"] = MaxTime(args.max_time)
    return controls


def _how_it_stopped(controls: dict, model, args, out: Path) -> dict | None:
    """What ended training before its last epoch, for the summary and
    history.json, or None."""
    early = controls.get("early_stopping")
    if early is not None and early.stopped_epoch_ is not None:
        which = "validation" if early.monitor == "val_elbo" else "training"
        return {
            "reason": "early_stopping",
            "epoch": early.stopped_epoch_,
            "best_epoch": early.best_epoch_,
            "best": early.best_,
            "message": (
                f"stopped early after epoch {early.stopped_epoch_}: the {which} "
                f"ELBO did not improve by {early.min_delta:g} for "
                f"{_plural(early.patience, 'epoch')}; the model has the "
                f"parameters of epoch {early.best_epoch_} ({early.best_:.3f})"
            ),
        }
    budget = controls.get("max_time")
    if budget is not None and budget.stopped_:
        return {
            "reason": "max_time",
            "epoch": model.n_iter_,
            "step": model.t_,
            "message": (
                f"stopped at the time budget (--max-time {budget.seconds:g} s) at "
                f"step {model.t_}; continue with: fastvae train --resume {out}"
            ),
        }
    return None


def _data_source(args, dataset) -> dict:
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
            "settings": dict(vars(args)),
        },
    )


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
                "--threads, --checkpoint-every, --max-time, --mpi and --quiet)"
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
        max_time=args.max_time,
        epochs=info["epochs"] if args.epochs is None else args.epochs,
        threads=stored.get("threads") if args.threads is None else args.threads,
        checkpoint_every=(
            stored.get("checkpoint_every", 1)
            if args.checkpoint_every is None
            else args.checkpoint_every
        ),
    )
    return argparse.Namespace(**merged)


def _clear_or_refuse(out: Path, checkpoint: Path, overwrite: bool) -> None:
    """A new run into `out`: refuse when a run is already there (one that can
    go on is named as such), or with --overwrite remove its files first, so
    that nothing of it mixes with the new one."""
    import fastvae
    from fastvae.exceptions import ModelFileError

    present = [name for name in _RUN_FILES if (out / name).is_file()]
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


def make_model(args):
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
        random_state=args.seed,
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
