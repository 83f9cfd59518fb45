"""fastvae train / sample / impute on tables (CSV files with text columns)."""

import numpy as np
import pytest
from test_cli import run_cli

import fastvae

pd = pytest.importorskip("pandas")


def _write_table(path, n=1500, seed=0):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal(n)
    frame = pd.DataFrame(
        {
            "weight": np.round(np.exp(1 + 0.4 * f), 3),
            "kind": np.array(["oak", "pine", "elm"])[np.digitize(f, [-0.4, 0.4])],
            "count": rng.poisson(np.exp(1 + 0.5 * f)),
            "ok": np.where(f > 0, "yes", "no"),
        }
    )
    holes = rng.random(n) < 0.1
    frame.loc[holes, "weight"] = np.nan
    frame.to_csv(path, index=False)
    return frame


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tables")
    frame = _write_table(folder / "trees.csv")
    proc = run_cli(
        "train",
        "--data",
        "trees.csv",
        "--epochs",
        "3",
        "--hidden",
        "32",
        "--latent-dim",
        "4",
        "--quiet",
        "--out",
        "run",
        cwd=folder,
    )
    return folder, frame, proc


def test_train_on_a_csv_with_text_fits_a_table_model(table_run):
    folder, frame, proc = table_run
    assert "1350 training rows, 150 validation rows; 4 columns modelled" in proc.stdout
    assert "categorical: kind" in proc.stdout and "negbin: count" in proc.stdout
    run = folder / "run"
    for name in ("model.npz", "history.json", "metrics.jsonl", "loss_curve.png"):
        assert (run / name).is_file(), name
    model = fastvae.load(run / "model.npz")
    assert isinstance(model, fastvae.TabularVAE) and model.vae_.n_iter_ == 3
    synthetic = pd.read_csv(run / "synthetic.csv")
    assert list(synthetic.columns) == list(frame.columns) and len(synthetic) == 1000
    assert set(synthetic["kind"]) <= {"oak", "pine", "elm"}
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_sample_and_impute_write_tables(table_run):
    folder, frame, _ = table_run
    proc = run_cli(
        "sample", "--model", "run/model.npz", "-n", "200", "--out", "s.csv", cwd=folder
    )
    assert "wrote s.csv: 200 synthetic rows of 4 columns" in proc.stdout
    assert len(pd.read_csv(folder / "s.csv")) == 200
    proc = run_cli(
        "impute",
        "--model",
        "run/model.npz",
        "--data",
        "trees.csv",
        "--out",
        "filled.csv",
        cwd=folder,
    )
    n_gaps = int(frame["weight"].isna().sum())
    assert f"{n_gaps} missing values filled" in proc.stdout
    filled = pd.read_csv(folder / "filled.csv")
    assert not filled.isna().any().any()
    seen = frame["weight"].notna()
    np.testing.assert_allclose(filled.loc[seen, "weight"], frame.loc[seen, "weight"])


def test_table_commands_refuse_what_they_cannot_do(table_run, tmp_path):
    folder, _, _ = table_run
    proc = run_cli(
        "sample", "--model", "run/model.npz", "--out", "s.png", cwd=folder, check=False
    )
    assert proc.returncode == 2 and "--out must end in .csv or .parquet" in proc.stderr
    proc = run_cli(
        "train",
        "--data",
        "trees.csv",
        "--conditional",
        "--out",
        "c",
        cwd=folder,
        check=False,
    )
    assert proc.returncode == 2 and "--conditional is not available for tables" in (
        proc.stderr
    )
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((50, 4)))
    run_cli("train", "--data", "x.npy", "--epochs", "1", "--quiet", cwd=tmp_path)
    proc = run_cli(
        "impute",
        "--model",
        "fastvae-run/model.npz",
        "--data",
        str(folder / "trees.csv"),
        "--out",
        "f.csv",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "impute needs a model trained on a table" in (
        proc.stderr
    )


def test_tabular_flag_fits_a_table_model_on_a_numeric_csv(tmp_path):
    rng = np.random.default_rng(1)
    pd.DataFrame({"a": rng.standard_normal(300), "b": rng.integers(0, 3, 300)}).to_csv(
        tmp_path / "n.csv", index=False
    )
    run_cli(
        "train",
        "--data",
        "n.csv",
        "--tabular",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        "r",
        cwd=tmp_path,
    )
    model = fastvae.load(tmp_path / "r" / "model.npz")
    assert [c.kind for c in model.schema_.columns] == ["gaussian", "categorical"]


def test_a_table_run_resumes_to_the_uninterrupted_run(tmp_path):
    """--epochs 2, then --resume to 4 from another folder: the model of a
    straight 4-epoch run, bitwise; the table read again from its recorded
    path, and refused once it changed or went away."""
    frame = _write_table(tmp_path / "trees.csv", n=400)
    opts = ("--data", "trees.csv", "--hidden", "16", "--latent-dim", "3", "--quiet")
    run_cli("train", *opts, "--epochs", "4", "--out", "straight", cwd=tmp_path)
    run_cli("train", *opts, "--epochs", "2", "--out", "split", cwd=tmp_path)
    split = tmp_path / "split"
    assert fastvae.checkpoint_info(split)["estimator"] == "TabularVAE"
    run_cli("train", "--resume", split, "--epochs", "4", cwd=tmp_path.parent)
    a = fastvae.load(tmp_path / "straight" / "model.npz")
    b = fastvae.load(split / "model.npz")
    np.testing.assert_array_equal(a.vae_.params_, b.vae_.params_)
    assert a.history_["val_elbo"] == b.history_["val_elbo"]
    proc = run_cli("train", "--resume", "split", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "is finished" in proc.stderr
    frame.assign(weight=frame["weight"] * 1.1).to_csv(
        tmp_path / "trees.csv", index=False
    )
    proc = run_cli(
        "train", "--resume", "split", "--epochs", "5", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2 and "differs from the data" in proc.stderr
    assert "Traceback" not in proc.stderr
    (tmp_path / "trees.csv").unlink()
    proc = run_cli(
        "train", "--resume", "split", "--epochs", "5", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2 and "trees.csv: no such file" in proc.stderr
