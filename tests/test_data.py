"""Tests of fastvae.data: shapes generator, file readers, transforms, splits."""

import gzip
import shutil
import struct

import numpy as np
import pytest

import fastvae.data.shapes as data_module
from fastvae.data import (
    DataError,
    Dataset,
    binarize,
    load_array,
    load_binarized_mnist,
    load_dataset,
    load_mnist,
    make_shapes,
    read_idx,
    sample_binarize,
    train_validation_split,
)

# ---------------------------------------------------------------------------
# make_shapes
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(3000, seed=0)


def test_shapes_layout(shapes):
    X = shapes.X
    assert X.shape == (3000, 784) and X.dtype == np.float32
    assert X.flags.c_contiguous
    assert shapes.image_shape == (28, 28) and shapes.name == "shapes"
    assert set(np.unique(X)) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert X.min() == 0.0 and X.max() == 1.0
    assert shapes.y.dtype == np.int64 and shapes.y.shape == (3000,)
    assert shapes.factor_names == ("shape", "scale", "rotation", "pos_x", "pos_y")
    assert shapes.factors.shape == (3000, 5) and shapes.factors.dtype == np.float64
    np.testing.assert_array_equal(shapes.factors[:, 0], shapes.y)


def test_shapes_deterministic():
    a, b = make_shapes(500, seed=4), make_shapes(500, seed=4)
    assert a.X.tobytes() == b.X.tobytes()
    assert a.factors.tobytes() == b.factors.tobytes()
    assert not np.array_equal(a.X, make_shapes(500, seed=5).X)


def test_shapes_prefix_and_chunking_do_not_change_images(monkeypatch):
    full = make_shapes(700, seed=2)
    np.testing.assert_array_equal(make_shapes(300, seed=2).X, full.X[:300])
    monkeypatch.setattr(data_module, "_CHUNK", 64)
    np.testing.assert_array_equal(make_shapes(700, seed=2).X, full.X)


@pytest.mark.parametrize("image_size", [8, 28, 40])
def test_every_shape_has_ink(image_size):
    X = make_shapes(1000, image_size=image_size, seed=1).X
    assert X.shape == (1000, image_size**2)
    assert (X.sum(axis=1) > 0).all()
    if image_size == 28:
        assert (np.count_nonzero(X, axis=1) >= 20).all()


def test_shape_labels_balanced(shapes):
    fractions = np.bincount(shapes.y, minlength=3) / len(shapes)
    assert fractions.shape == (3,)
    assert ((fractions > 0.20) & (fractions < 0.47)).all()


def test_shape_factors_in_range(shapes):
    shape, scale, rotation, pos_x, pos_y = shapes.factors.T
    assert set(np.unique(shape)) == {0, 1, 2}
    assert scale.min() >= 0.5 and scale.max() <= 1.0
    assert rotation.min() >= 0.0 and rotation.max() < 2 * np.pi
    for pos in (pos_x, pos_y):
        assert pos.min() > 0.0 and pos.max() < 1.0
        assert pos.max() - pos.min() > 0.6  # positions spread over the frame


def _image_moments(data):
    images = data.X.reshape(-1, *data.image_shape)
    rows, cols = data.image_shape
    y, x = np.mgrid[0:rows, 0:cols] + 0.5  # pixel centres
    mass = images.sum(axis=(1, 2))
    cx = (images * x).sum(axis=(1, 2)) / mass
    cy = (images * y).sum(axis=(1, 2)) / mass
    return images, x, y, mass, cx, cy


def test_centre_of_mass_tracks_position(shapes):
    _, _, _, _, cx, cy = _image_moments(shapes)
    assert np.corrcoef(cx, shapes.factors[:, 3])[0, 1] > 0.9
    assert np.corrcoef(cy, shapes.factors[:, 4])[0, 1] > 0.9
    # The position factor is the centre itself, as a fraction of the frame:
    # sub-sampling moves the centre of mass by at most ~0.2 px, without bias.
    for com, pos in ((cx, shapes.factors[:, 3]), (cy, shapes.factors[:, 4])):
        error = com - 28 * pos
        assert np.abs(error).max() < 0.3 and abs(error.mean()) < 0.02


def test_ink_tracks_scale(shapes):
    mass = shapes.X.sum(axis=1)
    assert np.corrcoef(mass, shapes.factors[:, 1] ** 2)[0, 1] > 0.95


def test_ellipse_orientation_tracks_rotation(shapes):
    images, x, y, mass, cx, cy = _image_moments(shapes)
    ellipse = shapes.y == 1
    images, mass = images[ellipse], mass[ellipse]
    dx = x - cx[ellipse, None, None]
    dy = y - cy[ellipse, None, None]
    mu20 = (images * dx * dx).sum(axis=(1, 2)) / mass
    mu02 = (images * dy * dy).sum(axis=(1, 2)) / mass
    mu11 = (images * dx * dy).sum(axis=(1, 2)) / mass
    major_axis = 0.5 * np.arctan2(2 * mu11, mu20 - mu02)
    rotation = shapes.factors[ellipse, 2]
    # An ellipse looks the same after a half turn: compare angles mod pi.
    assert np.cos(2 * (major_axis - rotation)).mean() > 0.95


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_samples": 0},
        {"n_samples": 2.5},
        {"image_size": 7},
        {"seed": -1},
        {"seed": 1.0},
    ],
)
def test_make_shapes_rejects_bad_arguments(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        make_shapes(**{"n_samples": 10, **kwargs})


# ---------------------------------------------------------------------------
# read_idx
# ---------------------------------------------------------------------------


def _idx_bytes(array, type_byte=0x08):
    header = bytes([0, 0, type_byte, array.ndim])
    header += struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path, payload, compress=False):
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (2, 1, 3, 2), (0, 3)])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, shape, compress):
    array = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    name = "a.idx.gz" if compress else "a.idx"
    out = read_idx(_write(tmp_path / name, _idx_bytes(array), compress))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


def test_read_idx_detects_gzip_by_magic_bytes(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = _write(tmp_path / "no-suffix", _idx_bytes(array), compress=True)
    np.testing.assert_array_equal(read_idx(path), array)


def _good():
    return _idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x01" + _good()[1:], "magic bytes 00 00"),
        (b"", "empty"),
        (_good()[:2] + b"\x0d" + _good()[3:], r"0x0d \(float32\)"),
        (_good()[:3] + b"\x00" + _good()[4:], "1 to 4"),
        (_good()[:3] + b"\x05" + _good()[4:], "1 to 4"),
        (_good()[:10], "truncated IDX header"),
        (_good()[:-1], r"need 24 bytes .* got 23 \(truncated\)"),
        (_good() + b"\x00\x00", r"need 24 bytes .* got 26 \(trailing data\)"),
        (_good()[:4] + struct.pack(">2i", -3, 4), "must be >= 0"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path, payload, message):
    path = _write(tmp_path / "bad.idx", payload)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert "bad.idx" in str(info.value)


def test_read_idx_rejects_invalid_gzip(tmp_path):
    with pytest.raises(DataError, match="not a valid gzip file"):
        read_idx(_write(tmp_path / "plain.gz", _good()))
    truncated = gzip.compress(_good())[:-12]
    with pytest.raises(DataError, match="not a valid gzip file"):
        read_idx(_write(tmp_path / "cut.gz", truncated))


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nothing.idx")


# ---------------------------------------------------------------------------
# load_mnist / load_binarized_mnist on small synthetic files
# ---------------------------------------------------------------------------


def _fake_mnist(folder, images, labels, prefix="t10k"):
    folder.mkdir(exist_ok=True)
    _write(folder / f"{prefix}-images-idx3-ubyte.gz", _idx_bytes(images), True)
    _write(folder / f"{prefix}-labels-idx1-ubyte.gz", _idx_bytes(labels), True)
    return folder


def test_load_mnist_parses_and_scales(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    images[:, 0, 0] = [0, 51, 255]
    folder = _fake_mnist(tmp_path, images, np.array([7, 0, 9]))
    data = load_mnist(folder, kind="fashion-mnist", split="test", verify=False)
    assert data.X.shape == (3, 784) and data.X.dtype == np.float32
    np.testing.assert_array_equal(data.X[:, 0], np.float32([0, 0.2, 1]))
    assert data.y.dtype == np.int64 and data.y.tolist() == [7, 0, 9]
    assert data.image_shape == (28, 28) and data.name == "fashion-mnist"


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.zeros((3, 28, 27)), np.zeros(3), r"shape \(n, 28, 28\)"),
        (np.zeros((3, 28, 28)), np.zeros(2), "expected 3 labels"),
        (np.zeros((2, 28, 28)), np.array([1, 10]), "labels must be 0-9"),
    ],
)
def test_load_mnist_rejects_inconsistent_files(tmp_path, images, labels, message):
    folder = _fake_mnist(tmp_path, images, labels, prefix="train")
    with pytest.raises(DataError, match=message):
        load_mnist(folder, verify=False)


def test_load_mnist_checksum_names_file_and_digests(tmp_path):
    folder = _fake_mnist(tmp_path, np.zeros((1, 28, 28)), np.zeros(1))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz") as info:
        load_mnist(folder, split="test")
    assert "9fb629c4189551a2d022fa330f9573f3" in str(info.value)  # expected MD5


def test_load_mnist_missing_files_say_where_from(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, kind="fashion-mnist")
    message = str(info.value)
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in message
    assert "Fashion-MNIST" in message and "data_dir" in message


@pytest.mark.parametrize("kwargs", [{"kind": "kmnist"}, {"split": "valid"}])
def test_load_mnist_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        load_mnist(tmp_path, **kwargs)


def _amat(rows):
    return b"".join(b" ".join(b"%d" % v for v in row) + b"\n" for row in rows)


def _write_amat(folder, payload, split="valid"):
    return _write(folder / f"binarized_mnist_{split}.amat.gz", payload, True)


def test_load_binarized_mnist_parses(tmp_path):
    rows = np.random.default_rng(0).integers(0, 2, (3, 784))
    _write_amat(tmp_path, _amat(rows))
    data = load_binarized_mnist(tmp_path, split="valid", verify=False)
    assert data.X.dtype == np.float32 and data.y is None
    np.testing.assert_array_equal(data.X, rows)
    assert data.image_shape == (28, 28) and data.name == "binarized-mnist"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda b: b.replace(b"1", b"2", 1), "line 1 holds a value other than 0 or 1"),
        (lambda b: b[:-1] + b" ", "line 2 is not 784 values"),
        (lambda b: b[:1] + b"\t" + b[2:], "line 1 is not 784 values"),
        (lambda b: b.replace(b"\n", b"\r\n"), "multiple"),
        (lambda b: b"", "multiple"),
    ],
)
def test_load_binarized_mnist_rejects_bad_text(tmp_path, edit, message):
    rows = np.ones((2, 784), dtype=int)
    _write_amat(tmp_path, edit(_amat(rows)))
    with pytest.raises(DataError, match=message):
        load_binarized_mnist(tmp_path, split="valid", verify=False)


def test_load_binarized_mnist_checksum_and_missing(tmp_path):
    _write_amat(tmp_path, _amat(np.zeros((1, 784), dtype=int)), split="test")
    with pytest.raises(DataError, match="f7f18e7c5d551792f6aab10d62a7ea74"):
        load_binarized_mnist(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match="binarized_mnist_train.amat.gz"):
        load_binarized_mnist(tmp_path, split="train")


# ---------------------------------------------------------------------------
# load_array
# ---------------------------------------------------------------------------


def test_load_npy_2d(tmp_path):
    array = np.arange(12, dtype=np.float64).reshape(4, 3) / 7
    np.save(tmp_path / "points.npy", array)
    data = load_array(tmp_path / "points.npy")
    assert data.X.dtype == np.float32 and data.X.flags.c_contiguous
    np.testing.assert_array_equal(data.X, array.astype(np.float32))
    assert data.y is None and data.image_shape is None and data.name == "points"


def test_load_npy_3d_image_stack_keeps_raw_scale(tmp_path):
    stack = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5) * 8
    np.save(tmp_path / "faces.npy", stack)
    data = load_array(str(tmp_path / "faces.npy"))
    assert data.image_shape == (3, 5) and data.X.shape == (2, 15)
    np.testing.assert_array_equal(data.X, stack.reshape(2, 15))  # not rescaled
    assert data.X.max() == 232


def test_load_npy_bool_and_fortran_order(tmp_path):
    array = np.asfortranarray(np.eye(3, dtype=bool))
    np.save(tmp_path / "b.npy", array)
    data = load_array(tmp_path / "b.npy")
    assert data.X.flags.c_contiguous
    np.testing.assert_array_equal(data.X, np.eye(3))


def test_load_npz_key_selection_and_labels(tmp_path):
    X, y = np.ones((4, 2)), np.array([0, 1, 1, 3])
    path = tmp_path / "d.npz"

    np.savez(path, only=X)
    assert load_array(path).X.shape == (4, 2)

    np.savez(path, X=X, y=y, extra=np.zeros((4, 5)))
    data = load_array(path)
    np.testing.assert_array_equal(data.X, X)
    assert data.y.dtype == np.int64 and data.y.tolist() == [0, 1, 1, 3]
    assert load_array(path, key="extra").X.shape == (4, 5)

    np.savez(path, a=X, b=X)
    with pytest.raises(ValueError, match=r"\['a', 'b'\]"):
        load_array(path)
    with pytest.raises(ValueError, match="'c' is not in"):
        load_array(path, key="c")


def test_load_npz_float_labels_and_ignored_labels(tmp_path):
    path = tmp_path / "d.npz"
    np.savez_compressed(path, X=np.zeros((3, 2)), y=np.array([2.0, 0.0, 1.0]))
    assert load_array(path).y.tolist() == [2, 0, 1]

    np.savez(path, X=np.zeros((3, 2)), y=np.array([0.5, 0.0, 1.0]))
    with pytest.warns(UserWarning, match="'y' ignored"):
        assert load_array(path).y is None
    np.savez(path, X=np.zeros((3, 2)), y=np.array([0, 1]))
    with pytest.warns(UserWarning, match="'y' ignored"):
        assert load_array(path).y is None


def test_load_csv(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a, b,c\n1,2,3\n4.5,-1e2, 6\n")
    data = load_array(path)
    np.testing.assert_array_equal(data.X, np.float32([[1, 2, 3], [4.5, -100, 6]]))
    assert data.name == "table"

    path.write_text("1,2\n3,4\n")  # no header: the first row is data
    np.testing.assert_array_equal(load_array(path).X, [[1, 2], [3, 4]])
    path.write_text("7\n8\n")
    assert load_array(path).X.shape == (2, 1)


@pytest.mark.parametrize(
    "text, message",
    [
        ("x,y\n1,2\n3,oops\n", r"line 3: expected comma-separated numbers"),
        ("1,2\n3,,4\n", r"line 2: expected comma-separated numbers"),
        ("1,2\n3,4,5\n", r"line 2: expected 2 columns"),
        ("1,nan\n2,3\n", r"1 non-finite values .* row 0"),
        ("x,y\n", "no data rows"),
        ("", "no data rows"),
    ],
)
def test_load_csv_rejects_bad_content(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_array(path)


@pytest.mark.parametrize(
    "array, message",
    [
        (
            np.array([[0.0, 1.0], [np.nan, np.inf], [1.0, np.nan]]),
            "3 non-finite .* row 1",
        ),
        (np.array([[1e300, 0.0]]), "beyond float32 range"),
        (np.ones((2, 2), dtype=np.complex64), "dtype complex64"),
        (np.array([["a", "b"]]), "dtype <U1"),
        (np.ones((0, 3)), "empty"),
        (np.ones((3, 0)), "empty"),
        (np.ones(5), r"got shape \(5,\)"),
        (np.ones((2, 2, 2, 2)), r"got shape \(2, 2, 2, 2\)"),
    ],
)
def test_load_array_rejects_bad_arrays(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DataError, match=message) as info:
        load_array(tmp_path / "bad.npy")
    assert "bad.npy" in str(info.value)


def test_load_array_refuses_pickled_objects(tmp_path):
    objects = np.array([[1, None]], dtype=object)
    np.save(tmp_path / "obj.npy", objects, allow_pickle=True)
    with pytest.raises(DataError, match="pickled"):
        load_array(tmp_path / "obj.npy")
    np.savez(tmp_path / "obj.npz", X=objects)
    with pytest.raises(DataError, match="obj.npz"):
        load_array(tmp_path / "obj.npz")


def test_load_array_rejects_corrupted_files(tmp_path):
    np.savez(tmp_path / "good.npz", X=np.ones((50, 4)))
    raw = (tmp_path / "good.npz").read_bytes()
    _write(tmp_path / "cut.npz", raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cut.npz"):
        load_array(tmp_path / "cut.npz")
    _write(tmp_path / "junk.npy", b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="junk.npy"):
        load_array(tmp_path / "junk.npy")


def test_load_array_suffix_and_missing(tmp_path):
    with pytest.raises(ValueError, match=r"\.npy, \.npz, \.csv"):
        load_array(tmp_path / "data.txt")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_array(tmp_path / "missing.npy")


# ---------------------------------------------------------------------------
# load_dataset
# ---------------------------------------------------------------------------


def test_load_dataset_shapes_splits_differ():
    train = load_dataset("shapes", n_samples=50)
    np.testing.assert_array_equal(train.X, make_shapes(50).X)
    test = load_dataset("shapes", split="test", n_samples=50)
    assert len(test) == 50 and not np.array_equal(train.X, test.X)
    other = load_dataset("shapes", n_samples=50, seed=3)
    assert not np.array_equal(train.X, other.X)


def test_load_dataset_user_file(tmp_path, monkeypatch):
    np.save(tmp_path / "mine.npy", np.arange(20.0).reshape(10, 2))
    data = load_dataset(str(tmp_path / "mine.npy"), n_samples=4)
    np.testing.assert_array_equal(data.X, np.arange(8.0).reshape(4, 2))
    with pytest.raises(ValueError, match="has 10 rows"):
        load_dataset(str(tmp_path / "mine.npy"), n_samples=11)
    with pytest.raises(ValueError, match="n_samples"):
        load_dataset(str(tmp_path / "mine.npy"), n_samples=0)
    monkeypatch.chdir(tmp_path)
    assert len(load_dataset("mine.npy")) == 10


def test_load_dataset_unknown_name():
    with pytest.raises(ValueError, match="shapes, mnist, fashion-mnist"):
        load_dataset("cifar10")


def test_load_dataset_missing_files_mention_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTVAE_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--data-dir") as info:
        load_dataset("binarized-mnist")
    assert str(tmp_path) in str(info.value)


# ---------------------------------------------------------------------------
# Transforms and splits
# ---------------------------------------------------------------------------


def test_binarize():
    X = np.array([[0.0, 0.5, 0.51, 1.0]])
    out = binarize(X)
    assert out.dtype == np.float32 and out.shape == X.shape
    assert out.tolist() == [[0, 0, 1, 1]]
    assert binarize(X, threshold=0.0).tolist() == [[0, 1, 1, 1]]
    with pytest.raises(ValueError, match="threshold"):
        binarize(X, threshold=float("nan"))
    with pytest.raises(ValueError, match="complex"):
        binarize(X.astype(complex))


def test_sample_binarize():
    p = np.tile(np.float32([0.0, 0.3, 1.0]), (20000, 1))
    a = sample_binarize(p, seed=1)
    assert a.dtype == np.float32 and a.shape == p.shape
    assert set(np.unique(a)) == {0.0, 1.0}
    assert a.tobytes() == sample_binarize(p, seed=1).tobytes()
    assert not np.array_equal(a, sample_binarize(p, seed=2))
    assert (a[:, 0] == 0).all() and (a[:, 2] == 1).all()
    assert abs(a[:, 1].mean() - 0.3) < 0.01  # 4.4 standard errors
    for bad in (-0.1, 1.1, np.nan):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            sample_binarize(np.array([0.5, bad]))


def _labelled(n):
    X = np.arange(n, dtype=np.float32)[:, None] * np.ones(4, np.float32)
    return Dataset(X=X, y=np.arange(n) % 3, image_shape=(2, 2), name="toy")


def test_train_validation_split():
    data = _labelled(100)
    train, valid = train_validation_split(data, n_validation=0.2, seed=3)
    assert (len(train), len(valid)) == (80, 20)
    ids = np.concatenate([train.X[:, 0], valid.X[:, 0]])
    assert sorted(ids.tolist()) == list(range(100))  # disjoint and complete
    for part in (train, valid):
        np.testing.assert_array_equal(part.y, part.X[:, 0].astype(int) % 3)
        assert part.image_shape == (2, 2) and part.name == "toy"
        assert np.all(np.diff(part.X[:, 0]) > 0)  # original order kept
    again = train_validation_split(data, n_validation=0.2, seed=3)[1]
    np.testing.assert_array_equal(again.X, valid.X)
    other = train_validation_split(data, n_validation=0.2, seed=4)[1]
    assert not np.array_equal(other.X, valid.X)
    assert len(train_validation_split(data, n_validation=7)[1]) == 7


@pytest.mark.parametrize("n_validation", [0, 10, -1, 0.0, 1.0, 0.01, True, "2"])
def test_train_validation_split_rejects(n_validation):
    with pytest.raises(ValueError, match="n_validation"):
        train_validation_split(_labelled(10), n_validation=n_validation)


def test_dataset_subset_and_validation():
    shapes = make_shapes(10, seed=0)
    part = shapes.subset(np.array([3, 1]))
    np.testing.assert_array_equal(part.X, shapes.X[[3, 1]])
    np.testing.assert_array_equal(part.factors, shapes.factors[[3, 1]])
    assert part.factor_names == shapes.factor_names and len(part) == 2
    assert shapes.subset(slice(0, 10, 3)).X.flags.c_contiguous
    assert Dataset(np.zeros((2, 3)), None, None, "z").X.dtype == np.float32
    with pytest.raises(ValueError, match="y must have shape"):
        Dataset(np.zeros((2, 3)), np.zeros(3), None, "z")
    with pytest.raises(ValueError, match="image_shape"):
        Dataset(np.zeros((2, 3)), None, (2, 2), "z")


# ---------------------------------------------------------------------------
# Real data in ../shared/data (skipped when absent)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_data(shared_data):
    if shared_data is None:
        pytest.skip("../shared/data is not available")
    return shared_data


@pytest.fixture(scope="module")
def mnist_test(real_data):
    return load_mnist(real_data / "mnist", split="test")


def test_mnist_train(real_data):
    data = load_mnist(real_data / "mnist", split="train")
    assert data.X.shape == (60000, 784) and data.X.dtype == np.float32
    assert data.X.min() == 0.0 and data.X.max() == 1.0
    counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(data.y).tolist() == counts


def test_mnist_test(mnist_test):
    assert mnist_test.X.shape == (10000, 784) and mnist_test.name == "mnist"
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(mnist_test.y).tolist() == counts


def test_fashion_mnist_test(real_data):
    data = load_mnist(real_data / "fashion-mnist", kind="fashion-mnist", split="test")
    assert data.X.shape == (10000, 784)
    assert np.bincount(data.y).tolist() == [1000] * 10


def test_binarized_mnist_valid(real_data):
    data = load_binarized_mnist(real_data / "binarized-mnist", split="valid")
    assert data.X.shape == (10000, 784)
    assert set(np.unique(data.X)) == {0.0, 1.0}
    assert abs(data.X.mean() - 0.1311) < 0.0005


def test_flipped_byte_fails_checksum(real_data, tmp_path):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(real_data / "mnist" / name, tmp_path / name)
    label_file = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(label_file.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    label_file.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz failed its"):
        load_mnist(tmp_path, split="test")


def test_decompressed_copies_are_accepted(real_data, tmp_path, mnist_test):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(
            gzip.decompress((real_data / "mnist" / f"{name}.gz").read_bytes())
        )
    data = load_mnist(tmp_path, split="test")  # verified against the raw MD5
    np.testing.assert_array_equal(data.X, mnist_test.X)
    np.testing.assert_array_equal(data.y, mnist_test.y)


def test_load_dataset_finds_subfolder_of_data_dir(real_data, monkeypatch, mnist_test):
    data = load_dataset("mnist", data_dir=real_data, split="test", n_samples=500)
    np.testing.assert_array_equal(data.X, mnist_test.X[:500])
    monkeypatch.setenv("FASTVAE_DATA_DIR", str(real_data))
    with pytest.warns(UserWarning, match="sorted by digit"):
        data = load_dataset("binarized-mnist", split="test", n_samples=100)
    assert len(data) == 100


def test_a_pandas_index_column_in_a_csv_is_dropped_with_a_warning(tmp_path):
    from fastvae.data import load_array

    path = tmp_path / "frame.csv"
    path.write_text(",a,b\n0,0.5,1.5\n1,0.25,2.5\n2,0.75,3.5\n")
    with pytest.warns(UserWarning, match="dropped the first column, an unnamed index"):
        dataset = load_array(path)
    np.testing.assert_array_equal(dataset.X, [[0.5, 1.5], [0.25, 2.5], [0.75, 3.5]])
    # a named first column, or one that is not row numbers, is data
    path.write_text("id,a\n0,0.5\n1,0.25\n")
    assert load_array(path).X.shape == (2, 2)
    path.write_text(",a\n3,0.5\n1,0.25\n")
    assert load_array(path).X.shape == (2, 2)
