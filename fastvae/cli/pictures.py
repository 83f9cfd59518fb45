"""The picture subcommands of ``fastvae``: sample, reconstruct, traverse,
interpolate and plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastvae.cli.common import (
    CLASS_NAMES,
    UserError,
    check_index,
    conditions_for,
    decode_label,
    image_shape,
    model_data,
    picture_shape,
    scaled,
    split_for,
    validation_label,
    write_samples,
)


def sample_command(args) -> int:
    import fastvae

    model = fastvae.load(args.model)
    if isinstance(model, fastvae.TabularVAE):
        from fastvae.cli.tables import sample_table

        return sample_table(model, args)
    shape = image_shape(None, model.n_features_in_)
    if shape is None:
        raise UserError(
            f"the model's {model.n_features_in_} features are not a square image; "
            "use the Python API (VAE.sample) for non-image data"
        )
    write_samples(model, shape, args.out, args.n, args.seed, args.label)
    print(f"wrote {args.out}")
    return 0


def reconstruct_command(args) -> int:
    import fastvae
    from fastvae.cli import plotting

    model = fastvae.load(args.model)
    dataset = model_data(args, model)
    shape = image_shape(dataset, dataset.X.shape[1])
    if shape is None:
        raise UserError(f"{dataset.name} does not hold images; nothing to draw")
    shown = dataset.subset(slice(0, args.n))
    plotting.reconstruction_grid(
        shown.X,
        model.reconstruct(shown.X, conditions_for(model, shown)),
        shape,
        args.out,
    )
    print(
        f"wrote {args.out}: {len(shown)} rows of {dataset.name} "
        f"({split_for(args)} split) and their reconstructions"
    )
    return 0


def traverse_command(args) -> int:
    import fastvae
    from fastvae import data, latent
    from fastvae.cli import plotting

    model = fastvae.load(args.model)
    k = int(model.latent_dim)
    label = decode_label(model, args.label)
    center, scores, dataset = np.zeros(k), None, None
    if args.data is None:
        if args.index is not None:
            raise UserError("--index needs --data (the data holding that row)")
    else:
        split = split_for(args)
        dataset = model_data(args, model)
        if args.index is not None:
            check_index("--index", args.index, dataset, split)
        cond = conditions_for(model, dataset)
        if hasattr(model, "sample"):  # a VAE: rank dimensions by their KL
            mu, logvar = model.encode(dataset.X, cond)
            scores, score_name = latent.kl_per_dimension(mu, logvar), "KL"
        else:  # an autoencoder has no posterior: rank by the spread of its codes
            mu = model.encode(dataset.X, cond)
            scores, score_name = np.var(mu.astype(np.float64), axis=0), "var"
        if args.index is not None:
            center = mu[args.index].astype(np.float64)
            if label is None and model.n_conditions_:
                label = int(dataset.y[args.index])
    if model.n_conditions_ and label is None:
        raise UserError(
            f"the model is conditional: give --label (a class in [0, "
            f"{model.n_conditions_})) or --data with --index"
        )
    if args.dims is not None:
        bad = [d for d in args.dims if not 0 <= d < k]
        if bad:
            raise UserError(
                f"--dims {bad[0]} is out of range: the model has {k} "
                f"latent dimensions, 0 to {k - 1}"
            )
        dims = np.asarray(args.dims, dtype=np.int64)
    elif scores is not None:
        dims = latent.top_dimensions(scores, min(k, 10))
    else:
        dims = np.arange(min(k, 10))
    values = np.linspace(-args.span, args.span, args.steps)
    Z = latent.traversal(center, dims, values).astype(model.params_.dtype)
    cond = None
    if model.n_conditions_:
        cond = data.one_hot(np.full(len(Z), label), model.n_conditions_)
    images = model.decode(Z, cond)
    rows = [
        f"z{d}" + ("" if scores is None else f"\n{score_name} {scores[d]:.2f}")
        for d in dims
    ]
    cols = [f"{v:+.3g}" if v else "0" for v in values]
    where = (
        "z = 0"
        if args.index is None
        else f"the posterior mean of {dataset.name} row {args.index}"
    )
    title = f"latent traversals around {where}" + (
        "" if label is None else f", class {label}"
    )
    plotting.labelled_grid(
        images,
        picture_shape(model, dataset),
        args.out,
        n_cols=args.steps,
        row_labels=rows,
        col_labels=cols,
        title=title,
    )
    how = (
        "the first"
        if scores is None or args.dims is not None
        else f"the {len(dims)} with the largest {score_name} on the data,"
    )
    print(
        f"wrote {args.out}: {len(dims)} latent dimensions ({how} "
        f"{', '.join(map(str, dims))}) x {args.steps} values from "
        f"{-args.span:g} to +{args.span:g} around {where}"
    )
    return 0


def interpolate_command(args) -> int:
    import fastvae
    from fastvae import data, latent
    from fastvae.cli import plotting

    model = fastvae.load(args.model)
    label = decode_label(model, args.label)
    dataset = model_data(args, model)
    split = split_for(args)
    shape = picture_shape(model, dataset)
    check_index("--from", args.start, dataset, split)
    check_index("--to", args.end, dataset, split)
    pair = dataset.subset([args.start, args.end])
    pair_cond = conditions_for(model, pair)
    z = model.transform(pair.X, pair_cond).astype(np.float64)
    Z = latent.interpolate(z[0], z[1], args.steps, spherical=args.slerp)
    cond = None
    if model.n_conditions_:
        if label is not None:
            cond = data.one_hot(np.full(args.steps, label), model.n_conditions_)
        else:
            t = np.linspace(0.0, 1.0, args.steps)[:, None]
            cond = (1.0 - t) * pair_cond[0] + t * pair_cond[1]
    decoded = model.decode(Z.astype(model.params_.dtype), cond)
    images = np.concatenate([pair.X[:1], decoded, pair.X[1:]])
    t = np.linspace(0.0, 1.0, args.steps)
    cols = [f"row {args.start}", *(f"t={v:.2g}" for v in t), f"row {args.end}"]
    kind = "spherical" if args.slerp else "linear"
    what = "posterior means" if hasattr(model, "sample") else "codes"
    plotting.labelled_grid(
        images,
        shape,
        args.out,
        n_cols=len(images),
        col_labels=cols,
        title=f"{kind} interpolation between the {what} of {dataset.name} rows "
        f"{args.start} and {args.end} (originals at the ends)",
    )
    print(
        f"wrote {args.out}: {dataset.name} ({split}) row {args.start} -> row "
        f"{args.end}, {args.steps} {kind} steps between the {what}"
    )
    return 0


def plot_command(args) -> int:
    from fastvae.cli import plotting, run_folder

    run = Path(args.run)
    history, source = run_folder.read_history(run)
    spec = run_folder.read_run(run)
    out = Path(args.out) if args.out is not None else run
    if not out.is_dir():
        raise UserError(f"output folder {out} does not exist")
    kind = (spec or {}).get("model", "vae")
    name = (spec or {}).get("data", {}).get("name")
    curves = out / "loss_curve.png"
    plotting.loss_curve(
        history,
        curves,
        validation_label=validation_label(kind),
        title=f"fastvae on {name}" if name else None,
    )
    done = ""
    if source != run_folder.HISTORY_FILE:
        from fastvae.cli.run_lock import holder

        running = holder(run)
        if running is not None:
            done = f" (training is still running: process {running.get('pid')})"
        elif (run / "checkpoint.npz").is_file():
            done = (
                " (training stopped before its end; continue it with "
                f"fastvae train --resume {run})"
            )
        else:
            done = " (training stopped before its end)"
    print(f"wrote {curves}: {len(history['epoch'])} epochs from {run / source}{done}")
    why_not = _latent_scatter(run, spec, out / "latent.png", args.max_points)
    if why_not:
        print(f"no latent scatter: {why_not}")
    return 0


def _latent_scatter(run: Path, spec, path: Path, max_points: int) -> str | None:
    """Draw the run's held-out posterior means coloured by label; returns why
    not when the run cannot give them."""
    import fastvae
    from fastvae import data, latent
    from fastvae.cli import plotting, run_folder

    if spec is None and (run / "latent.npy").is_file():
        return (
            "a run on count data has no labels (its posterior means are in latent.npy)"
        )
    if spec is None:
        return f"{run} has no {run_folder.RUN_FILE} (a run from an older fastvae)"
    d = spec.get("data", {})
    if not d.get("n_classes"):
        return f"the run's data ({d.get('name')}) has no labels"
    model_path = run / run_folder.MODEL_FILE
    if not model_path.is_file():
        return f"{model_path} does not exist yet"
    model = fastvae.load(model_path)
    dataset = data.load_dataset(
        d["source"],
        data_dir=d.get("data_dir"),
        split=d.get("split", "train"),
        n_samples=d.get("n_samples"),
    )
    dataset = scaled(dataset, spec.get("settings", {}).get("scale"))  # --scale
    part = "training"
    if d.get("validation"):
        _, dataset = data.train_validation_split(
            dataset, n_validation=d["validation"], seed=d.get("split_seed", 0)
        )
        part = "held-out"
    if dataset.X.shape[1] != model.n_features_in_ or dataset.y is None:
        return f"the data at {d['source']} no longer match the model"
    dataset = dataset.subset(slice(0, max_points))
    Z = model.transform(dataset.X, conditions_for(model, dataset)).astype(np.float64)
    what = "posterior means" if hasattr(model, "sample") else "codes"
    k = Z.shape[1]
    if k == 1:
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(Z))
        points = np.column_stack([Z[:, 0], dataset.y + jitter])
        axes = (f"z0 ({what})", "label (jittered)")
    elif k == 2:
        points, axes = Z, (f"z0 ({what})", f"z1 ({what})")
    else:
        points, explained = latent.principal_components(Z, 2)
        axes = tuple(
            f"PC{c + 1} of the {k}-D {what} ({explained[c]:.0%} of variance)"
            for c in range(2)
        )
    names = CLASS_NAMES.get(dataset.name)
    if names is not None and len(names) < int(dataset.y.max()) + 1:
        names = None
    plotting.latent_scatter(
        points,
        dataset.y,
        path,
        class_names=names,
        axis_labels=axes,
        title=f"{what} of {len(Z)} {part} rows of {dataset.name}, coloured by label",
    )
    print(
        f"wrote {path}: {len(Z)} {part} rows"
        + (", first two principal components" if k > 2 else "")
    )
    return None
