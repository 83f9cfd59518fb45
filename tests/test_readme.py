"""The README's examples, run as a user would type them: every command of
its command-line table and its MNIST command (in a fresh folder, with the
shared data where the README says ../shared/data), and its Python example.
They are the first thing a new user runs; this keeps them true."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import SHARED_DATA

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def _commands() -> list[str]:
    """The table's commands in order, then the fenced shell commands."""
    text = _section("Command line")
    table = re.findall(r"^\| `(fastvae [^`]+)` \|", text, flags=re.M)
    shell = re.findall(r"```bash\n(fastvae [^\n]+)\n```", text)
    return table + shell


def test_the_readme_has_the_commands_this_test_runs():
    commands = _commands()
    assert commands[0].startswith("fastvae train")
    names = {shlex.split(c)[1] for c in commands}
    assert {"train", "sample", "reconstruct", "traverse", "interpolate", "plot",
            "eval", "bench"} <= names  # fmt: skip
    assert any("--data mnist" in c for c in commands)


def test_the_readme_commands_run_as_typed(tmp_path):
    env = dict(
        os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    env.pop("FASTVAE_DEBUG", None)
    for command in _commands():
        argv = shlex.split(command)
        if "../shared/data" in argv:
            if not SHARED_DATA.is_dir():
                continue  # the README's MNIST run needs the shared data
            argv = [str(SHARED_DATA) if a == "../shared/data" else a for a in argv]
        proc = subprocess.run(
            [sys.executable, "-m", "fastvae", *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
        if "--out" in argv and argv[1] != "train":
            assert (tmp_path / argv[argv.index("--out") + 1]).is_file(), command
    assert (tmp_path / "fastvae-run" / "model.npz").is_file()
    assert (tmp_path / "fastvae-run" / "latent.png").is_file()  # from plot


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", _section("Python example"), re.S)[1]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    vae = namespace["vae"]
    assert len(vae.history_["val_elbo"]) == 10
    assert vae.history_["val_elbo"][-1] > vae.history_["val_elbo"][0]
    assert namespace["samples"].shape == (64, 784)
    assert (tmp_path / "shapes.npz").is_file()


def test_the_readme_tables_example_runs(tmp_path, monkeypatch):
    """The tables example on the shared diamonds table (about 20 s)."""
    table = SHARED_DATA / "tables" / "diamonds.csv"
    if not table.is_file():
        import pytest

        pytest.skip("../shared/data/tables/diamonds.csv is not available")
    block = _section("Tables: a DataFrame in, a synthetic DataFrame out")
    code = re.search(r"```python\n(.*?)```", block, re.S)[1]
    assert "../shared/data/tables/diamonds.csv" in code
    code = code.replace("../shared/data/tables/diamonds.csv", str(table))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    diamonds, synthetic = namespace["diamonds"], namespace["synthetic"]
    assert list(synthetic.columns) == list(diamonds.columns)
    assert (synthetic.dtypes == diamonds.dtypes).all()
    assert not namespace["filled"]["carat"].isna().any()
    assert (tmp_path / "diamonds.npz").is_file()


def test_the_readme_counts_example_runs(tmp_path, monkeypatch):
    block = _section("Single-cell counts: a sparse matrix in, a latent space out")
    code = re.search(r"```python\n(.*?)```", block, re.S)[1]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["latent"].shape == (5000, 10)
    elbo, log_px = namespace["elbo"], namespace["log_px"]
    assert np.isfinite(elbo) and elbo < 0
    assert elbo <= log_px + 1.0  # the ELBO bounds log p(x) (up to noise)
