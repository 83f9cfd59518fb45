"""``fastvae train``: train a model into a run folder (model, checkpoint,
history, metrics, pictures), resume it, or train over MPI ranks."""

from __future__ import annotations

import json
import os
import sys
import time
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
from fastvae.cli.controls import (
    how_it_stopped,
    plural,
    reporting_interrupts,
    training_controls,
)
from fastvae.cli.resume import (
    check_checkpoint_every,
    refuse_nothing_to_do,
    resumed_arguments,
    run_kind,
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


# The defaults of the options whose default depends on the data: images,
# arrays and tables (count data has scVI's, fastvae.cli.counts).
_DEFAULTS = {
    "hidden": [400],
    "latent_dim": 20,
    "likelihood": "bernoulli",
    "kl_warmup": 0,
}


def train_command(args) -> int:
    from fastvae.cli.counts import (
        is_counts,
        refuse_count_options,
        refuse_count_run_without_checkpoint,
        resume_counts,
        train_counts,
    )
    from fastvae.cli.tables import is_table, resume_table, train_table

    if args.resume is None:
        if is_counts(args):
            return train_counts(args)
        refuse_count_options(args)
        for name, default in _DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, default)
        if is_table(args):
            return train_table(args)
    else:
        refuse_count_run_without_checkpoint(args.resume)
        kind = run_kind(args.resume)
        if kind == "counts":
            return resume_counts(args)
        if kind == "table":
            return resume_table(args)
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
        args = resumed_arguments(args, info)
        refuse_nothing_to_do(args, info)
    else:
        # Absolute paths, so that --resume works from any folder.
        is_file = args.data.lower().endswith((".npy", ".npz", ".csv"))
        if is_file and Path(args.data).is_file():
            args.data = str(Path(args.data).resolve())
        if args.data_dir is not None and Path(args.data_dir).is_dir():
            args.data_dir = str(Path(args.data_dir).resolve())
    check_checkpoint_every(args)
    out = Path(args.out)
    checkpoint = out / "checkpoint.npz"
    if root and info is None:
        run_folder.clear_or_refuse(out, checkpoint, args.overwrite)
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
    source = run_folder.data_source(args, dataset)

    def name_the_data(model, info):
        # fit has made training_data_; the model file and checkpoints then
        # say where the data came from, for eval and the pictures.
        model.training_data_["source"] = source

    controls = training_controls(args, validation is not None)

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
        how = plural(threads, "thread")
    else:
        threads = group.default_threads() if args.threads is None else args.threads
        how = (
            f"{group.size} MPI ranks x {plural(threads, 'thread')}, global batch "
            f"{args.batch_size}"
        )
    print(
        f"fastvae: training a {args.model} on {dataset.name}: "
        f"{plural(len(train_set), 'sample')} x "
        f"{plural(train_set.X.shape[1], 'feature')}"
        + (f", {len(val_set)} held out" if val_set is not None else "")
        + f"; {how}",
        flush=True,
    )
    if not args.quiet:
        from fastvae.config import blas_warnings

        for note in blas_warnings():
            print(f"fastvae: note: {note}", file=sys.stderr, flush=True)
    if info is None:
        run_folder.write_run_spec(out, args, dataset, train_set, val_set)
    if info is not None:
        run_folder.truncate_metrics(out / run_folder.METRICS_FILE, info["epochs_done"])
    start = time.perf_counter()
    with (
        reporting_interrupts(out, checkpoint),
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
                f"{plural(info['epochs_done'], 'epoch')}"
                + (
                    f" and {plural(info['epoch_step'], 'step')}"
                    if info["epoch_step"]
                    else ""
                )
                + f", to {plural(args.epochs, 'epoch')}",
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
    stops = how_it_stopped(controls, model, args, out)
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
    # Samples trained: whole epochs, and the steps of one stopped mid-epoch.
    batch = min(model.batch_size, len(train_set))
    steps_per_epoch = -(-len(train_set) // batch)
    into_epoch = model.t_ - model.n_iter_ * steps_per_epoch
    n_seen = (
        len(train_set) * model.n_iter_
        + min(max(into_epoch, 0) * batch, len(train_set))
        - done_before
    )
    trained = (
        f"trained {plural(model.n_iter_, 'epoch')} "
        f"({plural(model.t_, 'step')}) in {seconds:.1f} s: "
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
    active = h.get("active_units", [None])[-1:] or [None]
    if active[0] is not None:
        k = model.latent_dim
        lines.append(
            f"latent dimensions: {active[0]} of {k} active on the validation data "
            "(Cov of E_q[z_j] > 0.01)"
            + (" -- most have collapsed to the prior" if active[0] < k / 2 else "")
        )
    if stops is not None:
        lines.append(stops["message"])
    if args.quiet:  # the files in one line
        lines.append(f"wrote {out}: " + ", ".join(path.name for path in paths.values()))
    else:
        lines += [f"{name:>15}: {path}" for name, path in paths.items()]
    print("\n".join(lines))
    return 0


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
        return fastvae.VAE(
            beta=args.beta,
            kl_warmup=args.kl_warmup,
            objective=args.objective,
            n_latent_samples=args.latent_samples,
            **common,
        )
    if args.objective != "elbo" or args.latent_samples != 1:
        raise UserError(
            f"--objective and --latent-samples need --model vae (a {args.model} "
            "has one code per row)"
        )
    if args.model == "ae":
        return fastvae.Autoencoder(**common)
    return fastvae.DenoisingAutoencoder(**common)
