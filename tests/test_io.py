"""Model files: round trip, atomic writes, and files that must be refused."""

from __future__ import annotations

import os
import stat
import tracemalloc
import zipfile

import numpy as np
import pytest
from _zipfiles import member_offset as _member_offset
from _zipfiles import members as _members
from _zipfiles import meta as _meta
from _zipfiles import meta_bytes as _meta_bytes
from _zipfiles import npy as _npy
from _zipfiles import npy_header as _npy_header
from _zipfiles import rewrite as _rewrite
from _zipfiles import with_meta as _with_meta

import fastvae
from fastvae import _atomic
from fastvae.models import file_format as fio

D = 20


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return (rng.random((120, D)) < 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def model(X):
    return fastvae.VAE(
        hidden=(12,),
        latent_dim=3,
        epochs=2,
        batch_size=32,
        random_state=4,
        optimizer=fastvae.optim.Adam(lr=0.003, beta2=0.99),
    ).fit(X)


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
    settings = dict(
        hidden=(12,), latent_dim=3, batch_size=32, random_state=4, dtype=dtype
    )
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

    monkeypatch.setattr(_atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="rename failed"):
        model.save(saved)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.npz"]


def test_save_into_missing_folder(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save(tmp_path / "nope" / "m.npz")


def test_missing_file():
    with pytest.raises(
        FileNotFoundError, match="model file missing.npz does not exist"
    ):
        fastvae.load("missing.npz")


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_files_are_refused(saved, fraction):
    blob = saved.read_bytes()
    saved.write_bytes(blob[: int(len(blob) * fraction)])
    with pytest.raises(fastvae.ModelFileError):
        fastvae.load(saved)


def test_a_flipped_byte_in_the_parameters_is_detected(saved):
    blob = bytearray(saved.read_bytes())
    at = _member_offset(saved, "params.npy") + 128 + 40  # past the .npy header
    blob[at] ^= 0x10
    saved.write_bytes(bytes(blob))
    with pytest.raises(
        fastvae.ModelFileError, match="corrupted|checksum|CRC|could not"
    ):
        fastvae.load(saved)


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
    with pytest.raises(
        fastvae.ModelFileError, match="format version 999.*upgrade fastvae"
    ):
        fastvae.load(saved)


def test_huge_declared_shape_is_refused_before_allocation(saved):
    members = _members(saved)
    meta = _meta(members)
    meta["arrays"]["params"]["shape"] = [2**40]
    members["params.npy"] = _npy_header("<f4", (2**40,)) + b"\0" * 64
    _rewrite(saved, _with_meta(members, meta))
    tracemalloc.start()
    try:
        with pytest.raises(fastvae.ModelFileError, match="truncated"):
            fastvae.load(saved)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak


def test_pickled_object_arrays_are_never_unpickled(saved, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    members = _members(saved)
    members["params.npy"] = _npy(np.array([Exploit()], dtype=object), allow_pickle=True)
    meta = _meta(members)
    meta["arrays"]["params"] = {"dtype": "|O", "shape": [1], "sha256": "0" * 64}
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match="disallowed dtype"):
        fastvae.load(saved)
    assert not marker.exists()

    # the same payload declared as float32 is refused by its header
    meta["arrays"]["params"] = {"dtype": "<f4", "shape": [1], "sha256": "0" * 64}
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError):
        fastvae.load(saved)
    assert not marker.exists()


def test_arrays_that_do_not_fit_the_architecture(saved, model):
    members = _members(saved)
    meta = _meta(members)
    meta["params"]["latent_dim"] = 5  # the buffers were saved for latent_dim=3
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(
        fastvae.ModelFileError, match="does not match the model's architecture"
    ):
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
    with pytest.raises(
        fastvae.ModelFileError,
        match="not a valid model file: activation must be one of",
    ):
        fastvae.load(saved)


def test_unexpected_members(saved):
    members = _members(saved)
    members["extra.npy"] = _npy(np.zeros(2))
    _rewrite(saved, members)
    with pytest.raises(fastvae.ModelFileError, match="unexpected entries"):
        fastvae.load(saved)


def test_fit_lr_override_survives_save_and_load(X, tmp_path):
    settings = dict(hidden=(12,), latent_dim=3, batch_size=32, random_state=4, lr=0.01)
    straight = fastvae.VAE(epochs=2, **settings).fit(X, lr=0.002)
    first = fastvae.VAE(epochs=1, **settings).fit(X, lr=0.002)
    first.save(tmp_path / "m.npz")
    loaded = fastvae.load(tmp_path / "m.npz")
    assert loaded.optimizer == fastvae.optim.Adam(lr=0.002)
    loaded.set_params(warm_start=True).fit(X)
    np.testing.assert_array_equal(loaded.params_, straight.params_)


def test_saved_files_get_the_usual_permissions(model, tmp_path):
    old = os.umask(0o022)
    try:
        model.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.npz").stat().st_mode) == 0o644
    os.chmod(tmp_path / "m.npz", 0o600)
    model.save(tmp_path / "m.npz")  # a replaced file keeps its permissions
    assert stat.S_IMODE((tmp_path / "m.npz").stat().st_mode) == 0o600


# -- hostile files: each is refused with a ModelFileError naming the problem ----


@pytest.mark.parametrize(
    "header, message",
    [
        (b"XXXXXX\x01\x00", "malformed .npy header"),
        (b"\x93NUMPY\x03\x00", "malformed .npy header|unsupported .npy version"),
        (
            b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'fortran_order': Fal",
            "malformed",
        ),
        (
            b"\x93NUMPY\x01\x00\x20\x00__import__('os').system('true')   \n",
            "malformed .npy header",
        ),
    ],
)
def test_malformed_array_headers(saved, header, message):
    members = _members(saved)
    members["params.npy"] = header + b"\0" * 64
    _rewrite(saved, members)
    with pytest.raises(fastvae.ModelFileError, match=message):
        fastvae.load(saved)


@pytest.mark.parametrize("change", [-40, -1, 1, 4096])
def test_array_data_shorter_or_longer_than_its_header(saved, change):
    """The zip archive is consistent (sizes, CRCs); only the .npy lies."""
    members = _members(saved)
    blob = members["params.npy"]
    members["params.npy"] = blob[:change] if change < 0 else blob + b"\0" * change
    _rewrite(saved, members)
    with pytest.raises(fastvae.ModelFileError, match="truncated or corrupted"):
        fastvae.load(saved)


def test_compressed_members_are_refused_without_expanding_them(saved, model):
    """A zip bomb: 64 MB of zeros declared and deflated to about 64 kB."""
    members = _members(saved)
    n = 16 * 2**20
    meta = _meta(members)
    meta["arrays"]["params"]["shape"] = [n]
    members["params.npy"] = _npy_header("<f4", (n,)) + bytes(4 * n)
    members = _with_meta(members, meta)
    _rewrite(saved, members, compression=zipfile.ZIP_DEFLATED)
    assert saved.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(fastvae.ModelFileError, match="is compressed"):
            fastvae.load(saved)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak


def test_member_sizes_beyond_the_file_are_refused(saved):
    """The central directory claims a 4 GB member in a 10 kB file."""
    blob = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as zf:
        names = [i.filename for i in zf.infolist()]
    at = blob.rfind(b"PK\x01\x02")  # the last central directory record
    assert blob[at + 46 : at + 46 + len(names[-1])].decode() == names[-1]
    blob[at + 20 : at + 28] = (0xFFFFFFF0).to_bytes(4, "little") * 2
    saved.write_bytes(bytes(blob))
    with pytest.raises(fastvae.ModelFileError, match="does not hold|truncated"):
        fastvae.load(saved)


def test_duplicate_entries_are_refused(saved, model):
    members = _members(saved)
    with zipfile.ZipFile(saved, "a") as zf:
        with pytest.warns(UserWarning, match="Duplicate"):
            zf.writestr("params.npy", members["params.npy"])
    with pytest.raises(fastvae.ModelFileError, match="twice"):
        fastvae.load(saved)


def test_entries_that_are_not_arrays_are_refused(saved):
    members = _members(saved)
    members["payload.pkl"] = b"\x80\x04."
    _rewrite(saved, members)
    with pytest.raises(fastvae.ModelFileError, match="unexpected entries.*payload.pkl"):
        fastvae.load(saved)


def test_a_missing_array_is_refused(saved):
    members = _members(saved)
    del members["opt_state2.npy"]
    _rewrite(saved, members)
    with pytest.raises(fastvae.ModelFileError, match="missing array 'opt_state2'"):
        fastvae.load(saved)


@pytest.mark.parametrize("descr", ["<i4", ">f4", "<f2", "<c8", "|V4"])
def test_disallowed_dtypes(saved, model, descr):
    members = _members(saved)
    meta = _meta(members)
    meta["arrays"]["params"]["dtype"] = descr
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match="disallowed dtype"):
        fastvae.load(saved)


def test_float64_buffers_in_a_float32_model(saved, model):
    members = _members(saved)
    meta = _meta(members)
    wide = model.params_.astype(np.float64)
    members["params.npy"] = _npy(wide)
    meta["arrays"]["params"] = {
        "dtype": "<f8",
        "shape": list(wide.shape),
        "sha256": fio.sha256(wide),
    }
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match="does not match the model's arch"):
        fastvae.load(saved)


def test_buffers_of_the_wrong_length(saved, model):
    members = _members(saved)
    meta = _meta(members)
    short = model.params_[:-16].copy()
    members["params.npy"] = _npy(short)
    meta["arrays"]["params"] = {
        "dtype": "<f4",
        "shape": list(short.shape),
        "sha256": fio.sha256(short),
    }
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match="does not match the model's arch"):
        fastvae.load(saved)


@pytest.mark.parametrize("key", ["opt_state1", "opt_state2"])
def test_non_finite_optimizer_state(saved, model, key):
    members = _members(saved)
    meta = _meta(members)
    bad = model._opt_state[int(key[-1]) - 1].copy()
    bad[0] = np.inf
    members[f"{key}.npy"] = _npy(bad)
    meta["arrays"][key]["sha256"] = fio.sha256(bad)
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match=f"'{key}' holds NaN or inf"):
        fastvae.load(saved)


def _set(meta, path, value):
    d = meta
    for k in path[:-1]:
        d = d[k]
    if value is KeyError:
        del d[path[-1]]
    else:
        d[path[-1]] = value


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("format_version",), True, "format version True"),
        (("format_version",), "1", "format version '1'"),
        (("format_version",), 0, "format version 0"),
        (("format",), "fastvae-dataset", "is not a fastvae model file or checkpoint"),
        (("format",), None, "is not a fastvae model file or checkpoint"),
        (("arrays",), [], "no array list"),
        (("arrays", "params", "shape"), "272", "malformed shape"),
        (("arrays", "params", "shape"), [-1], "malformed shape"),
        (("arrays", "params", "shape"), [1.5], "malformed shape"),
        (("arrays", "params", "sha256"), 5, "malformed checksum"),
        (("arrays", "params"), "float32", "malformed entry"),
        (("estimator",), ["VAE"], "holds \\['VAE'\\], not one of"),
        (("estimator",), "Pipeline", "holds 'Pipeline', not one of"),
        (("params",), [], "'params' must be a JSON object"),
        (("params", "latent_dim"), "3", "latent_dim must be Integral, got '3'"),
        (("params", "hidden"), [12.5], "hidden must contain integers"),
        (("params", "dtype"), "object", "dtype must be float32 or float64"),
        (("params", "exploit"), 1, "unknown parameters \\['exploit'\\]"),
        (("optimizer", "name"), "rmsprop", "optimizer must be one of"),
        (("optimizer", "lr"), -1.0, "lr must be > 0"),
        (("optimizer", "momentum"), 0.9, "unexpected keyword argument 'momentum'"),
        (("fitted",), None, "'fitted' must be a JSON object"),
        (("fitted", "n_iter_"), -5, "n_iter_ must be an integer in"),
        (("fitted", "n_iter_"), 2.0, "n_iter_ must be an integer in"),
        (("fitted", "t_"), -1, "t_ must be an integer in"),
        (("fitted", "t_"), 2**70, "t_ must be an integer in"),
        (("fitted", "t_"), "8", "t_ must be an integer in"),
        (("fitted", "n_features_in_"), 10.5, "n_features_in_ must be an integer"),
        (("fitted", "n_features_in_"), 21, "does not match the model's architecture"),
        (("fitted", "n_conditions_"), True, "n_conditions_ must be an integer"),
        (("fitted", "t_"), KeyError, "fitted must have the keys"),
        (("fitted", "history_"), [], "history_ must have the keys"),
        (("fitted", "history_", "loss"), 5, "history_\\['loss'\\] must be a list"),
        (("fitted", "history_", "loss"), [1.0, "x"], "history_\\['loss'\\] holds 'x'"),
        (("fitted", "history_", "loss"), [1.0, float("nan")], "holds nan"),
        (("fitted", "history_", "loss"), [1.0], "history_ lengths"),
        (("fitted", "loss_curve_"), [1.0, None], "loss_curve_ must be a list of 2"),
        (("fitted", "training_data_"), [], "training_data_ must have the keys"),
        (("fitted", "training_data_", "min"), None, "min and max must be finite"),
        (("fitted", "training_data_", "max"), -5.0, "min .* exceeds max -5"),
        (("fitted", "training_data_", "n_features"), 7, "has 7 features but the"),
        (("fitted", "training_data_", "source"), "x", "source must be a JSON obj"),
        (("fitted", "training_data_", "rows"), 1, "training_data_ must have the"),
    ],
)
def test_wrong_metadata_types_and_values(saved, path, value, message):
    members = _members(saved)
    meta = _meta(members)
    _set(meta, path, value)
    _rewrite(saved, _with_meta(members, meta))
    with pytest.raises(fastvae.ModelFileError, match=message):
        fastvae.load(saved)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '{"format": "fastvae-model", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "unreadable metadata",
        ),
        (
            '{"format": "fastvae-model", "x": 1' + "0" * 10_000 + "}",
            "unreadable metadata",
        ),
        ('{"format": "fastvae-model", ', "unreadable metadata"),
        ("\udcff", "unreadable metadata"),
        ("[1, 2]", "not a fastvae model file"),
    ],
)
def test_unreadable_metadata(saved, text, message):
    members = _members(saved)
    members["meta.npy"] = (
        _meta_bytes(text)
        if text != "\udcff"
        else _npy(np.frombuffer(b"\xff\xfe{}", np.uint8))
    )
    _rewrite(saved, members)
    with pytest.raises(fastvae.ModelFileError, match=message):
        fastvae.load(saved)


def test_metadata_that_is_not_bytes(saved):
    members = _members(saved)
    members["meta.npy"] = _npy(np.zeros(4, np.float32))
    _rewrite(saved, members)
    with pytest.raises(fastvae.ModelFileError, match="malformed metadata"):
        fastvae.load(saved)


def test_a_folder_is_not_a_model_file(tmp_path):
    with pytest.raises(fastvae.ModelFileError, match="is a folder"):
        fastvae.load(tmp_path)
