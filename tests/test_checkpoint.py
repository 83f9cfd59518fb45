"""Checkpoints: exact resume after a crash or kill -9, the non-finite guard,
atomic replacement, the command line, and checkpoint files that must be
refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from _zipfiles import member_offset as _member_offset
from _zipfiles import members as _members
from _zipfiles import meta as _meta
from _zipfiles import meta_bytes as _meta_bytes
from _zipfiles import npy as _npy
from _zipfiles import rewrite as _rewrite
from _zipfiles import with_meta as _with_meta

import fastvae
from fastvae import _atomic, cli
from fastvae.models import checkpoint as fckpt
from fastvae.models import file_format as fio

REPO = Path(__file__).resolve().parent.parent
D = 16
TIMING = ("seconds", "samples_per_second")


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(1).random((200, D)).astype(np.float32)


def _settings(**changes):
    # One thread: on a loaded 2-core machine two OpenMP threads make these tiny
    # steps 100x slower; results are bitwise the same for any thread count
    # (test_resume_on_one_thread_continues_a_two_thread_run).
    settings = dict(
        hidden=(8,), latent_dim=2, epochs=4, batch_size=24, random_state=2, n_threads=1
    )
    settings.update(changes)
    return settings


class _Crash(Exception):
    """Stands for the process dying right after a checkpoint was written."""


def _crash_after(monkeypatch, n_writes):
    original = fckpt.Checkpointer.write
    count = {"n": 0}

    def write(self, *args, **kwargs):
        original(self, *args, **kwargs)
        count["n"] += 1
        if count["n"] == n_writes:
            raise _Crash

    monkeypatch.setattr(fckpt.Checkpointer, "write", write)


def assert_same_run(a, b):
    """Bitwise the same parameters, optimizer state, counters and history."""
    assert np.array_equal(a.params_, b.params_)
    for s, t in zip(a._opt_state, b._opt_state, strict=True):
        assert np.array_equal(s, t)
    assert (a.n_iter_, a.t_) == (b.n_iter_, b.t_)
    for key in a.history_:
        if key not in TIMING:
            assert a.history_[key] == b.history_[key], key
    assert a.loss_curve_ == b.loss_curve_


# -- exact resume ----------------------------------------------------------------


@pytest.mark.parametrize(
    "make, settings, every_steps, crash_at",
    [
        (fastvae.VAE, {}, None, 2),  # epoch boundary
        (fastvae.VAE, {}, 5, 3),  # mid-epoch
        (
            fastvae.VAE,
            {
                "kl_warmup": 15,
                "dynamic_binarization": True,
                "corruption": 0.2,
                "beta": 0.5,
            },
            4,
            5,
        ),
        (fastvae.VAE, {"dtype": np.float64, "optimizer": "momentum"}, 7, 3),
        (
            fastvae.VAE,
            {
                "likelihood": "gaussian",
                "sigma": "learned",
                "optimizer": fastvae.optim.Adam(lr=3e-3, beta2=0.99),
            },
            3,
            4,
        ),
        (fastvae.DenoisingAutoencoder, {"optimizer": "sgd", "lr": 0.05}, 6, 3),
    ],
)
def test_resume_after_a_crash_is_bitwise_exact(
    X, tmp_path, monkeypatch, make, settings, every_steps, crash_at
):
    cond = np.eye(3, dtype=np.float32)[np.arange(len(X)) % 3]
    kw = _settings(**settings)
    straight = make(**kw).fit(X, condition=cond, validation_data=(X[:40], cond[:40]))
    _crash_after(monkeypatch, crash_at)
    with pytest.raises(_Crash):
        make(**kw).fit(
            X,
            condition=cond,
            validation_data=(X[:40], cond[:40]),
            checkpoint=tmp_path,
            checkpoint_every_steps=every_steps,
        )
    monkeypatch.undo()
    info = fastvae.checkpoint_info(tmp_path)
    assert not info["finished"] and info["epochs"] == 4
    if every_steps is not None:  # 9 steps per epoch: these checkpoints are mid-epoch
        assert info["epoch_step"] == info["steps"] % 9 != 0
    resumed = fastvae.resume(
        tmp_path, X, condition=cond, validation_data=(X[:40], cond[:40])
    )
    assert type(resumed) is make
    assert_same_run(resumed, straight)
    final = fastvae.checkpoint_info(tmp_path)
    assert final["finished"] and final["steps"] == straight.t_
    assert_same_run(fastvae.load(tmp_path / "checkpoint.npz"), straight)


def test_resume_on_one_thread_continues_a_two_thread_run(X, tmp_path, monkeypatch):
    """Checkpoints hold global state only: nothing depends on the threads."""
    kw = _settings(epochs=2, n_threads=2)
    straight = fastvae.VAE(**kw).fit(X)
    _crash_after(monkeypatch, 2)
    with pytest.raises(_Crash):
        fastvae.VAE(**kw).fit(X, checkpoint=tmp_path, checkpoint_every_steps=5)
    monkeypatch.undo()
    assert fastvae.checkpoint_info(tmp_path)["epoch_step"] == 0  # t = 9, epoch 1 end
    resumed = fastvae.resume(tmp_path, X, n_threads=1)
    assert resumed.n_threads == 1
    assert_same_run(resumed, straight)


def test_resume_to_more_epochs_equals_a_longer_run(X, tmp_path):
    longer = fastvae.VAE(**_settings(epochs=6)).fit(X)
    fastvae.VAE(**_settings(epochs=3)).fit(X, checkpoint=tmp_path / "c.npz")
    assert fastvae.checkpoint_info(tmp_path / "c.npz")["finished"]
    same = fastvae.resume(tmp_path / "c.npz", X)  # finished: nothing to do
    assert same.n_iter_ == 3
    resumed = fastvae.resume(tmp_path / "c.npz", X, epochs=6)
    assert_same_run(resumed, longer)
    with pytest.raises(
        ValueError, match="epochs=5 but the checkpointed run has done 6"
    ):
        fastvae.resume(tmp_path / "c.npz", X, epochs=5)


def test_fit_overrides_and_warm_start_are_kept(X, tmp_path, monkeypatch):
    """fit(batch_size=, lr=) overrides and a warm start's epoch count are in
    the checkpoint, so the resumed run is the run that was asked for."""
    kw = _settings(epochs=2, warm_start=True, lr=0.01)
    straight = fastvae.VAE(**kw).fit(X)
    straight.fit(X, batch_size=50, lr=0.002, epochs=3)
    first = fastvae.VAE(**kw).fit(X)
    _crash_after(monkeypatch, 2)
    with pytest.raises(_Crash):
        first.fit(X, batch_size=50, lr=0.002, epochs=3, checkpoint=tmp_path)
    monkeypatch.undo()
    info = fastvae.checkpoint_info(tmp_path)
    assert (info["epochs_done"], info["epochs"]) == (4, 5)
    assert_same_run(fastvae.resume(tmp_path, X), straight)


def test_checkpoint_every_n_epochs_and_at_the_end(X, tmp_path, monkeypatch):
    written = []
    original = fckpt.Checkpointer.write

    def write(self, state, arrays, epoch):
        written.append((state["fitted"]["n_iter_"], epoch.step, state["fitted"]["t_"]))
        original(self, state, arrays, epoch)

    monkeypatch.setattr(fckpt.Checkpointer, "write", write)
    fastvae.VAE(**_settings(epochs=5)).fit(X, checkpoint=tmp_path, checkpoint_every=2)
    assert written == [(2, 0, 18), (4, 0, 36), (5, 0, 45)]
    written.clear()
    fastvae.VAE(**_settings(epochs=2)).fit(
        X, checkpoint=tmp_path, checkpoint_every=0, checkpoint_every_steps=4
    )
    # t = 4, 8 mid-epoch 1; 12, 16 mid-epoch 2; the end (18)
    assert written == [(0, 4, 4), (0, 8, 8), (1, 3, 12), (1, 7, 16), (2, 0, 18)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_resume_refuses_other_data(X, tmp_path):
    fastvae.VAE(**_settings(epochs=1)).fit(X, checkpoint=tmp_path)
    other = X.copy()
    other[7, 3] = 0.5
    with pytest.raises(ValueError, match="differs from the data the checkpointed run"):
        fastvae.resume(tmp_path, other, epochs=2)
    with pytest.raises(
        ValueError,
        match="the data have 150 samples but the checkpointed run trained on 200",
    ):
        fastvae.resume(tmp_path, X[:150], epochs=2)
    with pytest.raises(
        ValueError, match="2 condition columns but the checkpointed run trained on 0"
    ):
        fastvae.resume(tmp_path, X, condition=np.ones((200, 2), np.float32), epochs=2)


def test_a_killed_write_leaves_a_temporary_file_that_resume_removes(X, tmp_path):
    fastvae.VAE(**_settings(epochs=1)).fit(X, checkpoint=tmp_path)
    stale = tmp_path / ".checkpoint.npz.x1y2z3.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert _atomic.temporary_files(tmp_path / "checkpoint.npz") == [stale]
    fastvae.resume(tmp_path, X, epochs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_checkpoint_arguments_are_checked_before_training(X, tmp_path):
    vae = fastvae.VAE(**_settings())
    with pytest.raises(FileNotFoundError, match="folder .*nope does not exist"):
        vae.fit(X, checkpoint=tmp_path / "nope" / "c.npz")
    with pytest.raises(TypeError, match="checkpoint must be a file or folder path"):
        vae.fit(X, checkpoint=3)
    with pytest.raises(ValueError, match="checkpoint_every must be >= 0"):
        vae.fit(X, checkpoint=tmp_path, checkpoint_every=-1)
    with pytest.raises(ValueError, match="checkpoint_every_steps must be >= 1"):
        vae.fit(X, checkpoint=tmp_path, checkpoint_every_steps=0)
    with pytest.raises(TypeError, match="checkpoint_meta must be JSON-serialisable"):
        vae.fit(X, checkpoint=tmp_path, checkpoint_meta={"x": object()})
    assert not hasattr(vae, "params_") and not list(tmp_path.iterdir())
    with pytest.raises(
        FileNotFoundError, match="checkpoint .*missing.npz does not exist"
    ):
        fastvae.resume(tmp_path / "missing.npz", X)


# -- failures during training ---------------------------------------------------


def test_divergence_keeps_the_last_good_checkpoint(X, tmp_path):
    vae = fastvae.VAE(
        **_settings(
            optimizer="sgd", lr=1e6, likelihood="gaussian", epochs=5, batch_size=20
        )
    )
    with pytest.raises(FloatingPointError) as info:
        vae.fit(X * 10, checkpoint=tmp_path, checkpoint_every_steps=1)
    message = str(info.value)
    assert f"NaN or infinite at step {vae.t_} " in message
    assert f"step {vae.t_}) is kept at {tmp_path / 'checkpoint.npz'}" in message
    kept = fastvae.load(tmp_path / "checkpoint.npz")
    assert np.isfinite(kept.params_).all()
    # the checkpoint is the state just before the failing step
    np.testing.assert_array_equal(kept.params_, vae.params_)
    assert fastvae.checkpoint_info(tmp_path)["steps"] == vae.t_


def test_non_finite_state_is_never_written(X, tmp_path):
    vae = fastvae.VAE(**_settings(epochs=1)).fit(X, checkpoint=tmp_path)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    state, arrays = vae._state()
    arrays = dict(arrays, opt_state2=np.full_like(arrays["opt_state2"], np.inf))
    writer = fckpt.Checkpointer(
        tmp_path / "checkpoint.npz", 1, None, {"epochs": 1}, {}, last=(1, 0, vae.t_)
    )
    with pytest.raises(
        FloatingPointError,
        match="opt_state2 became NaN or infinite by "
        "epoch 1, step 9; no checkpoint was "
        "written.*last good checkpoint",
    ):
        writer.write(state, arrays, fckpt.EpochProgress())
    assert (tmp_path / "checkpoint.npz").read_bytes() == before


def test_a_failed_write_keeps_the_previous_checkpoint(X, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_replace = os.replace

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk quota exceeded")
        real_replace(src, dst)

    monkeypatch.setattr(_atomic.os, "replace", replace)
    with pytest.raises(
        OSError,
        match="could not write checkpoint .* at epoch 2, "
        "step 18: disk quota exceeded.*last good "
        r"checkpoint \(1 epochs, step 9\)",
    ):
        fastvae.VAE(**_settings()).fit(X, checkpoint=tmp_path)
    monkeypatch.undo()
    assert fastvae.checkpoint_info(tmp_path)["epochs_done"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


# -- kill -9 and resume, in real processes ------------------------------------------


def _env():
    env = dict(
        os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    env.pop("FASTVAE_DEBUG", None)
    return env


def _start_and_kill(cmd, checkpoint, cwd):
    """Start cmd, wait for its first checkpoint, kill -9 it at once."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"exited {proc.returncode} before a checkpoint: "
                f"{proc.stderr.read().decode()}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("no checkpoint within 120 s")
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


CLI_RUN = [
    "--n-samples",
    "240",
    "--validation",
    "30",
    "--hidden",
    "16",
    "--latent-dim",
    "2",
    "--batch-size",
    "21",
    "--epochs",
    "60",
    "--kl-warmup",
    "40",
    "--binarize",
    "dynamic",
    "--seed",
    "5",
    "--threads",
    "1",
    "--quiet",
]


def test_cli_kill_9_and_resume_is_bitwise_exact(tmp_path, capsys):
    """`fastvae train` killed with SIGKILL after its first checkpoint and
    continued with `fastvae train --resume` ends with bitwise the same model
    as an uninterrupted `fastvae train` (same seed and threads)."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "fastvae", "train", *CLI_RUN, "--out", "run"]
    _start_and_kill(command, run / "checkpoint.npz", tmp_path)
    info = fastvae.checkpoint_info(run)
    assert 1 <= info["epochs_done"] < 60 and info["epoch_step"] == 0
    assert not (run / "model.npz").exists()  # killed mid-run

    # a new run must not clobber it, and its settings are its own
    assert cli.main(["train", *CLI_RUN, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "holds an unfinished run" in err and f"--resume {run}" in err
    assert cli.main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert "--lr cannot be given with --resume" in capsys.readouterr().err

    proc = subprocess.run(
        [sys.executable, "-m", "fastvae", "train", "--resume", "run"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    done = info["epochs_done"]
    resuming = f"resuming run/checkpoint.npz after {done} epoch{'s' * (done != 1)}"
    assert resuming in proc.stdout
    assert "trained 60 epochs" in proc.stdout

    assert cli.main(["train", *CLI_RUN, "--out", str(tmp_path / "straight")]) == 0
    capsys.readouterr()
    resumed = fastvae.load(run / "model.npz")
    straight = fastvae.load(tmp_path / "straight" / "model.npz")
    assert_same_run(resumed, straight)
    assert resumed.t_ == 60 * 10
    record = json.loads((run / "history.json").read_text())
    assert record["settings"]["epochs"] == 60 and len(record["history"]["loss"]) == 60
    for name in ("samples.png", "reconstructions.png", "loss_curve.png"):
        assert (run / name).is_file()


def test_kill_9_mid_epoch_and_resume_is_bitwise_exact(X, tmp_path):
    """A Python training script checkpointing every 7 steps (10 per epoch,
    so mid-epoch) is killed with SIGKILL; fastvae.resume continues it."""
    kw = _settings(epochs=60, batch_size=20, kl_warmup=50, dynamic_binarization=True)
    np.save(tmp_path / "X.npy", X)
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(f"""
        import numpy as np, fastvae
        X = np.load("X.npy")
        fastvae.VAE(**{kw!r}).fit(X, checkpoint="ckpt.npz", checkpoint_every=0,
                                   checkpoint_every_steps=7)
    """)
    )
    _start_and_kill([sys.executable, str(script)], tmp_path / "ckpt.npz", tmp_path)
    info = fastvae.checkpoint_info(tmp_path / "ckpt.npz")
    assert info["steps"] % 7 == 0 and info["steps"] < 600
    assert info["epoch_step"] == info["steps"] % 10 > 0  # killed mid-epoch
    resumed = fastvae.resume(tmp_path / "ckpt.npz", X, checkpoint_every_steps=500)
    straight = fastvae.VAE(**kw).fit(X)
    assert resumed.t_ == 600
    assert_same_run(resumed, straight)


def test_cli_resume_needs_a_cli_checkpoint(X, tmp_path, capsys):
    fastvae.VAE(**_settings(epochs=1)).fit(X, checkpoint=tmp_path)
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2
    assert (
        "was not written by fastvae train; continue it with fastvae.resume"
        in capsys.readouterr().err
    )


# -- checkpoint files that must be refused ------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_file(X, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    fastvae.VAE(**_settings(epochs=2)).fit(
        X,
        checkpoint=folder,
        checkpoint_every=0,
        checkpoint_every_steps=13,
        checkpoint_meta={"note": "hi"},
    )
    blob = (folder / "checkpoint.npz").read_bytes()
    return blob


@pytest.fixture()
def ckpt(checkpoint_file, tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(checkpoint_file)
    return path


def test_checkpoint_info(ckpt):
    info = fastvae.checkpoint_info(ckpt)
    assert info == {
        "path": ckpt,
        "estimator": "VAE",
        "epochs": 2,
        "epochs_done": 2,
        "epoch_step": 0,
        "steps": 18,
        "finished": True,
        "meta": {"note": "hi"},
        "callbacks": {},
    }
    meta = _meta(_members(ckpt))
    assert meta["format"] == "fastvae-checkpoint" and meta["format_version"] == 1
    assert set(meta["arrays"]) == {"params", "opt_state1", "opt_state2"}
    assert meta["progress"]["data"]["n_samples"] == 200


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.3, 0.6, 0.95, 0.9999])
def test_truncated_checkpoints_are_refused(ckpt, X, fraction):
    blob = ckpt.read_bytes()
    ckpt.write_bytes(blob[: int(len(blob) * fraction)])
    with pytest.raises(fastvae.ModelFileError):
        fastvae.resume(ckpt, X)


@pytest.mark.parametrize(
    "member, at", [("params.npy", 200), ("opt_state2.npy", 900), ("meta.npy", 300)]
)
def test_corrupted_checkpoints_are_refused(ckpt, X, member, at):
    blob = bytearray(ckpt.read_bytes())
    blob[_member_offset(ckpt, member) + at] ^= 0x01
    ckpt.write_bytes(bytes(blob))
    with pytest.raises(fastvae.ModelFileError, match="corrupted|CRC|unreadable"):
        fastvae.resume(ckpt, X)


def test_a_model_file_is_not_a_checkpoint(X, tmp_path):
    fastvae.VAE(**_settings(epochs=1)).fit(X).save(tmp_path / "model.npz")
    with pytest.raises(
        fastvae.ModelFileError, match="is a fastvae model file, not a checkpoint"
    ):
        fastvae.resume(tmp_path / "model.npz", X)


def _edit(meta, path, value):
    d = meta
    for k in path[:-1]:
        d = d[k]
    if value is KeyError:
        del d[path[-1]]
    else:
        d[path[-1]] = value


@pytest.mark.parametrize(
    "path, value, message",
    [
        (
            ("format_version",),
            2,
            "checkpoint format version 2; this fastvae reads versions "
            "1 to 1 \\(upgrade fastvae",
        ),
        (("progress",), KeyError, "no progress section"),
        (("progress",), [], "no progress section"),
        (("progress", "extra"), 1, "progress must have the keys"),
        (("progress", "epochs"), 1, "progress says 1 epochs in all but 2 are done"),
        (("progress", "epochs"), "2", "epochs must be Integral"),
        (("progress", "batch_size"), 0, "batch_size must be >= 1"),
        (("progress", "batch_size"), 201, "batch_size must be <= 200"),
        (("progress", "epoch", "step"), 9, "epoch step must be <= 8"),
        (("progress", "epoch", "step"), -1, "epoch step must be >= 0"),
        (("progress", "epoch", "step"), 2.5, "epoch step must be Integral"),
        (("progress", "epoch", "window_steps"), 1, "window_steps must be <= 0"),
        (("progress", "epoch", "loss"), float("nan"), "progress loss must be a finite"),
        (
            ("progress", "epoch", "seconds"),
            -1.0,
            "progress seconds must be a finite number >= 0",
        ),
        (("progress", "epoch", "kl"), "0", "progress kl must be a finite number"),
        (("progress", "epoch", "extra"), 0, "progress epoch must have the keys"),
        (("progress", "epoch"), None, "progress epoch must have the keys"),
        (("progress", "data", "sha256"), "abc", "sha256 must be 64 hex digits"),
        (("progress", "data", "n_features"), 17, "data sizes do not match the model"),
        (("progress", "data", "n_samples"), 0, "n_samples must be >= 1"),
        (("progress", "data"), "X.npy", "progress data must have"),
        (("progress", "checkpoint_every"), -2, "checkpoint_every must be >= 0"),
        (
            ("progress", "checkpoint_every_steps"),
            "13",
            "checkpoint_every_steps must be Integral",
        ),
        (("user",), ["cli"], "user must be a JSON object"),
        (("fitted", "n_iter_"), 3, "history_ lengths"),
        (("params", "dtype"), "float16", "dtype must be float32 or float64"),
    ],
)
def test_checkpoints_with_wrong_progress_or_settings(ckpt, X, path, value, message):
    members = _members(ckpt)
    meta = _meta(members)
    _edit(meta, path, value)
    _rewrite(ckpt, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match=message):
        fastvae.resume(ckpt, X)
    with pytest.raises(fastvae.ModelFileError):
        fastvae.checkpoint_info(ckpt)


def test_nan_parameters_in_a_checkpoint(ckpt, X):
    members = _members(ckpt)
    meta = _meta(members)
    bad = fastvae.load(ckpt).params_.copy()
    bad[3] = np.nan
    members["params.npy"] = _npy(bad)
    meta["arrays"]["params"]["sha256"] = fio.sha256(bad)
    _rewrite(ckpt, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match="'params' holds NaN or inf"):
        fastvae.resume(ckpt, X)


def test_a_pickle_inside_a_checkpoint_is_never_unpickled(ckpt, X, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    members = _members(ckpt)
    members["opt_state1.npy"] = _npy(
        np.array([Exploit()], dtype=object), allow_pickle=True
    )
    _rewrite(ckpt, members)
    with pytest.raises(fastvae.ModelFileError, match="opt_state1"):
        fastvae.resume(ckpt, X)
    assert not marker.exists()


def test_deeply_nested_user_metadata(ckpt, X):
    members = _members(ckpt)
    text = json.dumps(_meta(members)).replace(
        '"user": {"note": "hi"}', '"user": ' + "[" * 50_000 + "]" * 50_000
    )
    members["meta.npy"] = _meta_bytes(text)
    _rewrite(ckpt, members)
    with pytest.raises(fastvae.ModelFileError, match="unreadable metadata"):
        fastvae.resume(ckpt, X)
