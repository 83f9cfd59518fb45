"""Model files: one .npz of plain arrays plus JSON metadata, never pickle.

Writes are atomic (temporary file in the same folder, fsync, rename), so a
crash leaves either the old file or the new one. Reads trust nothing: the
archive members, the JSON, every array's header (dtype, shape) and a SHA-256
of its bytes are checked before a model is built, and array headers are
checked before any array data is read, so a hostile file cannot make us
allocate what its header claims.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT_NAME = "fastvae-model"
FORMAT_VERSION = 1
META_KEY = "meta"
# A model's JSON is a few kB; anything far larger is not ours.
MAX_META_BYTES = 16 * 1024 * 1024


class ModelFileError(ValueError):
    """A model file is missing, truncated, corrupted or not a fastvae model."""


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).view(np.uint8)).hexdigest()


def write_atomic(path, write) -> None:
    """Create or replace the file `path` with what `write(f)` writes, atomically.

    The data goes to a temporary file in the same folder, is flushed to disk,
    and is renamed over `path`, so readers (and a crash) see either the old
    file or the complete new one, never a partial one.

    Parameters
    ----------
    path : str or os.PathLike
    write : callable
        Called with the temporary file opened for binary writing.

    Raises
    ------
    FileNotFoundError
        If the folder of `path` does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name in it")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist (for {path})")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_npz_atomic(path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as an uncompressed .npz to exactly `path`, atomically."""
    write_atomic(path, lambda f: np.savez(f, **arrays))


def save(path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Save named arrays and JSON-serialisable metadata as a model file."""
    meta = dict(meta)
    meta["format"] = FORMAT_NAME
    meta["format_version"] = FORMAT_VERSION
    meta["arrays"] = {
        name: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _sha256(a)}
        for name, a in arrays.items()
    }
    blob = json.dumps(meta, sort_keys=True).encode("utf-8")
    payload = {META_KEY: np.frombuffer(blob, dtype=np.uint8)}
    payload.update({name: np.ascontiguousarray(a) for name, a in arrays.items()})
    write_npz_atomic(path, payload)


def _read_member_header(zf: zipfile.ZipFile, name: str):
    """(shape, fortran_order, dtype) of one .npy member, without its data."""
    with zf.open(name + ".npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)
        raise ModelFileError(f"array {name!r} has unsupported .npy version {version}")


def load(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and verify a model file; returns (meta, arrays).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ModelFileError
        If the file is not a complete, intact fastvae model file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a model file")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            members = set(zf.namelist())
            if META_KEY + ".npy" not in members:
                raise ModelFileError(
                    f"{path} is not a fastvae model file (no metadata found)"
                )
            meta = _read_meta(zf, path)
            declared = meta["arrays"]
            extra = {m[:-4] for m in members if m.endswith(".npy")} - set(declared) - {
                META_KEY
            }
            if extra or any(not m.endswith(".npy") for m in members):
                raise ModelFileError(f"{path} holds unexpected entries: {sorted(extra)}")
            arrays = {}
            for name, spec in declared.items():
                arrays[name] = _read_array(zf, path, name, spec, members)
    except zipfile.BadZipFile as exc:
        raise ModelFileError(
            f"{path} is not a valid model file (truncated or corrupted archive: {exc})"
        ) from None
    except (EOFError, OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ModelFileError(f"{path} could not be read: {exc}") from None
    return meta, arrays


def _read_meta(zf: zipfile.ZipFile, path: Path) -> dict:
    shape, fortran, dtype = _read_member_header(zf, META_KEY)
    if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_META_BYTES:
        raise ModelFileError(f"{path} has malformed metadata")
    with zf.open(META_KEY + ".npy") as f:
        blob = np.lib.format.read_array(f, allow_pickle=False)
    try:
        meta = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} has unreadable metadata: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is not a fastvae model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ModelFileError(
            f"{path} has model format version {version!r}; this fastvae reads "
            f"versions 1 to {FORMAT_VERSION} (upgrade fastvae to read newer files)"
        )
    if not isinstance(meta.get("arrays"), dict):
        raise ModelFileError(f"{path} has malformed metadata (no array list)")
    return meta


def _read_array(zf, path, name, spec, members) -> np.ndarray:
    if not isinstance(spec, dict) or name + ".npy" not in members:
        raise ModelFileError(f"{path} is missing array {name!r}")
    try:
        want_dtype = np.dtype(spec["dtype"])
        want_shape = tuple(int(s) for s in spec["shape"])
        want_hash = str(spec["sha256"])
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{path} has a malformed entry for array {name!r}") from None
    if want_dtype.kind not in "fiu" or want_dtype.hasobject:
        raise ModelFileError(f"{path}: array {name!r} has disallowed dtype {want_dtype}")
    shape, fortran, dtype = _read_member_header(zf, name)
    if dtype != want_dtype or tuple(shape) != want_shape or fortran:
        raise ModelFileError(
            f"{path}: array {name!r} is {dtype}{list(shape)} but the metadata "
            f"says {want_dtype}{list(want_shape)}"
        )
    info = zf.getinfo(name + ".npy")
    if info.file_size < int(np.prod(want_shape)) * want_dtype.itemsize:
        raise ModelFileError(f"{path}: array {name!r} is truncated")
    with zf.open(name + ".npy") as f:
        arr = np.lib.format.read_array(f, allow_pickle=False)
    if _sha256(arr) != want_hash:
        raise ModelFileError(
            f"{path}: array {name!r} is corrupted (checksum mismatch)"
        )
    return arr
