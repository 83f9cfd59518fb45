"""Downloading dataset files: from a local HTTP server standing in for the
mirrors (FASTVAE_DATA_URL), with checksums, atomic writes and clear errors
when offline."""

import functools
import http.server
import shutil
import threading

import numpy as np
import pytest

from fastvae import data
from fastvae.data import download


@pytest.fixture()
def server(tmp_path):
    """An HTTP server on localhost serving the folder tmp_path / 'www'."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(root)
    )
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _mnist_folder(shared_data):
    folder = None if shared_data is None else shared_data / "mnist"
    if folder is None or not folder.is_dir():
        pytest.skip("../shared/data/mnist is not available")
    return folder


def test_download_fetches_verifies_and_loads(
    server, tmp_path, shared_data, monkeypatch
):
    root, url = server
    for f in _mnist_folder(shared_data).glob("t10k-*.gz"):
        shutil.copy(f, root / f.name)
    monkeypatch.setenv("FASTVAE_DATA_URL", url)
    cache = tmp_path / "cache"
    test = data.load_mnist(cache, split="test", download=True)
    assert test.X.shape == (10000, 784) and test.y[:3].tolist() == [7, 2, 1]
    assert sorted(p.name for p in cache.iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    # present now: loading again needs no server
    monkeypatch.setenv("FASTVAE_DATA_URL", "http://127.0.0.1:1/")
    again = data.load_mnist(cache, split="test")
    np.testing.assert_array_equal(again.X, test.X)


def test_download_through_load_dataset_into_the_cache(
    server, tmp_path, shared_data, monkeypatch
):
    root, url = server
    for f in _mnist_folder(shared_data).glob("t10k-*.gz"):
        shutil.copy(f, root / f.name)
    monkeypatch.setenv("FASTVAE_DATA_URL", url)
    monkeypatch.setenv("FASTVAE_DATA_DIR", str(tmp_path / "root"))
    got = data.load_dataset("mnist", split="test", n_samples=5, download=True)
    assert got.X.shape == (5, 784)
    assert (tmp_path / "root" / "t10k-labels-idx1-ubyte.gz").is_file()


def test_a_corrupted_download_is_refused_and_not_kept(server, tmp_path, monkeypatch):
    root, url = server
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the real file")
    monkeypatch.setenv("FASTVAE_DATA_URL", url)
    with pytest.raises(
        data.DataError, match="checksum .* expected ec29112dd5afa0611ce80d1b7f02629c"
    ):
        download.fetch(
            "mnist",
            "t10k-labels-idx1-ubyte.gz",
            tmp_path / "c",
            "ec29112dd5afa0611ce80d1b7f02629c",
        )
    assert not any((tmp_path / "c").iterdir())


def test_offline_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTVAE_DATA_URL", "http://127.0.0.1:1/")  # nothing listens
    with pytest.raises(
        download.DownloadError,
        match=r"could not download t10k-images-idx3-ubyte.gz of mnist: .*"
        r"offline, put the file in",
    ):
        data.load_mnist(tmp_path / "c", split="test", download=True)
    with pytest.raises(FileNotFoundError, match="download=True, --download"):
        data.load_mnist(tmp_path / "empty", split="test")


def test_missing_file_on_the_mirror(server, tmp_path, monkeypatch):
    _, url = server
    monkeypatch.setenv("FASTVAE_DATA_URL", url)
    with pytest.raises(download.DownloadError, match="File not found|Not Found"):
        download.fetch(
            "fashion-mnist",
            "t10k-labels-idx1-ubyte.gz",
            tmp_path,
            "bb300cfdad3c16e7a12a480ee83cd310",
        )


def test_binarized_mnist_downloads_the_plain_amat(
    server, tmp_path, shared_data, monkeypatch
):
    folder = None if shared_data is None else shared_data / "binarized-mnist"
    if folder is None or not folder.is_dir():
        pytest.skip("../shared/data/binarized-mnist is not available")
    import gzip

    root, url = server
    (root / "binarized_mnist_valid.amat").write_bytes(
        gzip.decompress((folder / "binarized_mnist_valid.amat.gz").read_bytes())
    )
    monkeypatch.setenv("FASTVAE_DATA_URL", url)
    valid = data.load_binarized_mnist(tmp_path, split="valid", download=True)
    assert valid.X.shape == (10000, 784)
    assert (tmp_path / "binarized_mnist_valid.amat").is_file()


def test_mirrors_cover_every_dataset():
    assert set(download.MIRRORS) == {"mnist", "fashion-mnist", "binarized-mnist"}
    for bases in download.MIRRORS.values():
        assert all(b.endswith("/") and b.startswith("http") for b in bases)
