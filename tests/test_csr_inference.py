"""Inference on a CSR matrix below batches.SPARSE_INFERENCE_DENSITY: the first
layer reads the nonzeros (Network.encode_csr, elbo_terms_csr,
log_likelihood_csr), never a densified chunk. The numbers are the dense
rows' up to the order of the first layer's sums (the evaluation noise is
keyed by each row's dense values, log_likelihood's by its index), bitwise
for any thread count, and a memory-mapped matrix gives the in-memory
matrix's numbers bitwise."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastvae
from fastvae.data import batches, load_csr, save_csr
from fastvae.models import inference

sp = pytest.importorskip("scipy.sparse")

SETTINGS = dict(hidden=(24,), latent_dim=3, epochs=1, batch_size=64, random_state=2)
# more rows than one inference chunk: chunks start at row 512 and 1024
N_ROWS = 2 * inference.INFERENCE_CHUNK + 77


def _counts(n=N_ROWS, d=90, density=0.05, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    dense = rng.negative_binomial(2, 0.4, (n, d)) * (rng.random((n, d)) < density)
    return dense.astype(dtype)


def _results(model, X, cond=None):
    out = {
        "transform": model.transform(X, condition=cond),
        "score_samples": model.score_samples(X, condition=cond),
    }
    if isinstance(model, fastvae.VAE):
        out["mu"], out["logvar"] = model.encode(X, condition=cond)
        out["log_likelihood"] = model.log_likelihood(X, k=3, condition=cond)
    return out


def _no_densifying(monkeypatch):
    """Fail any densified chunk of inference."""

    def refuse(*args, **kwargs):
        raise AssertionError("a CSR chunk was densified")

    monkeypatch.setattr(inference.Inference, "_call_sparse", refuse)


CASES = [
    ("zinb", {"library": "observed"}, True),
    ("negbin", {}, False),
    ("poisson", {}, True),
    ("gaussian", {"sigma": "learned"}, False),
    ("bernoulli", {}, True),
]


@pytest.mark.parametrize("likelihood, extra, conditioned", CASES)
def test_csr_inference_matches_the_dense_rows_in_float64(
    likelihood, extra, conditioned, monkeypatch
):
    dense = _counts()
    if likelihood == "bernoulli":
        dense = (dense > 0).astype(np.float64)
    cond = None
    if conditioned:
        cond = np.eye(3)[np.arange(dense.shape[0]) % 3]
    vae = fastvae.VAE(**SETTINGS, likelihood=likelihood, dtype=np.float64, **extra)
    vae.fit(dense, condition=cond)
    X = sp.csr_matrix(dense)
    assert vae._reads_nonzeros(X)
    want = _results(vae, dense, cond)
    _no_densifying(monkeypatch)
    got = _results(vae, X, cond)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)


def test_csr_inference_is_close_to_dense_in_float32(monkeypatch):
    dense = _counts(dtype=np.float32)
    vae = fastvae.VAE(**SETTINGS, likelihood="zinb", library="observed").fit(dense)
    want = _results(vae, dense)
    _no_densifying(monkeypatch)
    got = _results(vae, sp.csr_matrix(dense))
    for name in want:
        assert got[name].dtype == want[name].dtype
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)


def test_an_autoencoder_reads_the_nonzeros_too(monkeypatch):
    dense = _counts()
    ae = fastvae.Autoencoder(**SETTINGS, likelihood="poisson", dtype=np.float64)
    ae.fit(dense)
    want = _results(ae, dense)
    _no_densifying(monkeypatch)
    got = _results(ae, sp.csr_matrix(dense))
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)


def test_csr_inference_is_bitwise_for_any_thread_count():
    dense = _counts(dtype=np.float32)
    cond = np.eye(2, dtype=np.float32)[np.arange(dense.shape[0]) % 2]
    X = sp.csr_matrix(dense)
    vae = fastvae.VAE(**SETTINGS, likelihood="zinb", library="observed")
    vae.fit(dense, condition=cond)
    runs = []
    for threads in (1, 2, 3):
        vae.set_params(n_threads=threads)
        runs.append(_results(vae, X, cond))
    for other in runs[1:]:
        for name in runs[0]:
            assert np.array_equal(runs[0][name], other[name]), name


def test_rows_get_their_numbers_in_any_chunk():
    """A row's ELBO comes from its own values, its log-likelihood draws from
    its index: the same rows alone or inside a bigger matrix."""
    dense = _counts()
    X = sp.csr_matrix(dense)
    vae = fastvae.VAE(**SETTINGS, likelihood="negbin", dtype=np.float64).fit(dense)
    rows = slice(500, 530)  # across the first chunk boundary
    whole = vae.score_samples(X)
    assert np.array_equal(vae.score_samples(X[rows]), whole[rows])
    assert np.array_equal(vae.transform(X[rows]), vae.transform(X)[rows])


def test_above_the_threshold_the_chunks_are_densified(monkeypatch):
    monkeypatch.setattr(batches, "SPARSE_INFERENCE_DENSITY", 0.1)
    dense = _counts(density=0.2)
    vae = fastvae.VAE(**SETTINGS, likelihood="negbin", dtype=np.float64).fit(dense)
    X = sp.csr_matrix(dense)
    assert not vae._reads_nonzeros(X)

    def refuse(*args, **kwargs):
        raise AssertionError("read the nonzeros above the threshold")

    monkeypatch.setattr(inference.Inference, "_call_csr", refuse)
    # densified chunks: bitwise the dense matrix's numbers
    assert np.array_equal(vae.transform(X), vae.transform(dense))
    assert np.array_equal(vae.score_samples(X), vae.score_samples(dense))


def test_a_network_that_cannot_read_csr_densifies(monkeypatch):
    """Missingness indicators have no sparse first layer: chunks are
    densified as before."""
    dense = _counts()
    vae = fastvae.VAE(**SETTINGS, likelihood="negbin", missing="mask").fit(dense)
    assert not vae._inference_network().supports_csr
    X = sp.csr_matrix(dense.astype(np.float32))
    np.testing.assert_array_equal(
        vae.transform(X), vae.transform(dense.astype(np.float32))
    )


def test_a_memory_mapped_matrix_gives_the_in_memory_numbers(tmp_path, monkeypatch):
    dense = _counts(dtype=np.float32)
    X = sp.csr_matrix(dense)
    save_csr(tmp_path / "counts", X)
    mapped = load_csr(tmp_path / "counts")
    assert batches._memmap_of(mapped.data) is not None
    vae = fastvae.VAE(**SETTINGS, likelihood="zinb", library="observed").fit(X)
    want = _results(vae, X)
    released = []
    real = batches.release

    def spy(a):
        released.append(batches._memmap_of(a) is not None)
        real(a)

    monkeypatch.setattr(batches, "release", spy)
    _no_densifying(monkeypatch)
    got = _results(vae, mapped)
    for name in want:
        assert np.array_equal(got[name], want[name]), name
    # every chunk's stored values and columns were released after use
    assert released.count(True) >= 2 * -(-X.shape[0] // inference.INFERENCE_CHUNK)


def test_csr_row_chunks_cover_the_matrix_in_order():
    X = sp.csr_matrix(_counts(n=1100, dtype=np.float32))
    seen = []
    for r0, r1, A in batches.csr_row_chunks(X, np.float32, 512):
        assert A.indices.dtype == np.int32 and A.indptr.dtype == np.int64
        part = sp.csr_matrix((A.data, A.indices, A.indptr), shape=(r1 - r0, 90))
        seen.append(part.toarray())
    assert [s.shape[0] for s in seen] == [512, 512, 76]
    assert np.array_equal(np.concatenate(seen), X.toarray())


def _net(dtype=np.float64):
    vae = fastvae.VAE(**SETTINGS, likelihood="negbin", dtype=dtype)
    vae.fit(_counts(n=200))
    return vae, vae._inference_network()


def test_the_csr_entry_points_check_their_input():
    vae, net = _net()
    X = sp.csr_matrix(_counts(n=20))
    data, indices = X.data, X.indices.astype(np.int32)
    indptr = X.indptr.astype(np.int64)
    p = vae.params_
    bad = indices.copy()
    bad[3] = 90
    with pytest.raises(IndexError, match="column index 90"):
        net.encode_csr(p, data, bad, indptr)
    wrong = indptr.copy()
    wrong[-1] += 5
    with pytest.raises(ValueError, match="indptr of row 19"):
        net.elbo_terms_csr(p, data, indices, wrong, 0, 3)
    with pytest.raises(ValueError, match="one index per stored value"):
        net.log_likelihood_csr(p, data, indices[:-1], indptr, 2, 0, 4)
    with pytest.raises(ValueError, match="n_rows \\+ 1 >= 2"):
        net.encode_csr(p, data[:0], indices[:0], indptr[:1])
    with pytest.raises(TypeError, match="float64"):
        net.encode_csr(p.astype(np.float32), data.astype(np.float32), indices, indptr)
    with pytest.raises(ValueError, match="takes no conditions"):
        net.encode_csr(p, data, indices, indptr, cond=np.zeros((20, 1)))
    with pytest.raises(ValueError, match="n_threads"):
        net.encode_csr(p, data, indices, indptr, n_threads=0)
    masked = fastvae.VAE(
        **SETTINGS, likelihood="negbin", missing="mask", dtype=np.float64
    )
    masked.fit(_counts(n=200))
    with pytest.raises(ValueError, match="cannot read a CSR matrix"):
        masked._inference_network().encode_csr(masked.params_, data, indices, indptr)


def test_empty_rows_and_explicit_zeros_are_rows_of_zeros():
    vae, net = _net()
    dense = _counts(n=40)
    dense[5] = 0.0  # a row without any stored value
    dense[7, :2] = [0.0, 3.0]
    X = sp.csr_matrix(dense)
    # an explicit zero stored first in row 7, in column 0
    at = X.indptr[7]
    X = sp.csr_matrix(
        (
            np.insert(X.data, at, 0.0),
            np.insert(X.indices, at, 0),
            X.indptr + (np.arange(41) > 7),
        ),
        shape=X.shape,
    )
    assert X.nnz == np.count_nonzero(dense) + 1 and X.indptr[6] == X.indptr[5]
    p = vae.params_
    args = (X.data, X.indices.astype(np.int32), X.indptr.astype(np.int64))
    np.testing.assert_allclose(
        net.encode_csr(p, *args), net.encode(p, dense), rtol=1e-12
    )
    for a, b in zip(
        net.elbo_terms_csr(p, *args, 0, 3), net.elbo_terms(p, dense, 0, 3), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_a_row_with_more_values_than_columns_is_summed_in_pieces():
    """Repeated columns (the Network API does not canonicalize) may give a
    row more stored values than the encoder has inputs: they add up."""
    vae = fastvae.VAE(**SETTINGS, likelihood="gaussian", dtype=np.float64)
    dense = np.random.default_rng(3).normal(size=(100, 90))
    vae.fit(dense)
    net = vae._inference_network()
    X = sp.csr_matrix(dense)
    # every value stored as two halves: 180 values per row
    doubled = sp.csr_matrix(
        (np.repeat(X.data / 2, 2), np.repeat(X.indices, 2), 2 * X.indptr),
        shape=X.shape,
    )
    args = (
        doubled.data,
        doubled.indices.astype(np.int32),
        doubled.indptr.astype(np.int64),
    )
    np.testing.assert_allclose(
        net.encode_csr(vae.params_, *args), net.encode(vae.params_, dense), rtol=1e-9
    )


def test_a_memory_mapped_matrix_does_not_become_resident(tmp_path):
    """200,000 cells x 2,000 genes, 60 values per cell: 96 MB of files.
    transform and score_samples read them chunk by chunk, releasing each
    chunk's pages, so the peak RSS grows by far less than the files."""
    rng = np.random.default_rng(0)
    n, d, per_row = 200_000, 2_000, 60
    indices = np.sort(rng.choice(d, (n, per_row)), axis=1)
    indices += np.arange(per_row)  # strictly increasing within a row
    indices %= d
    indices.sort(axis=1)
    X = sp.csr_matrix(
        (
            rng.integers(1, 20, n * per_row).astype(np.float32),
            indices.ravel(),
            np.arange(0, n * per_row + 1, per_row),
        ),
        shape=(n, d),
    )
    X.sum_duplicates()
    save_csr(tmp_path / "big", X)
    del X
    script = textwrap.dedent(
        f"""
        import resource, numpy as np, fastvae
        from fastvae.data import load_csr
        X = load_csr({str(tmp_path / "big")!r})
        vae = fastvae.VAE(hidden=(32,), latent_dim=4, epochs=1,
                          likelihood="poisson", random_state=0)
        vae.fit(X[:2000].toarray())
        vae.transform(X[:1000])
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert vae._reads_nonzeros(X)
        vae.transform(X)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(base // 1024, peak // 1024)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    base_mb, peak_mb = map(int, proc.stdout.split())
    assert peak_mb - base_mb < 48, (base_mb, peak_mb)
