"""Test log-likelihood of the VAE of Burda et al. (2016), Table 1, on MNIST.

The architecture of their one-stochastic-layer model: two deterministic
hidden layers of 200 tanh units, 50 latent units, Bernoulli decoder, trained
with Adam on dynamically binarized MNIST (a fresh Bernoulli draw of every
training image at every step). The test set is binarized once (Bernoulli
draws with a fixed seed) and scored with the importance-sampled estimate of
log p(x), k = 5000, as in the paper. Burda et al. report a test NLL of 86.76
nats for this VAE after 3,280 passes over the data with their schedule
(stage i of 8: 3**i epochs at learning rate 0.001 * 10**(-i/7), minibatches
of 20). This script runs that schedule (or fewer stages, or a fixed number
of epochs) with minibatches of 100, scores a strided test subset after each
stage, and reports what it reaches:

    python benchmarks/iwae_mnist.py                 # the 3,280 epochs
    python benchmarks/iwae_mnist.py --stages 6      # 364 epochs

Needs the MNIST files (``--data-dir``, default ``../shared/data/mnist``, or
``--download``). Writes ``curve.json`` and ``model.npz`` after every stage
and ``result.json``, ``samples.png`` and ``reconstructions.png`` at the end
into ``--out``, and prints a markdown table row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import fastvae
from fastvae import data
from fastvae._atomic import write_atomic
from fastvae.cli import plotting

PUBLISHED_NLL = 86.76  # Burda et al. 2016, Table 1, VAE, k = 1, one stochastic layer


def burda_schedule(n_stages: int, lr: float):
    """Burda et al.'s Adam schedule: stage i runs 3**i epochs at lr * 10**(-i/7).

    Eight stages make their 3,280 epochs."""
    return [(3**i, lr * 10 ** (-i / 7)) for i in range(n_stages)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--download", action="store_true")
    parser.add_argument(
        "--stages",
        type=int,
        default=8,
        help="stages of Burda et al.'s schedule (8 = 3,280 epochs)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="instead of the schedule: this many epochs at --lr",
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--k", type=int, default=5000, help="importance samples")
    parser.add_argument(
        "--test-every",
        type=int,
        default=1,
        help="score every n-th test image (1: all 10,000)",
    )
    parser.add_argument(
        "--monitor-k",
        type=int,
        default=1000,
        help="importance samples of the estimate after each stage",
    )
    parser.add_argument(
        "--monitor-every",
        type=int,
        default=10,
        help="after each stage, score every n-th test image",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/iwae")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = data.load_mnist(args.data_dir, split="train", download=args.download)
    test = data.load_mnist(args.data_dir, split="test", download=args.download)
    # One fixed stochastic binarization of the test set. The MNIST test file
    # is not sorted by class, so strided subsets are representative.
    test_bin = data.sample_binarize(test.X, seed=12345)
    monitor = test_bin[:: args.monitor_every]
    test_bin = test_bin[:: args.test_every]
    stages = (
        burda_schedule(args.stages, args.lr)
        if args.epochs is None
        else [(args.epochs, args.lr)]
    )

    # Burda et al.: Adam with beta1 = 0.9, beta2 = 0.999, eps = 1e-4.
    vae = fastvae.VAE(
        hidden=(200, 200),
        latent_dim=50,
        activation="tanh",
        likelihood="bernoulli",
        dynamic_binarization=True,
        batch_size=args.batch_size,
        random_state=args.seed,
        n_threads=args.threads,
        verbose=0,
        warm_start=True,
    )
    threads = fastvae.get_num_threads() if args.threads is None else args.threads
    curve, train_seconds = [], 0.0
    for i, (epochs, lr) in enumerate(stages):
        start = time.perf_counter()
        vae.fit(
            train.X,
            epochs=epochs,
            optimizer=fastvae.optim.Adam(lr=lr, beta1=0.9, beta2=0.999, eps=1e-4),
        )
        train_seconds += time.perf_counter() - start
        start = time.perf_counter()
        ll = vae.log_likelihood(monitor, k=args.monitor_k)
        point = {
            "stage": i,
            "lr": lr,
            "epochs": vae.n_iter_,
            "train_minutes": train_seconds / 60,
            "train_elbo": vae.history_["elbo"][-1],
            f"test_nll_k{args.monitor_k}_every{args.monitor_every}": float(-ll.mean()),
            "eval_seconds": time.perf_counter() - start,
        }
        curve.append(point)
        print(json.dumps(point), flush=True)
        vae.save(out / "model.npz")
        _write_json(out / "curve.json", curve)

    start = time.perf_counter()
    elbo = vae.elbo(test_bin)
    ll = vae.log_likelihood(test_bin, k=args.k)
    eval_seconds = time.perf_counter() - start
    result = {
        "architecture": "784-200-200-50 tanh, Bernoulli, dynamic binarization, Adam",
        "schedule": (
            f"Burda et al. (3**i epochs at lr 10**(-i/7) * {args.lr:g}), "
            f"{len(stages)} stages"
            if args.epochs is None
            else f"{args.epochs} epochs at lr {args.lr:g}"
        ),
        "epochs": vae.n_iter_,
        "batch_size": args.batch_size,
        "train_seconds": train_seconds,
        "train_samples_per_second": vae.n_iter_ * len(train) / train_seconds,
        "n_test": len(test_bin),
        "k": args.k,
        "test_elbo": float(elbo.mean()),
        "test_nll": float(-ll.mean()),
        "test_nll_stderr": float(ll.std(ddof=1) / np.sqrt(len(ll))),
        "eval_seconds": eval_seconds,
        "published_nll": PUBLISHED_NLL,
        "threads": threads,
        "fastvae": fastvae.__version__,
        "curve": curve,
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
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=1))
    print(f"| model | budget | test -ELBO | test NLL (k = {args.k}) | published NLL |")
    print("|---|---|---|---|---|")
    print(
        f"| VAE 784-200-200-50 tanh | {vae.n_iter_} epochs, "
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
