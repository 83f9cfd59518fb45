"""Jobs that tests/test_distributed.py runs under mpiexec (not a test module).

    mpiexec -n R python tests/_mpi_jobs.py JOB OUT

Rank 0 writes what the test compares into OUT (an .npz of plain arrays).
CONFIGS are also imported by the test, which trains the same models on one
process.
"""

from __future__ import annotations

import sys

import numpy as np

# (estimator, constructor arguments, n_rows, n_features, with a condition).
# Small and varied: every noise stream that uses a row's position
# (reparameterisation, input corruption, dynamic binarisation), a condition,
# a learned Gaussian sigma (its own gradient), float64, a last minibatch
# smaller than the others, and fewer rows per minibatch than ranks.
CONFIGS = {
    "vae32": (
        "VAE",
        dict(hidden=(24,), latent_dim=4, batch_size=32, epochs=2),
        250,
        30,
        False,
    ),
    "vae64": (
        "VAE",
        dict(
            hidden=(24, 16),
            latent_dim=3,
            batch_size=20,
            epochs=2,
            dtype="float64",
            optimizer="momentum",
        ),
        150,
        30,
        False,
    ),
    "noisy": (
        "VAE",
        dict(
            hidden=(24,),
            latent_dim=4,
            batch_size=25,
            epochs=2,
            corruption=0.2,
            dynamic_binarization=True,
            kl_warmup=7,
        ),
        200,
        30,
        True,
    ),
    "gauss": (
        "VAE",
        dict(
            hidden=(16,),
            latent_dim=2,
            batch_size=16,
            epochs=2,
            likelihood="gaussian",
            sigma="learned",
        ),
        100,
        12,
        False,
    ),
    "iwae": (
        "VAE",
        dict(
            hidden=(16,),
            latent_dim=3,
            batch_size=20,
            epochs=2,
            objective="iwae",
            n_latent_samples=4,
            kl_warmup=5,
        ),
        100,
        20,
        False,
    ),
    # a scipy.sparse X (read one densified minibatch at a time)
    "sparse": (
        "VAE",
        dict(hidden=(16,), latent_dim=3, batch_size=20, epochs=2, likelihood="poisson"),
        120,
        40,
        False,
    ),
    "dae": (
        "DenoisingAutoencoder",
        dict(hidden=(16,), latent_dim=3, batch_size=16, epochs=2),
        100,
        30,
        False,
    ),
    # minibatches of 2 rows: on 3 ranks one shard of every step is empty
    "pairs": (
        "VAE",
        dict(hidden=(8,), latent_dim=2, batch_size=2, epochs=1),
        20,
        10,
        False,
    ),
}


def make_data(config):
    """Training rows (and conditions) and validation rows of a config."""
    _, settings, n, d, conditional = CONFIGS[config]
    rng = np.random.default_rng(7)
    dtype = settings.get("dtype", "float32")
    if settings.get("likelihood") == "gaussian":
        X = rng.normal(size=(n + 40, d)).astype(dtype)
    else:
        X = rng.random((n + 40, d)).astype(dtype)
        if not settings.get("dynamic_binarization"):
            X = (X > 0.5).astype(dtype)
    cond = None
    if conditional:
        cond = np.eye(3, dtype=dtype)[rng.integers(0, 3, n + 40)]
    if config == "sparse":
        import scipy.sparse

        X = scipy.sparse.csr_matrix(np.floor(4 * X) * (X > 0.7))
    train = (X[:n], None if cond is None else cond[:n])
    val = X[n:] if cond is None else (X[n:], cond[n:])
    return train, val


def make_model(config, **overrides):
    import fastvae

    name, settings, *_ = CONFIGS[config]
    settings = {**settings, "random_state": 11, "n_threads": 1, **overrides}
    if "dtype" in settings:
        settings["dtype"] = np.dtype(settings["dtype"]).type
    return getattr(fastvae, name)(**settings)


def fit(config, comm=None):
    (X, cond), val = make_data(config)
    return make_model(config).fit(X, condition=cond, validation_data=val, comm=comm)


def equivalence(comm, out):
    """Every config trained over the ranks: rank 0's parameters and history,
    and whether all ranks ended with bitwise the same parameters."""
    arrays = {}
    for config in CONFIGS:
        model = fit(config, comm)
        every = comm.gather(model.params_, root=0)
        if comm.rank == 0:
            arrays[f"{config}.params"] = model.params_
            arrays[f"{config}.same_on_all_ranks"] = np.array(
                all(np.array_equal(every[0], p) for p in every)
            )
            arrays[f"{config}.t"] = np.array(model.t_)
            for key in ("loss", "val_elbo"):
                arrays[f"{config}.{key}"] = np.array(model.history_[key], dtype=float)
    if comm.rank == 0:
        np.savez(out, **arrays)


def fail_in_training(comm, out):
    """Rank 1 raises at its 4th step; the others wait in the Allreduce."""
    from fastvae.models import distributed

    if comm.rank == 1:
        step = distributed.DataParallelNetwork.train_step

        def failing(self, *args, **kwargs):
            if self.steps == 3:
                raise RuntimeError("injected failure at step 3")
            return step(self, *args, **kwargs)

        distributed.DataParallelNetwork.train_step = failing
    fit("vae32", comm)
    print(f"rank {comm.rank}: fit returned", flush=True)


def _report(comm, out, text):
    """Each rank's outcome in its own file (mpiexec mixes the ranks' stdout)."""
    with open(f"{out}.rank{comm.rank}", "w") as f:
        f.write(text)


def fail_before_training(comm, out):
    """Rank 1's data hold a NaN: fit raises on every rank, nobody hangs."""
    (X, _), _ = make_data("vae32")
    if comm.rank == 1:
        X = X.copy()
        X[5, 3] = np.nan
    try:
        make_model("vae32").fit(X, comm=comm)
    except Exception as exc:  # report it, as a user's script would
        _report(comm, out, f"{type(exc).__name__}: {exc}")
        return
    _report(comm, out, "fit returned")


def settings_differ(comm, out):
    """Rank 1 asks for one epoch more: it would wait for the others forever,
    so fit refuses on every rank."""
    (X, _), _ = make_data("vae32")
    try:
        make_model("vae32", epochs=2 + comm.rank).fit(X, comm=comm)
    except ValueError as exc:
        _report(comm, out, f"ValueError: {exc}")
        return
    _report(comm, out, "fit returned")


def non_finite(comm, out):
    """A learning rate that blows up: FloatingPointError on every rank at the
    same step."""
    (X, _), _ = make_data("gauss")
    try:
        make_model("gauss", optimizer="sgd", lr=1e6, sigma=0.01).fit(X * 1e3, comm=comm)
    except FloatingPointError as exc:
        _report(comm, out, f"FloatingPointError: {exc}")
        return
    _report(comm, out, "fit returned")


# The run a checkpoint is cut from and resumed: every step- and row-dependent
# stream (KL warm-up, corruption, binarization) and a condition; 8 steps per
# epoch, checkpoints every 5 steps and at epoch ends.
RESUMED = "noisy"
RESUMED_EPOCHS = 3
CHECKPOINT_EVERY_STEPS = 5
CRASH_AFTER_WRITES = 3  # writes at t = 5, 8 (epoch end), 10: mid-epoch 2


def crash_after_checkpoints(Checkpointer, n_writes):
    """Make Checkpointer.write raise right after its n-th write, as a crash."""
    write = Checkpointer.write
    count = {"n": 0}

    def crashing(self, *args, **kwargs):
        write(self, *args, **kwargs)
        count["n"] += 1
        if count["n"] == n_writes:
            raise RuntimeError(f"crash after checkpoint {n_writes}")

    Checkpointer.write = crashing
    return write


def checkpointed_fit(comm, path):
    (X, cond), val = make_data(RESUMED)
    model = make_model(RESUMED, epochs=RESUMED_EPOCHS)
    return model.fit(
        X,
        condition=cond,
        validation_data=val,
        checkpoint=path,
        checkpoint_every_steps=CHECKPOINT_EVERY_STEPS,
        comm=comm,
    )


def crash_mid_run(comm, out):
    """A run over the ranks whose rank 0 dies after its 3rd checkpoint."""
    from fastvae.models import checkpoint

    if comm.rank == 0:
        crash_after_checkpoints(checkpoint.Checkpointer, CRASH_AFTER_WRITES)
    checkpointed_fit(comm, out)


def resume(comm, out):
    """fastvae.resume of the checkpoint `out` over the ranks; rank 0 saves
    the result as out + '.result.npz'."""
    import fastvae

    (X, cond), val = make_data(RESUMED)
    model = fastvae.resume(out, X, condition=cond, validation_data=val, comm=comm)
    if comm.rank == 0:
        np.savez(
            out + ".result.npz",
            params=model.params_,
            t=model.t_,
            n_iter=model.n_iter_,
            val_elbo=np.array(model.history_["val_elbo"]),
        )


def stop_on_one_rank(comm, out):
    """Only rank 1 has a callback that stops at step 5 (a time budget would
    run out on one rank first): every rank stops there, none waits."""
    from fastvae.callbacks import LambdaCallback

    (X, cond), _ = make_data("vae32")
    stop = LambdaCallback(on_step_end=lambda m, logs: logs["step"] == 5)
    model = make_model("vae32", epochs=3).fit(
        X, condition=cond, comm=comm, callbacks=[stop] if comm.rank == 1 else []
    )
    every = comm.gather(model.params_, root=0)
    steps = comm.gather(model.t_, root=0)
    if comm.rank == 0:
        np.savez(
            out,
            steps=np.array(steps),
            same=np.array(all(np.array_equal(every[0], p) for p in every)),
        )


def anndata_fit(comm, out):
    """fit(adata, layer=..., condition_key=...) over the ranks, in memory
    and backed (every rank copies the file's matrix for itself), against
    the fit on the CSR matrix and one-hot condition over the same ranks."""
    import anndata
    import pandas as pd
    import scipy.sparse as sp

    import fastvae

    rng = np.random.default_rng(5)
    counts = rng.poisson(0.7, (240, 30)).astype(np.float32)
    X = sp.csr_matrix(counts)
    codes = rng.integers(0, 3, 240)
    obs = pd.DataFrame({"batch": pd.Categorical.from_codes(codes, ["q", "p", "r"])})
    obs.index = obs.index.astype(str)
    adata = anndata.AnnData(X=np.zeros_like(counts), obs=obs)
    adata.layers["counts"] = X
    onehot = np.eye(3, dtype=np.float32)[codes]
    settings = dict(hidden=(16,), latent_dim=3, likelihood="negbin", epochs=2,
                    batch_size=32, random_state=4, n_threads=1)  # fmt: skip
    if comm.rank == 0:
        anndata.AnnData(X=X, obs=obs).write_h5ad(out + ".h5ad")
    comm.Barrier()
    backed = anndata.read_h5ad(out + ".h5ad", backed="r")
    fits = {
        "arrays": fastvae.VAE(**settings).fit(X, condition=onehot, comm=comm),
        "adata": fastvae.VAE(**settings).fit(
            adata, layer="counts", condition_key="batch", comm=comm
        ),
        "backed": fastvae.VAE(**settings).fit(backed, condition_key="batch", comm=comm),
    }
    if comm.rank == 0:
        np.savez(out, **{name: m.params_ for name, m in fits.items()})


JOBS = {
    f.__name__: f
    for f in (
        anndata_fit,
        stop_on_one_rank,
        equivalence,
        fail_in_training,
        fail_before_training,
        settings_differ,
        non_finite,
        crash_mid_run,
        resume,
    )
}

if __name__ == "__main__":
    from mpi4py import MPI

    JOBS[sys.argv[1]](MPI.COMM_WORLD, sys.argv[2])
