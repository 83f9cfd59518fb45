"""The typed, frozen settings an estimator's fit works from."""

import dataclasses

import numpy as np
import pytest

import fastvae
from fastvae.models.settings import Settings
from fastvae.optim import Adam


def test_fit_keeps_typed_frozen_settings():
    X = (np.random.default_rng(0).random((64, 6)) < 0.5).astype(np.float32)
    vae = fastvae.VAE(hidden=[5, 4], latent_dim=2, epochs=1, lr=0.01, n_threads=1)
    vae.fit(X, batch_size=16)
    s = vae._fitted_settings
    assert isinstance(s, Settings)
    assert s.hidden == (5, 4) and s.decoder_hidden == (4, 5)  # lists normalised
    assert s.dtype == np.dtype(np.float32) and s.batch_size == 16  # fit override
    assert isinstance(s.optimizer, Adam) and s.optimizer.lr == 0.01
    assert s.n_threads == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.epochs = 5
    assert vae.hidden == [5, 4]  # the constructor argument stays untouched


def test_autoencoder_settings_keep_the_vae_only_defaults():
    s = fastvae.Autoencoder()._settings()
    assert s.beta == 1.0 and s.kl_warmup == 0


def test_replace_and_as_dict():
    s = fastvae.VAE()._settings()
    t = s.replace(epochs=1)
    assert t.epochs == 1 and s.epochs == fastvae.VAE().epochs
    assert set(s.as_dict()) == {f.name for f in dataclasses.fields(Settings)}


def test_an_argument_without_a_field_is_caught():
    params = {**fastvae.VAE().get_params(), "surprise": 1}
    with pytest.raises(TypeError, match=r"settings without a field: \['surprise'\]"):
        Settings.from_params(params)


def test_every_history_field_has_one_definition():
    from fastvae.models import persistence
    from fastvae.models.history import EPOCH_FIELDS, HISTORY_FIELDS, empty_history

    X = (np.random.default_rng(0).random((32, 4)) < 0.5).astype(np.float32)
    vae = fastvae.VAE(hidden=(3,), latent_dim=2, epochs=1, batch_size=8, n_threads=1)
    vae.fit(X)
    assert tuple(vae.history_) == HISTORY_FIELDS == tuple(empty_history())
    assert set(persistence._HISTORY_RULES) == set(HISTORY_FIELDS)
    assert set(EPOCH_FIELDS) <= set(HISTORY_FIELDS)


def test_the_public_api_is_annotated():
    """Every argument and return value of the estimators' public methods and
    of load, resume and checkpoint_info has a type hint (mypy checks them
    in CI)."""
    import inspect

    functions = [fastvae.load, fastvae.resume, fastvae.checkpoint_info]
    for cls in (fastvae.VAE, fastvae.Autoencoder, fastvae.DenoisingAutoencoder):
        for name, fn in inspect.getmembers(cls, inspect.isfunction):
            if not name.startswith("_") or name == "__init__":
                functions.append(fn)
    missing = []
    for fn in functions:
        sig = inspect.signature(fn)
        for p in sig.parameters.values():
            if p.name != "self" and p.annotation is inspect.Parameter.empty:
                missing.append(f"{fn.__qualname__}({p.name})")
        if sig.return_annotation is inspect.Signature.empty:
            missing.append(f"{fn.__qualname__} -> ?")
    assert not missing, missing
    assert len(functions) > 30
