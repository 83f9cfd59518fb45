"""Data-parallel training over MPI (fastvae.models.distributed).

The first tests need no MPI: the pieces a data-parallel step is made of
(gradients on shards with their global row positions, apply_update,
validation rows evaluated in pieces). The others start real MPI jobs with
the mpiexec next to the Python running the tests (pip install mpi4py mpich)
and are skipped when mpi4py or mpiexec are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import _mpi_jobs
import numpy as np
import pytest

import fastvae
from fastvae._core.threads import blas_single_threaded
from fastvae.models import distributed
from fastvae.optim import kernel_settings

JOBS = Path(__file__).with_name("_mpi_jobs.py")
# Parameters after 2 epochs over R ranks vs one process on the same
# minibatches: the rows and the noise are the same, only the order of the
# gradient sums differs. Measured: at most 6e-8 (float32) and 1e-16
# (float64) on these configs; the bounds leave room for other BLAS kernels.
PARAM_ATOL = {np.float32: 2e-6, np.float64: 1e-12}


def _mpiexec():
    """The mpiexec beside this Python (the venv's, from pip install mpich),
    else on PATH; None when it or mpi4py is missing."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
if MPIEXEC is None and os.environ.get("FASTVAE_REQUIRE_MPI"):  # set by .ci/run
    raise RuntimeError("FASTVAE_REQUIRE_MPI is set but mpi4py or mpiexec is missing")
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None, reason="needs mpi4py and mpiexec (pip install mpi4py mpich)"
)


def run_mpi(n, *args, timeout=180, check=True):
    """Run `mpiexec -n n args...`; returns the CompletedProcess and seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [MPIEXEC, "-n", str(n), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise AssertionError(
            f"mpiexec failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc, seconds


def _network(model, batch):
    s, layout = model._fitted_settings, model._fitted_layout
    net = model._network(s, layout, batch, model.n_conditions_, training=True)
    net.set_optimizer(**kernel_settings(s.optimizer))
    return net


def _fitted(config, **overrides):
    (X, cond), _ = _mpi_jobs.make_data(config)
    model = _mpi_jobs.make_model(config, epochs=1, **overrides)
    return model.fit(X, condition=cond), X, cond


# -- the pieces of a data-parallel step (no MPI) ---------------------------------


@pytest.mark.parametrize("optimizer", ["adam", "momentum", "sgd"])
def test_gradients_then_apply_update_is_train_step_bitwise(optimizer):
    model, X, _ = _fitted("vae32", optimizer=optimizer)
    net = _network(model, 32)
    a = [model.params_.copy(), *(s.copy() for s in model._opt_state)]
    b = [x.copy() for x in a]
    ga, gb = np.zeros_like(a[0]), np.zeros_like(a[0])
    rows = np.arange(32, dtype=np.int64)
    with blas_single_threaded():
        for step in range(4):
            r = (rows * 7 + step) % X.shape[0]
            net.train_step(a[0], ga, a[1], a[2], X, r, 32, 5, step, 1.0, 2)
            status, _, _ = net.gradients(b[0], gb, X, r, 32, 5, step, 1.0, 2)
            assert status == 0
            net.apply_update(b[0], gb, b[1], b[2], step, 2)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_apply_update_checks_its_arguments():
    model, _, _ = _fitted("vae32")
    net = _network(model, 32)
    p = model.params_.copy()
    with pytest.raises(ValueError, match="must match params"):
        net.apply_update(p, p[:-1].copy(), p.copy(), p.copy(), 0)
    with pytest.raises(ValueError, match=r"step must be in \[0, 2\*\*64\)"):
        net.apply_update(p, p.copy(), p.copy(), p.copy(), -1)
    with pytest.raises(ValueError, match="params and grads overlap"):
        net.apply_update(p, p, p.copy(), p.copy(), 0)
    with pytest.raises(ValueError, match="n_threads must be in"):
        net.apply_update(p, p.copy(), p.copy(), p.copy(), 0, n_threads=0)
    with pytest.raises(TypeError, match="float32"):
        q = p.astype(np.float64)
        net.apply_update(q, q, q.copy(), q.copy(), 0)


@pytest.mark.parametrize("config", ["vae64", "noisy", "gauss", "iwae"])
def test_shard_gradients_sum_to_the_minibatch_gradient(config):
    """Shards with their global row offsets and the global batch size add up
    to the whole minibatch's gradient, with the same noise per row."""
    model, X, cond = _fitted(config)
    batch = 30
    net = _network(model, batch)
    p = model.params_
    rows = np.arange(batch, dtype=np.int64)[::-1].copy()
    whole = np.zeros_like(p)
    with blas_single_threaded():
        _, recon, kl = net.gradients(p, whole, X, rows, batch, 3, 9, 0.5, 1, cond=cond)
        want_rows = net.row_losses(batch)
        total = np.zeros_like(p)
        recon_sum = kl_sum = 0.0
        got_rows = []
        for lo, hi in ((0, 7), (7, 8), (8, 30)):
            part = np.zeros_like(p)
            _, r_, k_ = net.gradients(
                p,
                part,
                X,
                rows[lo:hi],
                hi - lo,
                3,
                9,
                0.5,
                1,
                row_offset=lo,
                global_batch=batch,
                cond=cond,
            )
            got_rows.append(net.row_losses(hi - lo))
            total += part
            recon_sum += r_
            kl_sum += k_
    rtol = 1e-5 if p.dtype == np.float32 else 1e-11
    np.testing.assert_allclose(np.concatenate(got_rows), want_rows, rtol=rtol)
    np.testing.assert_allclose([recon_sum, kl_sum], [recon, kl], rtol=rtol)
    scale = np.abs(whole).max()
    np.testing.assert_allclose(total, whole, rtol=0, atol=rtol * scale)


def test_validation_rows_in_pieces_are_those_of_the_whole():
    """Each rank evaluates its share of the validation rows: evaluation gives
    a row the same numbers (its noise is keyed by its values) in any piece."""
    model, X, _ = _fitted("vae32")
    whole = model._elbo_rows(X)
    pieces = np.concatenate(
        [model._elbo_rows(X[lo:hi]) for lo, hi in ((0, 83), (83, 84), (84, len(X)))]
    )
    np.testing.assert_array_equal(pieces, whole)


def test_launcher_detection():
    assert not distributed.launched_by_mpi({"HOME": "/root", "SLURM_PROCID": "0"})
    for name in (
        "PMI_RANK",
        "PMIX_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "MV2_COMM_WORLD_SIZE",
    ):
        assert distributed.launched_by_mpi({name: "3"})


def test_fit_rejects_a_comm_that_is_not_a_communicator():
    (X, _), _ = _mpi_jobs.make_data("vae32")
    with pytest.raises(TypeError, match="comm must be an mpi4py communicator"):
        _mpi_jobs.make_model("vae32").fit(X, comm=object())


def _cli_without_mpi4py(tmp_path, *args, env=()):
    """fastvae train in a subprocess whose mpi4py import fails, as on a
    machine without it."""
    fake = tmp_path / "fake"
    (fake / "mpi4py").mkdir(parents=True, exist_ok=True)
    (fake / "mpi4py" / "__init__.py").write_text(
        "raise ImportError('No module named mpi4py (test)')\n"
    )
    environ = {
        **os.environ,
        "PYTHONPATH": str(fake),
        "OMP_NUM_THREADS": "1",
        **dict(env),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fastvae",
            "train",
            "--n-samples",
            "100",
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--latent-dim",
            "2",
            "--quiet",
            "--out",
            tmp_path / "run",
            *args,
        ],
        env=environ,
        capture_output=True,
        text=True,
    )


def test_cli_under_a_launcher_without_mpi4py_says_what_to_install(tmp_path):
    proc = _cli_without_mpi4py(tmp_path, env={"PMI_RANK": "0", "PMI_SIZE": "2"})
    assert proc.returncode == 2, proc.stderr
    assert (
        "fastvae: error: started by an MPI launcher (PMI_RANK is set) but MPI "
        "training needs mpi4py" in proc.stderr
    )
    assert "pip install 'fastvae[mpi]'" in proc.stderr and "--mpi off" in proc.stderr
    proc = _cli_without_mpi4py(tmp_path, "--mpi", "on")
    assert proc.returncode == 2 and "--mpi on: MPI training needs mpi4py" in proc.stderr


def test_cli_without_mpi4py_trains_on_one_process(tmp_path):
    """No launcher (or --mpi off under one): mpi4py is never imported."""
    for env in ({}, {"PMI_RANK": "0", "PMI_SIZE": "2"}):
        extra = ("--mpi", "off", "--overwrite") if env else ()
        proc = _cli_without_mpi4py(tmp_path, *extra, env=env)
        assert proc.returncode == 0, proc.stderr
        assert "; 1 thread\n" in proc.stdout and "MPI" not in proc.stdout


# -- real MPI jobs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def single_process():
    """Every config trained on this process: the reference."""
    return {config: _mpi_jobs.fit(config) for config in _mpi_jobs.CONFIGS}


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_train_the_single_process_model(ranks, single_process, tmp_path):
    """R ranks, each computing its shard, Allreduce, update: the parameters
    one process reaches on the same minibatches, to float rounding, and
    bitwise the same on every rank. 3 ranks cut minibatches of 16 to 32 rows
    unevenly, and leave one rank without rows in minibatches of 2."""
    out = tmp_path / "equivalence.npz"
    run_mpi(ranks, sys.executable, JOBS, "equivalence", out)
    got = np.load(out)
    for config, ref in single_process.items():
        params = got[f"{config}.params"]
        assert bool(got[f"{config}.same_on_all_ranks"]), config
        assert int(got[f"{config}.t"]) == ref.t_
        diff = np.abs(params.astype(np.float64) - ref.params_).max()
        assert diff <= PARAM_ATOL[ref.params_.dtype.type], (config, diff)
        np.testing.assert_allclose(
            got[f"{config}.loss"], ref.history_["loss"], rtol=1e-6
        )
        np.testing.assert_allclose(
            got[f"{config}.val_elbo"],
            np.array(ref.history_["val_elbo"], dtype=float),
            rtol=1e-5,
        )


@needs_mpi
def test_an_exception_on_one_rank_aborts_the_job(tmp_path):
    proc, seconds = run_mpi(
        2,
        sys.executable,
        JOBS,
        "fail_in_training",
        tmp_path / "x",
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert (
        "fastvae: rank 1 of 2 failed: RuntimeError: injected failure at step 3"
        in proc.stderr
    )
    assert "MPI_Abort" in proc.stderr
    assert "fit returned" not in proc.stdout  # rank 0 did not train on alone


@needs_mpi
def test_an_anndata_trains_over_ranks_as_its_arrays(tmp_path):
    pytest.importorskip("anndata")
    out = tmp_path / "anndata.npz"
    run_mpi(2, sys.executable, JOBS, "anndata_fit", out, timeout=120)
    got = np.load(out)
    assert np.array_equal(got["adata"], got["arrays"])
    assert np.array_equal(got["backed"], got["arrays"])


def _reports(out, ranks):
    return [Path(f"{out}.rank{r}").read_text() for r in range(ranks)]


@needs_mpi
def test_a_callback_that_stops_one_rank_stops_all_at_that_step(tmp_path):
    out = tmp_path / "stop.npz"
    run_mpi(2, sys.executable, JOBS, "stop_on_one_rank", out, timeout=120)
    got = np.load(out)
    assert got["steps"].tolist() == [5, 5] and bool(got["same"])


@needs_mpi
def test_a_failure_before_training_raises_on_every_rank(tmp_path):
    run_mpi(
        2, sys.executable, JOBS, "fail_before_training", tmp_path / "x", timeout=120
    )
    rank0, rank1 = _reports(tmp_path / "x", 2)
    assert rank0.startswith(
        "RemoteRankError: fit failed on rank 1 of 2 before "
        "training: ValueError: X contains 1 NaN"
    ), rank0
    assert rank1.startswith("ValueError: X contains 1 NaN"), rank1


@needs_mpi
def test_settings_that_differ_between_ranks_raise_on_every_rank(tmp_path):
    run_mpi(2, sys.executable, JOBS, "settings_differ", tmp_path / "x", timeout=120)
    want = (
        "ValueError: the ranks' settings differ: epochs is 2 on rank 0 and 3 on rank 1"
    )
    assert all(r.startswith(want) for r in _reports(tmp_path / "x", 2))


@needs_mpi
def test_a_non_finite_loss_stops_every_rank_at_the_same_step(tmp_path):
    run_mpi(2, sys.executable, JOBS, "non_finite", tmp_path / "x", timeout=120)
    reports = _reports(tmp_path / "x", 2)
    assert all(r.startswith("FloatingPointError: the ") for r in reports), reports
    steps = {r.split(" at step ")[1].split()[0] for r in reports}
    assert len(steps) == 1, reports


@needs_mpi
def test_cli_train_over_two_ranks(tmp_path):
    """mpiexec -n 2 fastvae train: one report, one run folder, the model one
    process trains."""
    args = [
        "--n-samples",
        "300",
        "--epochs",
        "2",
        "--hidden",
        "32",
        "--latent-dim",
        "4",
        "--batch-size",
        "30",
        "--quiet",
    ]
    proc, _ = run_mpi(
        2, sys.executable, "-m", "fastvae", "train", *args, "--out", tmp_path / "mpi"
    )
    assert proc.stdout.count("fastvae: training a vae") == 1
    assert "2 MPI ranks x 1 thread, global batch 30" in proc.stdout
    assert proc.stdout.count("trained 2 epochs (18 steps)") == 1
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastvae",
            "train",
            *args,
            "--threads",
            "1",
            "--out",
            tmp_path / "one",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "; 1 thread\n" in single.stdout
    a = fastvae.load(tmp_path / "mpi" / "model.npz")
    b = fastvae.load(tmp_path / "one" / "model.npz")
    assert np.abs(a.params_ - b.params_).max() <= PARAM_ATOL[np.float32]
    lines = (tmp_path / "mpi" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # written by rank 0 alone


# -- checkpoints across rank counts ---------------------------------------------


@pytest.fixture(scope="module")
def straight_run():
    """The checkpointed runs' settings trained without interruption on one
    process."""
    (X, cond), val = _mpi_jobs.make_data(_mpi_jobs.RESUMED)
    model = _mpi_jobs.make_model(_mpi_jobs.RESUMED, epochs=_mpi_jobs.RESUMED_EPOCHS)
    return model.fit(X, condition=cond, validation_data=val)


def _assert_same_run(params, t, n_iter, val_elbo, straight):
    assert (t, n_iter) == (straight.t_, straight.n_iter_)
    diff = np.abs(params.astype(np.float64) - straight.params_).max()
    assert diff <= PARAM_ATOL[np.float32], diff
    np.testing.assert_allclose(val_elbo, straight.history_["val_elbo"], rtol=1e-5)


@needs_mpi
def test_a_two_rank_run_resumes_on_one_process(tmp_path, straight_run):
    """Rank 0 of a 2-rank run dies after a mid-epoch checkpoint (the job is
    aborted); fastvae.resume on one process finishes the run."""
    path = tmp_path / "run.ckpt.npz"
    proc, _ = run_mpi(2, sys.executable, JOBS, "crash_mid_run", path, check=False)
    assert proc.returncode != 0
    assert "rank 0 of 2 failed: RuntimeError: crash after checkpoint 3" in proc.stderr
    info = fastvae.checkpoint_info(path)
    assert (info["steps"], info["epoch_step"]) == (10, 2), info  # mid-epoch 2
    (X, cond), val = _mpi_jobs.make_data(_mpi_jobs.RESUMED)
    resumed = fastvae.resume(path, X, condition=cond, validation_data=val)
    _assert_same_run(
        resumed.params_,
        resumed.t_,
        resumed.n_iter_,
        resumed.history_["val_elbo"],
        straight_run,
    )
    assert fastvae.checkpoint_info(path)["finished"]


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_a_one_process_run_resumes_over_ranks(
    tmp_path, straight_run, ranks, monkeypatch
):
    from fastvae.models import checkpoint

    path = tmp_path / "run.ckpt.npz"
    write = _mpi_jobs.crash_after_checkpoints(
        checkpoint.Checkpointer, _mpi_jobs.CRASH_AFTER_WRITES
    )
    try:
        with pytest.raises(RuntimeError, match="crash after checkpoint 3"):
            _mpi_jobs.checkpointed_fit(None, path)
    finally:
        checkpoint.Checkpointer.write = write
    assert fastvae.checkpoint_info(path)["epoch_step"] == 2
    run_mpi(ranks, sys.executable, JOBS, "resume", path)
    got = np.load(str(path) + ".result.npz")
    _assert_same_run(
        got["params"], int(got["t"]), int(got["n_iter"]), got["val_elbo"], straight_run
    )
    info = fastvae.checkpoint_info(path)  # rank 0 went on checkpointing
    assert info["finished"] and info["steps"] == straight_run.t_


@needs_mpi
def test_cli_resume_on_two_ranks(tmp_path):
    """fastvae train for 1 epoch on one process, then mpiexec -n 2 fastvae
    train --resume to 2 epochs: the run one process trains for 2 epochs."""
    args = [
        "--n-samples",
        "300",
        "--hidden",
        "32",
        "--latent-dim",
        "4",
        "--batch-size",
        "30",
        "--quiet",
        "--threads",
        "1",
    ]
    for out, epochs in (("cut", "1"), ("whole", "2")):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "fastvae",
                "train",
                *args,
                "--epochs",
                epochs,
                "--out",
                tmp_path / out,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    proc, _ = run_mpi(
        2,
        sys.executable,
        "-m",
        "fastvae",
        "train",
        "--resume",
        tmp_path / "cut",
        "--epochs",
        "2",
        "--quiet",
    )
    assert "resuming" in proc.stdout and "2 MPI ranks" in proc.stdout
    a = fastvae.load(tmp_path / "cut" / "model.npz")
    b = fastvae.load(tmp_path / "whole" / "model.npz")
    assert (a.n_iter_, a.t_) == (b.n_iter_, b.t_) == (2, 18)
    assert np.abs(a.params_ - b.params_).max() <= PARAM_ATOL[np.float32]
    epochs = [
        json.loads(line)["epoch"]
        for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [1, 2]
