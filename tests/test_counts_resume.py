"""Resuming runs on count data: fit(X_csr, checkpoint=...) and
fastvae.resume on CSR matrices (in memory and memory-mapped) and AnnData,
the sparse data fingerprint (never densified), and fastvae train --resume
of a count run."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from _zipfiles import members as _members
from _zipfiles import meta as _meta
from _zipfiles import rewrite as _rewrite
from _zipfiles import with_meta as _with_meta
from test_checkpoint import _Crash, _crash_after, assert_same_run

import fastvae
from fastvae.data import load_csr, save_csr
from fastvae.models import checkpoint as fckpt

N, D = 240, 50
SETTINGS = dict(
    hidden=(16,),
    latent_dim=3,
    likelihood="zinb",
    library="observed",
    epochs=3,
    batch_size=64,
    random_state=3,
    n_threads=1,
    verbose=0,
)


def _counts(seed=0, n=N):
    rng = np.random.default_rng(seed)
    counts = rng.negative_binomial(2, 0.5, (n, D)) * (rng.random((n, D)) < 0.3)
    return sp.csr_matrix(counts.astype(np.float32))


@pytest.fixture(scope="module")
def X():
    return _counts()


@pytest.fixture(scope="module")
def straight(X):
    return fastvae.VAE(**SETTINGS).fit(X)


def _interrupted(monkeypatch, folder, X, **fit):
    """A fit that dies right after its third checkpoint (4 steps per epoch;
    written at step 3, epoch 1's end and step 6: mid-epoch 2)."""
    _crash_after(monkeypatch, 3)
    with pytest.raises(_Crash):
        fastvae.VAE(**SETTINGS).fit(
            X, checkpoint=folder, checkpoint_every_steps=3, **fit
        )
    monkeypatch.undo()
    info = fastvae.checkpoint_info(folder)
    assert (info["epochs_done"], info["epoch_step"]) == (1, 2)


# -- the library ---------------------------------------------------------------


def test_a_csr_run_resumes_bitwise(X, straight, tmp_path, monkeypatch):
    _interrupted(monkeypatch, tmp_path, X)
    assert_same_run(fastvae.resume(tmp_path, X), straight)


def test_a_memory_mapped_csr_run_resumes_bitwise(X, straight, tmp_path, monkeypatch):
    mapped = load_csr(save_csr(tmp_path / "cells", X))
    _interrupted(monkeypatch, tmp_path, mapped)
    # the checkpoint holds the same fingerprint as the matrix in memory
    again = load_csr(tmp_path / "cells")
    assert_same_run(fastvae.resume(tmp_path, again), straight)


def test_an_anndata_run_resumes_bitwise_as_it_was_read(tmp_path, monkeypatch):
    anndata = pytest.importorskip("anndata")
    pd = pytest.importorskip("pandas")
    X = _counts(1)
    levels = ["b2", "a1", "c3"]  # not sorted: the recorded order must be kept
    codes = np.arange(N) % 3
    obs = pd.DataFrame(
        {"batch": pd.Categorical.from_codes(codes, categories=levels)},
        index=[f"cell{i}" for i in range(N)],
    )
    adata = anndata.AnnData(X=np.ones((N, D), np.float32), obs=obs)
    adata.layers["counts"] = X
    read = dict(layer="counts", condition_key="batch")
    straight = fastvae.VAE(**SETTINGS).fit(adata, **read)
    _interrupted(monkeypatch, tmp_path, adata, **read)
    in_checkpoint = fastvae.load(tmp_path / "checkpoint.npz")
    assert in_checkpoint.anndata_layer_ == "counts"
    assert in_checkpoint.condition_key_ == "batch"
    assert in_checkpoint.condition_levels_ == levels
    resumed = fastvae.resume(tmp_path, adata)  # read as the fit read it
    assert_same_run(resumed, straight)
    assert resumed.condition_levels_ == levels
    onehot = np.eye(3, dtype=np.float32)[codes]
    np.testing.assert_array_equal(
        resumed.transform(adata), straight.transform(X, onehot)
    )


def test_resume_on_other_counts_is_refused(X, tmp_path):
    fastvae.VAE(**dict(SETTINGS, epochs=1)).fit(X, checkpoint=tmp_path)
    other = X.copy()
    other.data[5] += 1.0
    with pytest.raises(ValueError, match="X .or condition. differs from the data"):
        fastvae.resume(tmp_path, other, epochs=2)
    with pytest.raises(
        ValueError,
        match="X is a dense array but the checkpointed run trained on a sparse matrix",
    ):
        fastvae.resume(tmp_path, X.toarray(), epochs=2)


def test_the_sparse_fingerprint_never_densifies(monkeypatch):
    def densify(self, *args, **kwargs):
        raise AssertionError("densified")

    for name in ("toarray", "todense"):
        monkeypatch.setattr(sp.csr_matrix, name, densify)
    # 2**22 genes: 3.4 GB dense, a few kB stored
    rng = np.random.default_rng(0)
    cells = np.repeat(np.arange(200), 8)
    genes = rng.integers(0, 2**22, cells.size)
    wide = sp.csr_matrix(
        (np.ones(cells.size, np.float32), (cells, genes)), shape=(200, 2**22)
    )
    tracemalloc.start()
    try:
        fingerprint = fckpt.data_fingerprint(wide, None, np.float32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
    assert fingerprint["sparse"] is True
    assert (fingerprint["n_samples"], fingerprint["n_features"]) == (200, 2**22)


def test_the_sparse_fingerprint_is_of_the_canonical_matrix(X):
    digest = fckpt.data_fingerprint(X, None, np.float32)["sha256"]
    # 64-bit indices, unsorted columns and split duplicates: the same matrix
    wide = sp.csr_matrix(
        (X.data, X.indices.astype(np.int64), X.indptr.astype(np.int64)), shape=X.shape
    )
    assert fckpt.data_fingerprint(wide, None, np.float32)["sha256"] == digest
    data, indices, indptr = [], [], [0]
    for r in range(X.shape[0]):  # each row's values halved twice, columns reversed
        row = slice(X.indptr[r], X.indptr[r + 1])
        data += [*X.data[row][::-1] / 2, *X.data[row] / 2]
        indices += [*X.indices[row][::-1], *X.indices[row]]
        indptr.append(len(data))
    messy = sp.csr_matrix((np.float32(data), indices, indptr), shape=X.shape)
    assert not messy.has_sorted_indices
    assert fckpt.data_fingerprint(messy, None, np.float32)["sha256"] == digest
    changed = X.copy()
    changed.data[0] += 1
    assert fckpt.data_fingerprint(changed, None, np.float32)["sha256"] != digest


def test_a_checkpoint_with_a_dense_digest_of_a_csr_still_resumes(
    X, straight, tmp_path, monkeypatch
):
    """fastvae hashed a sparse X densified before: such checkpoints stay
    valid."""
    _interrupted(monkeypatch, tmp_path, X)
    path = tmp_path / "checkpoint.npz"
    members = _members(path)
    meta = _meta(members)
    data = meta["progress"]["data"]
    assert data.pop("sparse") is True
    data["sha256"] = fckpt.data_fingerprint(X.toarray(), None)["sha256"]
    _rewrite(path, _with_meta(members, meta))
    assert_same_run(fastvae.resume(tmp_path, X), straight)


# -- the command line ----------------------------------------------------------

CLI = ("--quiet", "--threads", "1")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A CSR folder, a sparse .npz and two .h5ad files of 400 cells x 50
    genes (cells.h5ad: normalised X, counts in a layer; raw.h5ad: counts in
    X), with a batch column."""
    from test_cli_counts import N_CELLS, _counts

    folder = tmp_path_factory.mktemp("count_files")
    X = sp.csr_matrix(_counts())
    save_csr(folder / "cells_csr", X)
    sp.save_npz(folder / "cells.npz", X)
    anndata = pytest.importorskip("anndata")
    pd = pytest.importorskip("pandas")
    batch = np.where(np.arange(N_CELLS) % 3 == 0, "a", "b")
    obs = pd.DataFrame(
        {"batch": pd.Categorical(batch)}, index=[f"cell{i}" for i in range(N_CELLS)]
    )
    anndata.AnnData(X=X.log1p(), obs=obs, layers={"counts": X}).write_h5ad(
        folder / "cells.h5ad"
    )
    anndata.AnnData(X=X, obs=obs).write_h5ad(folder / "raw.h5ad")
    return folder


def _same_runs(a, b):
    """Two run folders hold bitwise the same model, latent means and
    history (but for timings)."""
    from test_cli_counts import _history

    assert_same_run(fastvae.load(a / "model.npz"), fastvae.load(b / "model.npz"))
    np.testing.assert_array_equal(np.load(a / "latent.npy"), np.load(b / "latent.npy"))
    history = [_history(run)["history"] for run in (a, b)]
    for key in history[0]:
        if key not in ("seconds", "samples_per_second"):
            assert history[0][key] == history[1][key], key
    for run in (a, b):
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize(
    "data",
    [
        ("cells_csr",),
        ("cells.npz", "--validation", "0"),
        ("cells.h5ad", "--layer", "counts", "--condition-key", "batch"),
        ("raw.h5ad", "--backed", "--condition-key", "batch"),
    ],
    ids=["csr-folder", "npz", "h5ad-layer", "backed-h5ad"],
)
def test_a_resumed_count_run_is_the_straight_run(files, tmp_path, data):
    from test_cli import run_cli

    run_cli(
        "train",
        "--data",
        *data,
        "--epochs",
        "4",
        *CLI,
        "--out",
        tmp_path / "straight",
        cwd=files,
    )
    run_cli(
        "train",
        "--data",
        *data,
        "--epochs",
        "2",
        *CLI,
        "--out",
        tmp_path / "run",
        cwd=files,
    )
    assert fastvae.checkpoint_info(tmp_path / "run")["finished"]
    # from another folder: the run recorded where its data are
    proc = run_cli(
        "train", "--resume", "run", "--epochs", "4", "--threads", "1", cwd=tmp_path
    )
    assert "resuming" in proc.stdout and "after 2 epochs, to 4 epochs" in proc.stdout
    assert "trained 4 epochs (2 before the resume)" in proc.stdout
    _same_runs(tmp_path / "run", tmp_path / "straight")
    model = fastvae.load(tmp_path / "run" / "model.npz")
    if "--condition-key" in data:
        assert model.condition_key_ == "batch" and model.condition_levels_ == ["a", "b"]
        in_checkpoint = fastvae.load(tmp_path / "run" / "checkpoint.npz")
        assert in_checkpoint.condition_levels_ == ["a", "b"]


def test_changed_or_missing_data_are_named(files, tmp_path):
    from test_cli import run_cli

    for name in ("cells.npz", "cells_csr"):
        copy = tmp_path / name
        if name == "cells.npz":
            copy.write_bytes((files / name).read_bytes())
        else:
            save_csr(copy, load_csr(files / name))
        run_cli(
            "train",
            "--data",
            copy,
            "--epochs",
            "1",
            *CLI,
            "--out",
            f"run_{name}",
            cwd=tmp_path,
        )
    edited = sp.load_npz(tmp_path / "cells.npz")
    edited.data[10] += 1.0
    sp.save_npz(tmp_path / "cells.npz", edited)
    proc = run_cli(
        "train", "--resume", "run_cells.npz", "--epochs", "2", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{tmp_path / 'cells.npz'} is not the data the run in" in proc.stderr
    assert "it has changed since" in proc.stderr and "SHA-256" in proc.stderr
    assert "Traceback" not in proc.stderr
    (tmp_path / "cells_csr" / "indices.npy").rename(tmp_path / "indices.npy")
    proc = run_cli(
        "train", "--resume", "run_cells_csr", "--epochs", "2", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert "indices.npy is missing" in proc.stderr
    __import__("shutil").rmtree(tmp_path / "cells_csr")
    proc = run_cli(
        "train", "--resume", "run_cells_csr", "--epochs", "2", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2
    assert "cells_csr: no such file or folder; the run in" in proc.stderr


def test_a_count_run_without_a_checkpoint_says_so(files, tmp_path):
    from test_cli import run_cli

    run_cli(
        "train",
        "--data",
        files / "cells.npz",
        "--epochs",
        "1",
        *CLI,
        "--checkpoint-every",
        "0",
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert not (tmp_path / "run" / "checkpoint.npz").exists()
    proc = run_cli("train", "--resume", "run", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "kept no checkpoint (--checkpoint-every 0" in proc.stderr
