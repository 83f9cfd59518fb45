"""Long calls in Python: the importance-sampled log-likelihood stops on
Ctrl-C within about a second and leaves the model usable, and can show its
progress; fit records what it was trained on (training_data_)."""

from __future__ import annotations

import _thread
import copy
import threading
import time

import numpy as np
import pytest

import fastvae


@pytest.fixture(scope="module")
def X():
    return (np.random.default_rng(0).random((300, 64)) < 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def vae(X):
    return fastvae.VAE(hidden=(32,), latent_dim=4, epochs=1, batch_size=50).fit(X)


def test_ctrl_c_stops_log_likelihood_within_a_second(vae, X):
    timer = threading.Timer(0.5, _thread.interrupt_main)  # as Ctrl-C would
    start = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        vae.log_likelihood(X, k=2_000_000)  # minutes of work
    seconds = time.perf_counter() - start
    timer.join()
    assert seconds < 1.0, f"{seconds:.2f} s to stop"
    # the model is usable afterwards, with the results of a fresh copy
    fresh = copy.deepcopy(vae)
    np.testing.assert_array_equal(
        vae.log_likelihood(X[:5], k=7), fresh.log_likelihood(X[:5], k=7)
    )


def test_progress_shows_rows_and_changes_nothing(vae, X, capsys):
    plain = vae.log_likelihood(X, k=300)
    shown = vae.log_likelihood(X, k=300, progress=True)
    np.testing.assert_array_equal(plain, shown)
    err = capsys.readouterr().err
    assert "log p(x), k=300" in err and "300/300" in err and "row" in err
    with pytest.raises(TypeError, match="progress must be True or False"):
        vae.log_likelihood(X, k=3, progress="yes")


def test_fit_records_its_data_and_the_file_keeps_it(vae, X, tmp_path):
    assert vae.training_data_ == {
        "n_samples": 300,
        "n_features": 64,
        "min": 0.0,
        "max": 1.0,
    }
    vae.save(tmp_path / "m.npz")
    assert fastvae.load(tmp_path / "m.npz").training_data_ == vae.training_data_


def test_continued_fits_widen_the_range_and_keep_the_source(X):
    model = fastvae.VAE(hidden=(8,), latent_dim=2, epochs=1, batch_size=50)
    model.set_params(likelihood="gaussian").fit(X * 0.5)
    model.training_data_["source"] = {"data": "mine"}
    model.partial_fit(X[:100] + 1.0)
    assert model.training_data_ == {
        "n_samples": 100,
        "n_features": 64,
        "min": 0.0,
        "max": 2.0,
        "source": {"data": "mine"},
    }
    model.fit(X[:60])  # a new fit starts over
    assert model.training_data_["n_samples"] == 60
    assert "source" not in model.training_data_


def test_rows_split_over_several_calls_give_the_same_estimates(vae, X, monkeypatch):
    """Rows whose k samples span several compiled calls (so Ctrl-C is seen
    between them) get bitwise the estimate of one call: the same windows."""
    from fastvae._core import _network, _rng

    whole = vae.log_likelihood(X[:7], k=3000)
    monkeypatch.setattr(_network, "LL_PAIRS_PER_CALL", 1024)  # 3 calls per row
    seen = []
    net = vae._inference_network()
    split = net.log_likelihood(
        vae.params_,
        X[:7],
        3000,
        vae.random_state,
        _rng.STREAM_IS,
        progress=seen.append,
    )
    np.testing.assert_array_equal(split, whole)
    assert seen[0] == 1024 / 3000 and seen[-1] == 7 and seen == sorted(seen)
