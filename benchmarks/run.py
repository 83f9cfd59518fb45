"""Run fastvae's benchmarks: python benchmarks/run.py [--help]."""

import sys
from pathlib import Path

from fastvae.bench.harness import main

if __name__ == "__main__":
    # The repository's report, wherever this script is started from.
    sys.exit(main(report=str(Path(__file__).parent / "results" / "latest.json")))
