"""Test log-likelihood of the VAE of Burda et al. (2016), Table 1, on MNIST.

The architecture of their one-stochastic-layer model: two deterministic
hidden layers of 200 tanh units, 50 latent units, Bernoulli decoder, trained
with Adam on dynamically binarized MNIST (a fresh Bernoulli draw of every
training image at every step). The test set is binarized once (Bernoulli
draws with a fixed seed) and scored with the importance-sampled estimate of
log p(x), k = 5000, as in the paper. Burda et al. report a test NLL of 86.76
nats for this VAE after 3,280 passes over the data with their schedule
(stage i of 8: 3**i epochs at learning rate 0.001 * 10**(-i/7), minibatches
of 20).

This script trains that model in one ``fit`` with fastvae's controls: a
learning-rate schedule (Burda et al.'s stages, or a cosine over --epochs), a
KL warm-up, a wall-clock budget (--max-time) and a checkpoint after every
epoch, so that an interrupted run continues with --resume:

    python benchmarks/iwae_mnist.py                          # 3,280 epochs
    python benchmarks/iwae_mnist.py --schedule cosine --epochs 1200 \\
        --max-time 2h --threads 1

A strided tenth of the binarized test set is the validation data: its ELBO
is in the history after every epoch. Needs the MNIST files (--data-dir,
default ../shared/data/mnist, or --download). Writes checkpoint.npz during
training and model.npz, result.json, samples.png and reconstructions.png at
the end into --out, and prints a markdown table row.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

import fastvae
from fastvae import data
from fastvae._atomic import write_atomic
from fastvae.callbacks import MaxTime
from fastvae.cli import plotting
from fastvae.schedules import CosineLR, StagedLR

PUBLISHED_NLL = 86.76  # Burda et al. 2016, Table 1, VAE, k = 1, one stochastic layer


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--download", action="store_true")
    parser.add_argument(
        "--schedule",
        choices=("burda", "cosine", "constant"),
        default="burda",
        help="burda: 3**i epochs at lr * 10**(-i/7); cosine: lr to --min-lr "
        "over --epochs",
    )
    parser.add_argument(
        "--stages",
        type=int,
        default=8,
        help="stages of Burda et al.'s schedule (8 = 3,280 epochs)",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs (cosine, constant)"
    )
    parser.add_argument("--min-lr", type=float, default=1e-4)
    parser.add_argument(
        "--objective",
        choices=("elbo", "iwae"),
        default="elbo",
        help="training bound with --latent-samples K (iwae: Burda et al.'s)",
    )
    parser.add_argument("--latent-samples", type=int, default=1, metavar="K")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--kl-warmup-epochs",
        type=int,
        default=0,
        help="epochs over which the KL weight rises from 0 to 1",
    )
    parser.add_argument(
        "--max-time",
        type=_duration,
        default=None,
        help="training budget, e.g. 2h or 90m (counted per invocation)",
    )
    parser.add_argument("--k", type=int, default=5000, help="importance samples")
    parser.add_argument(
        "--test-every",
        type=int,
        default=1,
        help="score every n-th test image (1: all 10,000)",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/iwae")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run whose checkpoint.npz is in --out",
    )
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = data.load_mnist(args.data_dir, split="train", download=args.download)
    test = data.load_mnist(args.data_dir, split="test", download=args.download)
    # One fixed stochastic binarization of the test set. The MNIST test file
    # is not sorted by class, so strided subsets are representative.
    test_bin = data.sample_binarize(test.X, seed=12345)
    monitor = test_bin[::10]
    test_bin = test_bin[:: args.test_every]

    if args.schedule == "burda":
        schedule = StagedLR([(3**i, 10 ** (-i / 7)) for i in range(args.stages)])
        epochs = sum(3**i for i in range(args.stages))
    else:
        if args.epochs is None:
            raise SystemExit(f"--schedule {args.schedule} needs --epochs")
        epochs = args.epochs
        schedule = CosineLR(min_lr=args.min_lr) if args.schedule == "cosine" else None
    callbacks = [c for c in (schedule,) if c is not None]
    if args.max_time is not None:
        callbacks.append(MaxTime(args.max_time))
    checkpoint = out / "checkpoint.npz"
    steps_per_epoch = -(-len(train) // args.batch_size)

    start = time.perf_counter()
    if args.resume:
        vae = fastvae.resume(
            checkpoint,
            train.X,
            validation_data=monitor,
            n_threads=args.threads,
            callbacks=callbacks,
        )
    else:
        # Burda et al.: Adam with beta1 = 0.9, beta2 = 0.999, eps = 1e-4.
        vae = fastvae.VAE(
            hidden=(200, 200),
            latent_dim=50,
            activation="tanh",
            likelihood="bernoulli",
            dynamic_binarization=True,
            kl_warmup=args.kl_warmup_epochs * steps_per_epoch,
            objective=args.objective,
            n_latent_samples=args.latent_samples,
            optimizer=fastvae.optim.Adam(lr=args.lr, beta1=0.9, beta2=0.999, eps=1e-4),
            epochs=epochs,
            batch_size=args.batch_size,
            random_state=args.seed,
            n_threads=args.threads,
            verbose=1,
        )
        vae.fit(
            train.X,
            validation_data=monitor,
            checkpoint=checkpoint,
            callbacks=callbacks,
        )
    wall = time.perf_counter() - start
    vae.save(out / "model.npz")
    history = vae.history_
    train_seconds = float(np.sum(history["seconds"]))
    threads = fastvae.get_num_threads() if args.threads is None else args.threads

    start = time.perf_counter()
    elbo = vae.elbo(test_bin)
    ll = vae.log_likelihood(test_bin, k=args.k, progress=True)
    eval_seconds = time.perf_counter() - start
    command = "python benchmarks/iwae_mnist.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    result = {
        "architecture": "784-200-200-50 tanh, Bernoulli, dynamic binarization, Adam",
        "command": command,
        "schedule": args.schedule,
        "objective": f"{vae.objective}, k = {vae.n_latent_samples}",
        "epochs": vae.n_iter_,
        "planned_epochs": epochs,
        "stopped_by_budget": any(
            isinstance(c, MaxTime) and c.stopped_ for c in callbacks
        ),
        "batch_size": args.batch_size,
        "kl_warmup_epochs": args.kl_warmup_epochs,
        "train_seconds": train_seconds,
        "wall_seconds_this_invocation": wall,
        "n_test": len(test_bin),
        "k": args.k,
        "test_elbo": float(elbo.mean()),
        "test_nll": float(-ll.mean()),
        "test_nll_stderr": float(ll.std(ddof=1) / np.sqrt(len(ll))),
        "eval_seconds": eval_seconds,
        "published_nll": PUBLISHED_NLL,
        "threads": threads,
        "fastvae": fastvae.__version__,
        "curve": {
            key: history[key]
            for key in ("epoch", "elbo", "val_elbo", "active_units", "lr", "seconds")
        },
    }
    _write_json(out / "result.json", result)
    plotting.image_grid(
        vae.sample(64),
        (28, 28),
        out / "samples.png",
        title=f"samples after {vae.n_iter_} epochs",
    )
    plotting.reconstruction_grid(
        test_bin[:16],
        vae.reconstruct(test_bin[:16]),
        (28, 28),
        out / "reconstructions.png",
    )
    print(
        json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=1),
        flush=True,
    )
    print(f"| model | budget | test -ELBO | test NLL (k = {args.k}) | published NLL |")
    print("|---|---|---|---|---|")
    print(
        f"| VAE 784-200-200-50 tanh, {result['objective']} | {vae.n_iter_} epochs, "
        f"{train_seconds / 60:.0f} min on {threads} threads | "
        f"{-result['test_elbo']:.2f} | "
        f"{result['test_nll']:.2f} ± {result['test_nll_stderr']:.2f} | "
        f"{PUBLISHED_NLL} (3,280 epochs) |"
    )
    return 0


def _write_json(path, obj) -> None:
    text = json.dumps(obj, indent=1)
    write_atomic(path, lambda f: f.write(text.encode()))


if __name__ == "__main__":
    sys.exit(main())
