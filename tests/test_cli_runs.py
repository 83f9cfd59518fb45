"""What a user meets on the command line around a run: the run folder's
lock (two trainings never mix), a folder that already holds a run, resume
of a finished run, Ctrl-C during training and evaluation, and subcommands
that default to the data the model was trained on."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastvae
from fastvae.cli.run_lock import RunFolderBusy, RunLock, holder

REPO = Path(__file__).resolve().parent.parent
TINY = ["--epochs", "1", "--hidden", "16", "--latent-dim", "2", "--quiet"]


def _env():
    env = dict(
        os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    env.pop("FASTVAE_DEBUG", None)
    return env


def run_cli(*args, cwd, code=0):
    proc = subprocess.run(
        [sys.executable, "-m", "fastvae", *map(str, args)],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == code, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc


def _default_sigint():
    # Python installs its Ctrl-C handler only if SIGINT is not ignored when
    # it starts, and an ignored SIGINT is inherited (a suite started in the
    # background ignores it): these tests interrupt
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "fastvae", *map(str, args)],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def wait_for(condition, proc, seconds=120.0):
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exited {proc.returncode} early:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.05)


def interrupt(proc, seconds=10.0):
    """SIGINT, then how long the process took to exit, and its output."""
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"still running {seconds} s after SIGINT") from None
    return time.monotonic() - start, out, err


# -- the lock --------------------------------------------------------------------


def test_a_locked_folder_refuses_a_second_lock_and_names_the_holder(tmp_path):
    assert holder(tmp_path) is None
    with RunLock(tmp_path):
        record = holder(tmp_path)
        assert record["pid"] == os.getpid() and "started" in record
        with pytest.raises(RunFolderBusy, match=f"process {os.getpid()} on "):
            with RunLock(tmp_path):
                pass
    assert holder(tmp_path) is None
    with RunLock(tmp_path):  # released: free to take again
        pass


def test_the_lock_dies_with_its_process(tmp_path):
    code = (
        "import sys, time; from fastvae.cli.run_lock import RunLock\n"
        "with RunLock(sys.argv[1]):\n"
        "    print('locked', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    assert holder(tmp_path)["pid"] == proc.pid
    proc.kill()  # no chance to clean up
    proc.wait()
    assert holder(tmp_path) is None


def test_two_trainings_into_one_folder_the_second_is_refused(tmp_path):
    first = start_cli(
        "train", "--n-samples", "20000", "--epochs", "50", "--quiet", "--out", "run",
        cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for((tmp_path / "run" / "run.json").is_file, first)
        assert holder(tmp_path / "run")["pid"] == first.pid
        proc = run_cli("train", *TINY, "--out", "run", cwd=tmp_path, code=2)
        assert proc.stderr.startswith(
            f"fastvae: error: run is in use by another training run (process "
            f"{first.pid} on "
        ), proc.stderr
        assert "fastvae train" in proc.stderr and "--out" in proc.stderr
        # the first run's files are its own
        spec = json.loads((tmp_path / "run" / "run.json").read_text())
        assert spec["settings"]["epochs"] == 50
    finally:
        first.kill()
        first.communicate()


def test_a_folder_with_a_finished_run_needs_overwrite(tmp_path):
    run_cli("train", *TINY, "--n-samples", "300", "--out", "run", cwd=tmp_path)
    before = (tmp_path / "run" / "model.npz").read_bytes()
    proc = run_cli("train", *TINY, "--out", "run", cwd=tmp_path, code=2)
    assert "run already holds a run (run.json, metrics.jsonl, history.json, ...)" in (
        proc.stderr
    )
    assert "pass --overwrite to replace it" in proc.stderr
    assert (tmp_path / "run" / "model.npz").read_bytes() == before
    run_cli(
        "train", *TINY, "--n-samples", "200", "--seed", "3", "--out", "run",
        "--overwrite", cwd=tmp_path,
    )  # fmt: skip
    spec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert spec["settings"]["seed"] == 3
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # the old run's lines are gone, not appended to


def test_resume_of_a_finished_run_says_it_is_finished(tmp_path):
    run_cli("train", *TINY, "--n-samples", "300", "--out", "run", cwd=tmp_path)
    proc = run_cli("train", "--resume", "run", cwd=tmp_path, code=2)
    assert (
        "the run in run is finished (1 of 1 epochs); nothing to resume. Pass "
        "--epochs N with N > 1 to train it further" in proc.stderr
    )
    assert "samples/s" not in proc.stdout
    proc = run_cli("train", "--resume", "run", "--epochs", "2", cwd=tmp_path)
    assert "trained 2 epochs" in proc.stdout


def test_ctrl_c_in_training_names_the_checkpoint_and_the_resume_command(tmp_path):
    proc = start_cli(
        "train", "--n-samples", "20000", "--epochs", "50", "--quiet", "--out", "run",
        cwd=tmp_path,
    )  # fmt: skip
    checkpoint = tmp_path / "run" / "checkpoint.npz"
    wait_for(checkpoint.is_file, proc)
    seconds, _, err = interrupt(proc)
    assert proc.returncode == 130 and seconds < 5, (seconds, err)
    assert "fastvae: the last checkpoint (" in err
    assert f"is {Path('run') / 'checkpoint.npz'}; continue with: fastvae train " in err
    assert "--resume run" in err and "fastvae: interrupted" in err
    assert holder(tmp_path / "run") is None
    plot = run_cli("plot", "--run", "run", cwd=tmp_path)
    assert "training stopped before its end; continue it with fastvae train " in (
        plot.stdout
    )


# -- eval and the pictures default to the model's data --------------------------


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A model trained on a user's .npy of 12 features in [0, 1]."""
    folder = tmp_path_factory.mktemp("table")
    X = np.random.default_rng(0).random((300, 12)).astype(np.float32)
    np.save(folder / "table.npy", X)
    run_cli(
        "train", "--data", "table.npy", *TINY, "--likelihood", "gaussian",
        "--out", "run", cwd=folder,
    )  # fmt: skip
    return folder, X


def test_the_model_file_says_what_it_was_trained_on(table_run):
    folder, X = table_run
    model = fastvae.load(folder / "run" / "model.npz")
    seen = model.training_data_
    assert seen["n_features"] == 12 and seen["n_samples"] == 270  # 10% held out
    assert 0.0 <= seen["min"] < 0.01 and 0.99 < seen["max"] <= 1.0
    source = seen["source"]
    assert source["name"] == "table"
    assert source["data"] == str((folder / "table.npy").resolve())


def test_eval_defaults_to_the_models_data(table_run, tmp_path):
    folder, X = table_run
    # from another folder: the model file holds the data's absolute path
    proc = run_cli("eval", "--model", folder / "run" / "model.npz", "--json",
                   cwd=tmp_path)  # fmt: skip
    result = json.loads(proc.stdout)
    assert result["data"] == "table" and result["n_samples"] == 300


def test_data_that_cannot_fit_the_model_is_refused(table_run):
    folder, X = table_run
    np.save(folder / "wide.npy", np.zeros((10, 13), np.float32))
    np.save(folder / "pixels.npy", X * 255)
    proc = run_cli("eval", "--model", "run/model.npz", "--data", "wide.npy",
                   cwd=folder, code=2)  # fmt: skip
    assert "wide has 13 features per sample but the model was trained on 12" in (
        proc.stderr
    )
    proc = run_cli("eval", "--model", "run/model.npz", "--data", "pixels.npy",
                   cwd=folder, code=2)  # fmt: skip
    assert "pixels has values in [0.04845, 254.9] but the model was trained on " in (
        proc.stderr
    )
    assert "values in [0.00019, 0.9996]" in proc.stderr


def test_reconstruct_defaults_to_the_models_data_not_shapes(tmp_path):
    images = (np.random.default_rng(1).random((200, 36)) < 0.3).astype(np.float32)
    np.save(tmp_path / "tiles.npy", images)
    run_cli("train", "--data", "tiles.npy", *TINY, "--out", "run", cwd=tmp_path)
    proc = run_cli("reconstruct", "--model", "run/model.npz", "-n", "4",
                   cwd=tmp_path)  # fmt: skip
    assert "4 rows of tiles (train split)" in proc.stdout


def test_a_model_without_a_source_asks_for_data(tmp_path):
    X = (np.random.default_rng(2).random((64, 9)) < 0.5).astype(np.float32)
    fastvae.VAE(hidden=(4,), latent_dim=2, epochs=1, batch_size=64).fit(X).save(
        tmp_path / "m.npz"
    )
    proc = run_cli("eval", "--model", "m.npz", cwd=tmp_path, code=2)
    assert "--data is needed: m.npz does not say what it was trained on" in (
        proc.stderr
    )


# -- long evaluations ----------------------------------------------------------


def test_ctrl_c_stops_eval_k_within_a_second_and_it_shows_progress(tmp_path):
    images = (np.random.default_rng(3).random((400, 784)) < 0.2).astype(np.float32)
    np.save(tmp_path / "pix.npy", images)
    run_cli("train", "--data", "pix.npy", *TINY, "--out", "run", cwd=tmp_path)
    # 400 rows x k = 10**6 would take many minutes
    proc = start_cli("eval", "--model", "run/model.npz", "--k", "1000000",
                     cwd=tmp_path)  # fmt: skip
    time.sleep(4.0)  # imports, loading, and the first chunks
    seconds, out, err = interrupt(proc)
    assert proc.returncode == 130 and "fastvae: interrupted" in err, err
    assert seconds < 1.0, f"{seconds:.1f} s from SIGINT to exit"
    assert "log p(x), k=1000000" in err and "row" in err  # the progress bar


# -- rough edges -----------------------------------------------------------------


def test_help_shows_each_default_once_and_lists_choices(tmp_path):
    for command in ("train", "sample", "reconstruct", "eval", "traverse",
                    "interpolate", "plot"):  # fmt: skip
        text = " ".join(run_cli(command, "--help", cwd=tmp_path).stdout.split())
        assert "(default: None)" not in text, command
        assert not re.search(r"\(default:[^)]*\)\s*\(default:", text), command
    text = " ".join(run_cli("train", "--help", cwd=tmp_path).stdout.split())
    assert "--batch-size BATCH_SIZE samples per step (default: 128)" in text
    assert "--seed SEED seed of the initial weights" in text and "(default: 0)" in text
    for choices in ("{bernoulli,gaussian,poisson,negbin,zinb}",
                    "{sgd,momentum,adam}", "{relu,tanh,sigmoid,identity}",
                    "{float32,float64}", "{observed,none}",
                    "{gene,gene-batch}"):  # fmt: skip
        assert choices in text
    proc = run_cli("train", "--bogus", cwd=tmp_path, code=2)
    assert proc.stderr == (
        "fastvae: error: unrecognized arguments: --bogus (see 'fastvae train --help')\n"
    )


def test_settings_are_checked_before_the_data_load(tmp_path):
    proc = run_cli("train", "--data", "missing.npy", "--latent-dim", "0",
                   cwd=tmp_path, code=2)  # fmt: skip
    assert proc.stderr == "fastvae: error: --latent-dim must be >= 1, got 0\n"
    assert proc.stdout == "" and not (tmp_path / "fastvae-run" / "run.json").exists()
    proc = run_cli("train", "--sigma", "learned", cwd=tmp_path, code=2)
    assert "--sigma learned needs --likelihood gaussian" in proc.stderr


def test_warnings_are_one_line_in_cli_words_and_quiet_is_short(tmp_path):
    proc = run_cli("train", *TINY, "--n-samples", "100", "--out", "run",
                   cwd=tmp_path)  # fmt: skip
    assert proc.stderr == (
        "fastvae: warning: --batch-size 128 is larger than the 90 samples; using 90\n"
    )
    lines = proc.stdout.splitlines()
    assert len(lines) <= 6, lines  # was 12
    assert "; 2 threads" in lines[0] or "; 1 thread" in lines[0]
    assert lines[1].startswith("trained 1 epoch (1 step) in ")
    assert "validation ELBO" in proc.stdout and "->" not in proc.stdout


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastvae", "train", *TINY, "--n-samples", "300"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # like `| head -0`: the reader is gone
    err = proc.stderr.read()
    proc.wait(timeout=300)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141


def test_8_bit_images_train_with_scale_and_eval_reuses_it(tmp_path):
    images = np.random.default_rng(4).integers(0, 256, (120, 36), dtype=np.uint8)
    np.save(tmp_path / "u8.npy", images)
    proc = run_cli("train", "--data", "u8.npy", *TINY, cwd=tmp_path, code=2)
    assert "they look like 8-bit pixel values: pass --scale 255" in proc.stderr
    run_cli("train", "--data", "u8.npy", "--scale", "255", *TINY, "--batch-size",
            "50", cwd=tmp_path)  # fmt: skip
    model = "fastvae-run/model.npz"
    default = json.loads(run_cli("eval", "--model", model, "--json",
                                 cwd=tmp_path).stdout)  # fmt: skip
    given = run_cli("eval", "--model", model, "--data", "u8.npy", "--scale", "255",
                    "--json", cwd=tmp_path).stdout  # fmt: skip
    given = json.loads(given)
    assert default == given
    proc = run_cli("eval", "--model", model, "--data", "u8.npy", "--scale", "1",
                   cwd=tmp_path, code=2)  # fmt: skip
    assert "u8 has values in [0, 255] but the model was trained on values" in (
        proc.stderr
    )


def test_plot_encodes_the_rows_with_the_runs_scale(tmp_path, monkeypatch):
    from fastvae import data
    from fastvae.cli import pictures, plotting, run_folder

    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (150, 16), dtype=np.uint8)
    np.savez(tmp_path / "digits.npz", X=images, y=rng.integers(0, 3, 150))
    run_cli("train", "--data", "digits.npz", "--scale", "255", *TINY,
            "--validation", "30", cwd=tmp_path)  # fmt: skip
    run = tmp_path / "fastvae-run"
    spec = run_folder.read_run(run)
    assert spec["settings"]["scale"] == 255
    drawn = {}
    monkeypatch.setattr(
        plotting, "latent_scatter", lambda points, *a, **k: drawn.update(p=points)
    )
    assert pictures._latent_scatter(run, spec, tmp_path / "l.png", 2000) is None
    _, held_out = data.train_validation_split(
        data.load_array(tmp_path / "digits.npz"), n_validation=30, seed=0
    )
    model = fastvae.load(run / "model.npz")
    np.testing.assert_allclose(
        drawn["p"], model.transform(held_out.X / np.float32(255)), rtol=1e-6
    )
