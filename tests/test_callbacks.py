"""fit's public callbacks: the hooks run in order with the documented
arguments, a True stops training at a step or epoch boundary (and a
checkpoint written there resumes exactly), and bad callbacks are refused
with a clear error."""

import numpy as np
import pytest

import fastvae
from fastvae.callbacks import (
    Callback,
    EpochProgress,
    LambdaCallback,
    ProgressBar,
    TrainingState,
)
from fastvae.models import checkpoint
from fastvae.models.checkpoint import Checkpointer


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return (rng.random((200, 12)) < 0.3).astype(np.float32)


def small(**kw):
    kw = {
        "hidden": (8,),
        "latent_dim": 2,
        "epochs": 3,
        "batch_size": 50,
        "random_state": 1,
        "n_threads": 1,
        **kw,
    }
    return fastvae.VAE(**kw)


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, model, info):
        self.events.append(("train_begin", info))

    def on_epoch_begin(self, model, epoch):
        self.events.append(("epoch_begin", epoch))

    def on_step_end(self, model, logs):
        assert logs["step"] == model.t_
        self.events.append(("step_end", logs))

    def on_epoch_end(self, model, logs):
        assert model.history_["epoch"][-1] == logs["epoch"] == model.n_iter_
        self.events.append(("epoch_end", logs))

    def on_train_end(self, model):
        self.events.append(("train_end", None))


def test_hooks_run_in_order_with_their_arguments(X):
    rec = Recorder()
    vae = small().fit(X, callbacks=[rec])
    kinds = [k for k, _ in rec.events]
    per_epoch = ["epoch_begin"] + ["step_end"] * 4 + ["epoch_end"]
    assert kinds == ["train_begin"] + per_epoch * 3 + ["train_end"]
    info = dict(rec.events[0][1])
    state = info.pop("state")
    assert isinstance(state, TrainingState)
    assert state.outcome == "finished" and state.epoch == EpochProgress()
    assert info == {
        "epochs": 3,
        "epochs_done": 0,
        "n_samples": 200,
        "batch_size": 50,
        "steps_per_epoch": 4,
        "remaining_samples": 600,
        "validation": False,
        "lr": 1e-3,
    }
    steps = [logs for k, logs in rec.events if k == "step_end"]
    assert [s["step"] for s in steps] == list(range(1, 13))
    assert [s["epoch"] for s in steps] == [1] * 4 + [2] * 4 + [3] * 4
    ends = [logs for k, logs in rec.events if k == "epoch_end"]
    for i, logs in enumerate(ends):
        for key in ("loss", "reconstruction", "kl", "elbo", "seconds"):
            assert logs[key] == vae.history_[key][i]
        # the epoch's loss is the mean of its steps' per-sample losses
        # (equal batches here)
        mean = np.mean([s["loss"] for s in steps[4 * i : 4 * i + 4]])
        assert logs["loss"] == pytest.approx(mean, rel=1e-12)
        assert logs["val_elbo"] is None


def test_callbacks_do_not_change_the_result(X):
    plain = small().fit(X)
    watched = small().fit(X, callbacks=[Recorder(), LambdaCallback()])
    np.testing.assert_array_equal(plain.params_, watched.params_)


def test_true_from_on_epoch_end_stops_after_that_epoch(X):
    stop = LambdaCallback(on_epoch_end=lambda m, logs: logs["epoch"] == 2)
    vae = small(epochs=10).fit(X, callbacks=[stop])
    assert vae.n_iter_ == 2 and vae.t_ == 8
    assert vae.history_["epoch"] == [1, 2]


def test_true_from_on_step_end_stops_at_that_step(X, tmp_path):
    rec = Recorder()
    stop = LambdaCallback(on_step_end=lambda m, logs: logs["step"] == 6)
    vae = small(epochs=10).fit(X, callbacks=[stop, rec], checkpoint=tmp_path)
    assert vae.t_ == 6 and vae.n_iter_ == 1
    # every callback saw the stopping step, and training ended cleanly
    assert [k for k, _ in rec.events][-2:] == ["step_end", "train_end"]
    # the checkpoint holds the position inside epoch 2: resuming to the
    # planned 3 epochs gives the uninterrupted run's parameters bitwise
    info = fastvae.checkpoint_info(tmp_path)
    assert info["steps"] == 6 and info["epochs_done"] == 1 and info["epoch_step"] == 2
    resumed = fastvae.resume(tmp_path, X, epochs=3)
    np.testing.assert_array_equal(resumed.params_, small(epochs=3).fit(X).params_)


def test_stop_on_the_last_step_of_an_epoch_records_that_epoch(X):
    stop = LambdaCallback(on_step_end=lambda m, logs: logs["step"] == 4)
    vae = small(epochs=5).fit(X, callbacks=[stop])
    assert vae.t_ == 4 and vae.n_iter_ == 1 and vae.history_["epoch"] == [1]


def test_partial_fit_and_resume_take_callbacks(X, tmp_path):
    rec = Recorder()
    vae = small().partial_fit(X, callbacks=[rec])
    assert [k for k, _ in rec.events].count("epoch_end") == 1
    small(epochs=2).fit(X, checkpoint=tmp_path)
    rec = Recorder()
    fastvae.resume(tmp_path, X, epochs=4, callbacks=[rec])
    assert rec.events[0][1]["epochs_done"] == 2
    assert [logs["epoch"] for k, logs in rec.events if k == "epoch_end"] == [3, 4]
    assert vae.n_iter_ == 1


def test_on_train_end_runs_when_training_fails(X):
    rec = Recorder()

    def boom(model, logs):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        small().fit(X, callbacks=[rec, LambdaCallback(on_step_end=boom)])
    assert rec.events[-1] == ("train_end", None)


class Outcome(Callback):
    """Records the live state's position at every step and its outcome."""

    def on_train_begin(self, model, info):
        self.state, self.steps, self.outcome = info["state"], [], None

    def on_step_end(self, model, logs):
        self.steps.append(self.state.epoch.step)

    def on_train_end(self, model):
        self.outcome = self.state.outcome


def test_the_state_tracks_the_epoch_and_says_how_training_ended(X):
    seen = Outcome()
    small(epochs=2).fit(X, callbacks=[seen])
    assert seen.steps == [1, 2, 3, 4] * 2 and seen.outcome == "finished"
    small(epochs=2).fit(
        X, callbacks=[seen, LambdaCallback(on_step_end=lambda m, logs: True)]
    )
    assert seen.steps == [1] and seen.outcome == "stopped"
    assert seen.state.epoch.step == 1 and seen.state.epoch.loss > 0

    def boom(model, logs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        small().fit(X, callbacks=[seen, LambdaCallback(on_step_end=boom)])
    assert seen.outcome == "failed"


def test_every_on_train_end_runs_and_the_first_error_is_raised(X):
    rec = Recorder()

    def boom(model):
        raise RuntimeError("first")

    def late(model):
        raise ValueError("second")

    with pytest.raises(RuntimeError, match="first"):
        small(epochs=1).fit(
            X,
            callbacks=[
                LambdaCallback(on_train_end=boom),
                LambdaCallback(on_train_end=late),
                rec,
            ],
        )
    assert rec.events[-1] == ("train_end", None)


def test_checkpointing_is_a_callback_that_runs_after_the_others(
    X, tmp_path, monkeypatch
):
    order = []

    class Spy(Checkpointer):
        def write(self, state, arrays, epoch):
            order.append(("checkpoint", state["fitted"]["t_"]))
            super().write(state, arrays, epoch)

    class Watch(Callback):
        def on_train_begin(self, model, info):
            order.append(("begin", None))

        def on_epoch_end(self, model, logs):
            order.append(("epoch_end", model.t_))

    # fit puts its checkpoint writer after the other callbacks, so that a
    # checkpoint holds their state after the epoch
    monkeypatch.setattr(checkpoint, "Checkpointer", Spy)
    small(epochs=2).fit(X, callbacks=[Watch()], checkpoint=tmp_path)
    assert order == [
        ("begin", None),
        ("epoch_end", 4),
        ("checkpoint", 4),
        ("epoch_end", 8),
        ("checkpoint", 8),
    ]
    assert fastvae.checkpoint_info(tmp_path)["steps"] == 8


def test_a_failed_run_writes_no_checkpoint_at_its_end(X, tmp_path):
    def boom(model, logs):
        if logs["step"] == 3:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        small(epochs=2).fit(
            X,
            callbacks=[LambdaCallback(on_step_end=boom)],
            checkpoint=tmp_path,
            checkpoint_every_steps=2,
        )
    # the step-2 checkpoint stays: none was written after the failure
    info = fastvae.checkpoint_info(tmp_path)
    assert info["steps"] == 2 and info["epoch_step"] == 2


def test_the_progress_bar_is_a_callback(X, capsys):
    small(epochs=2, verbose=2).fit(X)
    out = capsys.readouterr()
    assert "epoch 2/2" in out.err and "epoch 2: loss" in out.out
    # as an explicit callback on a quiet model, too
    small(epochs=1).fit(X, callbacks=[ProgressBar()])
    assert "epoch 1/1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "callbacks, message",
    [
        (Recorder(), "a list of Callback instances, not one"),
        ("x", "must be a list of fastvae.callbacks.Callback instances, got str"),
        ([print], r"callbacks\[0\] must be .*LambdaCallback\(on_epoch_end=f\)"),
        ([Recorder(), 3], r"callbacks\[1\] must be a fastvae.callbacks.Callback"),
    ],
)
def test_bad_callbacks_are_refused_before_training(X, callbacks, message):
    vae = small()
    with pytest.raises(TypeError, match=message):
        vae.fit(X, callbacks=callbacks)
    assert not hasattr(vae, "params_")


def test_lambda_callback_checks_its_functions():
    with pytest.raises(TypeError, match="on_step_end must be callable"):
        LambdaCallback(on_step_end=3)
