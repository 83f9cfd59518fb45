"""Count models: scVI's generative model as options of the VAE, i.e. a
negative-binomial or zero-inflated NB likelihood per gene whose mean is
softmax(f(z)) times the cell's observed library size
(``library="observed"``), on sparse count matrices."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import gammaln

import fastvae

N, D, K_TRUE, THETA = 2400, 150, 4, 4.0


def _counts(seed=0, zero_inflation=0.0):
    """Cells x genes: NB counts around a rank-4 log-mean, log-normal library
    sizes (median 400), one dispersion for every gene. Returns the CSR
    matrix and the true means."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((N, K_TRUE))
    logits = z @ (rng.standard_normal((K_TRUE, D)) * 0.7)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    library = np.exp(rng.normal(np.log(400), 0.3, N))
    mu = p * library[:, None]
    X = rng.poisson(rng.gamma(THETA, mu / THETA))
    if zero_inflation:
        X[rng.random(X.shape) < zero_inflation] = 0
    return sp.csr_matrix(X.astype(np.float32)), mu


def _nb_log_prob(X, mu, theta):
    return (
        gammaln(X + theta)
        - gammaln(theta)
        - gammaln(X + 1)
        + theta * np.log(theta / (theta + mu))
        + X * np.log(mu / (theta + mu))
    ).sum(axis=1)


@pytest.fixture(scope="module")
def data():
    return _counts()


def _fit(X, **options):
    settings = dict(hidden=(64,), latent_dim=8, epochs=12, batch_size=128)
    settings.update(options)
    return fastvae.VAE(random_state=0, **settings).fit(X)


@pytest.mark.parametrize("likelihood", ["negbin", "zinb"])
def test_library_model_learns_the_held_out_counts(data, likelihood):
    """A model that knows the true dispersion and each cell's library but
    not its state (the mean proportions for every cell) scores -374 nats
    per held-out cell; the true generating parameters -239. After 40 epochs
    the ELBO (-250 measured, 91% of that gap) closes more than 85% of the
    gap, and stays a bound."""
    X, mu = data
    train, test = X[:2000], X[2000:]
    vae = _fit(train, likelihood=likelihood, library="observed", epochs=40, lr=3e-3)
    elbo = vae.score_samples(test).mean()
    dense = test.toarray().astype(np.float64)
    library = dense.sum(axis=1, keepdims=True)
    p_bar = np.asarray(train.sum(axis=0)).ravel() / train.sum()
    blind = _nb_log_prob(dense, library * p_bar, THETA).mean()
    truth = _nb_log_prob(dense, mu[2000:], THETA).mean()
    assert blind + 0.85 * (truth - blind) < elbo < truth, (elbo, blind, truth)
    ll = vae.log_likelihood(test[:100], k=50).mean()
    assert ll >= vae.score_samples(test[:100]).mean() - 0.5


def test_library_model_starts_from_scvis_initialisation(data):
    """scVI's model starts like scVI's PyTorch layers (weights and biases
    uniform in +-1/sqrt(fan_in)); other models keep Glorot weights and
    zero biases."""
    X, _ = data
    start = dict(epochs=1, lr=1e-12)  # one step that moves nothing visible
    vae = _fit(X[:300], likelihood="negbin", library="observed", **start)
    for W, b in vae._fitted_layout.views(vae.params_):
        limit = 1.0 / np.sqrt(W.shape[0]) + 1e-9
        assert np.abs(W).max() <= limit and np.abs(W).max() > 0.9 * limit
        assert np.abs(b).max() <= limit and np.abs(b).max() > 0.5 * limit
    plain = _fit(X[:300], likelihood="negbin", **start)
    W, b = plain._fitted_layout.views(plain.params_)[0]
    assert np.abs(b).max() < 1e-9 and np.abs(W).max() > 2.0 / np.sqrt(W.shape[0])


def test_library_means_scale_with_the_library(data):
    X, _ = data
    vae = _fit(X[:600], likelihood="negbin", library="observed", epochs=2)
    sample = vae.sample(5, library_size=1000.0)
    np.testing.assert_allclose(sample.sum(axis=1), 1000.0, rtol=1e-4)
    proportions = vae.sample(5)
    np.testing.assert_allclose(proportions.sum(axis=1), 1.0, rtol=1e-4)
    sized = vae.sample(2, library_size=[10.0, 20.0])
    np.testing.assert_allclose(sized.sum(axis=1), [10.0, 20.0], rtol=1e-4)
    rec = vae.reconstruct(X[:7])
    totals = np.asarray(X[:7].sum(axis=1)).ravel()
    np.testing.assert_allclose(rec.sum(axis=1), totals, rtol=1e-4)
    as_list = vae.reconstruct(X[:7].toarray().tolist())
    np.testing.assert_allclose(as_list, rec, rtol=1e-6)


def test_zero_inflation_draws_zeros(data):
    X, _ = data
    vae = _fit(X[:600], likelihood="zinb", library="observed", epochs=2)
    means = vae.sample(50, library_size=500.0)
    assert means.shape == (50, D) and (means >= 0).all()
    assert means.sum(axis=1).max() <= 500.0 * (1 + 1e-5)


def test_save_and_load_keep_the_library(data, tmp_path):
    X, _ = data
    vae = _fit(X[:600], likelihood="zinb", library="observed", epochs=2)
    vae.save(tmp_path / "counts.npz")
    again = fastvae.load(tmp_path / "counts.npz")
    assert again.library == "observed"
    np.testing.assert_array_equal(
        again.score_samples(X[600:700]), vae.score_samples(X[600:700])
    )


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(likelihood="gaussian", library="observed"), "needs a count likelihood"),
        (
            dict(likelihood="negbin", library="observed", missing="mask"),
            "no missing='mask'",
        ),
        (dict(likelihood="negbin", library="total"), "library"),
    ],
)
def test_bad_library_settings_are_named(data, options, message):
    with pytest.raises(ValueError, match=message):
        _fit(data[0][:50], epochs=1, **options)


def test_library_size_needs_a_library_model(data):
    X, _ = data
    vae = _fit(X[:200], likelihood="negbin", epochs=1)
    with pytest.raises(ValueError, match="library='observed'"):
        vae.sample(3, library_size=100.0)
    lib = _fit(X[:200], likelihood="negbin", library="observed", epochs=1)
    with pytest.raises(ValueError, match="one number or 3 numbers"):
        lib.sample(3, library_size=[1.0, 2.0])
    with pytest.raises(ValueError, match="finite and > 0"):
        lib.sample(3, library_size=0.0)
