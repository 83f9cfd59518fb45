"""fastvae train on count data (cells x genes): a sparse .npz, a CSR folder,
an .h5ad file (in memory and backed), and a dense array with --counts."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.sparse as sp
from test_cli import REPO, run_cli

import fastvae
from fastvae.data import load_csr, save_csr

N_CELLS, N_GENES = 400, 50
FAST = ("--epochs", "2", "--quiet")


def _counts(n=N_CELLS, g=N_GENES, seed=0):
    """Negative binomial counts from a 2-D latent structure."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    mean = np.exp(0.5 * z @ rng.standard_normal((2, g)) + 0.5)
    theta = 2.0
    return rng.negative_binomial(theta, theta / (theta + mean)).astype(np.float32)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    folder = tmp_path_factory.mktemp("counts")
    dense = _counts()
    X = sp.csr_matrix(dense)
    sp.save_npz(folder / "cells.npz", X)
    save_csr(folder / "cells_csr", X)
    np.save(folder / "dense.npy", dense)
    return folder, X


@pytest.fixture(scope="module")
def h5ad(cells):
    ad = pytest.importorskip("anndata")
    pd = pytest.importorskip("pandas")
    folder, X = cells
    batch = np.where(np.arange(N_CELLS) % 3 == 0, "a", "b")
    obs = pd.DataFrame(
        {"batch": pd.Categorical(batch)}, index=[f"cell{i}" for i in range(N_CELLS)]
    )
    # X holds normalised values, the raw counts are a layer (as scanpy leaves them)
    ad.AnnData(X=X.log1p(), obs=obs, layers={"counts": X}).write_h5ad(
        folder / "cells.h5ad"
    )
    ad.AnnData(X=X, obs=obs).write_h5ad(folder / "raw.h5ad")
    return folder, ad


def _history(run):
    return json.loads((run / "history.json").read_text())


def _check_run(run, X, condition=None, n_val=40):
    """The run folder's files; latent.npy is the saved model's transform."""
    for name in ("model.npz", "history.json", "metrics.jsonl", "loss_curve.png"):
        assert (run / name).is_file(), name
    latent = np.load(run / "latent.npy")
    model = fastvae.load(run / "model.npz")
    assert latent.shape == (N_CELLS, model.latent_dim) and latent.dtype == np.float32
    np.testing.assert_array_equal(latent, model.transform(X, condition))
    record = _history(run)
    assert record["data"]["n_train"] == N_CELLS - n_val
    assert record["data"]["n_validation"] == n_val
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    return model, record


def test_a_sparse_npz_trains_scvis_model(cells):
    folder, X = cells
    proc = run_cli("train", "--data", "cells.npz", *FAST, "--out", "npz", cwd=folder)
    model, record = _check_run(folder / "npz", X)
    assert "400 cells x 50 genes" in proc.stdout
    assert "held out (at random)" in proc.stdout
    assert "held-out ELBO" in proc.stdout and "latent.npy" in proc.stdout
    assert "whole numbers" not in proc.stderr
    # scVI's defaults
    assert tuple(model.hidden) == (128,) and model.latent_dim == 10
    assert model.likelihood == "zinb" and model.library == "observed"
    assert model.batch_size == 128 and model.optimizer.eps == 0.01
    assert model.optimizer.lr == 1e-3
    assert model.kl_warmup == 400 * math.ceil(360 / 128)  # 400 epochs of steps
    assert record["data"]["validation_rows"] == "random"
    assert np.isfinite(record["held_out_elbo"]) and record["held_out_elbo"] < 0
    proc = run_cli("plot", "--run", "npz", cwd=folder)  # reads its history.json
    assert "2 epochs from npz/history.json" in proc.stdout
    assert "posterior means are in latent.npy" in proc.stdout


def test_a_csr_folder_holds_out_its_last_rows(cells):
    folder, X = cells
    proc = run_cli(
        "train",
        "--data",
        "cells_csr",
        "--validation",
        "100",
        "--likelihood",
        "negbin",
        *FAST,
        "--out",
        "csr",
        cwd=folder,
    )
    assert "held out (the last rows)" in proc.stdout
    mapped = load_csr(folder / "cells_csr")
    model, record = _check_run(folder / "csr", mapped, n_val=100)
    assert model.likelihood == "negbin"
    assert record["data"]["validation_rows"] == "last"
    held_out = model.score_samples(X[N_CELLS - 100 :]).mean()
    assert record["held_out_elbo"] == pytest.approx(held_out, rel=1e-6)
    assert record["history"]["val_elbo"][-1] == pytest.approx(held_out, rel=1e-6)


def test_rows_of_a_mapped_matrix_stay_memory_maps(cells):
    from fastvae.cli.counts import _rows
    from fastvae.data.batches import _memmap_of

    folder, X = cells
    mapped = load_csr(folder / "cells_csr")
    for start, stop in ((0, 300), (300, N_CELLS), (390, N_CELLS), (0, 10)):
        part = _rows(mapped, start, stop)
        assert np.shares_memory(part.data, mapped.data)
        assert np.shares_memory(part.indices, mapped.indices)
        assert _memmap_of(part.data) is not None
        assert (part != X[start:stop]).nnz == 0


def test_an_h5ad_layer_with_a_batch_key(h5ad, cells):
    folder, ad = h5ad
    proc = run_cli(
        "train",
        "--data",
        "cells.h5ad",
        "--layer",
        "counts",
        "--condition-key",
        "batch",
        *FAST,
        "--out",
        "h5",
        cwd=folder,
    )
    assert "condition batch (2 levels)" in proc.stdout
    adata = ad.read_h5ad(folder / "cells.h5ad")
    model, _ = _check_run(folder / "h5", adata)  # read as the run read it
    assert model.anndata_layer_ == "counts" and model.condition_key_ == "batch"
    assert model.condition_levels_ == ["a", "b"] and model.n_conditions_ == 2
    levels = np.where(np.arange(N_CELLS) % 3 == 0, 0, 1)
    np.testing.assert_array_equal(
        np.load(folder / "h5" / "latent.npy"),
        model.transform(cells[1], fastvae.data.one_hot(levels, 2)),
    )


def test_normalised_values_instead_of_counts_are_warned_about(h5ad):
    folder, _ = h5ad
    proc = run_cli(
        "train", "--data", "cells.h5ad", *FAST, "--out", "normalised", cwd=folder
    )
    assert "adata.X holds values that are not whole numbers" in proc.stderr
    assert "layers are ['counts'] (--layer NAME)" in proc.stderr


def test_a_backed_h5ad_with_a_dispersion_per_batch(h5ad):
    folder, ad = h5ad
    proc = run_cli(
        "train",
        "--data",
        "raw.h5ad",
        "--backed",
        "--condition-key",
        "batch",
        "--dispersion",
        "gene-batch",
        *FAST,
        "--out",
        "backed",
        cwd=folder,
    )
    assert "backed .h5ad" in proc.stdout and "(the last rows)" in proc.stdout
    adata = ad.read_h5ad(folder / "raw.h5ad", backed="r")
    try:
        model, record = _check_run(folder / "backed", adata)
    finally:
        adata.file.close()
    assert model.dispersion_.shape == (2, N_GENES)
    assert record["data"]["validation_rows"] == "last"


def test_a_dense_array_with_counts(cells):
    folder, X = cells
    proc = run_cli(
        "train",
        "--data",
        "dense.npy",
        "--counts",
        "--likelihood",
        "poisson",
        "--library",
        "none",
        "--validation",
        "0",
        *FAST,
        "--out",
        "dense",
        cwd=folder,
    )
    model, record = _check_run(folder / "dense", X.toarray(), n_val=0)
    assert model.likelihood == "poisson" and model.library is None
    assert "held-out ELBO" not in proc.stdout and record["held_out_elbo"] is None


def test_the_image_defaults_stay(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((60, 4)))
    run_cli("train", "--data", "x.npy", "--epochs", "1", "--quiet", cwd=tmp_path)
    settings = _history(tmp_path / "fastvae-run")["settings"]
    assert settings["hidden"] == [400] and settings["latent_dim"] == 20
    assert settings["likelihood"] == "bernoulli" and settings["kl_warmup"] == 0
    assert not (tmp_path / "fastvae-run" / "latent.npy").exists()


BAD = [
    (("--likelihood", "zinb"), "--likelihood zinb needs count data"),
    (("--data", "dense.npy", "--likelihood", "negbin"), "needs count data"),
    (("--library", "observed"), "--library is for count data"),
    (("--data", "cells.npz", "--layer", "counts"), "--layer reads an .h5ad file"),
    (
        ("--data", "cells_csr", "--condition-key", "batch"),
        "--condition-key reads an .h5ad file",
    ),
    (("--data", "cells.npz", "--conditional"), "--conditional is not available"),
    (("--data", "cells.npz", "--likelihood", "gaussian"), "need a count likelihood"),
    (("--data", "cells.npz", "--model", "ae"), "count data train a VAE"),
    (("--data", "cells.npz", "--dispersion", "gene-batch"), "needs batches"),
    (("--data", "cells.npz", "--latent-dim", "0"), "--latent-dim must be >= 1"),
    (("--data", "missing.h5ad"), "missing.h5ad: no such file"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_named(cells, args, message):
    folder, _ = cells
    proc = run_cli("train", *args, *FAST, "--out", "bad", cwd=folder, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (folder / "bad" / "model.npz").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (("--layer", "raw"), "layer 'raw' is not in adata.layers"),
        (("--condition-key", "donor"), "condition_key 'donor' is not a column"),
    ],
)
def test_bad_h5ad_options_are_named(h5ad, args, message):
    folder, _ = h5ad
    proc = run_cli(
        "train", "--data", "cells.h5ad", *args, *FAST, "--out", "bad", cwd=folder,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def _env(**extra):
    env = dict(
        os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    env.pop("FASTVAE_DEBUG", None)
    env.update(extra)
    return env


def test_without_anndata_an_h5ad_says_what_to_install(tmp_path):
    fake = tmp_path / "fake" / "anndata"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named anndata')\n")
    env = _env()
    env["PYTHONPATH"] = str(tmp_path / "fake") + os.pathsep + env["PYTHONPATH"]
    proc = subprocess.run(
        [sys.executable, "-m", "fastvae", "train", "--data", "x.h5ad", "--out", "r"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "pip install 'fastvae[anndata]'" in proc.stderr


def test_a_finished_count_run_is_not_trained_over(cells):
    folder, _ = cells
    run_cli("train", "--data", "cells.npz", *FAST, "--out", "once", cwd=folder)
    proc = run_cli("train", "--resume", "once", cwd=folder, check=False)
    assert proc.returncode == 2 and "is finished (2 of 2 epochs)" in proc.stderr
    proc = run_cli("train", "--data", "cells.npz", *FAST, "--out", "once", cwd=folder,
                   check=False)  # fmt: skip
    assert proc.returncode == 2 and "--overwrite" in proc.stderr


def test_max_time_stops_with_a_model(cells):
    folder, X = cells
    proc = run_cli(
        "train", "--data", "cells.npz", "--epochs", "100000", "--max-time", "1",
        "--quiet", "--out", "timed", cwd=folder,
    )  # fmt: skip
    assert "stopped at the time budget" in proc.stdout
    assert "continue with: fastvae train --resume timed" in proc.stdout
    assert _history(folder / "timed")["stopped"]["reason"] == "max_time"
    latent = np.load(folder / "timed" / "latent.npy")
    model = fastvae.load(folder / "timed" / "model.npz")
    np.testing.assert_array_equal(latent, model.transform(X))


def _default_sigint():
    # Python installs its Ctrl-C handler only if SIGINT is not ignored when
    # it starts, and an ignored SIGINT is inherited (a suite started in the
    # background ignores it): this test interrupts
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_a_count_run(cells):
    folder, _ = cells
    run = folder / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastvae", "train", "--data", "cells.npz",
         "--epochs", "100000", "--quiet", "--out", str(run)],
        cwd=folder,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )  # fmt: skip
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.stat().st_size > 0):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(proc.communicate())
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("still running 30 s after SIGINT") from None
    assert proc.returncode == 130, err
    assert "fastvae: interrupted" in err and "Traceback" not in err
    assert not (run / "model.npz").exists()
    # metrics come before the checkpoint at an epoch's end: either may be
    # the last thing done
    assert f"continue with: fastvae train --resume {run}" in err or (
        "no checkpoint was written" in err
    )
