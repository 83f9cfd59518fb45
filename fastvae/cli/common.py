"""What the subcommands of ``fastvae`` share: the user-error type, loading
data named on the command line, and checks of a model against the data."""

from __future__ import annotations

import numpy as np

# Errors that describe a problem with the user's input or files.
USER_ERRORS = (
    ValueError,
    TypeError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    FloatingPointError,
    MemoryError,
)


DEFAULT_OUT = "fastvae-run"


class UserError(Exception):
    """A problem with the command line the user gave."""


def load_data(args, split: str = "train"):
    """The data named by --data (and --data-dir, --n-samples, --download),
    divided by --scale when given."""
    from fastvae import data

    dataset = data.load_dataset(
        args.data,
        data_dir=args.data_dir,
        split=split,
        n_samples=args.n_samples,
        download=args.download,
    )
    return scaled(dataset, getattr(args, "scale", None))


def scaled(dataset, scale: float | None):
    """The dataset with X divided by `scale` (--scale; None or 1: as it is)."""
    import dataclasses

    if scale is None or scale == 1:
        return dataset
    return dataclasses.replace(dataset, X=dataset.X / np.float32(scale))


# Names of the model's parameters in errors, as the options of fastvae train.
_NAMES = {
    "latent_dim": "--latent-dim",
    "batch_size": "--batch-size",
    "kl_warmup": "--kl-warmup",
    "n_latent_samples": "--latent-samples",
    "objective": "--objective",
    "n_threads": "--threads",
    "hidden": "--hidden",
    "lr": "--lr",
    "beta": "--beta",
    "sigma": "--sigma",
    "corruption": "--corruption",
    "epochs": "--epochs",
    "random_state": "--seed",
    "seed": "--seed",
    "likelihood": "--likelihood",
    "activation": "--activation",
    "optimizer": "--optimizer",
}


def as_flags(message: str) -> str:
    """A settings message in the words of the command line: a parameter
    named as the subject of a rule ("latent_dim must be ...") or with its
    value ("lr=0.001", "likelihood='gaussian'") becomes the option that sets
    it ("--latent-dim must be ...", "--lr 0.001", "--likelihood gaussian")."""
    import re

    names = "|".join(sorted(_NAMES, key=len, reverse=True))

    def option(match: re.Match) -> str:
        flag = _NAMES[match["name"]]
        if match["value"] is not None:
            return f"{flag} {match['value']}"
        return f"{flag} must"

    return re.sub(
        rf"(?<![\w./-])(?P<name>{names})(?:='?(?P<value>[^'\s,;)]+)'?| must)",
        option,
        message,
    )


def check_unit_interval(dataset, option: str) -> None:
    """Bernoulli data must lie in [0, 1]; say how to get there from here."""
    X = dataset.X
    lo, hi = float(X.min()), float(X.max())
    if lo >= 0.0 and hi <= 1.0:
        return
    if lo >= 0.0 and hi <= 255.0 and np.array_equal(X, np.round(X)):
        how = "they look like 8-bit pixel values: pass --scale 255"
    else:
        how = f"pass --scale S to divide them (S >= {hi:.4g}), or --likelihood gaussian"
    raise UserError(
        f"{dataset.name} has values in [{lo:.4g}, {hi:.4g}] but {option} needs "
        f"values in [0, 1]; {how}"
    )


def conditions_for(model, dataset):
    """One-hot labels of the data for a conditional model, else None."""
    from fastvae import data

    if not getattr(model, "n_conditions_", 0):
        return None
    if dataset.y is None:
        raise UserError(f"the model is conditional but {dataset.name} has no labels")
    return data.one_hot(dataset.y, model.n_conditions_)


def image_shape(dataset, n_features: int):
    """The dataset's image shape, or a square one when the features make one."""
    if dataset is not None and dataset.image_shape is not None:
        return dataset.image_shape
    side = int(round(n_features**0.5))
    return (side, side) if side * side == n_features else None


def validation_label(kind: str) -> str:
    return "validation -ELBO" if kind == "vae" else "validation -log p(x | code)"


def write_samples(model, shape, path, n, seed, label):
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


# Names of the classes of the built-in and MNIST-family data, for legends.
CLASS_NAMES = {
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


def picture_shape(model, dataset=None):
    shape = image_shape(dataset, model.n_features_in_)
    if shape is None:
        raise UserError(
            f"the model's {model.n_features_in_} features are not a square image; "
            "there is nothing to draw"
        )
    return shape


def check_index(option: str, index: int, dataset, split: str) -> None:
    if not 0 <= index < len(dataset):
        raise UserError(
            f"{option} {index} is out of range: {dataset.name} ({split}) has "
            f"{len(dataset)} rows, 0 to {len(dataset) - 1}"
        )


def decode_label(model, label):
    """--label checked against the model: a class of a conditional model."""
    n = model.n_conditions_
    if label is None:
        return None
    if not n:
        raise UserError("--label needs a conditional model (train --conditional)")
    if not 0 <= label < n:
        raise UserError(f"--label must be in [0, {n}), got {label}")
    return label


def split_for(args) -> str:
    is_file = args.data.lower().endswith((".npy", ".npz", ".csv"))
    return "train" if is_file else args.split


def check_width(model, dataset) -> None:
    """The data must have the model's features, and values in a range the
    model has seen (at most one training range beyond either end of it)."""
    if dataset.X.shape[1] != model.n_features_in_:
        raise UserError(
            f"{dataset.name} has {dataset.X.shape[1]} features per sample but the "
            f"model was trained on {model.n_features_in_}"
        )
    seen = getattr(model, "training_data_", None)
    if not seen or not len(dataset):
        return
    lo, hi = seen["min"], seen["max"]
    span = (hi - lo) or 1.0
    got_lo, got_hi = float(dataset.X.min()), float(dataset.X.max())
    if got_lo < lo - span or got_hi > hi + span:
        raise UserError(
            f"{dataset.name} has values in [{got_lo:.4g}, {got_hi:.4g}] but the "
            f"model was trained on values in [{lo:.4g}, {hi:.4g}]; scale the data as "
            "the training data were"
        )


def source_of(model) -> dict:
    """Where the model's training data came from (fastvae train records it)."""
    return (getattr(model, "training_data_", None) or {}).get("source") or {}


def model_data(args, model):
    """The data a subcommand runs the model on: --data, or by default the
    data the model was trained on (named in its file by fastvae train),
    checked to fit the model.

    Sets args.data (and args.data_dir) when it was not given; the split is
    split_for(args)."""
    source = source_of(model)
    if args.data is None:
        if not isinstance(source.get("data"), str):
            raise UserError(
                f"--data is needed: {args.model} does not say what it was trained "
                "on (it was not written by fastvae train, or by an older fastvae)"
            )
        args.data = source["data"]
        if args.data_dir is None:
            args.data_dir = source.get("data_dir")
    if args.scale is None:
        args.scale = source.get("scale")
    dataset = load_data(args, split=split_for(args))
    check_width(model, dataset)
    return dataset


def json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def validation_rows(validation, n: int) -> int:
    """Rows --validation holds out of n: a fraction (float) or a count."""
    if isinstance(validation, float):
        return int(round(validation * n)) if n > 1 else 0
    return min(int(validation), n - 1)
