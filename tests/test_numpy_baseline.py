"""The NumPy benchmark baseline computes the step specified by tests/reference.py."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import reference  # noqa: E402

from fastvae.bench import numpy_vae  # noqa: E402

NumpyVAE = numpy_vae.NumpyVAE

TOL = 1e-12
N_FEATURES, LATENT, BATCH = 12, 3, 9


def _dims(hidden):
    return (N_FEATURES, *hidden, 2 * LATENT), (LATENT, *hidden[::-1], N_FEATURES)


def _reference_layers(model, params=None):
    params = model.params if params is None else params
    return [(W, b, act) for (W, b), act in zip(params, model.activations, strict=True)]


def _data(likelihood, rng, n=BATCH):
    if likelihood == "bernoulli":
        return (rng.random((n, N_FEATURES)) < 0.4).astype(np.float64)
    return rng.normal(size=(n, N_FEATURES))


def _randomise_biases(model, rng):
    """Non-zero biases so that they matter in the comparison."""
    for _, b in model.params:
        b[...] = rng.normal(scale=0.3, size=b.shape)


def _assert_grads_close(grads, ref_grads, tol=TOL):
    assert len(grads) == len(ref_grads)
    for (dW, db), (rW, rb) in zip(grads, ref_grads, strict=True):
        assert dW.shape == rW.shape and db.shape == rb.shape
        np.testing.assert_allclose(dW, rW, rtol=tol, atol=tol)
        np.testing.assert_allclose(db, rb, rtol=tol, atol=tol)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("hidden", [(7,), (8, 5)], ids=["1hidden", "2hidden"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_loss_and_grads_match_reference(likelihood, hidden, activation):
    rng = np.random.default_rng(1)
    enc, dec = _dims(hidden)
    sigma, beta = (0.7, 1.3) if likelihood == "gaussian" else (1.0, 0.8)
    model = NumpyVAE(
        enc,
        dec,
        activation=activation,
        likelihood=likelihood,
        sigma=sigma,
        beta=beta,
        dtype=np.float64,
        seed=3,
    )
    _randomise_biases(model, rng)
    x = _data(likelihood, rng)
    eps = rng.standard_normal((BATCH, LATENT))

    loss, grads = model.loss_and_grads(x, eps)
    ref_loss, _, _, ref_grads = reference.loss_and_grads(
        _reference_layers(model), model.n_encoder, x, eps, likelihood, sigma, beta
    )
    assert isinstance(loss, float)
    assert abs(loss - ref_loss) <= TOL * max(1.0, abs(ref_loss))
    _assert_grads_close(grads, ref_grads)
    for dW, db in grads:
        assert dW.dtype == np.float64 and db.dtype == np.float64


def test_clamped_logvar_and_extreme_logits_match_reference():
    """logvar outside [-30, 20] has zero gradient; huge logits stay finite."""
    rng = np.random.default_rng(2)
    enc, dec = _dims((6,))
    model = NumpyVAE(enc, dec, dtype=np.float64, seed=0)
    # Head: logvar columns pushed far outside the clamp range (one each side,
    # one inside); output logits pushed to +-1000 for half of the features.
    head_b = model.params[model.n_encoder - 1][1]
    head_b[LATENT:] = [40.0, -50.0, 0.1]
    out_b = model.params[-1][1]
    out_b[: N_FEATURES // 2] = np.where(np.arange(N_FEATURES // 2) % 2, 1e3, -1e3)
    x = _data("bernoulli", rng)
    eps = rng.standard_normal((BATCH, LATENT))

    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, grads = model.loss_and_grads(x, eps)
    with np.errstate(over="ignore"):  # the reference's sigmoid overflows to 0
        ref_loss, _, _, ref_grads = reference.loss_and_grads(
            _reference_layers(model), model.n_encoder, x, eps
        )
    assert np.isfinite(loss)
    assert abs(loss - ref_loss) <= TOL * max(1.0, abs(ref_loss))
    _assert_grads_close(grads, ref_grads)
    head_db = grads[model.n_encoder - 1][1]
    assert head_db[LATENT] == 0.0 and head_db[LATENT + 1] == 0.0
    assert head_db[LATENT + 2] != 0.0


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_three_adam_steps_match_reference(likelihood):
    rng = np.random.default_rng(4)
    enc, dec = _dims((8, 5))
    hp = dict(lr=3e-3, beta1=0.85, beta2=0.99, eps=1e-8)
    sigma, beta = 0.9, 1.1
    model = NumpyVAE(
        enc,
        dec,
        likelihood=likelihood,
        sigma=sigma,
        beta=beta,
        activation="tanh",
        dtype=np.float64,
        seed=5,
        **hp,
    )
    initial = [(W.copy(), b.copy()) for W, b in model.params]
    ref_params = [[W.copy(), b.copy()] for W, b in model.params]
    ref_m = [[np.zeros_like(p) for p in layer] for layer in ref_params]
    ref_v = [[np.zeros_like(p) for p in layer] for layer in ref_params]

    for t in range(1, 4):
        x = _data(likelihood, rng)
        eps = rng.standard_normal((BATCH, LATENT))
        ref_loss, _, _, ref_grads = reference.loss_and_grads(
            _reference_layers(model, ref_params),
            model.n_encoder,
            x,
            eps,
            likelihood,
            sigma,
            beta,
        )
        loss = model.step(x, eps)
        assert abs(loss - ref_loss) <= TOL * max(1.0, abs(ref_loss))
        for i, g_layer in enumerate(ref_grads):
            for j, g in enumerate(g_layer):
                ref_params[i][j], ref_m[i][j], ref_v[i][j] = reference.adam(
                    ref_params[i][j], g, ref_m[i][j], ref_v[i][j], t, **hp
                )
        assert model.t == t
        for (W, b), (rW, rb) in zip(model.params, ref_params, strict=True):
            np.testing.assert_allclose(W, rW, rtol=TOL, atol=TOL)
            np.testing.assert_allclose(b, rb, rtol=TOL, atol=TOL)
    # The parameters really moved (three steps of roughly lr each).
    for (W, b), (W0, b0) in zip(model.params, initial, strict=True):
        assert np.max(np.abs(W - W0)) > hp["lr"] and np.max(np.abs(b - b0)) > hp["lr"]


def test_init_and_eps_drawn_from_rng():
    enc, dec = (64, 32, 8), (4, 32, 64)
    model = NumpyVAE(enc, dec, seed=7)
    assert [W.shape for W, _ in model.params] == [(64, 32), (32, 8), (4, 32), (32, 64)]
    for W, b in model.params:
        assert W.dtype == np.float32 and b.dtype == np.float32
        limit = np.sqrt(6.0 / sum(W.shape))
        assert np.all(np.abs(W) <= limit) and np.abs(W).max() > 0.9 * limit
        assert not b.any()
    assert model.activations == ["relu", "identity", "relu", "identity"]
    # Same seed, same trajectory (initialisation and eps both from self.rng).
    x = (np.random.default_rng(0).random((16, 64)) < 0.5).astype(np.float32)
    a, b = NumpyVAE(enc, dec, seed=7), NumpyVAE(enc, dec, seed=7)
    assert [a.step(x) for _ in range(3)] == [b.step(x) for _ in range(3)]
    with pytest.raises(ValueError):
        NumpyVAE((64, 32, 8), (5, 32, 64))
    with pytest.raises(ValueError):
        NumpyVAE(enc, dec, activation="gelu")
    with pytest.raises(ValueError):
        NumpyVAE(enc, dec, likelihood="poisson")


def test_float32_training_reduces_loss():
    """float32 end to end; the mean loss over the last 20 steps is at least 20%
    below the first 20 on 512 noisy copies of 4 binary prototypes."""
    rng = np.random.default_rng(0)
    n, d, batch, steps = 512, 64, 64, 200
    prototypes = rng.random((4, d)) < 0.5
    flips = rng.random((n, d)) < 0.05
    x = (prototypes[rng.integers(0, 4, size=n)] ^ flips).astype(np.float32)

    model = NumpyVAE((d, 32, 8), (4, 32, d), lr=1e-2, dtype=np.float32, seed=0)
    losses = []
    for i in range(steps):
        if i % (n // batch) == 0:
            order = rng.permutation(n)
        j = i % (n // batch)
        losses.append(model.step(x[order[j * batch : (j + 1) * batch]]))

    for W, b in model.params:
        assert W.dtype == np.float32 and b.dtype == np.float32
    _, grads = model.loss_and_grads(x[:batch], np.zeros((batch, 4), np.float32))
    assert all(dW.dtype == np.float32 and db.dtype == np.float32 for dW, db in grads)
    assert np.all(np.isfinite(losses))
    first, last = np.mean(losses[:20]), np.mean(losses[-20:])
    assert last <= 0.8 * first, (first, last)
