"""Helpers that take fastvae files apart and write hostile ones (not a test
module): read and rewrite archive members, and re-encode the metadata."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rewrite(path, entries: dict[str, bytes], compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


def npy(array, allow_pickle=False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy_header(descr: str, shape: tuple) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def meta(entries) -> dict:
    blob = np.lib.format.read_array(io.BytesIO(entries["meta.npy"]))
    return json.loads(blob.tobytes())


def meta_bytes(text: str) -> bytes:
    return npy(np.frombuffer(text.encode(), np.uint8))


def with_meta(entries, new_meta) -> dict:
    out = dict(entries)
    out["meta.npy"] = meta_bytes(json.dumps(new_meta))
    return out


def member_offset(path, name):
    """Offset in the file of the first data byte of archive member `name`."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        n_name, n_extra = np.frombuffer(f.read(4), "<u2")
    return info.header_offset + 30 + int(n_name) + int(n_extra)
