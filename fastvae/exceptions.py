"""Every public error class of fastvae, importable from one place.

Each subclasses the built-in exception a caller would already catch
(``ValueError`` for bad data or files, ``OSError`` for a failed download), so
code written against the built-ins keeps working.
"""

__all__ = [
    "DataError",
    "DownloadError",
    "ModelFileError",
    "NotFittedError",
    "RemoteRankError",
]


class NotFittedError(ValueError, AttributeError):
    """A method needs a fitted model (call fit, or fastvae.load)."""


class DataError(ValueError):
    """A data file is missing pieces, corrupted, or not what it claims to be."""


class DownloadError(OSError):
    """No mirror delivered the file (offline, moved, or refused)."""


class ModelFileError(ValueError):
    """A model or checkpoint file is missing parts, truncated, corrupted, of
    an unsupported version, or not a fastvae file."""


class RemoteRankError(RuntimeError):
    """Raised by fit on the other ranks when one rank's fit failed before
    training (its message names that rank and gives its error)."""
