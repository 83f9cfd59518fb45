"""The model family through the public API: importance-sampled log p(x),
conditional VAEs, learned Gaussian noise, dynamic binarization, and the
autoencoder baselines."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import fastvae
from fastvae import data

D = 16


@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(0)
    centers = rng.random((4, D)) < 0.4
    X = centers[rng.integers(0, 4, 400)] ^ (rng.random((400, D)) < 0.1)
    return X.astype(np.float32)


@pytest.fixture(scope="module")
def vae(binary):
    return fastvae.VAE(
        hidden=(32,),
        latent_dim=4,
        epochs=30,
        batch_size=50,
        dtype=np.float64,
        random_state=2,
    ).fit(binary)


# -- log p(x) ----------------------------------------------------------------------


def test_log_likelihood_bounds_the_elbo_and_tightens_with_k(vae, binary):
    X = binary[:60]
    elbo = vae.elbo(X)
    ll = {k: vae.log_likelihood(X, k=k) for k in (1, 10, 100, 1000)}
    # E[log p_k] rises with k and exceeds the ELBO (Burda et al.)
    means = [ll[k].mean() for k in (1, 10, 100, 1000)]
    assert means == sorted(means), means
    assert means[0] == pytest.approx(elbo.mean(), abs=2.0)  # both single-sample
    assert ll[1000].mean() > elbo.mean() + 0.1
    # the estimate is deterministic and does not depend on the batch it is in
    np.testing.assert_array_equal(vae.log_likelihood(X, k=10), ll[10])
    np.testing.assert_array_equal(vae.log_likelihood(X[:7], k=10), ll[10][:7])
    assert not np.array_equal(vae.log_likelihood(X, k=10, seed=5), ll[10])


def test_log_likelihood_converges_to_the_exact_linear_gaussian_value():
    """Linear decoder, Gaussian likelihood: p(x) = N(b, W^T W + sigma^2 I)
    is known exactly; the importance-sampled estimate converges to it."""
    rng = np.random.default_rng(1)
    latent, sigma = 2, 0.5
    A = rng.standard_normal((latent, 5))
    X = rng.standard_normal((500, latent)) @ A + sigma * rng.standard_normal((500, 5))
    vae = fastvae.VAE(
        hidden=(),
        latent_dim=latent,
        likelihood="gaussian",
        sigma=sigma,
        epochs=60,
        batch_size=50,
        lr=0.01,
        dtype=np.float64,
        random_state=0,
    ).fit(X)
    (_, _), (W, b) = vae._fitted_layout.views(vae.params_)
    exact = multivariate_normal(b, W.T @ W + sigma**2 * np.eye(5)).logpdf(X[:40])
    errors = {
        k: np.abs(vae.log_likelihood(X[:40], k=k) - exact).mean()
        for k in (1, 10, 100, 5000)
    }
    # measured: 0.41, 0.066, 0.0084, 0.00037 nats
    assert errors[5000] < 0.005, errors
    assert errors[5000] < errors[100] < errors[10] < errors[1], errors
    assert vae.elbo(X[:40]).mean() < exact.mean()


def test_log_likelihood_arguments(vae, binary):
    with pytest.raises(ValueError, match="k must be >= 1"):
        vae.log_likelihood(binary[:2], k=0)
    with pytest.raises(TypeError, match="k must be Integral"):
        vae.log_likelihood(binary[:2], k=2.5)
    with pytest.raises(ValueError, match="is expecting 16 features"):
        vae.log_likelihood(np.zeros((2, 3)), k=2)


# -- conditional VAE ----------------------------------------------------------------


def test_conditional_vae_api(binary):
    labels = np.arange(len(binary)) % 3
    cond = data.one_hot(labels, 3)
    cvae = fastvae.VAE(hidden=(24,), latent_dim=3, epochs=3, random_state=1).fit(
        binary, condition=cond, validation_data=(binary[:40], cond[:40])
    )
    assert cvae.n_conditions_ == 3
    assert cvae.transform(binary[:5], cond[:5]).shape == (5, 3)
    assert cvae.sample(6, condition=[0, 1, 0]).shape == (6, D)
    assert cvae.sample(2, condition=cond[:2]).shape == (2, D)
    assert cvae.log_likelihood(binary[:3], cond[:3], k=5).shape == (3,)
    assert cvae.history_["val_elbo"][-1] == pytest.approx(
        cvae.score(binary[:40], condition=cond[:40])
    )
    with pytest.raises(
        ValueError, match="fitted with 3 condition columns; pass condition="
    ):
        cvae.transform(binary[:5])
    with pytest.raises(
        ValueError, match="condition has 4 condition columns, but VAE is expecting 3"
    ):
        cvae.transform(binary[:5], np.zeros((5, 4)))
    with pytest.raises(ValueError, match="condition has 4 rows but the data have 5"):
        cvae.transform(binary[:5], cond[:4])
    with pytest.raises(ValueError, match="fitted without conditions"):
        fastvae.VAE(hidden=(8,), latent_dim=2, epochs=1).fit(binary).transform(
            binary[:2], cond[:2]
        )
    with pytest.raises(ValueError, match=r"must be \(X_val, condition_val\)"):
        fastvae.VAE(epochs=1).fit(binary, condition=cond, validation_data=binary[:5])


def test_conditional_samples_follow_the_condition(shared_data):
    """CVAE on MNIST digits with a 2-dimensional latent (so the decoder must
    take the digit from the condition): samples drawn with label c are
    classified as c by a nearest-class-mean classifier far more often than
    chance (10%). Measured: 80% (the same classifier scores 76% on real test
    digits)."""
    folder = None if shared_data is None else shared_data / "mnist"
    if folder is None or not folder.is_dir():
        pytest.skip("../shared/data/mnist is not available")
    train = data.load_mnist(folder).subset(slice(0, 12000))
    cond = data.one_hot(train.y, 10)
    cvae = fastvae.VAE(hidden=(256,), latent_dim=2, epochs=5, random_state=0).fit(
        train.X, condition=cond
    )
    means = np.stack([train.X[train.y == c].mean(axis=0) for c in range(10)])
    labels = np.repeat(np.arange(10), 40)
    samples = cvae.sample(len(labels), condition=data.one_hot(labels, 10), seed=3)
    dist = ((samples[:, None, :] - means[None]) ** 2).sum(axis=2)
    accuracy = np.mean(dist.argmin(axis=1) == labels)
    assert accuracy > 0.6, accuracy
    per_class = np.stack([samples[labels == c].mean(axis=0) for c in range(10)])
    assert np.abs(per_class[1] - per_class[0]).sum() > 20  # digits look different


# -- Gaussian noise, binarization -----------------------------------------------------


def test_learned_sigma_follows_the_noise_of_each_feature():
    """Features of pure noise: nothing to predict, so the learned sigma of
    each feature converges to its standard deviation."""
    rng = np.random.default_rng(2)
    noise = np.array([0.05, 0.1, 0.3, 0.6, 1.0])
    X = noise * rng.standard_normal((2000, 5))
    # Adam moves log-sigma by at most about lr per step: 640 steps at 0.01
    # reach log(0.05) = -3 from the initial 0
    vae = fastvae.VAE(
        hidden=(16,),
        latent_dim=1,
        likelihood="gaussian",
        sigma="learned",
        epochs=40,
        lr=0.01,
        random_state=0,
    ).fit(X)
    learned = vae.sigma_
    assert learned.shape == (5,)
    np.testing.assert_allclose(learned, X.std(axis=0), rtol=0.1)
    fixed = fastvae.VAE(
        hidden=(16,), latent_dim=1, likelihood="gaussian", epochs=1
    ).fit(X)
    assert fixed.sigma_ == 1.0
    assert vae.score(X) > fixed.score(X) + 5


def test_sigma_settings_are_checked(binary):
    with pytest.raises(ValueError, match="sigma='learned' needs likelihood='gaussian'"):
        fastvae.VAE(sigma="learned", epochs=1).fit(binary)
    with pytest.raises(ValueError, match="sigma must be > 0.0"):
        fastvae.VAE(likelihood="gaussian", sigma=-1.0).fit(binary)
    with pytest.raises(TypeError, match="sigma must be Real"):
        fastvae.VAE(likelihood="gaussian", sigma="fixed").fit(binary)
    with pytest.raises(AttributeError, match="only for likelihood='gaussian'"):
        fastvae.VAE(hidden=(4,), latent_dim=2, epochs=1).fit(binary).sigma_  # noqa: B018


def test_dynamic_binarization_trains_on_fresh_binary_draws():
    rng = np.random.default_rng(3)
    P = rng.random((300, D)).astype(np.float32)  # probabilities, not binary
    settings = dict(hidden=(16,), latent_dim=3, epochs=2, random_state=4)
    dyn = [
        fastvae.VAE(dynamic_binarization=True, n_threads=t, **settings).fit(P).params_
        for t in (1, 2)
    ]
    np.testing.assert_array_equal(dyn[0], dyn[1])
    plain = fastvae.VAE(**settings).fit(P).params_
    static = fastvae.VAE(**settings).fit(data.sample_binarize(P, seed=1)).params_
    assert not np.array_equal(dyn[0], plain) and not np.array_equal(dyn[0], static)
    with pytest.raises(
        ValueError, match="dynamic_binarization needs likelihood='bernoulli'"
    ):
        fastvae.VAE(dynamic_binarization=True, likelihood="gaussian").fit(P)


# -- autoencoder baselines -------------------------------------------------------------


def test_autoencoder_api(binary):
    ae = fastvae.Autoencoder(hidden=(32,), latent_dim=4, epochs=20, random_state=0).fit(
        binary
    )
    z = ae.transform(binary)
    assert z.shape == (len(binary), 4)
    np.testing.assert_array_equal(ae.encode(binary), z)
    np.testing.assert_array_equal(ae.reconstruct(binary), ae.decode(z))
    assert ae.history_["kl"] == [0.0] * 20
    np.testing.assert_allclose(ae.history_["loss"], ae.history_["reconstruction"])
    scores = ae.score_samples(binary)
    assert scores.shape == (len(binary),) and np.all(scores < 0)
    assert not hasattr(ae, "sample") and not hasattr(ae, "log_likelihood")
    # deterministic code: no KL, so reconstructions beat the VAE's
    vae = fastvae.VAE(hidden=(32,), latent_dim=4, epochs=20, random_state=0).fit(binary)
    err = lambda m: np.abs(m.reconstruct(binary) - binary).mean()  # noqa: E731
    assert err(ae) < err(vae)


def test_denoising_autoencoder_removes_masking_noise(shared_data):
    """MNIST digits with half their pixels zeroed: the denoising autoencoder
    reconstructs the clean digits with less than half the plain
    autoencoder's squared error (measured 0.020 vs 0.042; the noisy input
    itself is 0.056)."""
    folder = None if shared_data is None else shared_data / "mnist"
    if folder is None or not folder.is_dir():
        pytest.skip("../shared/data/mnist is not available")
    X = data.load_mnist(folder).X[:12000]
    train, test = X[:-1000], X[-1000:]
    rng = np.random.default_rng(0)
    noisy = np.where(rng.random(test.shape) < 0.5, 0.0, test).astype(np.float32)
    settings = dict(hidden=(256,), latent_dim=32, epochs=8, random_state=0)
    ae = fastvae.Autoencoder(**settings).fit(train)
    dae = fastvae.DenoisingAutoencoder(corruption=0.5, **settings).fit(train)
    assert fastvae.DenoisingAutoencoder().corruption == 0.25
    err = lambda m: np.mean((m.reconstruct(noisy) - test) ** 2)  # noqa: E731
    assert err(dae) < 0.6 * err(ae), (err(dae), err(ae))
    assert err(ae) < np.mean((noisy - test) ** 2)


@pytest.mark.parametrize(
    "make",
    [
        lambda X, c: fastvae.Autoencoder(hidden=(8,), latent_dim=2, epochs=2).fit(X),
        lambda X, c: fastvae.DenoisingAutoencoder(
            hidden=(8,), latent_dim=2, epochs=2
        ).fit(X),
        lambda X, c: fastvae.VAE(hidden=(8,), latent_dim=2, epochs=2).fit(
            X, condition=c
        ),
        lambda X, c: fastvae.VAE(
            hidden=(8,), latent_dim=2, epochs=2, likelihood="gaussian", sigma="learned"
        ).fit(X),
    ],
    ids=["ae", "dae", "cvae", "learned-sigma"],
)
def test_save_load_round_trip(make, binary, tmp_path):
    cond = data.one_hot(np.arange(len(binary)) % 2, 2)
    model = make(binary, cond)
    model.save(tmp_path / "m.npz")
    loaded = fastvae.load(tmp_path / "m.npz")
    assert type(loaded) is type(model)
    for name in ("hidden", "latent_dim", "likelihood", "sigma", "corruption", "epochs"):
        assert loaded.get_params()[name] == model.get_params()[name], name
    c = cond[:10] if model.n_conditions_ else None
    np.testing.assert_array_equal(
        loaded.transform(binary[:10], c), model.transform(binary[:10], c)
    )
    np.testing.assert_array_equal(loaded.params_, model.params_)
