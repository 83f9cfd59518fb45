"""fastvae.VAE through its public API: conventions, results, determinism, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import reference as ref
import scipy.sparse

import fastvae
from fastvae._core import _rng
from fastvae.models.training import _epoch_order

D = 24


def _binary(n=200, d=D, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.random((n, d)) < 0.3).astype(np.float32)
    X[:, :2] = rng.random((n, 2))  # a couple of soft targets
    return X


def _small(**kw):
    settings = dict(hidden=(16,), latent_dim=3, epochs=2, batch_size=32, random_state=1)
    settings.update(kw)
    return fastvae.VAE(**settings)


@pytest.fixture(scope="module")
def X():
    return _binary()


@pytest.fixture(scope="module")
def fitted(X):
    return _small().fit(X)


# -- scikit-learn conventions --------------------------------------------------------


def test_init_stores_arguments_unchanged():
    hidden = [8, 4]
    opt = fastvae.optim.Adam(lr=0.01)
    vae = fastvae.VAE(
        5,
        hidden,
        2,
        likelihood="gaussian",
        sigma=0.5,
        optimizer=opt,
        dtype="float64",
        n_threads=1,
        verbose=0,
    )
    params = vae.get_params()
    assert params["input_dim"] == 5 and params["hidden"] is hidden
    assert params["optimizer"] is opt and params["dtype"] == "float64"
    assert not any(name.endswith("_") for name in vars(vae))  # nothing fitted yet


def test_get_set_params_round_trip():
    vae = fastvae.VAE()
    assert vae.set_params(latent_dim=7, lr=0.01) is vae
    assert vae.get_params()["latent_dim"] == 7 and vae.lr == 0.01
    clone = fastvae.VAE(**vae.get_params())
    assert clone.get_params() == vae.get_params()
    with pytest.raises(ValueError, match="invalid parameter 'latentdim'"):
        vae.set_params(latentdim=3)
    assert "latent_dim=7" in repr(vae) and "hidden" not in repr(vae)


def test_fit_returns_self_and_infers_input_dim(X):
    vae = _small(epochs=1)
    assert vae.fit(X) is vae
    assert vae.n_features_in_ == D and vae.input_dim is None
    assert vae.n_iter_ == 1 and vae.t_ == -(-len(X) // 32)
    assert vae.params_.ndim == 1 and vae.params_.dtype == np.float32
    assert vae.params_.ctypes.data % 64 == 0  # one aligned buffer


def test_unfitted_model_raises(X):
    vae = _small()
    for call in (
        lambda: vae.transform(X),
        lambda: vae.encode(X),
        lambda: vae.decode(np.zeros((1, 3))),
        lambda: vae.sample(2),
        lambda: vae.elbo(X),
        lambda: vae.save("never.npz"),
    ):
        with pytest.raises(fastvae.NotFittedError, match="not fitted"):
            call()


def test_history_has_one_entry_per_epoch(X):
    vae = _small(epochs=3).fit(X, validation_data=X[:50])
    h = vae.history_
    for key in (
        "epoch",
        "loss",
        "reconstruction",
        "kl",
        "elbo",
        "val_elbo",
        "seconds",
        "samples_per_second",
    ):
        assert len(h[key]) == 3, key
    assert h["epoch"] == [1, 2, 3]
    assert vae.loss_curve_ == h["loss"]
    # beta = 1, no warm-up: loss is -ELBO = recon + KL
    np.testing.assert_allclose(h["loss"], np.add(h["reconstruction"], h["kl"]))
    np.testing.assert_allclose(h["elbo"], -np.asarray(h["loss"]))
    assert h["val_elbo"][-1] == pytest.approx(vae.score(X[:50]))
    assert all(v is None for v in _small(epochs=1).fit(X).history_["val_elbo"])


# -- outputs -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_shapes_and_dtypes(X, dtype):
    vae = _small(dtype=dtype).fit(X)
    mu, logvar = vae.encode(X[:10])
    assert mu.shape == logvar.shape == (10, 3) and mu.dtype == dtype
    np.testing.assert_array_equal(vae.transform(X[:10]), mu)
    assert vae.decode(mu).shape == (10, D) and vae.decode(mu).dtype == dtype
    recon = vae.reconstruct(X[:10])
    np.testing.assert_array_equal(recon, vae.decode(mu))
    assert np.all((recon > 0) & (recon < 1))  # Bernoulli means
    assert vae.sample(7).shape == (7, D)
    elbo = vae.elbo(X[:10])
    assert elbo.shape == (10,) and elbo.dtype == np.float64 and np.all(elbo < 0)
    np.testing.assert_array_equal(vae.score_samples(X[:10]), elbo)
    assert vae.score(X[:10]) == pytest.approx(elbo.mean())


def test_sample_is_reproducible_per_seed(fitted):
    np.testing.assert_array_equal(fitted.sample(5), fitted.sample(5))
    np.testing.assert_array_equal(fitted.sample(5, seed=9), fitted.sample(5, seed=9))
    assert not np.allclose(fitted.sample(5, seed=9), fitted.sample(5, seed=10))


def test_rows_do_not_depend_on_the_batch_they_come_in(fitted, X):
    """transform / score_samples of a subset or a permutation equal those rows of
    the whole batch, bitwise (the row-invariant inference kernel; evaluation
    noise keyed by the row's values)."""
    rows = np.random.default_rng(5).permutation(len(X))
    for method in (fitted.transform, fitted.elbo, fitted.reconstruct):
        whole = method(X)
        np.testing.assert_array_equal(method(X[:37]), whole[:37])
        np.testing.assert_array_equal(method(X[rows]), whole[rows])
        np.testing.assert_array_equal(method(X[rows[:5]]), whole[rows[:5]])


def test_elbo_matches_reference_forward_pass(X):
    vae = _small(dtype=np.float64, hidden=(7, 5), activation="tanh").fit(X)
    Xd = X[:20].astype(np.float64)
    layout = vae._fitted_layout
    acts = ["tanh", "tanh", "identity", "tanh", "tanh", "identity"]
    layers = [
        (W, b, a) for (W, b), a in zip(layout.views(vae.params_), acts, strict=True)
    ]
    eps = np.vstack(
        [
            _rng.normal_matrix(
                vae.random_state, _rng.STREAM_EVAL, 0, 1, 3, row_offset=ref.row_key(x)
            )
            for x in Xd
        ]
    )
    f = ref.forward(layers, layout.n_encoder, Xd, eps)
    np.testing.assert_allclose(vae.elbo(Xd), -(f["recon"] + f["kl"]), rtol=1e-12)
    mu, logvar = vae.encode(Xd)
    np.testing.assert_allclose(np.hstack([mu, logvar]), f["H"], rtol=1e-12, atol=1e-14)


def test_first_training_step_matches_reference_step():
    """fit on exactly one minibatch = one Adam step of tests/reference.py with the
    model's own initial parameters, minibatch order and noise."""
    X = _binary(n=32, seed=3).astype(np.float64)
    vae = _small(dtype=np.float64, epochs=1, batch_size=32, lr=0.01, beta=0.7)
    s = vae._settings()
    layout = vae._layout(s, D, 0)
    p0 = vae._init_params(s, layout)
    vae.fit(X)
    acts = ["relu", "identity", "relu", "identity"]
    layers = [(W, b, a) for (W, b), a in zip(layout.views(p0), acts, strict=True)]
    rows = _epoch_order(vae.random_state, 0, 32)
    eps = _rng.normal_matrix(vae.random_state, _rng.STREAM_REPARAM, 0, 32, 3)
    loss, _, _, grads = ref.loss_and_grads(
        layers, layout.n_encoder, X[rows], eps, beta=0.7
    )
    g = layout.zeros(np.float64)
    for (W, b), (dW, db) in zip(layout.views(g), grads, strict=True):
        W[...], b[...] = dW, db
    want, _, _ = ref.adam(p0, g, 0 * g, 0 * g, 1, 0.01, 0.9, 0.999, 1e-8)
    np.testing.assert_allclose(vae.params_, want, rtol=1e-12, atol=1e-14)
    assert vae.history_["loss"][0] == pytest.approx(loss, rel=1e-12)


# -- determinism --------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        dict(),
        dict(dtype=np.float64),
        dict(hidden=(20, 12), activation="tanh", batch_size=27),
        dict(likelihood="gaussian", optimizer="momentum", batch_size=50),
    ],
    ids=["default", "float64", "tanh-2layers-ragged", "gaussian-momentum"],
)
def test_bitwise_identical_across_runs_and_thread_counts(X, settings):
    runs = [_small(n_threads=n, **settings).fit(X).params_ for n in (1, 2, 2, 1)]
    for p in runs[1:]:
        np.testing.assert_array_equal(p, runs[0])
    other_seed = _small(n_threads=2, random_state=2, **settings).fit(X).params_
    assert not np.array_equal(other_seed, runs[0])


def test_warm_start_continues_exactly(X):
    two = _small(epochs=2).fit(X)
    one = _small(epochs=1, warm_start=True).fit(X)
    t_after_one = one.t_
    one.fit(X)  # second call continues
    assert one.n_iter_ == 2 and one.t_ == 2 * t_after_one
    np.testing.assert_array_equal(one.params_, two.params_)
    assert one.history_["epoch"] == [1, 2]
    restart = _small(epochs=1).fit(X).fit(X)  # warm_start=False starts over
    assert restart.n_iter_ == 1
    assert not np.array_equal(restart.params_, two.params_)


def test_warm_start_cannot_switch_optimizer(X):
    vae = _small(epochs=1, warm_start=True).fit(X)
    with pytest.raises(ValueError, match="cannot switch optimizer from adam to sgd"):
        vae.fit(X, optimizer="sgd")


def test_fit_overrides_do_not_change_constructor_settings(X):
    vae = _small(epochs=1)
    vae.fit(X, epochs=2, batch_size=64, lr=0.01)
    assert (
        vae.n_iter_ == 2 and vae.epochs == 1 and vae.batch_size == 32 and vae.lr is None
    )


# -- input handling -----------------------------------------------------------------


def test_layouts_and_dtypes_of_input_give_the_same_result(fitted, X):
    want = fitted.transform(X)
    Xf = np.asfortranarray(X)
    assert not Xf.flags.c_contiguous
    np.testing.assert_array_equal(fitted.transform(Xf), want)
    # A negative-stride view is copied and its rows sit at other positions of the
    # call: the row-invariant inference kernel still gives bitwise the same rows.
    np.testing.assert_array_equal(fitted.transform(X[::-1])[::-1], want)
    wide = np.zeros((len(X), 2 * D), np.float32)
    wide[:, ::2] = X
    np.testing.assert_array_equal(fitted.transform(wide[:, ::2]), want)
    ro = X.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(fitted.transform(ro), want)
    np.testing.assert_array_equal(fitted.transform(X.astype(np.float64)), want)
    ints = (X > 0.5).astype(np.int64)
    np.testing.assert_array_equal(
        fitted.transform(ints), fitted.transform(ints.astype(np.float32))
    )
    np.testing.assert_array_equal(fitted.transform(X.tolist()), want)


def test_memmap_input(tmp_path, fitted, X):
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)
    np.testing.assert_array_equal(fitted.transform(ro), fitted.transform(X))
    a = _small(epochs=1).fit(ro).params_
    np.testing.assert_array_equal(a, _small(epochs=1).fit(X).params_)


def test_batch_larger_than_data_warns_and_uses_all_rows(X):
    with pytest.warns(
        UserWarning, match="batch_size=500 is larger than the 200 samples"
    ):
        vae = _small(epochs=1, batch_size=500).fit(X)
    assert vae.t_ == 1


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (np.zeros(D), ValueError, r"must be 2-D .*reshape\(1, -1\)"),
        (np.zeros((4, 3, 8)), ValueError, r"must be 2-D .* flatten images"),
        (np.zeros((0, D)), ValueError, "X is empty: it has 0 samples"),
        (np.zeros((5, 0)), ValueError, r"X has 0 feature\(s\) \(shape=\(5, 0\)\)"),
        (np.full((5, D), np.nan), ValueError, "contains 120 NaN or infinite values"),
        (np.full((5, D), np.inf), ValueError, "NaN or infinite values"),
        (np.zeros((5, D), complex), ValueError, "Complex data not supported"),
        (np.array([["a"] * D] * 3), TypeError, "must hold numbers"),
        (np.array([[object()] * D] * 3), TypeError, "cannot be read as numbers"),
        (
            scipy.sparse.csr_matrix(np.full((5, D), 2.0)),
            ValueError,
            r"must lie in \[0, 1\] for the Bernoulli",
        ),
        (None, TypeError, "X must be an array, got None"),
        (np.full((5, D), 2.0), ValueError, r"must lie in \[0, 1\] for the Bernoulli"),
    ],
    ids=[
        "1d",
        "3d",
        "no-rows",
        "no-cols",
        "nan",
        "inf",
        "complex",
        "strings",
        "object",
        "sparse",
        "none",
        "bernoulli-range",
    ],
)
def test_bad_training_data(bad, error, message):
    with pytest.raises(error, match=message):
        _small().fit(bad)


def test_bad_input_after_fit(fitted, X):
    with pytest.raises(
        ValueError, match="X has 5 features, but VAE is expecting 24 features"
    ):
        fitted.transform(np.zeros((3, 5)))
    with pytest.raises(
        ValueError, match="X has 5 features, but VAE is expecting 24 features"
    ):
        fitted.elbo(np.zeros((3, 5)))
    with pytest.raises(
        ValueError, match="Z has 4 latent dims, but VAE is expecting 3 latent dims"
    ):
        fitted.decode(np.zeros((3, 4)))
    with pytest.raises(
        ValueError, match="validation_data has 5 features, but VAE is expecting 24"
    ):
        _small().fit(X, validation_data=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        fitted.transform(np.full((2, D), np.nan))
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        fitted.sample(0)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        fitted.sample(2, seed=-1)


@pytest.mark.parametrize(
    "settings, error, message",
    [
        (dict(latent_dim=0), ValueError, "latent_dim must be >= 1, got 0"),
        (dict(latent_dim=-1), ValueError, "latent_dim must be >= 1"),
        (dict(latent_dim=2.5), TypeError, "latent_dim must be Integral, got 2.5"),
        (dict(latent_dim=True), TypeError, "latent_dim must be Integral, got True"),
        (dict(hidden=(0,)), ValueError, "hidden must contain integers >= 1"),
        (dict(hidden="abc"), ValueError, "hidden must contain integers >= 1"),
        (dict(hidden=(4,) * 16), ValueError, "at most 15 are supported"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(epochs=0), ValueError, "epochs must be >= 1"),
        (dict(lr=-1.0), ValueError, "lr must be > 0.0"),
        (dict(lr=0.0), ValueError, "lr must be > 0.0"),
        (dict(lr=float("nan")), ValueError, "lr must be finite"),
        (dict(beta=-1.0), ValueError, "beta must be >= 0.0"),
        (dict(sigma=0.0), ValueError, "sigma must be > 0.0"),
        (dict(likelihood="laplace"), ValueError, "likelihood must be one of"),
        (dict(activation="gelu"), ValueError, "activation must be one of"),
        (dict(optimizer="rmsprop"), ValueError, "optimizer must be one of"),
        (
            dict(dtype=np.int32),
            TypeError,
            "dtype must be float32 or float64, got int32",
        ),
        (
            dict(dtype=np.float16),
            TypeError,
            "dtype must be float32 or float64, got float16",
        ),
        (dict(random_state=-1), ValueError, "random_state must be >= 0"),
        (dict(n_threads=0), ValueError, "n_threads must be >= 1"),
        (dict(verbose=5), ValueError, r"verbose must be one of \[0, 1, 2\]"),
        (
            dict(input_dim=7),
            ValueError,
            "X has 24 features, but VAE is expecting 7 features",
        ),
    ],
)
def test_bad_settings_are_named(X, settings, error, message):
    with pytest.raises(error, match=message):
        _small(**settings).fit(X)


def test_empty_hidden_is_a_linear_vae(X):
    vae = _small(hidden=(), epochs=1).fit(X)
    assert len(vae._fitted_layout.shapes) == 2


def test_non_finite_loss_stops_with_a_clear_error():
    X = np.full((64, D), 1e30, np.float32)
    vae = _small(likelihood="gaussian", epochs=1, batch_size=16)
    with pytest.raises(
        FloatingPointError, match=r"NaN or infinite at step (\d+) .*lower"
    ):
        vae.fit(X)
    assert np.isfinite(vae.params_).all()


def test_divergence_midway_keeps_last_good_parameters(X):
    vae = _small(
        optimizer="sgd", lr=1e6, likelihood="gaussian", epochs=5, batch_size=20
    )
    with pytest.raises(
        FloatingPointError, match=r"(loss|gradient) became NaN or infinite"
    ) as info:
        vae.fit(X * 10)
    assert np.isfinite(vae.params_).all()
    assert f"step {vae.t_}" in str(info.value)


def test_kl_warmup_and_beta_weight_the_kl_term(X):
    zero_beta = _small(beta=0.0, epochs=1).fit(X)
    np.testing.assert_allclose(
        zero_beta.history_["loss"], zero_beta.history_["reconstruction"]
    )
    warm = _small(kl_warmup=10**6, epochs=1).fit(X)
    # the weight rises from 1e-6 per step: the loss is nearly the reconstruction
    h = warm.history_
    assert h["loss"][0] < h["reconstruction"][0] + 1e-3 * h["kl"][0]


def test_no_warnings_in_a_normal_fit(X):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _small(epochs=1).fit(X, validation_data=X[:10])
