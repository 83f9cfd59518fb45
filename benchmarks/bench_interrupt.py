"""How fast Ctrl-C stops fastvae: SIGINT to exit of `fastvae eval --k` and
of `fastvae train`, on a model of the default architecture.

    python benchmarks/bench_interrupt.py [--tries 3]

Each run starts the command, waits until it is computing, sends SIGINT and
times the exit (which should be status 130 within about a second).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time


def _time_sigint(args: list[str], cwd: str, wait: float) -> tuple[float, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastvae", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(wait)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    return time.monotonic() - start, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=3)
    tries = parser.parse_args().tries
    folder = tempfile.mkdtemp(prefix="fastvae-interrupt-")
    subprocess.run(
        [sys.executable, "-m", "fastvae", "train", "--n-samples", "2000",
         "--epochs", "2", "--quiet", "--out", "model"],
        cwd=folder, check=True, capture_output=True,
    )  # fmt: skip
    eval_k = ["eval", "--model", "model/model.npz", "--k", "1000000", "--quiet"]
    train = ["train", "--n-samples", "20000", "--epochs", "50", "--quiet"]
    jobs = {
        "eval --k 1000000": (eval_k, 5.0),
        "train (20000 shapes, 50 epochs)": (train, 6.0),
    }
    for name, (args, wait) in jobs.items():
        for i in range(tries):
            out = ["--out", f"run{i}"] if args[0] == "train" else []
            seconds, code = _time_sigint(args + out, folder, wait)
            print(f"{name}: SIGINT to exit {seconds:.2f} s, exit status {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
