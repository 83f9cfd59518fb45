"""fastvae's C-level API from outside: examples/cython_embed, built in a
temporary folder against the installed fastvae (fastvae.get_include()), must
give bitwise the numbers of fastvae's Python API."""

import importlib.util
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastvae
from fastvae._core import _dense, _rng
from fastvae._core import _network as network_module
from fastvae._core.params import Layout
from fastvae._core.threads import partition_count

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "cython_embed"
RELU, IDENTITY = _dense.ACTIVATIONS["relu"], _dense.ACTIVATIONS["identity"]
D, H, K, B, N_ROWS, SEED = 12, 10, 3, 8, 40, 7


def _version_macro(header):
    match = re.search(r"#define FASTVAE_C_API_VERSION (\d+)", header.read_text())
    assert match, f"no FASTVAE_C_API_VERSION in {header}"
    return int(match.group(1))


def test_c_api_version_macro_matches_python():
    assert _version_macro(REPO / "src_c" / "fastvae" / "version.h") == (
        fastvae.C_API_VERSION
    )
    installed = Path(fastvae.get_include()) / "fastvae" / "version.h"
    assert _version_macro(installed) == fastvae.C_API_VERSION


def _cimported(pxd):
    return re.findall(r"^from fastvae\.([\w.]+) cimport", pxd.read_text(), re.M)


def test_get_include_holds_the_whole_public_api():
    """Every .pxd the public __init__.pxd needs, and every header those
    declare or include, is in get_include(), identical to the package's."""
    inc = Path(fastvae.get_include()) / "fastvae"
    package = Path(fastvae.__file__).parent
    todo, seen, headers = ["__init__"], set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        pxd = inc / f"{name.replace('.', '/')}.pxd"
        own = package / f"{name.replace('.', '/')}.pxd"
        assert pxd.read_bytes() == own.read_bytes(), (
            f"{pxd} differs from the package's {name}.pxd: rebuild "
            "(python setup.py build_ext --inplace copies it)"
        )
        todo += _cimported(pxd)
        headers |= set(
            re.findall(r'cdef extern from "fastvae/(\w+\.h)"', pxd.read_text())
        )
    core = {"_dense", "_losses", "_optim", "_reparam", "_rng", "_step"}
    assert {f"_core.{name}" for name in core} <= seen
    todo = sorted(headers)
    assert "version.h" in todo and "philox.h" in todo
    while todo:
        header = inc / todo.pop()
        assert header.is_file(), header
        todo += re.findall(r'#include "fastvae/(\w+\.h)"', header.read_text())


def test_every_public_function_is_exported():
    """A cdef function reaches another extension through its module's
    __pyx_capi__ (a fused one as one entry per precision): every function
    __init__.pxd re-exports from a compiled module must be there."""
    package = Path(fastvae.__file__).parent
    public = (package / "__init__.pxd").read_text()
    checked = 0
    imports = r"^from fastvae\.([\w.]+) cimport (?:\(([^)]*)\)|([^\n(]+)$)"
    for module, group, line in re.findall(imports, public, re.M):
        pxd = (package / f"{module.replace('.', '/')}.pxd").read_text()
        capi = getattr(importlib.import_module(f"fastvae.{module}"), "__pyx_capi__", {})
        for name in re.findall(r"\w+", group or line):
            if not re.search(rf"^cdef (?!inline|extern)[^\n]*\b{name}\(", pxd, re.M):
                continue  # a type, a constant, an inline or a C header's function
            fused = {f"__pyx_fuse_0{name}", f"__pyx_fuse_1{name}"}
            assert name in capi or fused <= capi.keys(), f"fastvae.{module}.{name}"
            checked += 1
    assert checked >= 19  # dense 2, reparam 4, losses 4, optim 2, step 7


# -- the example, built once for this module ----------------------------------


@pytest.fixture(scope="module")
def embed(tmp_path_factory):
    build = tmp_path_factory.mktemp("cython_embed")
    for name in ("embed.pyx", "setup.py", "demo.py"):
        shutil.copy(EXAMPLE / name, build / name)
    done = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=build,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    so = build / ("embed" + sysconfig.get_config_var("EXT_SUFFIX"))
    spec = importlib.util.spec_from_file_location("embed", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build_dir = build
    return module


def _network(dtype, likelihood="bernoulli", optimizer="adam", max_batch=B):
    lay = Layout((D, H, 2 * K), (K, H, D))
    net = network_module.Network(
        lay.encoder_dims,
        lay.decoder_dims,
        [RELU, IDENTITY, RELU, IDENTITY],
        lay.w_offsets,
        lay.b_offsets,
        lay.size,
        likelihood,
        0.7,
        max_batch,
        dtype,
        partition_count(),
    )
    net.set_optimizer(optimizer, 1e-2)
    return net, lay


def _problem(dtype, likelihood, n_steps=5):
    rng = np.random.default_rng(3)
    X = rng.random((N_ROWS, D))
    if likelihood == "gaussian":
        X = 2.0 * X - 1.0
    lay = Layout((D, H, 2 * K), (K, H, D))
    params = lay.zeros(dtype)
    for W, b in lay.views(params):
        W[...] = rng.standard_normal(W.shape) * 0.4
        b[...] = rng.standard_normal(b.shape) * 0.1
    rows = np.stack([rng.permutation(N_ROWS)[:B] for _ in range(n_steps)])
    return X.astype(dtype), params, rows.astype(np.int64)


def _python_steps(net, lay, params, X, rows, first_step, kl_weight):
    """The same steps through the Network's Python method."""
    p, g = params.copy(), lay.zeros(params.dtype)
    s1, s2 = lay.zeros(params.dtype), lay.zeros(params.dtype)
    sums = []
    for s, r in enumerate(rows):
        status, recon, kl = net.train_step(
            p, g, s1, s2, X, r, len(r), SEED, first_step + s, kl_weight, 1
        )
        assert status == 0
        sums.append((recon, kl))
    return p, s1, s2, np.array(sums)


@pytest.mark.slow
def test_module_reports_the_c_api_version(embed):
    assert embed.c_api_version() == fastvae.C_API_VERSION


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_philox_draws_match_python(embed, dtype):
    got = embed.normals(SEED, _rng.STREAM_USER, 5, 7, 9, dtype, n_threads=2)
    want = _rng.normal_matrix(SEED, _rng.STREAM_USER, 5, 7, 9, dtype=dtype)
    assert got.dtype == dtype
    assert_array_equal(got, want)
    assert_array_equal(
        embed.uniforms(SEED, _rng.STREAM_USER + 1, 2, 6, 11, n_threads=2),
        _rng.uniform_matrix(SEED, _rng.STREAM_USER + 1, 2, 6, 11),
    )


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "likelihood, optimizer", [("bernoulli", "adam"), ("gaussian", "momentum")]
)
@pytest.mark.parametrize("function", ["train", "train_from_kernels"])
def test_nogil_steps_match_network_train_step(
    embed, dtype, likelihood, optimizer, function
):
    """fastvae.train_step in the module's nogil loop, and the same step built
    there from the dense, reparameterization, loss and optimizer kernels,
    give bitwise Network.train_step's parameters, states and losses."""
    net, lay = _network(dtype, likelihood, optimizer)
    X, params, rows = _problem(dtype, likelihood)
    want = _python_steps(net, lay, params, X, rows, first_step=3, kl_weight=0.5)
    p, s1, s2 = params.copy(), lay.zeros(dtype), lay.zeros(dtype)
    sums = getattr(embed, function)(net, p, s1, s2, X, rows, SEED, 3, 0.5, n_threads=2)
    assert not np.array_equal(p, params)
    for got, expected in zip((p, s1, s2, sums), want, strict=True):
        assert_array_equal(got, expected)


@pytest.mark.slow
def test_train_continues_vae_fit_bitwise(embed):
    """Steps run through the C API continue a fastvae.VAE exactly as more
    epochs of fit do. All rows are equal, so fit's shuffled minibatch order
    is the identity."""
    x = np.random.default_rng(0).random(D).astype(np.float32)
    X = np.tile(x, (B, 1))
    vae = fastvae.VAE(
        hidden=(H,),
        latent_dim=K,
        optimizer="sgd",
        lr=0.05,
        epochs=1,
        batch_size=B,
        random_state=SEED,
        warm_start=True,
    )
    vae.fit(X)
    start, t = vae.params_.copy(), vae.t_
    vae.fit(X, epochs=3)
    net, lay = _network(np.float32, "bernoulli", "sgd")
    net.set_optimizer("sgd", 0.05)
    p = start.copy()
    rows = np.tile(np.arange(B, dtype=np.int64), (3, 1))
    embed.train(
        net,
        p,
        lay.zeros(np.float32),
        lay.zeros(np.float32),
        X,
        rows,
        SEED,
        first_step=t,
    )
    assert vae.t_ == t + 3
    assert not np.array_equal(p, start)
    assert_array_equal(p, vae.params_)


@pytest.mark.slow
def test_bad_input_raises_through_the_c_api(embed):
    net, lay = _network(np.float64)
    X, params, rows = _problem(np.float64, "bernoulli", n_steps=2)
    zeros = lay.zeros(np.float64)
    with pytest.raises(TypeError, match="fastvae._core._network.Network"):
        embed.train(object(), params, zeros, zeros, X, rows, SEED)
    with pytest.raises(ValueError, match=f"length {lay.size}"):
        embed.train(net, params[:-1], zeros[:-1], zeros[:-1], X, rows, SEED)
    X[next(r for r in rows[1] if r not in rows[0]), 0] = np.inf
    p = params.copy()
    with pytest.raises(FloatingPointError, match="step 1: status 1"):
        embed.train(net, p, zeros.copy(), zeros.copy(), X, rows, SEED)


@pytest.mark.slow
def test_demo_trains(embed):
    done = subprocess.run(
        [sys.executable, "demo.py"], cwd=embed.build_dir, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first, last = map(float, re.findall(r"steps (\d+\.\d+)", done.stdout))
    assert last < 0.6 * first, done.stdout
