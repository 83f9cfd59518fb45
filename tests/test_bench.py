"""The benchmark harness: FLOP counts, configuration names, a quick end-to-end run,
and the kernel micro-benchmarks computing what their NumPy twins compute."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastvae import _blas
from fastvae.bench.configs import CONFIGS, Config, parse_config
from fastvae.bench.harness import format_table

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


def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "r.json"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "fastvae", "bench", "--quick",
                           "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert [r["impl"] for r in report["results"]] == ["fastvae", "numpy", "torch", "jax"]
    for r in report["results"]:
        assert r["threads"] == 1 and r["config"] == "784-64/8/32"
        if r["impl"] in ("torch", "jax") and importlib.util.find_spec(r["impl"]) is None:
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
    assert {"dense forward", "dense backward", "reparameterization", "KL + gradient",
            "Bernoulli loss + grad", "Gaussian loss + grad", "Adam update"} <= kernels
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


def test_table_marks_failed_implementations():
    report = {
        "machine": {"date": "d", "cpu": "c", "cores": 2, "python": "3", "numpy": "2",
                    "scipy": "1", "fastvae": "0", "blas": ["b"]},
        "rounds": 1, "seconds_per_round": 1.0,
        "results": [
            {"impl": "fastvae", "config": "x", "threads": 1, "samples_per_second": 200.0,
             "peak_rss_mb": 50.0, "error": None, "flops_per_sample": 10,
             "sgemm_gflops": 1e-6, "own_gemm_gflops": None, "gemm_limit_gflops": 1e-6},
            {"impl": "numpy", "config": "x", "threads": 1, "samples_per_second": 100.0,
             "peak_rss_mb": 40.0, "error": None},
            {"impl": "torch", "config": "x", "threads": 1, "samples_per_second": None,
             "peak_rss_mb": None, "error": "not installed"},
        ],
    }
    table = format_table(report)
    row = table.splitlines()[2]
    assert row.startswith("| x | 1 | 200 | 100 | not installed | 2.00x | – | 200% |")


def _reference_case(seed=0):
    import numpy as np

    from fastvae.bench.numpy_vae import NumpyVAE

    config = Config((12,), 3, 9, "float64")
    model = NumpyVAE(config.encoder_dims, config.decoder_dims, dtype="float64", seed=seed)
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
        "import sys\nfrom fastvae.bench.harness import main\nsys.exit(main())\n")
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, str(scripts / "run.py"), "--quick", "--no-kernels",
         "--impls", "fastvae", "--threads", "1", "--json", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(out.read_text())["results"]
    assert result["error"] is None and result["samples_per_second"] > 0
