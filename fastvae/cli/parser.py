"""The argument parser of the ``fastvae`` command and its value types."""

from __future__ import annotations

import argparse

from fastvae.cli.common import DEFAULT_OUT
from fastvae.models.columns import COUNT_KINDS
from fastvae.models.settings import HIDDEN_ACTIVATIONS, LIKELIHOODS
from fastvae.optim import OPTIMIZER_NAMES


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
    p: argparse.ArgumentParser,
    *,
    default: str | None,
    optional: bool = False,
    unset: str = "the data the model was trained on",
    counts: bool = False,
) -> None:
    """--data and the options of loading it; `unset` says what no --data
    means when there is no default; `counts`: train's count data too."""
    p.add_argument(
        "--data",
        default=default,
        required=default is None and not optional,
        help="'shapes' (built in, generated), 'mnist', 'fashion-mnist', "
        "'binarized-mnist', or a .npy/.npz/.csv file"
        + (
            "; count data (cells x genes): an .h5ad file, a CSR folder written "
            "by fastvae.data.save_csr, or a sparse .npz written by "
            "scipy.sparse.save_npz"
            if counts
            else ""
        )
        + " (default: "
        + ("%(default)s" if default is not None else unset)
        + ")",
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
    p.add_argument(
        "--scale",
        type=_positive_float,
        default=None,
        metavar="S",
        help="divide the data by S, e.g. 255 for 8-bit images (default: "
        + ("1" if default is not None else "the training run's")
        + ")",
    )


def _duration(text: str) -> float:
    """Seconds from "90", "90s", "15m" or "2h"."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected a duration > 0 like 90, 90s, 15m or 2h, got {text!r}"
        )
    return value


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
    every other user error (``fastvae: error: ...``, exit status 2), and an
    unknown option with the help of its subcommand."""

    commands: dict[str, argparse.ArgumentParser]

    def error(self, message):
        self.exit(2, f"fastvae: error: {message} (see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(self, "commands", {}).get(getattr(parsed, "command", ""))
            (command or self).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default once: not when its help already says it,
    nor for options that have none (None) or are flags."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            "default" in text
            or action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fastvae`` command."""
    from fastvae._version import __version__

    parser = _Parser(
        prog="fastvae",
        description="Fast Variational Autoencoders on CPUs.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fastvae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = _HelpFormatter

    t = sub.add_parser(
        "train",
        help="train a model and write it, pictures and history",
        formatter_class=fmt,
    )
    _add_data_arguments(t, default="shapes", counts=True)
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
        help="held-out rows: a fraction, a count, or 0 for none, drawn at "
        "random by --seed (count data from a CSR folder or with --backed: the "
        "last rows, read without loading the matrix)",
    )
    t.add_argument(
        "--hidden",
        type=_positive_int,
        nargs="+",
        default=None,
        help="encoder hidden layer widths (the decoder mirrors them) "
        "(default: 400; count data: 128, scVI's)",
    )
    t.add_argument(
        "--latent-dim",
        type=int,
        default=None,
        help="size of z (default: 20; count data: 10, scVI's)",
    )
    t.add_argument(
        "--likelihood",
        default=None,
        choices=(*LIKELIHOODS, *COUNT_KINDS),
        help="p(x | z): bernoulli (data in [0, 1]) or gaussian; for count "
        "data poisson, negbin or zinb (default: bernoulli; count data: zinb)",
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
        choices=HIDDEN_ACTIVATIONS,
        help="activation of the hidden layers",
    )
    t.add_argument(
        "--optimizer",
        default="adam",
        choices=tuple(OPTIMIZER_NAMES),
        help="optimizer (count data: adam with eps 0.01, scVI's; no weight "
        "decay) (default: %(default)s)",
    )
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
    t.add_argument(
        "--batch-size", type=_positive_int, default=128, help="samples per step"
    )
    t.add_argument("--beta", type=float, default=1.0, help="weight of the KL term")
    t.add_argument(
        "--kl-warmup",
        type=int,
        default=None,
        help="steps over which the KL weight rises linearly to beta (default: "
        "0; count data: the steps of 400 epochs, scVI's warm-up, so that the "
        "weight stays below beta for runs shorter than that)",
    )
    t.add_argument(
        "--objective",
        choices=("elbo", "iwae"),
        default="elbo",
        help="the bound training maximises with --latent-samples K: the "
        "K-sample ELBO or the importance-weighted bound (vae only)",
    )
    t.add_argument(
        "--latent-samples",
        type=_positive_int,
        default=1,
        metavar="K",
        help="draws of z per row and step (vae only); K = 1 is the plain ELBO",
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
    t.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=0,
        help="seed of the initial weights, minibatch order, noise and split",
    )
    t.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="compute threads (default: OMP_NUM_THREADS or all cores)",
    )
    t.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float64"),
        help="floating-point type of the parameters and computations",
    )
    t.add_argument(
        "--tabular",
        action="store_true",
        help="train a TabularVAE on a table (automatic for Parquet files and "
        "CSV files with a header and a column of text)",
    )
    c = t.add_argument_group(
        "count data",
        "Cells x genes counts (.h5ad, a CSR folder, a sparse .npz, or --counts) "
        "train scVI's model and write latent.npy, the posterior means of all "
        "cells; these options are for count data only.",
    )
    c.add_argument(
        "--counts",
        action="store_true",
        help="read a dense .npy or .csv of counts as count data",
    )
    c.add_argument(
        "--library",
        default=None,
        choices=("observed", "none"),
        help="observed: a gene's mean is softmax(f(z)) times the cell's total "
        "count (scVI's); none: exp(f(z)) (default: observed)",
    )
    c.add_argument(
        "--dispersion",
        default=None,
        choices=("gene", "gene-batch"),
        help="one negbin/zinb dispersion per gene, or per gene and level of "
        "--condition-key (default: gene)",
    )
    c.add_argument(
        "--layer",
        default=None,
        metavar="NAME",
        help=".h5ad: train on adata.layers[NAME] (e.g. raw counts) instead of adata.X",
    )
    c.add_argument(
        "--condition-key",
        default=None,
        metavar="KEY",
        help=".h5ad: condition encoder and decoder on the column KEY of "
        "adata.obs (e.g. the batch), one-hot",
    )
    c.add_argument(
        "--backed",
        action="store_true",
        help=".h5ad: read adata.X from the file (backed='r') for files bigger "
        "than memory; it is copied to a temporary memory-mapped CSR folder "
        "under TMPDIR and the last rows are held out (layers are always "
        "read into memory)",
    )
    t.add_argument("--out", default=DEFAULT_OUT, help="output folder")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument(
        "--early-stopping",
        type=_positive_int,
        default=None,
        metavar="PATIENCE",
        help="stop when the validation ELBO (the training ELBO with "
        "--validation 0) has not improved by --min-delta for PATIENCE "
        "epochs, and keep the best epoch's parameters (default: off)",
    )
    t.add_argument(
        "--min-delta",
        type=float,
        default=0.0,
        help="improvement in nats that counts for --early-stopping",
    )
    t.add_argument(
        "--lr-schedule",
        default=None,
        metavar="SPEC",
        help="learning-rate schedule: step:EPOCHS[:GAMMA], exponential:GAMMA, "
        "cosine[:MIN_LR], plateau[:PATIENCE[:FACTOR]] (on the validation ELBO) "
        "or iwae (Burda et al.'s 3**i epochs at 10**(-i/7) x --lr) (default: "
        "constant)",
    )
    t.add_argument(
        "--max-time",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="stop at the first step after this much training time (90, 90s, "
        "15m, 2h) with a checkpoint to --resume from; with --resume, a new "
        "budget (default: none)",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (finished or not) instead of "
        "refusing to",
    )
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

    s = sub.add_parser(
        "sample",
        help="decode draws z ~ N(0, I) into a PNG grid, or a table model's "
        "synthetic rows into a CSV or Parquet file",
        formatter_class=fmt,
    )
    s.add_argument("--model", required=True, help="a model file written by train")
    s.add_argument("-n", type=_positive_int, default=64, help="number of samples")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--label", type=int, default=None, help="conditional models: the class to draw"
    )
    s.add_argument(
        "--out",
        default="samples.png",
        help="PNG file to write (a table model: a .csv or .parquet file)",
    )

    im = sub.add_parser(
        "impute",
        help="fill a table's missing values with a model trained on a table",
        formatter_class=fmt,
    )
    im.add_argument("--model", required=True, help="a table model written by train")
    im.add_argument("--data", required=True, help="a CSV or Parquet table")
    im.add_argument("--out", required=True, help="the .csv or .parquet file to write")
    im.add_argument("--seed", type=int, default=0)

    r = sub.add_parser(
        "reconstruct",
        help="originals and reconstructions as a PNG",
        formatter_class=fmt,
    )
    r.add_argument("--model", required=True, help="a model file written by train")
    _add_data_arguments(r, default=None, optional=True)
    r.add_argument("--split", default="test", help="'train' or 'test' (named data)")
    r.add_argument("-n", type=_positive_int, default=16, help="number of images")
    r.add_argument("--out", default="reconstructions.png", help="PNG file to write")

    e = sub.add_parser(
        "eval",
        help="mean ELBO (and importance-sampled log p(x)) of a model on data",
        formatter_class=fmt,
    )
    e.add_argument("--model", required=True, help="a model file written by train")
    _add_data_arguments(e, default=None, optional=True)
    e.add_argument("--split", default="test", help="'train' or 'test' (named data)")
    e.add_argument(
        "--k",
        type=_positive_int,
        default=None,
        help="also estimate log p(x) with k importance samples (VAEs; papers use 5000)",
    )
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.add_argument("--quiet", action="store_true", help="no progress bar during --k")

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
    _add_data_arguments(v, default=None, optional=True, unset="none: around z = 0")
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
    _add_data_arguments(i, default=None, optional=True)
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

    from fastvae.bench import harness

    b = sub.add_parser(
        "bench",
        help="time the training step against NumPy (and PyTorch/JAX when installed)",
        formatter_class=fmt,
    )
    harness.add_arguments(b)
    parser.commands = dict(sub.choices)
    return parser
