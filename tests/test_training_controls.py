"""Training controls as callbacks: early stopping (patience, min_delta,
restore-best, state kept in checkpoints), a wall-clock budget (MaxTime),
and their command-line flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastvae
from fastvae.callbacks import Callback, EarlyStopping, LambdaCallback, MaxTime

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def X():
    return (np.random.default_rng(0).random((200, 24)) < 0.3).astype(np.float32)


def small(**kw):
    kw = {"hidden": (8,), "latent_dim": 2, "batch_size": 50, "random_state": 1,
          "n_threads": 1, **kw}  # fmt: skip
    return fastvae.VAE(**kw)


class FakeModel:
    def __init__(self):
        self.params_ = np.zeros(3)
        self.n_iter_ = 0


def _feed(stop, values, model=None):
    """Epoch-end values through the callback; the epoch it stopped at."""
    model = model or FakeModel()
    stop.on_train_begin(model, {"validation": True})
    for epoch, value in enumerate(values, 1):
        model.n_iter_ = epoch
        model.params_ = np.full(3, float(epoch))
        if stop.on_epoch_end(
            model, {"epoch": epoch, "val_elbo": value, "loss": -value}
        ):
            return epoch
    return None


def test_early_stopping_counts_epochs_without_improvement():
    assert _feed(EarlyStopping(patience=2), [1, 2, 3, 2, 2.5, 4]) == 5
    # an improvement smaller than min_delta does not count
    assert _feed(EarlyStopping(patience=2, min_delta=0.5), [1, 1.4, 1.3, 9]) == 3
    # a loss falls
    stop = EarlyStopping("loss", patience=1)
    assert _feed(stop, [1, 2, 1.5]) == 3 and stop.best_ == -2 and stop.best_epoch_ == 2


def test_restore_best_copies_the_best_epochs_parameters_back():
    stop, model = EarlyStopping(patience=2), FakeModel()
    assert _feed(stop, [1, 5, 2, 3], model) == 4
    stop.on_train_end(model)
    np.testing.assert_array_equal(model.params_, [2.0, 2.0, 2.0])
    kept, model = EarlyStopping(patience=2, restore_best=False), FakeModel()
    _feed(kept, [1, 5, 2, 3], model)
    kept.on_train_end(model)
    np.testing.assert_array_equal(model.params_, [4.0, 4.0, 4.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"monitor": "kl"}, "monitor must be one of"),
        ({"patience": 0}, "patience must be an integer >= 1"),
        ({"min_delta": -1.0}, "min_delta must be a number >= 0"),
        ({"min_delta": float("nan")}, "min_delta must be a number >= 0"),
    ],
)
def test_early_stopping_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**kwargs)


def test_val_elbo_without_validation_data_is_refused_before_training(X):
    with pytest.raises(ValueError, match=r"needs fit\(validation_data=...\)"):
        small(epochs=3).fit(X, callbacks=[EarlyStopping()])


def test_early_stopping_in_fit_restores_the_best_epoch(X):
    # min_delta is huge: only the first epoch is ever an improvement
    stop = EarlyStopping(patience=2, min_delta=1e9)
    vae = small(epochs=20).fit(X, validation_data=X[:50], callbacks=[stop])
    assert vae.n_iter_ == 3 and stop.stopped_epoch_ == 3 and stop.best_epoch_ == 1
    np.testing.assert_array_equal(vae.params_, small(epochs=1).fit(X).params_)


def test_early_stopping_state_survives_a_resume(X, tmp_path):
    def settings():
        return dict(validation_data=X[:50])

    straight_stop = EarlyStopping(patience=3, min_delta=1e9)
    straight = small(epochs=20).fit(X, callbacks=[straight_stop], **settings())
    assert straight.n_iter_ == 4

    def crash(model, logs):  # killed during epoch 3
        if logs["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        small(epochs=20).fit(
            X,
            checkpoint=tmp_path,
            callbacks=[EarlyStopping(patience=3, min_delta=1e9),
                       LambdaCallback(on_step_end=crash)],
            **settings(),
        )  # fmt: skip
    assert fastvae.checkpoint_info(tmp_path)["epochs_done"] == 2
    resumed_stop = EarlyStopping(patience=3, min_delta=1e9)
    resumed = fastvae.resume(tmp_path, X, callbacks=[resumed_stop], **settings())
    assert resumed_stop.best_epoch_ == 1 and resumed_stop.stopped_epoch_ == 4
    assert resumed.n_iter_ == 4
    np.testing.assert_array_equal(resumed.params_, straight.params_)


def test_callback_state_must_be_json_and_arrays(X, tmp_path):
    class Bad(Callback):
        def state_dict(self):
            return {"when": object()}

    with pytest.raises(TypeError, match="Bad.state_dict.. must hold JSON values"):
        small(epochs=1).fit(X, checkpoint=tmp_path, callbacks=[Bad()])


def test_max_time_stops_at_a_step_with_a_checkpoint_that_resumes_exactly(X, tmp_path):
    budget = MaxTime(1e-9)
    vae = small(epochs=5).fit(X, checkpoint=tmp_path, callbacks=[budget])
    assert budget.stopped_ and vae.t_ == 1 and vae.n_iter_ == 0
    info = fastvae.checkpoint_info(tmp_path)
    assert info["steps"] == 1 and not info["finished"]
    resumed = fastvae.resume(tmp_path, X)
    np.testing.assert_array_equal(resumed.params_, small(epochs=5).fit(X).params_)
    with pytest.raises(ValueError, match="seconds must be a number > 0"):
        MaxTime(0)


def _cli(*args, cwd, code=0):
    env = dict(
        os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "fastvae", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc


TINY = ["--n-samples", "400", "--hidden", "16", "--latent-dim", "2", "--quiet"]


def test_cli_early_stopping_and_time_budget(tmp_path):
    proc = _cli("train", *TINY, "--epochs", "30", "--early-stopping", "2",
                "--min-delta", "1e9", "--out", "early", cwd=tmp_path)  # fmt: skip
    assert "stopped early after epoch 3: the validation ELBO did not improve by " in (
        proc.stdout
    )
    assert "the model has the parameters of epoch 1" in proc.stdout
    record = json.loads((tmp_path / "early" / "history.json").read_text())
    assert record["stopped"]["reason"] == "early_stopping"
    assert record["stopped"]["best_epoch"] == 1 and len(record["history"]["epoch"]) == 3
    proc = _cli("train", "--resume", "early", "--epochs", "40", cwd=tmp_path, code=2)
    assert "the run in early stopped early after 3 epochs (no improvement for 2 " in (
        proc.stderr
    )
    assert "best at epoch 1); nothing to resume" in proc.stderr

    proc = _cli("train", *TINY, "--epochs", "30", "--max-time", "0.001s",
                "--out", "budget", cwd=tmp_path)  # fmt: skip
    assert "stopped at the time budget (--max-time 0.001 s) at step 1; continue " in (
        proc.stdout
    )
    assert "fastvae train --resume budget" in proc.stdout
    # one step of 128 samples: a rate, not "0 samples/s"
    assert "trained 0 epochs (1 step) in " in proc.stdout
    assert " 0 samples/s" not in proc.stdout
    proc = _cli("train", "--resume", "budget", "--max-time", "1h", cwd=tmp_path)
    assert "trained 30 epochs" in proc.stdout
    proc = _cli("train", *TINY, "--max-time", "soon", cwd=tmp_path, code=2)
    assert "expected a duration > 0 like 90, 90s, 15m or 2h" in proc.stderr


def test_resume_warns_about_a_callback_state_nobody_claims(X, tmp_path):
    small(epochs=3).fit(
        X,
        validation_data=X[:50],
        checkpoint=tmp_path,
        callbacks=[EarlyStopping(patience=5), MaxTime(1e-9)],
    )
    with pytest.warns(UserWarning, match="holds the state of EarlyStopping, but no"):
        fastvae.resume(tmp_path, X, validation_data=X[:50])
