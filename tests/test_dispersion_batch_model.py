"""VAE(dispersion="gene-batch"): one negative-binomial dispersion per gene
and batch (scVI's option of that name), learned from counts whose batches
differ in dispersion; dispersion_, draws, save/load and bad settings."""

import numpy as np
import pytest

import fastvae
from fastvae.models import columns as _columns

N, D, N_TRAIN = 2000, 40, 1600


@pytest.fixture(scope="module")
def batches():
    """Two batches of cells x genes, NB counts around a rank-3 log-mean
    times a log-normal library (median 400); half the genes have theta 0.5
    in batch 0 and 20 in batch 1, the other half the reverse."""
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 2, N)
    cond = np.eye(2, dtype=np.float32)[batch]
    z = rng.standard_normal((N, 3))
    logits = z @ (rng.standard_normal((3, D)) * 0.7)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    mu = p * np.exp(rng.normal(np.log(400), 0.3, N))[:, None]
    first = rng.random(D) < 0.5
    theta = np.stack([np.where(first, 0.5, 20.0), np.where(first, 20.0, 0.5)])
    X = rng.poisson(rng.gamma(theta[batch], mu / theta[batch])).astype(np.float32)
    return X, cond, theta


def _fit(X, cond, **options):
    settings = dict(
        hidden=(64,),
        latent_dim=8,
        likelihood="negbin",
        library="observed",
        epochs=2,
        random_state=0,
    )
    settings.update(options)
    return fastvae.VAE(**settings).fit(X, condition=cond)


def test_learns_each_batchs_dispersions(batches):
    """60 epochs (under a second for both models): the fitted
    log-dispersions correlate with the true ones at 0.99 (measured), the
    median fitted theta is 0.53 where the truth is 0.5 and 7.8 where it is
    20, and the held-out ELBO is -109.9 nats per cell against -116.8 for
    one dispersion per gene (whose median theta is 1.16)."""
    X, cond, theta = batches
    options = dict(epochs=60, lr=1e-2)
    by_batch = _fit(X[:N_TRAIN], cond[:N_TRAIN], dispersion="gene-batch", **options)
    shared = _fit(X[:N_TRAIN], cond[:N_TRAIN], **options)
    fitted = by_batch.dispersion_
    assert fitted.shape == (2, D) and shared.dispersion_.shape == (D,)
    r = np.corrcoef(np.log(fitted).ravel(), np.log(theta).ravel())[0, 1]
    assert r > 0.9, r
    assert np.median(fitted[theta == 0.5]) < 1.0
    assert np.median(fitted[theta == 20.0]) > 4.0
    test = X[N_TRAIN:], cond[N_TRAIN:]
    gain = by_batch.score_samples(*test).mean() - shared.score_samples(*test).mean()
    assert gain > 3.0, gain


def test_save_and_load_keep_the_dispersions(batches, tmp_path):
    X, cond, _ = batches
    vae = _fit(X[:400], cond[:400], likelihood="zinb", dispersion="gene-batch")
    vae.save(tmp_path / "batch.npz")
    again = fastvae.load(tmp_path / "batch.npz")
    assert again.dispersion == "gene-batch"
    np.testing.assert_array_equal(again.dispersion_, vae.dispersion_)
    np.testing.assert_array_equal(
        again.score_samples(X[400:500], cond[400:500]),
        vae.score_samples(X[400:500], cond[400:500]),
    )
    assert fastvae.VAE().dispersion == "gene"


def test_dispersion_matrix_and_other_columns():
    """dispersion_ is NaN for a Poisson column; the learned Gaussian
    column's log-sigmas are per condition column too (sigma_ keeps them
    per column for a Gaussian likelihood)."""
    rng = np.random.default_rng(1)
    X = np.column_stack(
        [rng.poisson(3.0, 300), rng.negative_binomial(2, 0.3, 300)]
    ).astype(np.float32)
    cond = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 300)]
    vae = _fit(
        X, cond, likelihood=["poisson", "negbin"], library=None, dispersion="gene-batch"
    )
    theta = vae.dispersion_
    assert theta.shape == (3, 2)
    assert np.isnan(theta[:, 0]).all() and (theta[:, 1] > 0).all()
    G = rng.standard_normal((300, 2)).astype(np.float32)
    G[rng.random(G.shape) < 0.1] = np.nan
    gauss = _fit(
        G,
        cond,
        likelihood="gaussian",
        sigma="learned",
        missing="mask",
        library=None,
        dispersion="gene-batch",
    )
    assert gauss.sigma_.shape == (3, 2)
    with pytest.raises(AttributeError, match="dispersion_ exists only"):
        gauss.dispersion_  # noqa: B018


def test_draws_use_each_rows_dispersion():
    """columns.draw with one row of tails per row: theta e^-3 (most counts
    0) for the first half, e^10 (about Poisson) for the second."""
    n = 4000
    means = np.full((n, 1), 5.0)
    tail = np.where(np.arange(n) < n // 2, -3.0, 10.0)[:, None]
    rng = np.random.default_rng(0)
    x = _columns.draw([("negbin", 1)], means, tail, 1.0, rng)[:, 0]
    low, high = x[: n // 2], x[n // 2 :]
    assert (low == 0).mean() > 0.8
    assert high.var() == pytest.approx(5.0, rel=0.15)


def test_impute_draws_with_the_rows_batch(batches):
    X, cond, _ = batches
    Y = X[:300].copy()
    gone = np.random.default_rng(2).random(Y.shape) < 0.1
    Y[gone] = np.nan
    vae = _fit(Y, cond[:300], library=None, missing="mask", dispersion="gene-batch")
    filled = vae.impute(Y, cond[:300], n_imputations=3)
    assert filled.shape == (3, *Y.shape)
    assert np.isfinite(filled).all()
    np.testing.assert_array_equal(
        filled[:, ~gone], np.broadcast_to(Y[~gone], (3,) + Y[~gone].shape)
    )


@pytest.mark.parametrize(
    "options, cond, message",
    [
        (dict(dispersion="gene-batch"), False, "needs conditions"),
        (dict(dispersion="cell"), True, "dispersion"),
        (dict(dispersion="gene-batch", likelihood="poisson"), True, "per-column tail"),
        (
            dict(dispersion="gene-batch", likelihood="gaussian", sigma="learned"),
            True,
            "per-column tail",
        ),
    ],
)
def test_bad_settings_are_named(batches, options, cond, message):
    X, C, _ = batches
    if options.get("likelihood") in ("poisson", "gaussian"):
        options = dict(options, library=None)
    with pytest.raises(ValueError, match=message):
        _fit(X[:50], C[:50] if cond else None, epochs=1, batch_size=25, **options)


def test_shard_gradients_sum_to_the_minibatch_gradient(batches):
    """MPI training sums the shards' gradients: with their global row
    offsets and batch size they add up to the minibatch's, phi included."""
    X, cond, _ = batches
    vae = _fit(
        X[:300],
        cond[:300],
        likelihood="zinb",
        dispersion="gene-batch",
        dtype=np.float64,
    )
    s, layout = vae._fitted_settings, vae._fitted_layout
    net = vae._network(
        s, layout, 30, vae.n_conditions_, training=True, columns=vae.columns_
    )
    p = vae.params_
    X64, c64 = X.astype(np.float64), cond.astype(np.float64)
    rows = np.arange(30, dtype=np.int64)[::-1].copy()
    whole = np.zeros_like(p)
    net.gradients(p, whole, X64, rows, 30, 3, 9, 0.5, 1, cond=c64)
    total = np.zeros_like(p)
    for lo, hi in ((0, 7), (7, 8), (8, 30)):
        part = np.zeros_like(p)
        status, *_ = net.gradients(
            p,
            part,
            X64,
            rows[lo:hi],
            hi - lo,
            3,
            9,
            0.5,
            1,
            row_offset=lo,
            global_batch=30,
            cond=c64,
        )
        assert status == 0
        total += part
    assert layout.tail(whole).reshape(2, D).all()
    np.testing.assert_allclose(total, whole, rtol=0, atol=1e-11 * np.abs(whole).max())


@pytest.mark.parametrize("library", [None, "observed"])
def test_gene_batch_model_on_csr_rows_matches_dense(library):
    """Sparse input trains with the CSR first layer and is scored from its
    nonzeros; every row still gets its own batch's dispersions there."""
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(0)
    X = sp.random(300, 60, density=0.05, format="csr", random_state=1,
                  data_rvs=lambda k: rng.poisson(3, k) + 1.0)  # fmt: skip
    cond = np.eye(3)[rng.integers(0, 3, 300)]
    kw = dict(hidden=(16,), latent_dim=3, likelihood="zinb", library=library,
              dispersion="gene-batch", epochs=3, batch_size=32, dtype=np.float64,
              random_state=0, n_latent_samples=2)  # fmt: skip
    vae = fastvae.VAE(**kw).fit(X, condition=cond)
    dense = X.toarray()
    np.testing.assert_allclose(
        fastvae.VAE(**kw).fit(dense, condition=cond).params_, vae.params_,
        rtol=1e-7, atol=1e-9,
    )  # fmt: skip
    np.testing.assert_allclose(
        vae.score_samples(X, cond), vae.score_samples(dense, cond), rtol=1e-10
    )
    np.testing.assert_allclose(
        vae.log_likelihood(X, cond, k=20), vae.log_likelihood(dense, cond, k=20),
        rtol=1e-10,
    )  # fmt: skip
