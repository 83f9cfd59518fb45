"""What ends a ``fastvae train`` run early, and what the user is told: the
training controls (--early-stopping, --max-time) and Ctrl-C."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from fastvae.cli.common import UserError


@contextmanager
def reporting_interrupts(out: Path, checkpoint: Path):
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
                f", {plural(info['epoch_step'], 'step')} into epoch "
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


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def training_controls(args, validation: bool) -> dict:
    """The callbacks of --early-stopping, --lr-schedule and --max-time, by
    name."""
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
    if getattr(args, "lr_schedule", None) is not None:
        from fastvae.schedules import parse_schedule

        try:
            controls["lr_schedule"] = parse_schedule(
                args.lr_schedule, monitor="val_elbo" if validation else "elbo"
            )
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if args.max_time is not None:
        controls["max_time"] = MaxTime(args.max_time)
    return controls


def how_it_stopped(controls: dict, model, args, out: Path) -> dict | None:
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
                f"{plural(early.patience, 'epoch')}; the model has the "
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
