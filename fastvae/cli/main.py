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

import os
import sys
import warnings

from fastvae.cli.common import USER_ERRORS, UserError, as_flags
from fastvae.cli.evaluate import eval_command
from fastvae.cli.parser import build_parser
from fastvae.cli.pictures import (
    interpolate_command,
    plot_command,
    reconstruct_command,
    sample_command,
    traverse_command,
)
from fastvae.cli.tables import impute_command
from fastvae.cli.train import train_command

__all__ = ["main", "build_parser"]


def _command(name: str):
    """The function that runs the subcommand `name` with the parsed arguments."""
    if name == "bench":
        from fastvae.bench import harness

        return harness.run_from_args
    return {
        "train": train_command,
        "sample": sample_command,
        "reconstruct": reconstruct_command,
        "eval": eval_command,
        "traverse": traverse_command,
        "interpolate": interpolate_command,
        "plot": plot_command,
        "impute": impute_command,
    }[name]


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
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return _command(args.command)(args)
    except KeyboardInterrupt:
        print("fastvae: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output has gone (fastvae ... | head): stop
        # quietly, and keep Python from complaining again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE
    except (UserError, DataError, ModelFileError, *USER_ERRORS) as exc:
        if os.environ.get("FASTVAE_DEBUG"):
            raise
        message = (
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        print(f"fastvae: error: {as_flags(message)}", file=sys.stderr)
        return 2


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """A warning on the command line: one line, without Python's source line."""
    print(
        f"fastvae: warning: {as_flags(str(message))}",
        file=sys.stderr if file is None else file,
    )


if __name__ == "__main__":
    sys.exit(main())
