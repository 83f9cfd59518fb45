"""scipy.sparse input. Below batches.SPARSE_LAYER_DENSITY the first layer
trains on the nonzeros (close to the dense fit, bitwise for any thread
count); above it, or for layouts the sparse layer cannot read, a count
matrix trains one minibatch of densified rows at a time, bitwise like the
same data held dense. Inference: tests/test_csr_inference.py."""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import fastvae
from fastvae.data import batches

sp = pytest.importorskip("scipy.sparse")


def _counts(n=1500, d=120, density=0.08, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.negative_binomial(2, 0.4, (n, d)) * (rng.random((n, d)) < density)
    return dense.astype(np.float32)


SETTINGS = dict(hidden=(24,), latent_dim=3, epochs=2, batch_size=64, random_state=2)


@pytest.mark.parametrize(
    "likelihood, extra",
    [("negbin", {}), ("poisson", {}), ("gaussian", {"sigma": "learned"})],
)
def test_densified_fit_on_csr_is_bitwise_fit_on_the_dense_matrix(
    likelihood, extra, monkeypatch
):
    monkeypatch.setattr(batches, "SPARSE_LAYER_DENSITY", 0.0)
    dense = _counts()
    X = sp.csr_matrix(dense)
    kw = dict(SETTINGS, likelihood=likelihood, **extra)
    a = fastvae.VAE(**kw).fit(X, validation_data=X[:200])
    b = fastvae.VAE(**kw).fit(dense, validation_data=dense[:200])
    assert np.array_equal(a.params_, b.params_)
    assert a.history_["loss"] == b.history_["loss"]
    assert a.history_["val_elbo"] == b.history_["val_elbo"]
    assert np.array_equal(a.transform(X), b.transform(dense))
    assert np.array_equal(a.score_samples(X), b.score_samples(dense))
    mu_a, lv_a = a.encode(X)
    mu_b, lv_b = b.encode(dense)
    assert np.array_equal(mu_a, mu_b) and np.array_equal(lv_a, lv_b)


@pytest.mark.parametrize(
    "likelihood, extra",
    [
        ("negbin", {}),
        ("zinb", {"library": "observed"}),
        ("gaussian", {"sigma": "learned"}),
        ("bernoulli", {}),
    ],
)
def test_sparse_first_layer_fit_is_close_to_the_dense_fit(
    likelihood, extra, monkeypatch
):
    """float64: the only difference is the order of the first layer's sums."""
    monkeypatch.setattr(batches, "SPARSE_LAYER_DENSITY", 1.0)
    dense = _counts().astype(np.float64)
    if likelihood == "bernoulli":
        dense = (dense > 0).astype(np.float64)
    X = sp.csr_matrix(dense)
    kw = dict(SETTINGS, likelihood=likelihood, dtype=np.float64, **extra)
    a = fastvae.VAE(**kw).fit(X)
    b = fastvae.VAE(**kw).fit(dense)
    np.testing.assert_allclose(a.params_, b.params_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(a.history_["loss"], b.history_["loss"], rtol=1e-9)


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_sparse_first_layer_with_conditions_and_latent_samples(objective, monkeypatch):
    """k latent samples per row each take their row's condition: the CSR
    minibatch's, which has no expanded input row (this once read an
    unfilled buffer, 0.03 off the dense fit after two epochs)."""
    monkeypatch.setattr(batches, "SPARSE_LAYER_DENSITY", 1.0)
    dense = _counts(n=400).astype(np.float64)
    cond = np.eye(3)[np.arange(dense.shape[0]) % 3]
    kw = dict(SETTINGS, likelihood="negbin", library="observed", dtype=np.float64,
              n_latent_samples=3, objective=objective)  # fmt: skip
    a = fastvae.VAE(**kw).fit(sp.csr_matrix(dense), condition=cond)
    b = fastvae.VAE(**kw).fit(dense, condition=cond)
    np.testing.assert_allclose(a.params_, b.params_, rtol=1e-7, atol=1e-9)


def test_sparse_first_layer_is_bitwise_for_any_thread_count(monkeypatch):
    monkeypatch.setattr(batches, "SPARSE_LAYER_DENSITY", 1.0)
    X = sp.csr_matrix(_counts())
    cond = np.eye(2, dtype=np.float32)[np.arange(X.shape[0]) % 2]
    fits = [
        fastvae.VAE(**SETTINGS, likelihood="zinb", library="observed", n_threads=t).fit(
            X, condition=cond
        )
        for t in (1, 2, 3)
    ]
    for other in fits[1:]:
        assert np.array_equal(fits[0].params_, other.params_)
        assert fits[0].history_["loss"] == other.history_["loss"]


def test_the_sparse_layer_is_chosen_below_the_density_threshold():
    from fastvae._core._network import Network

    from fastvae.models.base import BaseAutoencoder

    vae = fastvae.VAE(**SETTINGS, likelihood="negbin")
    s = vae._settings()
    columns = (("negbin", 1),) * 120
    layout = BaseAutoencoder._layout(vae, s, 120, 0, columns)
    net = vae._network(s, layout, 64, 0, training=True, columns=columns)
    assert isinstance(net, Network) and net.supports_csr
    assert batches.reads_nonzeros(sp.csr_matrix(_counts(density=0.03)), net)
    assert not batches.reads_nonzeros(sp.csr_matrix(_counts(density=0.3)), net)
    assert not batches.reads_nonzeros(_counts(), net)
    masked = fastvae.VAE(**SETTINGS, likelihood="negbin", missing="mask")
    s = masked._settings()
    layout = BaseAutoencoder._layout(masked, s, 120, 0, columns)
    net = masked._network(s, layout, 64, 0, training=True, columns=columns)
    assert not net.supports_csr


def test_log_likelihood_of_csr_rows_matches_dense():
    dense = _counts(n=1200)
    X = sp.csr_matrix(dense)
    vae = fastvae.VAE(**SETTINGS, likelihood="negbin").fit(X)
    # more rows than one inference chunk: the draws follow each row's index
    np.testing.assert_allclose(
        vae.log_likelihood(X, k=8), vae.log_likelihood(dense, k=8), rtol=1e-6
    )


def test_bernoulli_conditions_and_partial_fit_on_csr():
    rng = np.random.default_rng(1)
    dense = (rng.random((600, 50)) < 0.1).astype(np.float32)
    cond = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 600)]
    X = sp.csr_matrix(dense)
    a = fastvae.VAE(**SETTINGS).fit(X, condition=cond)
    b = fastvae.VAE(**SETTINGS).fit(dense, condition=cond)
    assert np.array_equal(a.params_, b.params_)
    assert np.array_equal(a.reconstruct(X, cond), b.reconstruct(dense, cond))
    a.partial_fit(X[:100], condition=cond[:100])
    b.partial_fit(dense[:100], condition=cond[:100])
    assert np.array_equal(a.params_, b.params_)


def test_other_formats_are_converted_once_with_a_warning():
    dense = _counts(n=300)
    ref = fastvae.VAE(**SETTINGS, likelihood="negbin").fit(sp.csr_matrix(dense))
    with pytest.warns(UserWarning, match="CSC sparse matrix; converting it to CSR"):
        csc = fastvae.VAE(**SETTINGS, likelihood="negbin").fit(sp.csc_matrix(dense))
    assert np.array_equal(csc.params_, ref.params_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref.score_samples(sp.csr_array(dense))  # a sparse array, already CSR


def test_bad_sparse_values_are_named():
    X = sp.csr_matrix(_counts(n=200))
    bad = X.copy()
    bad.data[5] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values"):
        fastvae.VAE(**SETTINGS, likelihood="negbin").fit(bad)
    bad = X.copy()
    bad.data[5] = -3
    with pytest.raises(ValueError, match=r"column \d+ \(negbin\) must hold counts"):
        fastvae.VAE(**SETTINGS, likelihood="negbin").fit(bad)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        fastvae.VAE(**SETTINGS).fit(X)
    with pytest.raises(ValueError, match="missing='mask' need X in memory"):
        fastvae.VAE(**SETTINGS, likelihood="negbin", missing="mask").fit(X)


def test_memory_stays_near_the_nonzeros(tmp_path):
    """100,000 cells x 2,000 genes, 60 nonzeros per cell: 0.8 GB dense in
    float32, 48 MB as CSR. One epoch adds far less than the dense size to
    the peak RSS of the process that built the matrix (measured: 20 MB)."""
    script = textwrap.dedent(
        """
        import resource, numpy as np, scipy.sparse as sp, fastvae
        rng = np.random.default_rng(0)
        n, d, per_row = 100_000, 2_000, 60
        indptr = np.arange(0, n * per_row + 1, per_row)
        indices = np.sort(rng.integers(0, d, (n, per_row)), axis=1).ravel()
        X = sp.csr_matrix((np.ones(n * per_row, np.float32), indices, indptr), (n, d))
        X.sum_duplicates()
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fastvae.VAE(hidden=(32,), latent_dim=4, epochs=1, batch_size=256,
                    likelihood="poisson").fit(X)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(base // 1024, peak // 1024)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    base_mb, peak_mb = map(int, proc.stdout.split())
    assert peak_mb - base_mb < 100, (base_mb, peak_mb)


def test_duplicate_entries_add_up_as_in_toarray(monkeypatch):
    """A non-canonical CSR (a repeated column in a row) trains like its sum;
    the user's matrix is left as it was."""
    monkeypatch.setattr(batches, "SPARSE_LAYER_DENSITY", 1.0)
    canonical = sp.csr_matrix(_counts(n=300, density=0.05))
    dup = sp.csr_matrix(
        (
            np.repeat(canonical.data / 2, 2),
            np.repeat(canonical.indices, 2),
            canonical.indptr * 2,
        ),
        shape=canonical.shape,
    )
    assert not dup.has_canonical_format
    kw = dict(SETTINGS, likelihood="negbin")
    a = fastvae.VAE(**kw).fit(dup)
    b = fastvae.VAE(**kw).fit(canonical)
    assert np.array_equal(a.params_, b.params_)
    assert dup.nnz == 2 * canonical.nnz  # untouched
