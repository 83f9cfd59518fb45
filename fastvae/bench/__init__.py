"""Benchmarks: fastvae's training step against the same model written in
NumPy (and PyTorch and JAX when installed). ``fastvae bench`` and
``python benchmarks/run.py`` run :func:`fastvae.bench.harness.main`."""
