"""The ``fastvae`` command line: train, evaluate, sample and draw.

Layer: the top one. It imports the estimators and the data, and nothing
below imports it.
"""

from fastvae.cli.main import main

__all__ = ["main"]
