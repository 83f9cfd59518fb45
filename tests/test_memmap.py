"""Training on data bigger than memory (fastvae.data.batches): memmaps and other
array-likes are read in chunks, give bitwise the parameters of in-memory
training, are validated like arrays, and keep resident memory bounded."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastvae
from fastvae.data import batches


def _binary(n=300, d=20, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = (rng.random((n, d)) < 0.3).astype(dtype)
    X[:, :3] = rng.random((n, 3))  # some soft targets
    return X


def _memmap(tmp_path, X, name="x.dat"):
    path = tmp_path / name
    X.tofile(path)
    return np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)


def _small(**kw):
    settings = dict(hidden=(16,), latent_dim=3, epochs=2, batch_size=32, random_state=5)
    settings.update(kw)
    return fastvae.VAE(**settings)


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Chunks of 3 minibatches of 20 float32 features and windows of 2 pages,
    so a 300-row file takes many chunks and windows."""
    monkeypatch.setattr(batches, "CHUNK_BYTES", 3 * 32 * 20 * 4)
    monkeypatch.setattr(batches, "WINDOW_BYTES", 8192)


def test_detects_what_to_read_in_chunks(tmp_path):
    X = _binary()
    mm = _memmap(tmp_path, X)
    assert batches.is_out_of_core(mm) and batches.is_out_of_core(np.asarray(mm)[10:])
    assert not batches.is_out_of_core(X) and not batches.is_out_of_core(X.tolist())
    assert batches.is_out_of_core(_Rows(X))


@pytest.mark.parametrize("chunks", ["default", "tiny"])
@pytest.mark.parametrize("file_dtype", [np.float32, np.float64, np.uint8])
def test_memmap_training_is_bitwise_in_memory_training(
    tmp_path, request, chunks, file_dtype
):
    if chunks == "tiny":
        request.getfixturevalue("tiny_chunks")
    X = _binary(dtype=np.float32)
    if file_dtype == np.uint8:
        X = (X > 0.5).astype(np.float32)
    mm = _memmap(tmp_path, X.astype(file_dtype))
    on_disk = _small().fit(mm, validation_data=X[:50])
    in_memory = _small().fit(X, validation_data=X[:50])
    np.testing.assert_array_equal(on_disk.params_, in_memory.params_)
    np.testing.assert_array_equal(on_disk._opt_state[1], in_memory._opt_state[1])
    assert on_disk.loss_curve_ == in_memory.loss_curve_
    assert on_disk.history_["val_elbo"] == in_memory.history_["val_elbo"]


def test_chunks_hold_whole_minibatches_in_epoch_order(tmp_path, tiny_chunks):
    X = _binary()
    mm = _memmap(tmp_path, X)
    data = batches.Chunked(mm, np.float32, 32)
    assert data.chunk_rows == 96
    order = np.random.default_rng(1).permutation(300)
    got = [
        (buf[rows].copy(), rows.size) for buf, rows, _ in data.minibatches(order, 32)
    ]
    assert [size for _, size in got] == [32] * 9 + [12]
    np.testing.assert_array_equal(np.vstack([rows for rows, _ in got]), X[order])


def test_conditions_and_float64_models(tmp_path, tiny_chunks):
    X = _binary()
    cond = np.eye(4, dtype=np.float64)[np.arange(300) % 4]
    mm = _memmap(tmp_path, X.astype(np.float64))
    a = _small(dtype=np.float64).fit(mm, condition=cond)
    b = _small(dtype=np.float64).fit(X.astype(np.float64), condition=cond)
    np.testing.assert_array_equal(a.params_, b.params_)
    np.testing.assert_array_equal(a.transform(X, cond), b.transform(X, cond))


def test_views_and_modes_of_a_memmap(tmp_path, tiny_chunks):
    X = _binary(n=400)
    path = tmp_path / "x.dat"
    X.tofile(path)
    want = _small().fit(X[100:350, 2:]).params_
    for mode in ("r", "r+", "c"):
        mm = np.memmap(path, dtype=np.float32, mode=mode, shape=X.shape)
        np.testing.assert_array_equal(_small().fit(mm[100:350, 2:]).params_, want)
    # np.load(mmap_mode="r") gives a memmap too
    np.save(tmp_path / "x.npy", X)
    loaded = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_array_equal(_small().fit(loaded).params_, _small().fit(X).params_)


class _Rows:
    """An array-like that is not a NumPy array (like an h5py dataset): a shape,
    a dtype and row indexing; it records what it was asked for."""

    def __init__(self, X):
        self._X = X
        self.shape = X.shape
        self.dtype = X.dtype
        self.requests = []

    def __getitem__(self, key):
        self.requests.append(key)
        return self._X[key].copy()


def test_any_array_like_with_rows(tiny_chunks):
    X = _binary()
    rows = _Rows(X)
    np.testing.assert_array_equal(_small().fit(rows).params_, _small().fit(X).params_)
    gathers = [k for k in rows.requests if isinstance(k, np.ndarray)]
    assert gathers and all(k.size <= 96 and np.all(np.diff(k) > 0) for k in gathers)
    # the whole array was never asked for: slices are validation windows
    assert all(isinstance(k, (np.ndarray, slice)) for k in rows.requests)


def test_partial_fit_on_a_memmap(tmp_path):
    X = _binary()
    mm = _memmap(tmp_path, X)
    a = _small().partial_fit(mm).partial_fit(mm)
    np.testing.assert_array_equal(a.params_, _small(epochs=2).fit(X).params_)


@pytest.mark.parametrize(
    "edit, error, message",
    [
        (
            lambda X: X.__setitem__((217, 4), np.nan),
            ValueError,
            r"X contains NaN or infinite values \(first in row 217\)",
        ),
        (lambda X: X.__setitem__((3, 0), np.inf), ValueError, "first in row 3"),
        (
            lambda X: X.__setitem__((9, 9), 1.5),
            ValueError,
            r"must lie in \[0, 1\] for the Bernoulli likelihood, got values in "
            r"\[0, 1.5\]",
        ),
    ],
    ids=["nan", "inf", "range"],
)
def test_memmap_contents_are_validated(tmp_path, tiny_chunks, edit, error, message):
    X = _binary()
    edit(X)
    with pytest.raises(error, match=message):
        _small().fit(_memmap(tmp_path, X))


def test_memmap_shape_and_dtype_are_validated(tmp_path):
    X = _binary()
    with pytest.raises(ValueError, match="X has 20 features, but VAE is expecting 7"):
        _small(input_dim=7).fit(_memmap(tmp_path, X))
    with pytest.raises(ValueError, match="Complex data not supported"):
        _small().fit(_memmap(tmp_path, X.astype(np.complex64), "c.dat"))
    with pytest.raises(ValueError, match="must be 2-D"):
        _small().fit(np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="r"))
    empty = np.memmap(tmp_path / "e.dat", dtype=np.float32, mode="w+", shape=(4, 5))
    with pytest.raises(ValueError, match=r"0 feature\(s\) \(shape=\(4, 0\)\)"):
        _small().fit(empty[:, :0])
    with pytest.raises(ValueError, match="must lie in"):  # float64 beyond [0, 1]
        _small().fit(_memmap(tmp_path, 3.0 * X.astype(np.float64), "d.dat"))


# -- resident memory ----------------------------------------------------------------

_RSS_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import fastvae
    from fastvae.data import batches

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024

    path, n, d, release = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if release == "off":
        batches._madvise = None
    X = np.memmap(path, dtype=np.float32, mode="r", shape=(n, d))
    before = status("VmRSS")
    fastvae.VAE(hidden=(16,), latent_dim=2, epochs=1, batch_size=512).fit(X)
    print(before, status("VmHWM"))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_peak_memory_stays_far_below_the_file_size(tmp_path):
    """One epoch over a 200 MB memmap: the peak resident memory grows by the
    chunk buffer and a window of pages, not by the file (without releasing
    pages it grows by about the whole file: the control run)."""
    d = 256
    n = 200 * 2**20 // (4 * d)
    path = tmp_path / "big.f32"
    block = np.random.default_rng(0).random((4096, d), dtype=np.float32)
    with open(path, "wb") as f:
        for _ in range(n // 4096):
            block.tofile(f)
    size = path.stat().st_size
    assert size == 200 * 2**20

    def peak_growth(release):
        out = subprocess.run(
            [sys.executable, "-c", _RSS_SCRIPT, str(path), str(n), str(d), release],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        before, peak = (int(v) for v in out.stdout.split())
        return before, peak

    before, peak = peak_growth("on")
    assert peak - before < batches.CHUNK_BYTES + 16 * batches.WINDOW_BYTES  # 80 MB
    assert peak < size / 2
    before_off, peak_off = peak_growth("off")
    assert peak_off - before_off > 0.75 * size
