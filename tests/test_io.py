"""Model files: round trip, atomic writes, and files that must be refused."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import fastvae
from fastvae import io as fio

D = 20


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return (rng.random((120, D)) < 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def model(X):
    return fastvae.VAE(hidden=(12,), latent_dim=3, epochs=2, batch_size=32, seed=4,
                       optimizer=fastvae.optim.Adam(lr=0.003, beta2=0.99)).fit(X)


@pytest.fixture()
def saved(model, tmp_path):
    path = tmp_path / "model.npz"
    model.save(path)
    return path


def test_round_trip_is_exact(model, saved, X):
    loaded = fastvae.load(saved)
    np.testing.assert_array_equal(loaded.params_, model.params_)
    for a, b in zip(loaded._opt_state, model._opt_state, strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.params_.ctypes.data % 64 == 0
    assert loaded.history_ == model.history_ and loaded.loss_curve_ == model.loss_curve_
    assert (loaded.n_iter_, loaded.t_, loaded.n_features_in_) == (2, model.t_, D)
    params = loaded.get_params()
    assert params["hidden"] in ((12,), [12]) and params["latent_dim"] == 3
    assert params["optimizer"] == fastvae.optim.Adam(lr=0.003, beta2=0.99)
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    np.testing.assert_array_equal(loaded.elbo(X), model.elbo(X))
    np.testing.assert_array_equal(loaded.sample(4), model.sample(4))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resumed_training_equals_uninterrupted(X, tmp_path, dtype):
    settings = dict(hidden=(12,), latent_dim=3, batch_size=32, seed=4, dtype=dtype)
    straight = fastvae.VAE(epochs=3, **settings).fit(X)
    first = fastvae.VAE(epochs=1, **settings).fit(X)
    first.save(tmp_path / "m.npz")
    resumed = fastvae.load(tmp_path / "m.npz").set_params(warm_start=True, epochs=2)
    resumed.fit(X)
    np.testing.assert_array_equal(resumed.params_, straight.params_)
    assert resumed.history_["epoch"] == [1, 2, 3]


def test_save_is_atomic_and_leaves_no_temporary_files(model, saved, monkeypatch):
    before = saved.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        model.save(saved)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.npz"]


def test_failed_rename_keeps_the_old_file(model, saved, monkeypatch):
    before = saved.read_bytes()

    def broken_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(fio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="rename failed"):
        model.save(saved)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.npz"]


def test_save_into_missing_folder(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save(tmp_path / "nope" / "m.npz")


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="model file missing.npz does not exist"):
        fastvae.load("missing.npz")


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_files_are_refused(saved, fraction):
    blob = saved.read_bytes()
    saved.write_bytes(blob[: int(len(blob) * fraction)])
    with pytest.raises(fastvae.ModelFileError):
        fastvae.load(saved)


def _member_offset(path, name):
    """Offset in the file of the first data byte of archive member `name`."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        n_name, n_extra = np.frombuffer(f.read(4), "<u2")
    return info.header_offset + 30 + int(n_name) + int(n_extra)


def test_a_flipped_byte_in_the_parameters_is_detected(saved):
    blob = bytearray(saved.read_bytes())
    at = _member_offset(saved, "params.npy") + 128 + 40  # past the .npy header
    blob[at] ^= 0x10
    saved.write_bytes(bytes(blob))
    with pytest.raises(fastvae.ModelFileError, match="corrupted|checksum|CRC|could not"):
        fastvae.load(saved)


def _rewrite(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _npy(array, allow_pickle=False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _meta(members) -> dict:
    blob = np.lib.format.read_array(io.BytesIO(members["meta.npy"]))
    return json.loads(blob.tobytes())


def _with_meta(members, meta) -> dict:
    out = dict(members)
    out["meta.npy"] = _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return out


def test_not_a_zip_file(tmp_path):
    path = tmp_path / "m.npz"
    path.write_text("hello, I am not a model")
    with pytest.raises(fastvae.ModelFileError, match="not a valid model file"):
        fastvae.load(path)


def test_a_plain_npz_without_metadata(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, params=np.zeros(3))
    with pytest.raises(fastvae.ModelFileError, match="not a fastvae model file"):
        fastvae.load(path)


def test_newer_format_version(saved):
    members = _members(saved)
    meta = _meta(members)
    meta["format_version"] = 999
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match="format version 999.*upgrade fastvae"):
        fastvae.load(saved)


def test_huge_declared_shape_is_refused_before_allocation(saved):
    members = _members(saved)
    meta = _meta(members)
    meta["arrays"]["params"]["shape"] = [2**40]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (2**40,)})
    members["params.npy"] = header.getvalue() + b"\0" * 64
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match="truncated"):
        fastvae.load(saved)


def test_pickled_object_arrays_are_never_unpickled(saved, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    members = _members(saved)
    members["params.npy"] = _npy(np.array([Exploit()], dtype=object), allow_pickle=True)
    meta = _meta(members)
    meta["arrays"]["params"] = {"dtype": "|O", "shape": [1], "sha256": "0"}
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match="disallowed dtype"):
        fastvae.load(saved)
    assert not marker.exists()

    # the same payload declared as float32 is refused by its header
    meta["arrays"]["params"] = {"dtype": "<f4", "shape": [1], "sha256": "0"}
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError):
        fastvae.load(saved)
    assert not marker.exists()


def test_arrays_that_do_not_fit_the_architecture(saved, model):
    members = _members(saved)
    meta = _meta(members)
    meta["params"]["latent_dim"] = 5  # the buffers were saved for latent_dim=3
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match="does not match the model's architecture"):
        fastvae.load(saved)


def test_nan_in_parameters(saved, model):
    members = _members(saved)
    bad = model.params_.copy()
    bad[5] = np.nan
    members["params.npy"] = _npy(bad)
    meta = _meta(members)
    meta["arrays"]["params"]["sha256"] = fio._sha256(bad)
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match="holds NaN or inf"):
        fastvae.load(saved)


def test_invalid_settings_in_metadata(saved):
    members = _members(saved)
    meta = _meta(members)
    meta["params"]["activation"] = "gelu"
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match="invalid model settings.*activation"):
        fastvae.load(saved)


def test_unexpected_members(saved):
    members = _members(saved)
    members["extra.npy"] = _npy(np.zeros(2))
    _rewrite(saved, members)
    with pytest.raises(fastvae.ModelFileError, match="unexpected entries"):
        fastvae.load(saved)
