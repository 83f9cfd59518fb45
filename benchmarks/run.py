"""Run fastvae's benchmarks: python benchmarks/run.py [--help]."""

import sys

from fastvae.bench.harness import main

if __name__ == "__main__":
    sys.exit(main())
