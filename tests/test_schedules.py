"""Learning-rate schedules: their rates, what fit trains with them (the
same as changing lr by hand between epochs, bitwise), history_["lr"],
resume of a plateau schedule, and --lr-schedule."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastvae
from fastvae.callbacks import LambdaCallback
from fastvae.schedules import (
    CosineLR,
    ExponentialLR,
    ReduceLROnPlateau,
    StagedLR,
    StepLR,
    parse_schedule,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def X():
    return (np.random.default_rng(0).random((150, 20)) < 0.3).astype(np.float32)


def small(**kw):
    kw = {"hidden": (8,), "latent_dim": 2, "batch_size": 50, "random_state": 3,
          "n_threads": 1, "lr": 4e-3, **kw}  # fmt: skip
    return fastvae.VAE(**kw)


def test_epoch_schedules_give_their_rates():
    def rates(schedule, epochs=6):
        return [schedule.rate(e, 1.0, epochs) for e in range(1, epochs + 1)]

    assert rates(StepLR(2, 0.5)) == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert rates(ExponentialLR(0.5)) == [1, 0.5, 0.25, 0.125, 0.0625, 0.03125]
    cosine = rates(CosineLR(min_lr=0.1), epochs=4)
    assert cosine[0] == 1 and bool(np.all(np.diff(cosine) < 0))
    assert cosine[-1] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.75)))
    iwae = StagedLR.iwae()
    assert sum(length for length, _ in iwae.stages) == 3280
    assert iwae.rate(1, 1e-3, 3280) == 1e-3
    assert iwae.rate(2, 1e-3, 3280) == iwae.rate(4, 1e-3, 3280) == 1e-3 * 10 ** (-1 / 7)
    assert iwae.rate(3280, 1e-3, 3280) == pytest.approx(1e-4)
    assert iwae.rate(5000, 1e-3, 3280) == iwae.rate(3280, 1e-3, 3280)


def test_a_schedule_trains_as_lr_changed_by_hand_between_epochs(X):
    scheduled = small(epochs=3).fit(X, callbacks=[StepLR(1, 0.5)])
    assert scheduled.history_["lr"] == [4e-3, 2e-3, 1e-3]
    by_hand = small(epochs=1).fit(X)
    by_hand.set_params(warm_start=True)
    by_hand.fit(X, epochs=1, lr=2e-3)
    by_hand.fit(X, epochs=1, lr=1e-3)
    np.testing.assert_array_equal(scheduled.params_, by_hand.params_)
    # without a schedule the rate is the optimizer's
    assert small(epochs=2).fit(X).history_["lr"] == [4e-3, 4e-3]


def test_plateau_halves_the_rate_and_resumes_exactly(X, tmp_path):
    def plateau():
        return ReduceLROnPlateau("elbo", patience=1, min_delta=1e9, factor=0.5)

    straight = small(epochs=5).fit(X, callbacks=[plateau()])
    assert straight.history_["lr"] == [4e-3, 4e-3, 2e-3, 1e-3, 5e-4]

    def crash(model, logs):
        if logs["epoch"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        small(epochs=5).fit(
            X,
            checkpoint=tmp_path,
            callbacks=[plateau(), LambdaCallback(on_step_end=crash)],
        )
    resumed = fastvae.resume(tmp_path, X, callbacks=[plateau()])
    assert resumed.history_["lr"] == straight.history_["lr"]
    np.testing.assert_array_equal(resumed.params_, straight.params_)


def test_a_bad_rate_from_a_schedule_is_refused(X):
    class Broken(StepLR):
        def rate(self, epoch, base_lr, epochs):
            return -1.0

    with pytest.raises(ValueError, match="a schedule set the learning rate to -1.0"):
        small(epochs=1).fit(X, callbacks=[Broken(1)])


@pytest.mark.parametrize(
    "text, kind",
    [("step:30", StepLR), ("step:30:0.1", StepLR), ("exponential:0.9", ExponentialLR),
     ("cosine", CosineLR), ("cosine:1e-5", CosineLR), ("plateau", ReduceLROnPlateau),
     ("plateau:3:0.2", ReduceLROnPlateau), ("iwae", StagedLR)],
)  # fmt: skip
def test_parse_schedule(text, kind):
    assert isinstance(parse_schedule(text), kind)


@pytest.mark.parametrize(
    "text, message",
    [
        ("linear", "unknown schedule 'linear'"),
        ("step", "step takes 1 to 2 values"),
        ("step:2.5", "step_size must be an integer > 0"),
        ("exponential:2", r"gamma must be in \(0, 1\)"),
        ("cosine:x", "the values must be numbers"),
    ],
)
def test_parse_schedule_refuses_bad_text(text, message):
    with pytest.raises(ValueError, match=message):
        parse_schedule(text)


def test_cli_lr_schedule_is_recorded(tmp_path):
    env = dict(
        os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )

    def cli(*args, code=0):
        proc = subprocess.run(
            [sys.executable, "-m", "fastvae", "train", "--n-samples", "300",
             "--hidden", "16", "--latent-dim", "2", "--quiet", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == code, proc.stdout + proc.stderr
        return proc

    cli("--epochs", "3", "--lr-schedule", "step:1:0.5", "--out", "run")
    lrs = json.loads((tmp_path / "run" / "history.json").read_text())["history"]["lr"]
    assert lrs == [1e-3, 5e-4, 2.5e-4]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["lr"] for line in lines] == lrs
    proc = cli("--lr-schedule", "linear", "--out", "bad", code=2)
    assert "--lr-schedule 'linear': unknown schedule 'linear'" in proc.stderr


def test_a_model_file_from_before_lr_was_recorded_loads(X, tmp_path):
    from _zipfiles import members, meta, rewrite, with_meta

    small(epochs=2).fit(X).save(tmp_path / "m.npz")
    entries = members(tmp_path / "m.npz")
    old = meta(entries)
    del old["fitted"]["history_"]["lr"]
    rewrite(tmp_path / "m.npz", with_meta(entries, old))
    assert fastvae.load(tmp_path / "m.npz").history_["lr"] == [None, None]
