"""The ``fastvae`` command line, run as a user would: in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

import fastvae
from fastvae import data
from fastvae.cli.run_lock import RunLock

REPO = Path(__file__).resolve().parent.parent
TINY = [
    "--n-samples",
    "600",
    "--epochs",
    "2",
    "--hidden",
    "32",
    "--latent-dim",
    "4",
    "--batch-size",
    "64",
    "--quiet",
]


def run_cli(*args, cwd, check=True):
    env = dict(
        os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    env.pop("FASTVAE_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "fastvae", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
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
    for name in (
        "model.npz",
        "history.json",
        "loss_curve.png",
        "samples.png",
        "reconstructions.png",
    ):
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
    for key in (
        "epoch",
        "loss",
        "reconstruction",
        "kl",
        "elbo",
        "val_elbo",
        "seconds",
        "samples_per_second",
    ):
        assert len(h[key]) == 2, key
    assert h["epoch"] == [1, 2]
    assert all(v is not None and v < 0 for v in h["val_elbo"])
    assert record["data"] == {
        "name": "shapes",
        "n_train": 540,
        "n_validation": 60,
        "n_features": 784,
    }
    assert record["settings"]["latent_dim"] == 4 and record["settings"]["hidden"] == [
        32
    ]


def test_progress_bar_shows_epoch_losses_rate_and_eta(tmp_path):
    tiny = [a for a in TINY if a != "--quiet"]
    proc = run_cli("train", *tiny, "--out", "run", cwd=tmp_path)
    states = proc.stderr.replace("\r", "\n").splitlines()
    # one bar over both epochs (540 rows each): counts in samples, the rate in
    # samples/s, elapsed<remaining for the whole fit, the window means of the loss
    # and its two terms in nats per sample
    final = [line for line in states if line.startswith("epoch 2/2: 100%")]
    assert final, proc.stderr
    assert re.search(
        r"\| 1\.08k/1\.08k \[\d\d:\d\d<00:00, +[\d.]+k?sample/s, "
        r"loss=[\d.]+, recon=[\d.]+, kl=[\d.]+\]",
        final[-1],
    ), final[-1]
    # (whether an "epoch 1/2" state is drawn depends on timing: tqdm redraws at
    # most every 0.2 s, and a tiny epoch can end sooner)


def test_train_writes_metrics_lines_and_run_spec(trained):
    """metrics.jsonl: one line per epoch with the documented fields, the same
    numbers as history.json; run.json: where the data came from."""
    _, run, _ = trained
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert [list(r) for r in records] == [
        [
            "epoch",
            "step",
            "loss",
            "reconstruction",
            "kl",
            "elbo",
            "val_elbo",
            "active_units",
            "lr",
            "seconds",
            "samples_per_second",
            "elapsed",
        ]
    ] * 2
    h = json.loads((run / "history.json").read_text())["history"]
    assert [r["epoch"] for r in records] == [1, 2]
    assert [r["step"] for r in records] == [9, 18]  # 540 rows in batches of 64
    for key in ("loss", "reconstruction", "kl", "elbo", "val_elbo", "seconds"):
        assert [r[key] for r in records] == pytest.approx(h[key]), key
    assert 0 < records[0]["elapsed"] < records[1]["elapsed"]
    spec = json.loads((run / "run.json").read_text())
    assert spec["model"] == "vae" and spec["conditional"] is False
    assert spec["data"] == {
        "source": "shapes",
        "data_dir": None,
        "split": "train",
        "n_samples": 600,
        "validation": 0.1,
        "split_seed": 0,
        "name": "shapes",
        "n_train": 540,
        "n_validation": 60,
        "n_features": 784,
        "image_shape": [28, 28],
        "n_classes": 3,
    }


def _cell(png, top, left, r, c, zoom=2):
    """Grid cell (r, c) of a 28x28 picture, one value per image pixel."""
    y, x = top + r * 29 * zoom, left + c * 29 * zoom
    return png[y : y + 28 * zoom : zoom, x : x + 28 * zoom : zoom, 0].reshape(-1)


def test_traverse_around_zero(trained):
    folder, run, _ = trained
    proc = run_cli(
        "traverse", "--model", run / "model.npz", "--out", "t0.png", cwd=folder
    )
    assert (
        "4 latent dimensions (the first 0, 1, 2, 3) x 9 values from -3 to +3"
        in proc.stdout
    )
    png = imread(folder / "t0.png")
    # bands: 4 + 64 (row labels) left, 4 + 22 (title) + 14 (column labels) top,
    # 4 right and below; 4 rows and 9 columns of 28x28 images at 2x, 1-pixel gaps
    top, left = 40, 68
    assert png.shape[:2] == (top + 2 * (4 * 29 - 1) + 4, left + 2 * (9 * 29 - 1) + 4)
    assert png[..., :3].std() > 0.05
    model = fastvae.load(run / "model.npz")
    values = np.linspace(-3, 3, 9)
    for r, c in ((0, 0), (2, 4), (3, 8)):
        z = np.zeros((1, 4), np.float32)
        z[0, r] = values[c]
        np.testing.assert_allclose(
            _cell(png, top, left, r, c), model.decode(z)[0], atol=2.5 / 255
        )


def test_traverse_around_a_data_row_ranks_dimensions_by_kl(trained):
    folder, run, _ = trained
    model = fastvae.load(run / "model.npz")
    test = data.load_dataset("shapes", split="test", n_samples=300)
    mu, logvar = model.encode(test.X)
    kl = np.mean(0.5 * (mu**2 + np.exp(logvar) - 1 - logvar), axis=0)
    order = ", ".join(str(d) for d in np.argsort(-kl))
    proc = run_cli(
        "traverse",
        "--model",
        run / "model.npz",
        "--data",
        "shapes",
        "--n-samples",
        "300",
        "--index",
        "7",
        "--out",
        "t1.png",
        cwd=folder,
    )
    assert f"the 4 with the largest KL on the data, {order})" in proc.stdout
    assert "around the posterior mean of shapes row 7" in proc.stdout
    assert imread(folder / "t1.png").shape[:2] == (274, 592)
    proc = run_cli(
        "traverse",
        "--model",
        run / "model.npz",
        "--data",
        "shapes",
        "--n-samples",
        "300",
        "--index",
        "7",
        "--dims",
        "3",
        "1",
        "--steps",
        "9",
        "--range",
        "2",
        "--out",
        "t2.png",
        cwd=folder,
    )
    png = imread(folder / "t2.png")
    assert png.shape[:2] == (40 + 2 * (2 * 29 - 1) + 4, 592)
    # the middle column (offset 0) is the reconstruction of row 7
    for r in range(2):
        np.testing.assert_allclose(
            _cell(png, 40, 68, r, 4), model.reconstruct(test.X[7:8])[0], atol=2.5 / 255
        )


def test_interpolate(trained):
    folder, run, _ = trained
    model = fastvae.load(run / "model.npz")
    test = data.load_dataset("shapes", split="test", n_samples=100)
    pictures = {}
    for name, extra in (("lin.png", []), ("slerp.png", ["--slerp"])):
        proc = run_cli(
            "interpolate",
            "--model",
            run / "model.npz",
            "--n-samples",
            "100",
            "--from",
            "3",
            "--to",
            "42",
            *extra,
            "--out",
            name,
            cwd=folder,
        )
        assert "row 3 -> row 42, 10" in proc.stdout
        png = imread(folder / name)
        # one row: the two originals and 10 decoded steps; title and column labels
        assert png.shape[:2] == (40 + 56 + 4, 4 + 2 * (12 * 29 - 1) + 4)
        assert png[..., :3].std() > 0.05
        np.testing.assert_allclose(_cell(png, 40, 4, 0, 0), test.X[3], atol=2.5 / 255)
        np.testing.assert_allclose(_cell(png, 40, 4, 0, 11), test.X[42], atol=2.5 / 255)
        np.testing.assert_allclose(
            _cell(png, 40, 4, 0, 1), model.reconstruct(test.X[3:4])[0], atol=2.5 / 255
        )
        np.testing.assert_allclose(
            _cell(png, 40, 4, 0, 10),
            model.reconstruct(test.X[42:43])[0],
            atol=2.5 / 255,
        )
        pictures[name] = png
    z = model.transform(test.X[[3, 42]])
    mid = (5 * z[0] + 4 * z[1]) / 9  # t = 4/9, the 5th step
    np.testing.assert_allclose(
        _cell(pictures["lin.png"], 40, 4, 0, 5),
        model.decode(mid[None])[0],
        atol=2.5 / 255,
    )
    assert np.abs(pictures["lin.png"] - pictures["slerp.png"]).max() > 0.05


def test_plot_a_finished_run(trained, tmp_path):
    folder, run, _ = trained
    proc = run_cli("plot", "--run", run, "--out", tmp_path, cwd=folder)
    assert "2 epochs from" in proc.stdout and "history.json" in proc.stdout
    assert "60 held-out rows, first two principal components" in proc.stdout
    assert imread(tmp_path / "loss_curve.png").shape[:2] == (560, 700)
    assert imread(tmp_path / "latent.png").shape[:2] == (520, 600)
    for name in ("loss_curve.png", "latent.png"):
        assert_picture(tmp_path / name)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["latent.png", "loss_curve.png"]


def test_plot_a_run_in_progress_and_one_without_labels(trained, tmp_path):
    """While training runs there is no history.json or model yet: plot draws
    the curves from metrics.jsonl and says why there is no scatter."""
    _, run, _ = trained
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("run.json", "metrics.jsonl"):
        (partial / name).write_bytes((run / name).read_bytes())
    # a run folder whose lock is held by a training process
    with RunLock(partial):
        proc = run_cli("plot", "--run", "partial", cwd=tmp_path)
    assert f"metrics.jsonl (training is still running: process {os.getpid()})" in (
        proc.stdout
    )
    assert "no latent scatter: partial/model.npz does not exist yet" in proc.stdout
    # no process holds it: training was interrupted (or killed)
    proc = run_cli("plot", "--run", "partial", cwd=tmp_path)
    assert "metrics.jsonl (training stopped before its end)" in proc.stdout
    assert_picture(partial / "loss_curve.png")
    assert not (partial / "latent.png").exists()

    np.save(tmp_path / "points.npy", np.random.default_rng(0).random((200, 16)))
    run_cli(
        "train",
        "--data",
        "points.npy",
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--latent-dim",
        "2",
        "--quiet",
        "--out",
        "points",
        cwd=tmp_path,
    )
    proc = run_cli("plot", "--run", "points", cwd=tmp_path)
    assert "no latent scatter: the run's data (points) has no labels" in proc.stdout
    assert_picture(tmp_path / "points" / "loss_curve.png")


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
    run_cli(
        "sample",
        "--model",
        model_path,
        "-n",
        "9",
        "--seed",
        "3",
        "--out",
        "s.png",
        cwd=folder,
    )
    assert_picture(folder / "s.png", min_width=60, min_height=60)
    run_cli(
        "reconstruct",
        "--model",
        model_path,
        "--n-samples",
        "100",
        "-n",
        "8",
        "--out",
        "r.png",
        cwd=folder,
    )
    assert_picture(folder / "r.png", min_width=60, min_height=40)
    proc = run_cli(
        "eval", "--model", model_path, "--n-samples", "200", "--json", cwd=folder
    )
    result = json.loads(proc.stdout)
    model = fastvae.load(model_path)
    test_shapes = data.load_dataset("shapes", split="test", n_samples=200)
    assert result["n_samples"] == 200 and result["split"] == "test"
    assert result["elbo"] == pytest.approx(model.score(test_shapes.X), rel=1e-6)


def test_train_on_a_users_npy_file_without_images(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "points.npy", rng.random((300, 5)).astype(np.float32))
    proc = run_cli(
        "train",
        "--data",
        "points.npy",
        "--epochs",
        "2",
        "--hidden",
        "8",
        "--latent-dim",
        "2",
        "--likelihood",
        "gaussian",
        "--quiet",
        "--out",
        "out",
        cwd=tmp_path,
    )
    assert "not images" in proc.stdout
    assert (tmp_path / "out" / "model.npz").is_file()
    assert (tmp_path / "out" / "loss_curve.png").is_file()
    assert not (tmp_path / "out" / "samples.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "missing.npy"], "missing.npy not found"),
        (["train", "--data", "cifar"], "unknown dataset 'cifar'"),
        (["train", *TINY, "--latent-dim", "0"], "--latent-dim must be >= 1"),
        (
            ["train", *TINY, "--likelihood", "laplace"],
            "argument --likelihood: invalid choice: 'laplace'",
        ),
        (["train", *TINY, "--likelihood", "poisson"], "poisson needs count data"),
        (
            ["train", *TINY, "--optimizer", "rmsprop"],
            "argument --optimizer: invalid choice: 'rmsprop'",
        ),
        (["sample", "--model", "nope.npz"], "model file nope.npz does not exist"),
        (["traverse", "--model", "nope.npz"], "model file nope.npz does not exist"),
        (["plot", "--run", "nowhere"], "run folder nowhere does not exist"),
        (["plot", "--run", "."], "holds no history.json or metrics.jsonl"),
        (["train", "--steps", "3"], "unrecognized arguments: --steps 3"),
        (
            ["traverse", "--model", "m.npz", "--steps", "1"],
            "argument --steps: expected an integer >= 2, got 1",
        ),
        (
            ["traverse", "--model", "m.npz", "--range", "0"],
            "argument --range: expected a number > 0, got '0'",
        ),
        (
            ["interpolate", "--model", "m.npz", "--from", "1"],
            "the following arguments are required: --to",
        ),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, args, message):
    proc = run_cli(
        *args,
        *(["--out", "o"] if args[0] in ("train", "traverse") else []),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastvae: error: "), proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["traverse", "--index", "3"], "--index needs --data"),
        (
            ["traverse", "--dims", "1", "4"],
            "--dims 4 is out of range: the model has 4 latent dimensions, 0 to 3",
        ),
        (
            ["traverse", "--data", "shapes", "--n-samples", "50", "--index", "50"],
            "--index 50 is out of range: shapes (test) has 50 rows, 0 to 49",
        ),
        (["traverse", "--label", "1"], "--label needs a conditional model"),
        (
            ["interpolate", "--n-samples", "20", "--from", "-1", "--to", "3"],
            "--from -1 is out of range: shapes (test) has 20 rows, 0 to 19",
        ),
        (
            ["interpolate", "--n-samples", "20", "--from", "0", "--to", "20"],
            "--to 20 is out of range",
        ),
        (
            ["interpolate", "--data", "missing.npy", "--from", "0", "--to", "1"],
            "missing.npy not found",
        ),
        (
            ["interpolate", "--split", "valid", "--from", "0", "--to", "1"],
            "split must be one of",
        ),
        (
            ["traverse", "--out", "no/such/folder/t.png"],
            "folder no/such/folder does not exist",
        ),
    ],
)
def test_latent_picture_errors_are_one_line_and_exit_2(trained, args, message):
    folder, run, _ = trained
    proc = run_cli(
        args[0], "--model", run / "model.npz", *args[1:], cwd=folder, check=False
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastvae: error: "), proc.stderr
    assert message in lines[0]


def test_corrupted_model_and_wrong_width_data(trained, tmp_path):
    _, run, _ = trained
    blob = (run / "model.npz").read_bytes()
    (tmp_path / "bad.npz").write_bytes(blob[: len(blob) // 2])
    proc = run_cli("sample", "--model", "bad.npz", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("fastvae: error: ") and "bad.npz" in proc.stderr

    np.save(tmp_path / "narrow.npy", np.zeros((10, 3), np.float32))
    proc = run_cli(
        "reconstruct",
        "--model",
        run / "model.npz",
        "--data",
        "narrow.npy",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "3 features per sample but the model was trained on 784" in proc.stderr


def test_bad_data_for_bernoulli_is_explained(tmp_path):
    np.save(tmp_path / "pixels.npy", np.full((50, 4), 255.0, np.float32))
    proc = run_cli(
        "train",
        "--data",
        "pixels.npy",
        "--quiet",
        "--out",
        "o",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        "has values in [255, 255] but --likelihood bernoulli needs values in [0, 1]; "
        "they look like 8-bit pixel values: pass --scale 255" in proc.stderr
    )


def test_argparse_errors_exit_2(tmp_path):
    proc = run_cli("train", "--epochs", "many", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "invalid int value" in proc.stderr
    proc = run_cli(cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "COMMAND" in proc.stderr


def test_model_family_options(tmp_path):
    run_cli("train", *TINY, "--model", "dae", "--out", "dae", cwd=tmp_path)
    proc = run_cli(
        "eval", "--model", "dae/model.npz", "--n-samples", "50", "--json", cwd=tmp_path
    )
    result = json.loads(proc.stdout)
    assert "reconstruction_log_likelihood" in result and "elbo" not in result
    proc = run_cli(
        "eval", "--model", "dae/model.npz", "--k", "5", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2 and "--k needs a VAE" in proc.stderr
    proc = run_cli(
        "traverse",
        "--model",
        "dae/model.npz",
        "--data",
        "shapes",
        "--n-samples",
        "50",
        "--out",
        "dt.png",
        cwd=tmp_path,
    )
    assert "largest var on the data" in proc.stdout  # an autoencoder has no KL
    assert_picture(tmp_path / "dt.png")
    assert fastvae.load(tmp_path / "dae/model.npz").corruption == 0.25

    run_cli(
        "train",
        *TINY,
        "--conditional",
        "--binarize",
        "dynamic",
        "--out",
        "cvae",
        cwd=tmp_path,
    )
    model = fastvae.load(tmp_path / "cvae/model.npz")
    assert model.n_conditions_ == 3 and model.dynamic_binarization  # 3 shape classes
    run_cli(
        "sample",
        "--model",
        "cvae/model.npz",
        "--label",
        "2",
        "-n",
        "4",
        "--out",
        "two.png",
        cwd=tmp_path,
    )
    assert_picture(tmp_path / "two.png", min_width=30, min_height=30)
    proc = run_cli(
        "eval",
        "--model",
        "cvae/model.npz",
        "--n-samples",
        "40",
        "--k",
        "20",
        "--json",
        cwd=tmp_path,
    )
    result = json.loads(proc.stdout)
    assert result["k"] == 20 and result["log_likelihood"] > result["elbo"] - 5
    proc = run_cli(
        "sample", "--model", "cvae/model.npz", "--label", "7", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2 and "--label must be in [0, 3)" in proc.stderr
    proc = run_cli("traverse", "--model", "cvae/model.npz", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "the model is conditional: give --label" in proc.stderr
    proc = run_cli(
        "traverse",
        "--model",
        "cvae/model.npz",
        "--label",
        "1",
        "--dims",
        "0",
        "--out",
        "ct.png",
        cwd=tmp_path,
    )
    assert "around z = 0" in proc.stdout
    assert imread(tmp_path / "ct.png").shape[:2] == (40 + 56 + 4, 592)
    run_cli(
        "interpolate",
        "--model",
        "cvae/model.npz",
        "--n-samples",
        "20",
        "--from",
        "0",
        "--to",
        "1",
        "--steps",
        "3",
        "--out",
        "ci.png",
        cwd=tmp_path,
    )
    assert_picture(tmp_path / "ci.png")
    proc = run_cli("plot", "--run", "cvae", cwd=tmp_path)
    assert "wrote cvae/latent.png" in proc.stdout

    np.save(tmp_path / "g.npy", np.random.default_rng(0).standard_normal((200, 6)))
    run_cli(
        "train",
        "--data",
        "g.npy",
        "--likelihood",
        "gaussian",
        "--sigma",
        "learned",
        "--epochs",
        "2",
        "--hidden",
        "8",
        "--latent-dim",
        "2",
        "--quiet",
        "--out",
        "g",
        cwd=tmp_path,
    )
    assert fastvae.load(tmp_path / "g/model.npz").sigma_.shape == (6,)
    proc = run_cli(
        "train", *TINY, "--sigma", "wide", "--out", "x", cwd=tmp_path, check=False
    )
    assert (
        proc.returncode == 2
        and "expected a positive number or 'learned'" in proc.stderr
    )


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


def test_train_with_the_iwae_objective(tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.random((300, 10)) > 0.5).astype(np.float32)
    np.save(tmp_path / "bits.npy", X)
    common = ["--data", "bits.npy", "--epochs", "2", "--hidden", "8"]
    common += ["--latent-dim", "2", "--quiet"]
    run_cli(
        "train",
        *common,
        "--objective",
        "iwae",
        "--latent-samples",
        "4",
        "--out",
        "iw",
        cwd=tmp_path,
    )
    model = fastvae.load(tmp_path / "iw" / "model.npz")
    assert model.get_params()["objective"] == "iwae"
    assert model.get_params()["n_latent_samples"] == 4
    run_cli("train", *common, "--out", "plain", cwd=tmp_path)
    plain = fastvae.load(tmp_path / "plain" / "model.npz")
    assert plain.get_params()["objective"] == "elbo"
    assert not np.array_equal(model.params_, plain.params_)
    proc = run_cli(
        "train",
        *common,
        "--model",
        "ae",
        "--objective",
        "iwae",
        "--out",
        "ae",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert "--objective and --latent-samples need --model vae" in proc.stderr
    proc = run_cli(
        "train",
        *common,
        "--latent-samples",
        "0",
        "--out",
        "zero",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "--latent-samples" in proc.stderr
