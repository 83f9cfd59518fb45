"""Data files: IDX arrays (gzipped or not) and reads verified against
published MD5 checksums, downloading a missing file when asked to."""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

from fastvae.data.download import fetch
from fastvae.exceptions import DataError

_IDX_TYPES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32"}
_IDX_TYPES.update({0x0D: "float32", 0x0E: "float64"})


def _gunzip(raw: bytes, path: Path) -> bytes:
    if path.suffix != ".gz" and raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a valid gzip file: {exc}") from exc


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise DataError(
            f"{path} is not an IDX file: expected the magic bytes 00 00, "
            f"got {data[:2].hex(' ') or 'an empty file'}"
        )
    dtype, ndim = data[2], data[3]
    if dtype != 0x08:
        kind = _IDX_TYPES.get(dtype, "unknown")
        raise DataError(
            f"{path}: only IDX type 0x08 (uint8) is supported, got 0x{dtype:02x} "
            f"({kind})"
        )
    if not 1 <= ndim <= 4:
        raise DataError(f"{path}: IDX dimension count must be 1 to 4, got {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path}: truncated IDX header, expected {header} bytes, got {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, ">i4", count=ndim, offset=4))
    if min(dims) < 0:
        raise DataError(f"{path}: IDX dimensions must be >= 0, got {dims}")
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise DataError(
            f"{path}: dimensions {dims} need {expected} bytes (header included), "
            f"got {len(data)} "
            f"({'truncated' if len(data) < expected else 'trailing data'})"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), optionally gzip-compressed.

    Parameters
    ----------
    path : str or path-like
        The file. Gzip is detected from the ``.gz`` suffix or the magic bytes.

    Returns
    -------
    ndarray of uint8
        Array with the dimensions stored in the header. It is a read-only view
        of the file's bytes (no copy); call ``.copy()`` to write into it.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    DataError
        If the gzip stream is invalid, the magic bytes are wrong, the element
        type is not uint8 (0x08), there are not 1 to 4 dimensions, or the data
        length differs from the product of the dimensions.

    Notes
    -----
    Layout: two zero bytes, a type byte, a byte with the number of
    dimensions, one big-endian int32 per dimension, then the data in C order.
    """
    path = Path(path)
    return _parse_idx(_gunzip(path.read_bytes(), path), path)


def _data_folder(name: str, data_dir) -> Path:
    """``data_dir`` or FASTVAE_DATA_DIR or ~/.cache/fastvae, or its ``name`` subfolder.

    Accepting a parent folder lets one setting serve all datasets, laid out
    as ``<root>/mnist``, ``<root>/fashion-mnist``, ``<root>/binarized-mnist``.
    """
    if data_dir is None:
        data_dir = os.environ.get("FASTVAE_DATA_DIR")
        if not data_dir:
            return Path("~/.cache/fastvae", name).expanduser()
    base = Path(data_dir).expanduser()
    return base / name if (base / name).is_dir() else base


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read_verified(
    folder,
    filename: str,
    digests,
    verify: bool,
    source: str,
    dataset: str,
    download: bool = False,
):
    """Bytes of ``folder/filename`` (a .gz) or its decompressed twin, checked.

    ``digests`` is (MD5 of the .gz, MD5 of the decompressed file): the
    original binarized MNIST is distributed uncompressed and many MNIST
    copies are kept decompressed, so both forms are accepted. With
    ``download``, a missing file is fetched from the dataset's mirrors (the
    form the mirrors publish: .gz for MNIST and Fashion-MNIST, plain .amat for
    binarized MNIST).
    """
    folder = Path(folder).expanduser()
    path, expected = folder / filename, digests[0]
    if not path.is_file():
        path, expected = folder / filename[:-3], digests[1]
    if not path.is_file() and download:
        plain = dataset == "binarized-mnist"
        name = filename[:-3] if plain else filename
        path = fetch(dataset, name, folder, digests[1] if plain else digests[0])
        expected = digests[1] if plain else digests[0]
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder / filename} not found (nor {filename[:-3]}). It comes from "
            f"{source}. Put the files in one folder and pass it as data_dir "
            "(--data-dir on the command line) or set FASTVAE_DATA_DIR, or let "
            "fastvae download them (download=True, --download)."
        )
    raw = path.read_bytes()
    if verify and (actual := _md5(raw)) != expected:
        raise DataError(
            f"{path} failed its checksum: expected MD5 {expected}, got {actual}. "
            "The file is corrupted or not the published release; download it "
            "again (or pass verify=False for a deliberately modified copy)."
        )
    return path, _gunzip(raw, path)
