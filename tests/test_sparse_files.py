"""A CSR matrix as .npy files (fastvae.data.save_csr / load_csr): read back
as memory maps, trained on without a copy, its pages released as training
reads them."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastvae
from fastvae.data import load_csr, save_csr

sp = pytest.importorskip("scipy.sparse")


def _matrix(n=800, d=60, density=0.05, seed=0):
    rng = np.random.default_rng(seed)
    return sp.random(
        n, d, density=density, format="csr", dtype=np.float32, rng=rng,
        data_rvs=lambda k: rng.integers(1, 9, k),
    )  # fmt: skip


def test_round_trip_maps_the_arrays(tmp_path):
    X = _matrix()
    save_csr(tmp_path / "m", X)
    Y = load_csr(tmp_path / "m")
    assert isinstance(Y, sp.csr_matrix) and Y.shape == X.shape
    assert (Y != X).nnz == 0
    for a in (Y.data, Y.indices):
        base = a
        while not isinstance(base, np.memmap) and base.base is not None:
            base = base.base
        assert isinstance(base, np.memmap)
    assert not isinstance(load_csr(tmp_path / "m", mmap=False).data, np.memmap)


def test_fit_on_the_mapped_matrix_is_the_fit_in_memory(tmp_path):
    X = _matrix()
    save_csr(tmp_path / "m", X)
    kw = dict(hidden=(16,), latent_dim=3, likelihood="negbin", epochs=2,
              batch_size=64, random_state=1)  # fmt: skip
    a = fastvae.VAE(**kw).fit(load_csr(tmp_path / "m"))
    b = fastvae.VAE(**kw).fit(X)
    assert np.array_equal(a.params_, b.params_)
    assert np.array_equal(a.transform(load_csr(tmp_path / "m")), b.transform(X))


class _Rows:
    """A row-sliceable sparse source (as anndata's backed CSR dataset):
    only shape and X[a:b], and the slices it gave out."""

    def __init__(self, X):
        self.X, self.shape, self.slices = X, X.shape, []

    def __getitem__(self, rows):
        self.slices.append((rows.start, rows.stop))
        return self.X[rows]


def test_a_row_sliceable_source_is_copied_in_bounded_blocks(tmp_path):
    X = _matrix(n=500, d=30, density=0.2)
    # row 0 gains a value at column 5 ahead of its others: unsorted columns
    # (and a duplicate when it had one there), as a source may hold them
    messy = sp.csr_matrix(
        (np.r_[[1.0], X.data], np.r_[[5], X.indices], np.r_[[0], X.indptr[1:] + 1]),
        shape=X.shape,
    )
    assert not messy.has_sorted_indices
    source = _Rows(messy)
    save_csr(tmp_path / "m", source, block_nnz=100)
    Y = load_csr(tmp_path / "m")
    canonical = messy.copy()
    canonical.sum_duplicates()
    assert (Y != canonical).nnz == 0 and Y.has_canonical_format
    assert source.slices[0] == (0, 3) and source.slices[-1][1] == 500
    assert max(messy[a:b].nnz for a, b in source.slices) <= 4 * 100
    with pytest.raises(TypeError, match=r"X\[0:1\] is a ndarray"):
        save_csr(tmp_path / "d", _Rows(np.ones((3, 2))), block_nnz=1)


def test_a_source_with_2_31_stored_values_gets_64_bit_columns(tmp_path):
    """A backed CSR that says (in its group's indptr) it holds 2**31 stored
    values is written with int64 columns, so that load_csr's offsets
    cannot wrap; a small one keeps int32."""
    X = _matrix(n=50, d=10, density=0.3)
    source = _Rows(X)
    source.group = {"indptr": np.array([0, 2**31])}
    save_csr(tmp_path / "wide", source)
    assert np.load(tmp_path / "wide" / "indices.npy", mmap_mode="r").dtype == np.int64
    assert (load_csr(tmp_path / "wide") != X).nnz == 0
    save_csr(tmp_path / "narrow", _Rows(X))
    assert np.load(tmp_path / "narrow" / "indices.npy").dtype == np.int32


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.npy is missing"):
        load_csr(tmp_path)
    save_csr(tmp_path / "m", _matrix())
    np.save(tmp_path / "m" / "indptr.npy", np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="indptr.npy must have n_rows"):
        load_csr(tmp_path / "m")
    np.save(tmp_path / "m" / "shape.npy", np.array([5]))
    with pytest.raises(ValueError, match="two positive sizes"):
        load_csr(tmp_path / "m")


@pytest.mark.slow
def test_training_releases_the_mapped_pages(tmp_path):
    """1,000,000 cells x 2,000 genes at 4% (80M stored values, 640 MB of
    files): one epoch's peak RSS grows by far less than the files' size."""
    script = textwrap.dedent(
        f"""
        import numpy as np, scipy.sparse as sp, fastvae
        rng = np.random.default_rng(0)
        n, d, per_row = 1_000_000, 2_000, 80
        step = d // per_row  # one stored value in each run of `step` columns
        indptr = np.arange(0, n * per_row + 1, per_row, dtype=np.int64)
        indices = (rng.integers(0, step, (n, 1)) + np.arange(per_row) * step)
        X = sp.csr_matrix((np.ones(n * per_row, np.float32),
                           indices.astype(np.int32).ravel(), indptr), (n, d))
        fastvae.data.save_csr({str(tmp_path / "big")!r}, X)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=600)
    run = textwrap.dedent(
        f"""
        import fastvae
        from fastvae.bench.memory import peak_rss_mb
        X = fastvae.data.load_csr({str(tmp_path / "big")!r})
        base = peak_rss_mb()
        fastvae.VAE(hidden=(32,), latent_dim=4, epochs=1, batch_size=256,
                    likelihood="poisson").fit(X)
        print(base, peak_rss_mb())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", run], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr
    base_mb, peak_mb = map(float, proc.stdout.split())
    assert peak_mb - base_mb < 250, (base_mb, peak_mb)
