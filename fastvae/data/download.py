"""Fetching published dataset files: mirrors, checksums, atomic writes.

fastvae.data calls this when a dataset's files are missing and the user
asked for a download (``download=True``, ``--download``). A file is accepted
only when its MD5 matches the published checksum, and it is written
atomically, so an interrupted download never leaves a partial file that a
later run would trust.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from fastvae._atomic import write_atomic
from fastvae.exceptions import DataError, DownloadError

__all__ = ["MIRRORS", "DownloadError", "fetch"]

# Where the published files are, in the order tried. FASTVAE_DATA_URL, when
# set, replaces them all (a local mirror, or a test server).
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "binarized-mnist": (
        "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
    ),
}
# Seconds to wait for a server before trying the next mirror.
TIMEOUT = 30


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def fetch(dataset: str, filename: str, folder, md5: str) -> Path:
    """Download `filename` of `dataset` into `folder` and check its MD5.

    Parameters
    ----------
    dataset : {"mnist", "fashion-mnist", "binarized-mnist"}
    filename : str
        Name of the file on the mirrors and on disk.
    folder : str or path-like
        Created if missing.
    md5 : str
        The published checksum of the file.

    Returns
    -------
    Path
        Where the verified file now is.

    Raises
    ------
    DownloadError
        If no mirror could be reached or served the file (the message lists
        each mirror's error and says where to put the file by hand).
    fastvae.data.DataError
        If every file a mirror served failed the checksum.
    """
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    override = os.environ.get("FASTVAE_DATA_URL")
    bases = (override.rstrip("/") + "/",) if override else MIRRORS[dataset]
    failures = []
    for base in bases:
        url = base + filename
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
                blob = response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            failures.append(f"{url}: {reason}")
            continue
        actual = _md5(blob)
        if actual != md5:
            failures.append(f"{url}: checksum {actual}, expected {md5}")
            continue
        path = folder / filename
        write_atomic(path, lambda f, b=blob: f.write(b))
        return path
    message = (
        f"could not download {filename} of {dataset}: "
        + "; ".join(failures)
        + f". If this machine is offline, put the file in {folder} yourself."
    )
    if failures and all("checksum" in f for f in failures):
        raise DataError(message)
    raise DownloadError(message)
