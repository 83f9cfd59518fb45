"""``fastvae eval``: a model's mean ELBO (and importance-sampled log p(x))
on data."""

from __future__ import annotations

import json
import time

import numpy as np

from fastvae.cli.common import (
    UserError,
    conditions_for,
    model_data,
    split_for,
)


def eval_command(args) -> int:
    import fastvae

    model = fastvae.load(args.model)
    dataset = model_data(args, model)
    cond = conditions_for(model, dataset)
    is_vae = hasattr(model, "log_likelihood")
    scores = model.score_samples(dataset.X, cond)
    name = "elbo" if is_vae else "reconstruction_log_likelihood"
    result = {
        "data": dataset.name,
        "split": split_for(args),
        "n_samples": len(scores),
        name: float(np.mean(scores)),
        f"{name}_std": float(np.std(scores)),
    }
    if is_vae:
        diagnostics = model.diagnostics(dataset.X, cond)
        result.update(
            active_units=diagnostics["active_units"],
            latent_dim=diagnostics["latent_dim"],
            kl_per_dimension=diagnostics["kl_per_dimension"],
        )
    if args.k is not None:
        if not is_vae:
            raise UserError("--k needs a VAE: an autoencoder defines no density")
        start = time.perf_counter()
        ll = model.log_likelihood(dataset.X, cond, k=args.k, progress=not args.quiet)
        result.update(
            log_likelihood=float(np.mean(ll)),
            k=args.k,
            nll=float(-np.mean(ll)),
            seconds=time.perf_counter() - start,
        )
    if args.json:
        print(json.dumps(result))
        return 0
    label = "ELBO" if is_vae else "reconstruction log-likelihood"
    print(
        f"{dataset.name} ({result['split']}, {len(scores)} samples): mean {label} "
        f"{result[name]:.4f} nats (std {result[name + '_std']:.4f})"
    )
    if is_vae:
        kl = ", ".join(f"{v:.2f}" for v in result["kl_per_dimension"])
        print(
            f"latent dimensions: {result['active_units']} of {result['latent_dim']} "
            f"active (Cov of E_q[z_j] > 0.01); KL per dimension: {kl}"
        )
    if args.k is not None:
        print(
            f"importance-sampled log p(x), k={args.k}: {result['log_likelihood']:.4f} "
            f"nats (NLL {result['nll']:.4f}) in {result['seconds']:.1f} s"
        )
    return 0
