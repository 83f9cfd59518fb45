"""The ``fastvae`` command: train, sample, reconstruct, evaluate and benchmark.

``fastvae train`` with no arguments trains the default model on the built-in
shapes data and writes the model, pictures and the training history into
``fastvae-run/``. Mistakes a user can make (a missing file, an unknown option
value, data of the wrong shape) end with one ``fastvae: error: ...`` line and
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
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, IsADirectoryError,
                NotADirectoryError, PermissionError, FloatingPointError,
                MemoryError)

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


def _add_data_arguments(p: argparse.ArgumentParser, *, default: str | None) -> None:
    p.add_argument(
        "--data", default=default, required=default is None,
        help="'shapes' (built in, generated), 'mnist', 'fashion-mnist', "
        "'binarized-mnist', or a .npy/.npz/.csv file (default: %(default)s)",
    )
    p.add_argument(
        "--data-dir", default=None,
        help="folder with the MNIST-family files (or its parent); default: "
        "$FASTVAE_DATA_DIR, else ~/.cache/fastvae",
    )
    p.add_argument("--n-samples", type=_positive_int, default=None,
                   help="use only this many rows (shapes: how many to generate)")
    p.add_argument("--download", action="store_true",
                   help="download missing MNIST-family files (checksums verified)")


def _sigma(text: str):
    if text == "learned":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or 'learned', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fastvae`` command."""
    from fastvae import __version__

    parser = argparse.ArgumentParser(
        prog="fastvae",
        description="Fast Variational Autoencoders on CPUs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fastvae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    t = sub.add_parser("train", help="train a model and write it, pictures and history",
                       formatter_class=fmt)
    _add_data_arguments(t, default="shapes")
    t.add_argument("--model", default="vae", choices=("vae", "ae", "dae"),
                   help="VAE, plain autoencoder, or denoising autoencoder")
    t.add_argument("--conditional", action="store_true",
                   help="condition encoder and decoder on the data's labels (one-hot)")
    t.add_argument("--validation", type=_fraction_or_count, default=0.1,
                   help="held-out rows: a fraction, a count, or 0 for none")
    t.add_argument("--hidden", type=_positive_int, nargs="+", default=[400],
                   help="encoder hidden layer widths (the decoder mirrors them)")
    t.add_argument("--latent-dim", type=int, default=20, help="size of z")
    t.add_argument("--likelihood", default="bernoulli",
                   help="'bernoulli' (data in [0, 1]) or 'gaussian'")
    t.add_argument("--sigma", type=_sigma, default=1.0,
                   help="observation noise of the Gaussian likelihood, or 'learned' "
                   "(one per feature)")
    t.add_argument("--activation", default="relu",
                   help="hidden activation: relu, tanh, sigmoid or identity")
    t.add_argument("--optimizer", default="adam", help="adam, momentum or sgd")
    t.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 1e-3 for adam, 0.01 otherwise)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--beta", type=float, default=1.0, help="weight of the KL term")
    t.add_argument("--kl-warmup", type=int, default=0,
                   help="steps over which the KL weight rises linearly to beta")
    t.add_argument("--corruption", type=float, default=None,
                   help="probability of zeroing each input value during training "
                   "(denoising; default 0.25 for dae, else 0)")
    t.add_argument("--binarize", default="none", choices=("none", "static", "dynamic"),
                   help="binary training targets: drawn once (static) or at every "
                   "step (dynamic) as Bernoulli(x)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None,
                   help="compute threads (default: OMP_NUM_THREADS or all cores)")
    t.add_argument("--dtype", default="float32", help="float32 or float64")
    t.add_argument("--out", default=_DEFAULT_OUT, help="output folder")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(handler=_train)

    s = sub.add_parser("sample", help="decode draws z ~ N(0, I) into a PNG grid",
                       formatter_class=fmt)
    s.add_argument("--model", required=True, help="a model file written by train")
    s.add_argument("-n", type=_positive_int, default=64, help="number of samples")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--label", type=int, default=None,
                   help="conditional models: the class to draw")
    s.add_argument("--out", default="samples.png", help="PNG file to write")
    s.set_defaults(handler=_sample)

    r = sub.add_parser("reconstruct", help="originals and reconstructions as a PNG",
                       formatter_class=fmt)
    r.add_argument("--model", required=True, help="a model file written by train")
    _add_data_arguments(r, default="shapes")
    r.add_argument("--split", default="test", help="'train' or 'test' (named data)")
    r.add_argument("-n", type=_positive_int, default=16, help="number of images")
    r.add_argument("--out", default="reconstructions.png", help="PNG file to write")
    r.set_defaults(handler=_reconstruct)

    e = sub.add_parser("eval", help="mean ELBO (and importance-sampled log p(x)) of a "
                       "model on data", formatter_class=fmt)
    e.add_argument("--model", required=True, help="a model file written by train")
    _add_data_arguments(e, default="shapes")
    e.add_argument("--split", default="test", help="'train' or 'test' (named data)")
    e.add_argument("--k", type=_positive_int, default=None,
                   help="also estimate log p(x) with k importance samples (VAEs; "
                   "papers use 5000)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(handler=_eval)

    from fastvae.bench import harness

    b = sub.add_parser("bench", help="time the training step against NumPy (and "
                       "PyTorch/JAX when installed)", formatter_class=fmt)
    harness.add_arguments(b)
    b.set_defaults(handler=harness.run_from_args)
    return parser


# -- subcommands ------------------------------------------------------------------


def _load_data(args, split: str = "train"):
    from fastvae import data

    return data.load_dataset(args.data, data_dir=args.data_dir, split=split,
                             n_samples=args.n_samples, download=args.download)


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
    side = int(round(n_features ** 0.5))
    return (side, side) if side * side == n_features else None


def _train(args) -> int:
    import fastvae
    from fastvae import data, plotting
    from fastvae.io import write_atomic

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = _load_data(args)
    if args.validation:
        train_set, val_set = data.train_validation_split(
            dataset, n_validation=args.validation, seed=args.seed)
    else:
        train_set, val_set = dataset, None
    model = _make_model(args)
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
    print(f"fastvae: training a {args.model} on {dataset.name}: {len(train_set)} "
          f"samples x {train_set.X.shape[1]} features"
          + (f", {len(val_set)} held out" if val_set is not None else "")
          + f"; {fastvae.get_num_threads() if args.threads is None else args.threads}"
          " threads", flush=True)
    validation = None
    if val_set is not None:
        validation = val_set.X if val_cond is None else (val_set.X, val_cond)
    start = time.perf_counter()
    model.fit(train_X, condition=cond, validation_data=validation)
    seconds = time.perf_counter() - start

    paths = {"model": out / "model.npz", "history": out / "history.json",
             "loss_curve": out / "loss_curve.png"}
    model.save(paths["model"])
    record = {
        "settings": {k: v for k, v in vars(args).items() if k != "handler"},
        "data": {"name": dataset.name, "n_train": len(train_set),
                 "n_validation": 0 if val_set is None else len(val_set),
                 "n_features": int(train_set.X.shape[1])},
        "seconds": seconds,
        "history": model.history_,
    }
    text = json.dumps(record, indent=1, default=_json_default)
    write_atomic(paths["history"], lambda f: f.write(text.encode("utf-8")))
    plotting.loss_curve(model.history_, paths["loss_curve"],
                        title=f"fastvae on {dataset.name}")
    shape = _image_shape(dataset, train_set.X.shape[1])
    if shape is not None:
        paths["samples"] = out / "samples.png"
        paths["reconstructions"] = out / "reconstructions.png"
        _write_samples(model, shape, paths["samples"], 64, args.seed, None)
        shown_set = val_set if val_set is not None else train_set
        shown = shown_set.X[:16]
        shown_cond = _conditions(model, shown_set.subset(slice(0, 16)))
        plotting.reconstruction_grid(shown, model.reconstruct(shown, shown_cond), shape,
                                     paths["reconstructions"])
    else:
        print("fastvae: the data are not images; no sample or reconstruction "
              "pictures written")

    h = model.history_
    n_seen = len(train_set) * model.n_iter_
    lines = [
        f"trained {model.n_iter_} epochs ({model.t_} steps) in {seconds:.1f} s: "
        f"{n_seen / seconds:,.0f} samples/s",
        f"final train loss {h['loss'][-1]:.3f} nats/sample (ELBO {h['elbo'][-1]:.3f})",
    ]
    if h["val_elbo"] and h["val_elbo"][-1] is not None:
        what = "ELBO" if args.model == "vae" else "reconstruction log-likelihood"
        lines.append(f"validation {what} {h['val_elbo'][0]:.3f} after epoch 1 -> "
                     f"{h['val_elbo'][-1]:.3f} after epoch {model.n_iter_}")
    lines += [f"{name:>15}: {path}" for name, path in paths.items()]
    print("\n".join(lines))
    return 0


def _make_model(args):
    import fastvae

    common = dict(
        hidden=tuple(args.hidden), latent_dim=args.latent_dim,
        likelihood=args.likelihood, sigma=args.sigma, activation=args.activation,
        dynamic_binarization=args.binarize == "dynamic", optimizer=args.optimizer,
        lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, dtype=args.dtype,
        seed=args.seed, n_threads=args.threads, verbose=0 if args.quiet else 1,
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
    from fastvae import _rng, data, plotting

    if hasattr(model, "sample"):
        if model.n_conditions_:
            classes = model.n_conditions_
            labels = (np.full(n, label) if label is not None
                      else np.arange(n) % classes)
            if labels.max() >= classes or labels.min() < 0:
                raise UserError(f"--label must be in [0, {classes})")
            images = model.sample(n, condition=data.one_hot(labels, classes), seed=seed)
            title = (f"samples of class {label}" if label is not None
                     else f"samples, class = grid position mod {classes}")
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
            "use the Python API (VAE.sample) for non-image data")
    _write_samples(model, shape, args.out, args.n, args.seed, args.label)
    print(f"wrote {args.out}")
    return 0


def _reconstruct(args) -> int:
    import fastvae
    from fastvae import plotting

    model = fastvae.load(args.model)
    dataset = _load_data(args, split=_split_for(args))
    _check_width(model, dataset)
    shape = _image_shape(dataset, dataset.X.shape[1])
    if shape is None:
        raise UserError(f"{dataset.name} does not hold images; nothing to draw")
    shown = dataset.subset(slice(0, args.n))
    plotting.reconstruction_grid(
        shown.X, model.reconstruct(shown.X, _conditions(model, shown)), shape, args.out)
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
    result = {"data": dataset.name, "split": _split_for(args), "n_samples": len(scores),
              name: float(np.mean(scores)), f"{name}_std": float(np.std(scores))}
    if args.k is not None:
        if not is_vae:
            raise UserError("--k needs a VAE: an autoencoder defines no density")
        start = time.perf_counter()
        ll = model.log_likelihood(dataset.X, cond, k=args.k)
        result.update(log_likelihood=float(np.mean(ll)), k=args.k,
                      nll=float(-np.mean(ll)), seconds=time.perf_counter() - start)
    if args.json:
        print(json.dumps(result))
        return 0
    label = "ELBO" if is_vae else "reconstruction log-likelihood"
    print(f"{dataset.name} ({result['split']}, {len(scores)} samples): mean {label} "
          f"{result[name]:.4f} nats (std {result[name + '_std']:.4f})")
    if args.k is not None:
        print(f"importance-sampled log p(x), k={args.k}: {result['log_likelihood']:.4f} "
              f"nats (NLL {result['nll']:.4f}) in {result['seconds']:.1f} s")
    return 0


def _split_for(args) -> str:
    is_file = args.data.lower().endswith((".npy", ".npz", ".csv"))
    return "train" if is_file else args.split


def _check_width(model, dataset) -> None:
    if dataset.X.shape[1] != model.n_features_in_:
        raise UserError(
            f"{dataset.name} has {dataset.X.shape[1]} features per sample but the "
            f"model was trained on {model.n_features_in_}")


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
    from fastvae.io import ModelFileError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("fastvae: interrupted", file=sys.stderr)
        return 130
    except (UserError, DataError, ModelFileError, *_USER_ERRORS) as exc:
        if os.environ.get("FASTVAE_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"fastvae: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
