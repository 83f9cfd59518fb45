"""Resuming runs on count data: fit(X_csr, checkpoint=...) and
fastvae.resume on CSR matrices (in memory and memory-mapped) and AnnData,
and the sparse data fingerprint (never densified)."""

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
