"""The ``fastvae`` command line, run as a user would: in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

import fastvae
from fastvae import data

REPO = Path(__file__).resolve().parent.parent
TINY = ["--n-samples", "600", "--epochs", "2", "--hidden", "32", "--latent-dim", "4",
        "--batch-size", "64", "--quiet"]


def run_cli(*args, cwd, check=True):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("FASTVAE_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "fastvae", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def assert_picture(path, min_width=100, min_height=50):
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4), image.shape
    assert image.shape[0] >= min_height and image.shape[1] >= min_width, image.shape
    assert image[..., :3].std() > 0.05, f"{path} looks blank"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the tests that read its outputs."""
    folder = tmp_path_factory.mktemp("cli")
    proc = run_cli("train", *TINY, "--out", "run", cwd=folder)
    return folder, folder / "run", proc


def test_train_writes_every_output(trained):
    _, run, proc = trained
    for name in ("model.npz", "history.json", "loss_curve.png", "samples.png",
                 "reconstructions.png"):
        assert (run / name).is_file(), name
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temp files
    for name in ("loss_curve.png", "samples.png", "reconstructions.png"):
        assert_picture(run / name)
    assert "trained 2 epochs" in proc.stdout and "samples/s" in proc.stdout
    assert "validation ELBO" in proc.stdout


def test_train_history_has_one_entry_per_epoch(trained):
    _, run, _ = trained
    record = json.loads((run / "history.json").read_text())
    h = record["history"]
    for key in ("epoch", "loss", "reconstruction", "kl", "elbo", "val_elbo", "seconds",
                "samples_per_second"):
        assert len(h[key]) == 2, key
    assert h["epoch"] == [1, 2]
    assert all(v is not None and v < 0 for v in h["val_elbo"])
    assert record["data"] == {"name": "shapes", "n_train": 540, "n_validation": 60,
                              "n_features": 784}
    assert record["settings"]["latent_dim"] == 4 and record["settings"]["hidden"] == [32]


def test_train_model_loads_and_matches_history(trained):
    _, run, _ = trained
    model = fastvae.load(run / "model.npz")
    assert model.n_features_in_ == 784 and model.n_iter_ == 2
    assert model.get_params()["hidden"] in ((32,), [32])
    record = json.loads((run / "history.json").read_text())
    assert model.history_["loss"] == pytest.approx(record["history"]["loss"])


def test_sample_reconstruct_eval(trained):
    folder, run, _ = trained
    model_path = run / "model.npz"
    run_cli("sample", "--model", model_path, "-n", "9", "--seed", "3", "--out", "s.png",
            cwd=folder)
    assert_picture(folder / "s.png", min_width=60, min_height=60)
    run_cli("reconstruct", "--model", model_path, "--n-samples", "100", "-n", "8",
            "--out", "r.png", cwd=folder)
    assert_picture(folder / "r.png", min_width=60, min_height=40)
    proc = run_cli("eval", "--model", model_path, "--n-samples", "200", "--json",
                   cwd=folder)
    result = json.loads(proc.stdout)
    model = fastvae.load(model_path)
    test_shapes = data.load_dataset("shapes", split="test", n_samples=200)
    assert result["n_samples"] == 200 and result["split"] == "test"
    assert result["elbo"] == pytest.approx(model.score(test_shapes.X), rel=1e-6)


def test_train_on_a_users_npy_file_without_images(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "points.npy", rng.random((300, 5)).astype(np.float32))
    proc = run_cli("train", "--data", "points.npy", "--epochs", "2", "--hidden", "8",
                   "--latent-dim", "2", "--likelihood", "gaussian", "--quiet",
                   "--out", "out", cwd=tmp_path)
    assert "not images" in proc.stdout
    assert (tmp_path / "out" / "model.npz").is_file()
    assert (tmp_path / "out" / "loss_curve.png").is_file()
    assert not (tmp_path / "out" / "samples.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "missing.npy"], "missing.npy not found"),
        (["train", "--data", "cifar"], "unknown dataset 'cifar'"),
        (["train", *TINY, "--latent-dim", "0"], "latent_dim must be >= 1"),
        (["train", *TINY, "--likelihood", "poisson"], "likelihood must be one of"),
        (["train", *TINY, "--optimizer", "rmsprop"], "optimizer must be one of"),
        (["sample", "--model", "nope.npz"], "model file nope.npz does not exist"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, args, message):
    proc = run_cli(*args, "--out" if args[0] == "train" else "--seed",
                   "o" if args[0] == "train" else "1", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastvae: error: "), proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


def test_corrupted_model_and_wrong_width_data(trained, tmp_path):
    _, run, _ = trained
    blob = (run / "model.npz").read_bytes()
    (tmp_path / "bad.npz").write_bytes(blob[: len(blob) // 2])
    proc = run_cli("sample", "--model", "bad.npz", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("fastvae: error: ") and "bad.npz" in proc.stderr

    np.save(tmp_path / "narrow.npy", np.zeros((10, 3), np.float32))
    proc = run_cli("reconstruct", "--model", run / "model.npz", "--data", "narrow.npy",
                   cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "3 features per sample but the model was trained on 784" in proc.stderr


def test_bad_data_for_bernoulli_is_explained(tmp_path):
    np.save(tmp_path / "pixels.npy", np.full((50, 4), 255.0, np.float32))
    proc = run_cli("train", "--data", "pixels.npy", "--quiet", "--out", "o",
                   cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "must lie in [0, 1] for the Bernoulli likelihood" in proc.stderr


def test_argparse_errors_exit_2(tmp_path):
    proc = run_cli("train", "--epochs", "many", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "invalid int value" in proc.stderr
    proc = run_cli(cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "COMMAND" in proc.stderr


def test_model_family_options(tmp_path):
    run_cli("train", *TINY, "--model", "dae", "--out", "dae", cwd=tmp_path)
    proc = run_cli("eval", "--model", "dae/model.npz", "--n-samples", "50", "--json",
                   cwd=tmp_path)
    result = json.loads(proc.stdout)
    assert "reconstruction_log_likelihood" in result and "elbo" not in result
    proc = run_cli("eval", "--model", "dae/model.npz", "--k", "5", cwd=tmp_path,
                   check=False)
    assert proc.returncode == 2 and "--k needs a VAE" in proc.stderr
    assert fastvae.load(tmp_path / "dae/model.npz").corruption == 0.25

    run_cli("train", *TINY, "--conditional", "--binarize", "dynamic", "--out", "cvae",
            cwd=tmp_path)
    model = fastvae.load(tmp_path / "cvae/model.npz")
    assert model.n_conditions_ == 3 and model.dynamic_binarization  # 3 shape classes
    run_cli("sample", "--model", "cvae/model.npz", "--label", "2", "-n", "4", "--out",
            "two.png", cwd=tmp_path)
    assert_picture(tmp_path / "two.png", min_width=30, min_height=30)
    proc = run_cli("eval", "--model", "cvae/model.npz", "--n-samples", "40", "--k", "20",
                   "--json", cwd=tmp_path)
    result = json.loads(proc.stdout)
    assert result["k"] == 20 and result["log_likelihood"] > result["elbo"] - 5
    proc = run_cli("sample", "--model", "cvae/model.npz", "--label", "7", cwd=tmp_path,
                   check=False)
    assert proc.returncode == 2 and "--label must be in [0, 3)" in proc.stderr

    np.save(tmp_path / "g.npy", np.random.default_rng(0).standard_normal((200, 6)))
    run_cli("train", "--data", "g.npy", "--likelihood", "gaussian", "--sigma", "learned",
            "--epochs", "2", "--hidden", "8", "--latent-dim", "2", "--quiet", "--out", "g",
            cwd=tmp_path)
    assert fastvae.load(tmp_path / "g/model.npz").sigma_.shape == (6,)
    proc = run_cli("train", *TINY, "--sigma", "wide", "--out", "x", cwd=tmp_path,
                   check=False)
    assert proc.returncode == 2 and "expected a positive number or 'learned'" in proc.stderr


@pytest.mark.slow
def test_default_main_job_learns(tmp_path):
    """The README's main job: `fastvae train` with no arguments."""
    proc = run_cli("train", "--quiet", cwd=tmp_path)
    run = tmp_path / "fastvae-run"
    h = json.loads((run / "history.json").read_text())["history"]
    assert len(h["epoch"]) == 20
    # measured: about -80 nats after epoch 1 and -47 after epoch 20
    assert h["val_elbo"][-1] > h["val_elbo"][0] + 20, h["val_elbo"]
    assert h["val_elbo"][-1] > -60
    for name in ("samples.png", "reconstructions.png", "loss_curve.png"):
        assert_picture(run / name)
    assert "validation ELBO" in proc.stdout
