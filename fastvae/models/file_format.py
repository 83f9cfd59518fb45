"""Model and checkpoint files: one .npz of plain arrays plus JSON metadata,
never pickle.

Writes are atomic (temporary file in the same folder, fsync, rename), so a
crash leaves either the old file or the new one. Reads trust nothing, and
check in this order, each before anything larger is read:

1. the archive: every member is an uncompressed ``.npy`` lying inside the
   file (so nothing can expand beyond the bytes on disk: no zip bombs), no
   member is duplicated, and nothing but the declared arrays is present;
2. the metadata: bounded size, valid UTF-8 JSON of bounded nesting, the
   expected format name and a supported version, and a well-formed
   declaration (dtype, shape, SHA-256) of every array;
3. each array: its ``.npy`` header must say exactly the declared dtype and
   shape, its member must hold exactly that many bytes, and the bytes read
   must match the declared SHA-256 (and the archive's CRC-32).

So a hostile file cannot make fastvae allocate more than the file's own
size, and any error is a `ModelFileError` naming the file and the problem.
What the metadata *means* (settings, sizes that must fit the architecture,
finite parameters) is checked by the estimator that restores it
(fastvae.models.persistence.Persistence._set_state).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np

from fastvae._atomic import write_npz_atomic
from fastvae.exceptions import ModelFileError

MODEL_FORMAT = "fastvae-model"
CHECKPOINT_FORMAT = "fastvae-checkpoint"
FORMAT_NAME = MODEL_FORMAT
# Newest version of each format this fastvae reads and writes.
FORMAT_VERSIONS = {MODEL_FORMAT: 1, CHECKPOINT_FORMAT: 1}
FORMAT_VERSION = FORMAT_VERSIONS[MODEL_FORMAT]
META_KEY = "meta"
# A model's JSON is a few kB (a long run's per-step history a few MB);
# anything far larger is not ours.
MAX_META_BYTES = 16 * 1024 * 1024
# Our files hold 3 arrays plus the metadata.
MAX_MEMBERS = 64
# Array dtypes a fastvae file may hold: little-endian floats, as written.
ALLOWED_DTYPES = ("<f4", "<f8")
_ARRAY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def sha256(a: np.ndarray) -> str:
    """Hex SHA-256 of an array's bytes (C order)."""
    return hashlib.sha256(np.ascontiguousarray(a).view(np.uint8)).hexdigest()


_sha256 = sha256  # the name tests and older code use


def save(
    path, meta: dict, arrays: dict[str, np.ndarray], *, format: str = MODEL_FORMAT
) -> None:
    """Save named arrays and JSON-serialisable metadata as a fastvae file.

    Parameters
    ----------
    path : str or os.PathLike
    meta : dict
        JSON-serialisable; the keys "format", "format_version" and "arrays"
        are added.
    arrays : dict of str to ndarray
        float32 or float64 arrays (written little-endian, uncompressed).
    format : {"fastvae-model", "fastvae-checkpoint"}, default="fastvae-model"
    """
    if format not in FORMAT_VERSIONS:
        raise ValueError(
            f"format must be one of {sorted(FORMAT_VERSIONS)}, got {format!r}"
        )
    arrays = {
        name: np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        for name, a in arrays.items()
    }
    for name, a in arrays.items():
        if not _ARRAY_NAME.match(name) or name == META_KEY:
            raise ValueError(f"invalid array name {name!r}")
        if a.dtype.str not in ALLOWED_DTYPES:
            raise TypeError(f"array {name!r} must be float32 or float64, got {a.dtype}")
    meta = dict(meta)
    meta["format"] = format
    meta["format_version"] = FORMAT_VERSIONS[format]
    meta["arrays"] = {
        name: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": sha256(a)}
        for name, a in arrays.items()
    }
    blob = json.dumps(meta, sort_keys=True).encode("utf-8")
    if len(blob) > MAX_META_BYTES:
        raise ValueError(f"metadata of {len(blob)} bytes exceeds {MAX_META_BYTES}")
    payload = {META_KEY: np.frombuffer(blob, dtype=np.uint8)}
    payload.update(arrays)
    write_npz_atomic(path, payload)


def load(path, *, formats=(MODEL_FORMAT,)) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and verify a fastvae file; returns (meta, arrays).

    Parameters
    ----------
    path : str or os.PathLike
    formats : tuple of str, default=("fastvae-model",)
        The formats accepted (meta["format"] says which one the file is).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ModelFileError
        If the file is not a complete, intact fastvae file of one of `formats`.
    """
    path = Path(path)
    what = _describe(formats)
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a {what}")
    if not path.is_file():
        noun = "model file" if MODEL_FORMAT in formats else _describe(formats)
        raise FileNotFoundError(f"{noun} {path} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = _check_members(zf, path, path.stat().st_size, what)
            meta = _read_meta(zf, infos, path, formats, what)
            return meta, {
                name: _read_array(zf, infos, path, name, spec)
                for name, spec in meta["arrays"].items()
            }
    except zipfile.BadZipFile as exc:
        raise ModelFileError(
            f"{path} is not a valid {what} (truncated or corrupted archive: {exc})"
        ) from None
    except (EOFError, OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ModelFileError(f"{path} could not be read: {exc}") from None


def _describe(formats) -> str:
    names = {MODEL_FORMAT: "model file", CHECKPOINT_FORMAT: "checkpoint"}
    return " or ".join(names.get(f, f) for f in formats)


def _check_members(zf: zipfile.ZipFile, path: Path, size: int, what: str) -> dict:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ModelFileError(f"{path} has {len(infos)} entries; not a {what}")
    by_name = {}
    for info in infos:
        name = info.filename
        if name[:-4] in by_name:
            raise ModelFileError(f"{path} holds entry {name!r} twice")
        if not name.endswith(".npy"):
            raise ModelFileError(f"{path} holds unexpected entries: [{name!r}]")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ModelFileError(
                f"{path}: entry {name!r} is compressed; fastvae files are stored "
                "uncompressed (a compressed entry could expand without bound)"
            )
        if (
            info.file_size != info.compress_size
            or info.header_offset + info.compress_size > size
        ):
            raise ModelFileError(
                f"{path}: entry {name!r} declares {info.file_size} bytes that the "
                f"file does not hold (truncated or corrupted)"
            )
        by_name[name[:-4]] = info
    if META_KEY not in by_name:
        raise ModelFileError(f"{path} is not a fastvae {what} (no metadata found)")
    return by_name


def _read_npy(zf, info, path, name, check) -> np.ndarray:
    """Read one .npy member: parse its header, let `check(shape, fortran,
    dtype)` refuse it, then read exactly the data the header declares.

    Header and data are read in one pass to the end of the member, so
    zipfile verifies the member's CRC-32. Any failure to parse the header
    (numpy raises ValueError, SyntaxError or tokenize errors for malformed
    ones) means a bad file.
    """
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ModelFileError(
                    f"{path}: array {name!r} has unsupported .npy version {version}"
                )
        except (zipfile.BadZipFile, ModelFileError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - hostile header text
            raise ModelFileError(
                f"{path}: array {name!r} has a malformed .npy header ({exc})"
            ) from None
        shape = tuple(shape)
        check(shape, fortran, dtype)
        n_bytes = math.prod(shape) * dtype.itemsize
        header_bytes = f.tell()
        if info.file_size != header_bytes + n_bytes:
            raise ModelFileError(
                f"{path}: array {name!r} should hold {n_bytes} bytes of data but its "
                f"entry holds {info.file_size - header_bytes} (truncated or corrupted)"
            )
        blob = f.read(n_bytes)
        f.read(1)  # reach the end of the member, so zipfile checks the CRC-32
    if len(blob) != n_bytes:
        raise ModelFileError(f"{path}: array {name!r} is truncated")
    return np.frombuffer(blob, dtype=dtype).reshape(shape).copy()


def _read_meta(zf, infos, path, formats, what) -> dict:
    def check(shape, fortran, dtype):
        if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_META_BYTES:
            raise ModelFileError(f"{path} has malformed metadata")

    blob = _read_npy(zf, infos[META_KEY], path, META_KEY, check).tobytes()
    try:
        # json.loads raises RecursionError for absurd nesting and ValueError
        # for integers beyond Python's digit limit, not only JSONDecodeError.
        meta = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path} has unreadable metadata: {exc}") from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt not in formats:
        if fmt in FORMAT_VERSIONS:
            raise ModelFileError(
                f"{path} is a fastvae {_describe((fmt,))}, not a {what}"
            )
        raise ModelFileError(f"{path} is not a fastvae {what}")
    version, newest = meta.get("format_version"), FORMAT_VERSIONS[fmt]
    if type(version) is not int or not 1 <= version <= newest:
        raise ModelFileError(
            f"{path} has {_describe((fmt,))} format version {version!r}; this fastvae "
            f"reads versions 1 to {newest} (upgrade fastvae to read newer files)"
        )
    declared = meta.get("arrays")
    if not isinstance(declared, dict):
        raise ModelFileError(f"{path} has malformed metadata (no array list)")
    for name, spec in declared.items():
        _check_spec(path, name, spec)
    extra = sorted(set(infos) - set(declared) - {META_KEY})
    if extra:
        raise ModelFileError(f"{path} holds unexpected entries: {extra}")
    missing = sorted(set(declared) - set(infos))
    if missing:
        raise ModelFileError(f"{path} is missing array {missing[0]!r}")
    return meta


def _check_spec(path, name, spec) -> None:
    if not isinstance(name, str) or not _ARRAY_NAME.match(name) or name == META_KEY:
        raise ModelFileError(f"{path} declares an array with the invalid name {name!r}")
    if not isinstance(spec, dict):
        raise ModelFileError(f"{path} has a malformed entry for array {name!r}")
    dtype, shape, digest = spec.get("dtype"), spec.get("shape"), spec.get("sha256")
    if dtype not in ALLOWED_DTYPES:
        raise ModelFileError(
            f"{path}: array {name!r} has disallowed dtype {dtype!r} (allowed: "
            f"{', '.join(ALLOWED_DTYPES)})"
        )
    if (
        not isinstance(shape, list)
        or len(shape) > 8
        or any(type(s) is not int or s < 0 for s in shape)
    ):
        raise ModelFileError(
            f"{path} has a malformed shape for array {name!r}: {shape!r}"
        )
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise ModelFileError(f"{path} has a malformed checksum for array {name!r}")


def _read_array(zf, infos, path, name, spec) -> np.ndarray:
    want_dtype, want_shape = np.dtype(spec["dtype"]), tuple(spec["shape"])

    def check(shape, fortran, dtype):
        if dtype != want_dtype or shape != want_shape or fortran:
            raise ModelFileError(
                f"{path}: array {name!r} is {dtype}{list(shape)} but the metadata "
                f"says {want_dtype}{list(want_shape)}"
            )

    arr = _read_npy(zf, infos[name], path, name, check)
    if sha256(arr) != spec["sha256"]:
        raise ModelFileError(f"{path}: array {name!r} is corrupted (checksum mismatch)")
    return arr
