"""``fastvae train --resume RUN``: the run's settings come from its
checkpoint; only a few options may change."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastvae.cli.common import UserError
from fastvae.cli.controls import plural
from fastvae.cli.parser import build_parser

# The checkpoint_meta entry naming a run that is not of images or arrays:
# "counts" (fastvae.cli.counts) or "table" (fastvae.cli.tables).
RUN_KIND = "run"

# Options of train that --resume may set; every other one comes from the run.
# --mpi too: a checkpoint holds global state, so a run may go on with another
# number of MPI ranks.
RESUME_OPTIONS = (
    "resume",
    "epochs",
    "threads",
    "quiet",
    "checkpoint_every",
    "mpi",
    "max_time",
)


def resumed_arguments(args, info):
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
        if name not in RESUME_OPTIONS and getattr(args, name) != default:
            raise UserError(
                f"--{name.replace('_', '-')} cannot be given with --resume: the "
                "run's settings come from its checkpoint (--resume takes --epochs, "
                "--threads, --checkpoint-every, --max-time, --mpi and --quiet)"
            )
    merged = {
        **defaults,
        **{
            k: v for k, v in stored.items() if k in defaults and k not in RESUME_OPTIONS
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


def refuse_nothing_to_do(args, info) -> None:
    """UserError when the run has nothing left to train: finished and no
    more --epochs asked for, or stopped early by --early-stopping."""
    if info["finished"] and args.epochs <= info["epochs_done"]:
        raise UserError(
            f"the run in {info['path'].parent} is finished "
            f"({info['epochs_done']} of {info['epochs']} epochs); nothing to "
            f"resume. Pass --epochs N with N > {info['epochs_done']} to train "
            "it further"
        )
    early = info["callbacks"].get("EarlyStopping", {})
    if args.early_stopping and early.get("wait", 0) >= args.early_stopping:
        raise UserError(
            f"the run in {info['path'].parent} stopped early after "
            f"{plural(info['epochs_done'], 'epoch')} (no improvement for "
            f"{plural(args.early_stopping, 'epoch')}; best at epoch "
            f"{early.get('best_epoch')}); nothing to resume"
        )


def run_kind(resume) -> str | None:
    """RUN_KIND of the run --resume names, read from its checkpoint; None
    for image and array runs, and for a missing or unreadable checkpoint
    (the image path then says why)."""
    import fastvae
    from fastvae.exceptions import ModelFileError
    from fastvae.models.checkpoint import checkpoint_path

    try:
        info = fastvae.checkpoint_info(checkpoint_path(resume, must_exist=True))
    except (FileNotFoundError, ModelFileError):
        return None
    kind = info["meta"].get(RUN_KIND)
    return kind if isinstance(kind, str) else None


def check_checkpoint_every(args) -> None:
    """--checkpoint-every: 1 when not given, and never negative."""
    if args.checkpoint_every is None:
        args.checkpoint_every = 1
    if args.checkpoint_every < 0:
        raise UserError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")


@contextmanager
def resumed_run(args) -> Iterator[tuple[argparse.Namespace, dict, Path]]:
    """For the body of a --resume of a count or table run: the run folder
    locked, and (the run's arguments, its checkpoint_info, the folder),
    after refusing a run with nothing left to do."""
    import fastvae
    from fastvae.cli.run_lock import RunLock
    from fastvae.models.checkpoint import checkpoint_path

    path = checkpoint_path(args.resume, must_exist=True)
    out = path.parent
    with RunLock(out):
        info = fastvae.checkpoint_info(path)  # again, now that the run is ours
        args = resumed_arguments(args, info)
        refuse_nothing_to_do(args, info)
        check_checkpoint_every(args)
        yield args, info, out
