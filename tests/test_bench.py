"""The benchmark harness: FLOP counts, configuration names, a quick end-to-end run,
and the kernel micro-benchmarks computing what their NumPy twins compute."""

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastvae._core import _blas
from fastvae.bench import harness
from fastvae.bench import scenarios as sc
from fastvae.bench.configs import CONFIGS, Config, parse_config
from fastvae.bench.report import format_table

REPO = Path(__file__).resolve().parent.parent


def test_flops_of_the_784_400_20_step():
    # forward + weight gradient of all four layers, input gradient of all but
    # the first: 784*400*2 + 400*40*3 + 20*400*3 + 400*784*3 multiply-adds
    assert Config((400,), 20, 128).flops_per_sample() == 2 * 1_640_000


def test_config_names_round_trip():
    for config in CONFIGS:
        assert parse_config(config.name) == config
    assert parse_config("784-512-256/32/256") == Config((512, 256), 32, 256)
    with pytest.raises(ValueError, match="not of the form"):
        parse_config("400/20/128")


def test_quick_run_writes_nothing_into_the_folder_it_runs_in(tmp_path):
    env = dict(
        os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "fastvae", "bench", "--quick", "--threads", "1",
         "--impls", "fastvae", "--no-kernels"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.iterdir()) == [] and "wrote" not in proc.stdout


def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "r.json"
    env = dict(
        os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastvae",
            "bench",
            "--quick",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert [r["impl"] for r in report["results"]] == [
        "fastvae",
        "numpy",
        "torch",
        "jax",
    ]
    for r in report["results"]:
        assert r["threads"] == 1 and r["config"] == "784-64/8/32"
        if (
            r["impl"] in ("torch", "jax")
            and importlib.util.find_spec(r["impl"]) is None
        ):
            assert r["error"] == "not installed" and r["samples_per_second"] is None
            continue
        assert r["error"] is None
        assert r["samples_per_second"] > 0 and len(r["rounds"]) == 2
        assert r["peak_rss_mb"] > 10 and r["sgemm_gflops"] > 0
        own = r["own_gemm_gflops"]
        assert (own > 0) if _blas.own_gemm_available() else own is None
        assert r["gemm_limit_gflops"] == max(r["sgemm_gflops"], own or 0)
    assert "| 784-64/8/32 | 1 |" in proc.stdout and "fastvae / numpy" in proc.stdout
    assert report["machine"]["cores"] >= 1 and report["machine"]["blas"]
    kernels = {k["kernel"] for k in report["kernels"]}
    assert {
        "dense forward",
        "dense backward",
        "reparameterization",
        "KL + gradient",
        "Bernoulli loss + grad",
        "Gaussian loss + grad",
        "Adam update",
    } <= kernels
    assert all(k["fastvae_us"] > 0 and k["numpy_us"] > 0 for k in report["kernels"])
    assert "| Adam update |" in proc.stdout


def test_kernel_benchmarks_compare_equal_computations():
    """Each micro-benchmark pair computes the same numbers (eps aside)."""
    from fastvae.bench import kernels

    for name, what, fv, npy in kernels._kernels(np.random.default_rng(1), 1, big=64):
        got, want = fv(), npy()
        if name == "reparameterization":  # different noise, same shapes
            assert [a.shape for a in got] == [a.shape for a in want], what
            continue
        if name == "Adam update":
            continue
        got = got if isinstance(got, tuple) else (got,)
        want = want if isinstance(want, tuple) else (want,)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=what)


@pytest.mark.skipif(not _blas.own_gemm_available(), reason="no own GEMM on this CPU")
def test_own_gemm_rate_at_the_default_thread_count(monkeypatch):
    """threads 0 is the harness's default thread count (`--threads 0`, and
    every scenario's default worker): the GEMM-rate worker beside that row
    must run, not refuse n_threads=0."""
    from fastvae.bench import workers

    monkeypatch.setattr(workers.OwnGemmRate, "SIZE", 64)
    rate = workers.OwnGemmRate(Config((8,), 2, 4), 0)
    assert rate.threads >= 1
    rate.multiply()


def test_table_marks_failed_implementations():
    report = {
        "machine": {
            "date": "d",
            "cpu": "c",
            "cores": 2,
            "python": "3",
            "numpy": "2",
            "scipy": "1",
            "fastvae": "0",
            "blas": ["b"],
        },
        "rounds": 1,
        "seconds_per_round": 1.0,
        "results": [
            {
                "impl": "fastvae",
                "config": "x",
                "threads": 1,
                "samples_per_second": 200.0,
                "peak_rss_mb": 50.0,
                "error": None,
                "flops_per_sample": 10,
                "sgemm_gflops": 1e-6,
                "own_gemm_gflops": None,
                "gemm_limit_gflops": 1e-6,
            },
            {
                "impl": "numpy",
                "config": "x",
                "threads": 1,
                "samples_per_second": 100.0,
                "peak_rss_mb": 40.0,
                "error": None,
            },
            {
                "impl": "torch",
                "config": "x",
                "threads": 1,
                "samples_per_second": None,
                "peak_rss_mb": None,
                "error": "not installed",
            },
        ],
    }
    table = format_table(report)
    row = table.splitlines()[2]
    assert row.startswith("| x | 1 | 200 | 100 | not installed | 2.00x | – | 200% |")


def _reference_case(seed=0):
    import numpy as np

    from fastvae.bench.numpy_vae import NumpyVAE

    config = Config((12,), 3, 9, "float64")
    model = NumpyVAE(
        config.encoder_dims, config.decoder_dims, dtype="float64", seed=seed
    )
    rng = np.random.default_rng(seed + 1)
    x = (rng.random((9, 784)) < 0.3).astype(np.float64)
    eps = rng.standard_normal((9, 3))
    loss, _ = model.loss_and_grads(x, eps)
    return config, model, x, eps, loss


def test_torch_step_computes_the_numpy_loss_and_gradients():
    torch = pytest.importorskip("torch")
    from fastvae.bench.torch_vae import TorchVAE

    config, model, x, eps, loss = _reference_case()
    tv = TorchVAE(config.encoder_dims, config.decoder_dims).double()
    tv.load_numpy_layers([(W, b) for W, b in model.params])
    got = tv.loss(torch.from_numpy(x), torch.from_numpy(eps))
    assert got.item() == pytest.approx(loss, rel=1e-12)
    got.backward()
    _, grads = model.loss_and_grads(x, eps)
    first = next(m for m in tv.encoder if isinstance(m, torch.nn.Linear))
    np_dw = grads[0][0]
    assert np.allclose(first.weight.grad.numpy().T, np_dw, rtol=1e-10, atol=1e-12)


def test_jax_step_computes_the_numpy_loss():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    from fastvae.bench.jax_vae import negative_elbo

    config, model, x, eps, loss = _reference_case()
    layers = [(jax.numpy.asarray(W), jax.numpy.asarray(b)) for W, b in model.params]
    got = negative_elbo(layers, x, eps, len(config.encoder_dims) - 1)
    assert float(got) == pytest.approx(loss, rel=1e-12)


def test_workers_use_the_fastvae_the_harness_imported(tmp_path):
    """Run from a folder holding another `fastvae` (a source tree beside an
    installed copy): the worker processes must not import that one."""
    shadow = tmp_path / "fastvae"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the shadowing copy')\n")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "run.py").write_text(
        "import sys\nfrom fastvae.bench.harness import main\nsys.exit(main())\n"
    )
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(scripts / "run.py"),
            "--quick",
            "--no-kernels",
            "--impls",
            "fastvae",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(out.read_text())["results"]
    assert result["error"] is None and result["samples_per_second"] > 0


# -- --isa, --busy, --scenarios -------------------------------------------------------

_ISA_VARS = {
    "FASTVAE_ISA",
    "OPENBLAS_CORETYPE",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "XLA_FLAGS",
}


def test_isa_env_avx2_sets_exactly_each_implementations_variables():
    base = {"PATH": "/bin", "XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    want = {
        "fastvae": {"FASTVAE_ISA": "avx2", "OPENBLAS_CORETYPE": "Haswell"},
        "torch": {
            "ATEN_CPU_CAPABILITY": "avx2",
            "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        },
        "jax": {"XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_cpu_max_isa=AVX2"},
        "numpy": {"OPENBLAS_CORETYPE": "Haswell"},
    }
    for impl, changes in want.items():
        env = sc.isa_env(impl, "avx2", base)
        assert env == {**base, **changes}, impl
    assert base == {"PATH": "/bin", "XLA_FLAGS": "--xla_dump_to=/tmp/x"}  # not mutated
    # no XLA_FLAGS of the user's: the flag alone
    assert sc.isa_env("jax", "avx2", {})["XLA_FLAGS"] == "--xla_cpu_max_isa=AVX2"


def test_isa_env_native_leaves_the_environment_alone():
    base = {"PATH": "/bin", "OPENBLAS_CORETYPE": "Zen", "XLA_FLAGS": "--a"}
    for impl in harness.IMPLS + ("sgemm", "owngemm"):
        assert sc.isa_env(impl, "native", base) == base
    with pytest.raises(ValueError, match="avx2"):
        sc.isa_env("fastvae", "avx512", base)


def test_workers_get_the_capped_environment(monkeypatch):
    seen = {}

    class FakePopen:
        def __init__(self, args, env, **kw):
            seen[args[3]] = env

    monkeypatch.setattr(harness.subprocess, "Popen", FakePopen)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    config = Config((8,), 2, 4)
    for impl in ("fastvae", "torch", "jax", "numpy"):
        harness.Worker(impl, config, 0, isa="avx2", wait=False)
    assert seen["fastvae"]["FASTVAE_ISA"] == "avx2"
    assert "FASTVAE_ISA" not in seen["torch"] and "ATEN_CPU_CAPABILITY" in seen["torch"]
    assert seen["jax"]["XLA_FLAGS"] == "--xla_cpu_max_isa=AVX2"
    assert seen["numpy"]["OPENBLAS_CORETYPE"] == "Haswell"
    # threads 0: the libraries' defaults, no thread variables set by the harness
    for impl, env in seen.items():
        assert env.get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS"), impl
    seen.clear()
    harness.Worker("fastvae", config, 1, isa="native", wait=False)
    assert seen["fastvae"]["OMP_NUM_THREADS"] == "1"
    # (XLA_FLAGS gets the one-thread flags of every 1-thread worker)
    assert all(
        seen["fastvae"].get(v) == os.environ.get(v) for v in _ISA_VARS - {"XLA_FLAGS"}
    )


def test_check_isa_flags_caps_that_did_not_take_effect():
    assert sc.check_isa("fastvae", "avx2", {"level": "avx2", "gemm": "blas"}) is None
    assert "avx512" in sc.check_isa("fastvae", "avx2", {"level": "avx512"})
    assert (
        sc.check_isa(
            "fastvae", "avx2", {"level": "avx2", "gemm": "own", "gemm_level": "avx2"}
        )
        is None
    )
    assert "GEMM" in sc.check_isa(
        "fastvae", "avx2", {"level": "avx2", "gemm": "own", "gemm_level": "avx512"}
    )
    assert sc.check_isa("torch", "avx2", {"cpu_capability": "AVX2"}) is None
    assert "AVX512" in sc.check_isa("torch", "avx2", {"cpu_capability": "AVX512"})
    assert "SkylakeX" in sc.check_isa("numpy", "avx2", {"openblas": ["SkylakeX"]})
    assert sc.check_isa("jax", "avx2", {"xla_flags": "--xla_cpu_max_isa=AVX2"}) is None
    assert sc.check_isa("fastvae", "native", {"level": "avx512"}) is None


def test_workers_report_the_cap_in_effect():
    config = Config((8,), 2, 4)
    for isa in ("native", "avx2"):
        w = harness.Worker("fastvae", config, 1, isa=isa)
        w.close()
        assert w.result.error is None and w.result.isa_error is None
        assert w.result.isa["cap"] == (None if isa == "native" else "avx2")
        assert w.result.threads_used == 1
    w = harness.Worker("numpy", config, 1, isa="avx2")
    w.close()
    assert w.result.isa["openblas_coretype"] == "Haswell"
    assert set(w.result.isa["openblas"]) <= {"Haswell"}


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie (not reaped) counts as running here: it must be waited for
    return False


def _ended(pid: int) -> bool:
    """Gone or a zombie: an orphan's new parent (init) reaps it, or not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


linux_only = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads /proc"
)


@linux_only
def test_busy_processes_run_burn_cpu_and_are_gone_after():
    import time

    with sc.BusyLoad(2) as load:
        pids = load.pids
        assert len(pids) == 2 and len(set(pids)) == 2
        ticks = [_cpu_ticks(p) for p in pids]
        time.sleep(0.5)
        assert all(_cpu_ticks(p) > t for p, t in zip(pids, ticks, strict=True))
    assert all(_gone(p) for p in pids)
    with sc.BusyLoad(0) as load:
        assert load.pids == []


@linux_only
def test_busy_processes_are_gone_when_the_measurement_raises():
    pids = []
    with pytest.raises(KeyboardInterrupt):
        with sc.BusyLoad(2) as load:
            pids = load.pids
            raise KeyboardInterrupt
    assert len(pids) == 2 and all(_gone(p) for p in pids)


class _FakeWorker:
    """Stands in for harness.Worker: records the busy processes it sees
    while measured, and raises in its second round if told to."""

    seen: list[int] = []

    def __init__(
        self, impl, config, threads, isa="native", label=None, wait=True, fail=False
    ):
        self.result = harness.Result(impl, config, threads, label=label)
        self.fail, self.rounds, self.killed = fail, 0, False

    alive = True

    def wait_ready(self):
        pass

    def measure(self, seconds):
        import subprocess as sp

        kids = sp.run(
            ["pgrep", "-f", "for _ in range"], capture_output=True, text=True
        ).stdout.split()
        _FakeWorker.seen.append(len(kids))
        self.rounds += 1
        if self.fail and self.rounds == 2:
            raise RuntimeError("measurement failed")
        self.result.rates.append(100.0)

    def close(self):
        pass

    def kill(self):
        self.killed = True


@linux_only
@pytest.mark.skipif(not shutil.which("pgrep"), reason="needs pgrep")
def test_scenario_runs_busy_processes_and_stops_them_on_errors(monkeypatch):
    def before():
        return set(
            subprocess.run(
                ["pgrep", "-f", "for _ in range"], capture_output=True, text=True
            ).stdout.split()
        )

    others = before()  # spinners of anything else running here
    _FakeWorker.seen = []
    monkeypatch.setattr(harness, "Worker", _FakeWorker)
    report = harness.run_scenario(
        sc.parse_scenario("busy2"),
        [Config((8,), 2, 4)],
        ["fastvae", "numpy"],
        rounds=2,
        seconds=0.0,
        log=lambda m: None,
    )
    assert report["busy"] == 2 and report["isa"] == "native"
    assert len(_FakeWorker.seen) == 6 and min(_FakeWorker.seen) >= 2 + len(others)
    assert before() <= others
    labels = [r["label"] for r in report["results"]]
    assert labels == ["fastvae", sc.FASTVAE_1T, "numpy"]

    made = []

    def failing(*a, **kw):
        made.append(_FakeWorker(*a, **kw, fail=True))
        return made[-1]

    monkeypatch.setattr(harness, "Worker", failing)
    with pytest.raises(RuntimeError, match="measurement failed"):
        harness.run_scenario(
            sc.parse_scenario("busy1"),
            [Config((8,), 2, 4)],
            ["fastvae"],
            rounds=3,
            seconds=0.0,
            log=lambda m: None,
        )
    assert before() <= others
    assert made and all(w.killed for w in made)


@linux_only
def test_spinners_end_when_the_harness_is_killed(tmp_path):
    """No orphans even after SIGKILL, where no finally runs."""
    import signal
    import time

    code = (
        "import sys, time\nfrom fastvae.bench.scenarios import BusyLoad\n"
        "b = BusyLoad(2).start()\nprint(*b.pids, flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and not any(_ended(p) for p in pids)
    # right away: the spinners may still be starting up (a race fixed once)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while not all(_ended(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_ended(p) for p in pids)


@linux_only
def test_sigterm_to_the_benchmark_stops_its_spinners(tmp_path):
    import signal
    import time

    code = (
        "import time\nfrom fastvae.bench import scenarios as sc\n"
        "sc.terminate_on_sigterm()\n"
        "with sc.BusyLoad(1) as b:\n"
        "    print(*b.pids, flush=True)\n    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    pids = [int(p) for p in proc.stdout.readline().split()]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    time.sleep(0.05)
    assert all(_gone(p) for p in pids)


def test_scenario_names_parse_and_bad_ones_are_rejected_clearly():
    got = sc.parse_scenarios("idle, avx2,busy1,busy12")
    assert [(s.name, s.isa, s.busy) for s in got] == [
        ("idle", "native", 0),
        ("avx2", "avx2", 0),
        ("busy1", "native", 1),
        ("busy12", "native", 12),
    ]
    for bad in ("busy", "busy0", "busy-1", "fast", "avx512", "idle,,busy1", ""):
        with pytest.raises(ValueError, match="scenario") as exc:
            sc.parse_scenarios(bad)
        assert "idle" in str(exc.value) or "twice" in str(exc.value)
    with pytest.raises(ValueError, match="twice"):
        sc.parse_scenarios("idle,idle")
    parser = argparse.ArgumentParser()
    harness.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--scenarios", "idle,bogus"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--busy", "-1"])


def test_cli_rejects_a_bad_scenario_with_a_clear_error():
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--scenarios",
            "idle,busyX",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown scenario 'busyX'" in proc.stderr and "busyN" in proc.stderr


def test_targets_are_evaluated_from_one_table():
    # every scenario's targets come from sc.TARGETS alone
    assert {t.scenario for t in sc.TARGETS} == {"idle", "avx2", "busy1", "busy2"}
    rates = {
        "784-400/20/128": {
            "fastvae": 1000.0,
            sc.FASTVAE_1T: 1100.0,
            "jax": 800.0,
            "torch": 400.0,
        }
    }
    checks = {c["target"]: c for c in sc.evaluate_targets("busy1", rates)}
    assert len(checks) == 2
    by_ratio = {c["ratio"]: c for c in checks.values()}
    assert by_ratio["fastvae/1t"]["status"] == "PASS"  # 0.909 >= 0.9
    assert by_ratio["fastvae/1t"]["value"] == pytest.approx(1000 / 1100)
    assert by_ratio["fastvae/jax"]["status"] == "PASS"  # 1.25 >= 1.2
    rates["784-400/20/128"]["jax"] = 1000.0
    st = {c["ratio"]: c["status"] for c in sc.evaluate_targets("busy2", rates)}
    assert st == {"fastvae/1t": "PASS", "fastvae/jax": "MISS"}  # 1.0 is not > 1.0
    st = {c["ratio"]: c["status"] for c in sc.evaluate_targets("busy1", rates)}
    assert st["fastvae/jax"] == "MISS"
    st = [c["status"] for c in sc.evaluate_targets("idle", rates)]
    assert st == ["PASS", "MISS"]  # 2.5x PyTorch, 1.0x JAX
    # avx2: three configurations; unmeasured ones are n/a, not MISS
    avx2 = sc.evaluate_targets("avx2", {"784-400/20/16": {"fastvae": 3.0, "jax": 1.0}})
    assert [c["status"] for c in avx2] == ["n/a", "PASS", "n/a"]
    assert sc.evaluate_targets("busy7", rates) == []
    text = sc.format_targets(avx2)
    assert "PASS" in text and "not measured" in text and "784-400/20/16" in text


def test_scenario_table_shows_rates_ratios_and_targets():
    cfg = "784-400/20/128"

    def row(label, rate, impl=None, threads=0):
        return {
            "impl": impl or label,
            "label": label,
            "config": cfg,
            "threads": threads,
            "threads_used": 2 if label == "fastvae" else None,
            "samples_per_second": rate,
            "error": None,
            "isa_error": None,
        }

    part = {
        "scenario": {"name": "idle", "isa": "native", "busy": 0},
        "isa": "native",
        "busy": 0,
        "rounds": 5,
        "seconds_per_round": 1.0,
        "load_average_start": [0.5, 0.5, 0.5],
        "results": [
            row("fastvae", 3000.0),
            row(sc.FASTVAE_1T, 2000.0, "fastvae", 1),
            row("torch", 1000.0),
            row("jax", 2000.0),
        ],
    }
    part["targets"] = sc.evaluate_targets("idle", harness.scenario_rates(part))
    text = harness.format_scenario(part)
    assert text.splitlines()[0].startswith("## Scenario idle: ISA native")
    assert (
        "| 784-400/20/128 | 3,000 | 2,000 | 1,000 | 2,000 | 1.50x | 3.00x | 1.50x |"
        in text
    )
    assert "fastvae (2 threads) samples/s" in text
    assert "PASS  idle: 784-400/20/128: fastvae default / PyTorch >= 2x" in text
    assert "PASS  idle: 784-400/20/128: fastvae default / JAX >= 1.3x" in text


def test_quick_scenarios_end_to_end(tmp_path):
    out = tmp_path / "s.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--scenarios",
            "avx2,busy1",
            "--quick",
            "--impls",
            "fastvae",
            "numpy",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    m = report["machine"]
    assert m["cores"] >= 1 and set(m["flags"]) >= {"avx2", "avx512f"}
    assert len(m["load_average"]) == 3
    (avx2, busy1) = report["scenarios"]
    assert (avx2["isa"], avx2["busy"], busy1["isa"], busy1["busy"]) == (
        "avx2",
        0,
        "native",
        1,
    )
    for part in (avx2, busy1):
        labels = [r["label"] for r in part["results"]]
        assert labels == ["fastvae", "fastvae-1t", "numpy"]
        assert all(r["samples_per_second"] > 0 for r in part["results"])
        assert all(t["status"] == "n/a" for t in part["targets"])  # tiny config only
    assert avx2["results"][0]["isa"]["cap"] == "avx2"
    assert busy1["results"][0]["isa"]["cap"] is None
    assert "## Scenario avx2: ISA avx2" in proc.stdout
    assert "## Scenario busy1: ISA native" in proc.stdout and "n/a" in proc.stdout


def test_isa_and_busy_options_of_a_single_run(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--quick",
            "--no-kernels",
            "--impls",
            "fastvae",
            "--threads",
            "1",
            "--isa",
            "avx2",
            "--busy",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert (report["isa"], report["busy"]) == ("avx2", 1)
    (r,) = report["results"]
    assert r["isa"]["cap"] == "avx2" and r["isa_error"] is None
    heading = "## ISA avx2 (every implementation capped), 1 busy process(es)"
    assert heading in proc.stdout
    assert "capped at AVX2. 1 busy process(es)" in proc.stdout


def test_bench_mpi_has_the_isa_and_busy_options():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_mpi.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--isa {native,avx2}" in proc.stdout and "--busy N" in proc.stdout
