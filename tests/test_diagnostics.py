"""Posterior-collapse diagnostics: active units (Burda et al.'s criterion),
per-dimension KL, the warning when most dimensions collapsed, and where
they appear (history_, diagnostics(), fastvae train and eval)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastvae
from fastvae import latent

REPO = Path(__file__).resolve().parent.parent


def test_active_units_counts_dimensions_whose_mean_varies():
    rng = np.random.default_rng(0)
    mu = np.column_stack(
        [rng.normal(0, 1, 500), rng.normal(0, 0.05, 500), np.full(500, 3.0)]
    )
    n, variance = latent.active_units(mu)
    assert n == 1
    np.testing.assert_allclose(variance, np.var(mu, axis=0))
    assert latent.active_units(mu, threshold=1e-4)[0] == 2


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(1)
    # two factors drive 30 binary pixels: a model needs about 2 dimensions
    z = rng.normal(size=(600, 2))
    W = rng.normal(size=(2, 30)) * 3
    return (rng.random((600, 30)) < 1 / (1 + np.exp(-z @ W))).astype(np.float32)


def test_diagnostics_and_history_agree_with_the_definition(X):
    vae = fastvae.VAE(hidden=(32,), latent_dim=8, epochs=60, batch_size=50,
                      lr=1e-2, random_state=0)  # fmt: skip
    with pytest.warns(UserWarning, match=r"only \d of 8 latent dimensions are active"):
        vae.fit(X[:500], validation_data=X[500:])  # most of 8 collapse here
    d = vae.diagnostics(X[500:])
    mu, logvar = (a.astype(np.float64) for a in vae.encode(X[500:]))
    assert d["active_units"] == int(np.sum(np.var(mu, axis=0) > 0.01))
    np.testing.assert_allclose(
        d["kl_per_dimension"],
        np.mean(0.5 * (mu**2 + np.exp(logvar) - 1 - logvar), axis=0),
        rtol=1e-6,
    )
    assert d["latent_dim"] == 8 and d["collapsed"] == (d["active_units"] < 4)
    assert vae.history_["active_units"][-1] == d["active_units"]
    assert 2 <= d["active_units"] <= 3 and d["collapsed"]  # the data have 2 factors
    # without validation data there is nothing to count
    plain = fastvae.VAE(hidden=(8,), latent_dim=2, epochs=2, batch_size=50).fit(X)
    assert plain.history_["active_units"] == [None, None]


def test_a_warning_when_most_dimensions_collapsed(X):
    # a KL weight of 50 pushes every posterior onto the prior
    vae = fastvae.VAE(hidden=(32,), latent_dim=16, epochs=20, batch_size=50,
                      lr=1e-2, random_state=0, beta=50.0)  # fmt: skip
    with pytest.warns(UserWarning, match=r"only 0 of 16 latent dimensions are"):
        vae.fit(X[:500], validation_data=X[500:])
    assert vae.history_["active_units"][-1] == 0
    # a healthy model trains without the warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastvae.VAE(hidden=(32,), latent_dim=2, epochs=5, batch_size=50,
                    random_state=0).fit(X[:500], validation_data=X[500:])  # fmt: skip


def test_the_command_line_shows_them(tmp_path):
    env = dict(
        os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    args = ["--n-samples", "400", "--hidden", "16", "--latent-dim", "6",
            "--epochs", "2", "--quiet"]  # fmt: skip
    train = subprocess.run(
        [sys.executable, "-m", "fastvae", "train", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert " of 6 active on the validation data" in train.stdout
    history = json.loads((tmp_path / "fastvae-run" / "history.json").read_text())
    assert len(history["history"]["active_units"]) == 2
    evaluated = subprocess.run(
        [sys.executable, "-m", "fastvae", "eval", "--model", "fastvae-run/model.npz",
         "--n-samples", "200", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    result = json.loads(evaluated.stdout)
    assert result["latent_dim"] == 6 and 0 <= result["active_units"] <= 6
    assert len(result["kl_per_dimension"]) == 6
