"""The benchmark harness: FLOP counts, configuration names, a quick end-to-end run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert {r["impl"] for r in report["results"]} == {"fastvae", "numpy"}
    for r in report["results"]:
        assert r["threads"] == 1 and r["config"] == "784-64/8/32" and r["error"] is None
        assert r["samples_per_second"] > 0 and len(r["rounds"]) == 2
        assert r["peak_rss_mb"] > 10 and r["sgemm_gflops"] > 0
    assert "| 784-64/8/32 | 1 |" in proc.stdout and "fastvae / numpy" in proc.stdout
    assert report["machine"]["cores"] >= 1 and report["machine"]["blas"]


def test_table_marks_failed_implementations():
    report = {
        "machine": {"date": "d", "cpu": "c", "cores": 2, "python": "3", "numpy": "2",
                    "scipy": "1", "fastvae": "0", "blas": ["b"]},
        "rounds": 1, "seconds_per_round": 1.0,
        "results": [
            {"impl": "fastvae", "config": "x", "threads": 1, "samples_per_second": 200.0,
             "peak_rss_mb": 50.0, "error": None, "flops_per_sample": 10,
             "sgemm_gflops": 1e-6},
            {"impl": "numpy", "config": "x", "threads": 1, "samples_per_second": 100.0,
             "peak_rss_mb": 40.0, "error": None},
            {"impl": "torch", "config": "x", "threads": 1, "samples_per_second": None,
             "peak_rss_mb": None, "error": "not installed"},
        ],
    }
    table = format_table(report)
    row = table.splitlines()[2]
    assert row.startswith("| x | 1 | 200 | 100 | not installed | 2.00x | – | 200% |")
