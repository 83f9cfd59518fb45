"""Every SIMD level this CPU runs, on one machine (src_c/fastvae/dispatch.h).

The kernels read the process's ISA cap (fastvae.set_isa, FASTVAE_ISA) on
every call, so each level the CPU supports can be checked here: against the
float64 reference, for a real change of code path, and for bitwise equal
training across thread counts. AVX-512 is skipped on CPUs without it.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference as ref

import fastvae
from fastvae._core import _dense, _losses, _optim, _step

ORDER = ["baseline", "avx2", "avx512"]
CODES = {"baseline": 1, "avx2": 3, "avx512": 4}
CPU = fastvae.get_isa()["cpu"]
LEVELS = [
    pytest.param(
        lv,
        marks=pytest.mark.skipif(
            ORDER.index(lv) > ORDER.index(CPU), reason=f"this CPU or build has no {lv}"
        ),
    )
    for lv in ORDER
]
TESTS = Path(__file__).resolve().parent
# The modules that include the dispatched headers (each binds to the cap).
DISPATCHING = {"_dense": _dense, "_losses": _losses, "_optim": _optim, "_step": _step}


@pytest.fixture
def at_level(request):
    """Run the test under set_isa(level), then restore the previous cap."""
    before = fastvae.get_isa()["cap"]
    fastvae.set_isa(request.param)
    yield request.param
    fastvae.set_isa(before)


def _bits(a):
    """A digest of the bytes: equal iff bitwise equal, and short in a
    failure message."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.mark.parametrize("at_level", LEVELS, indirect=True)
def test_every_module_dispatches_at_the_cap(at_level):
    assert fastvae.get_isa()["level"] == at_level
    for name, mod in DISPATCHING.items():
        assert mod._dispatch_level() == CODES[at_level], name


@pytest.mark.parametrize("at_level", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-6), (np.float64, 1e-14)])
def test_kernels_match_reference(at_level, dtype, rtol):
    rng = np.random.default_rng(5)
    n, D = 37, 131  # a tail after the SIMD lanes
    L = (rng.standard_normal((n, D)) * 4).astype(dtype)
    X = (rng.random((n, D)) < 0.4).astype(dtype)
    M = rng.standard_normal((n, D)).astype(dtype)
    loss, grad = _losses.bernoulli_memview(L, X, 0.5)
    Ld, Xd, Md = (a.astype(np.float64) for a in (L, X, M))
    want_loss, want_grad = ref.bernoulli(Ld, Xd)
    np.testing.assert_allclose(loss, want_loss, rtol=rtol * 10)
    np.testing.assert_allclose(grad, 0.5 * want_grad, rtol=rtol * 10, atol=rtol)
    loss, grad = _losses.gaussian_memview(M, X, 0.7, 1.0)
    want_loss, want_grad = ref.gaussian(Md, Xd, 0.7)
    np.testing.assert_allclose(loss, want_loss, rtol=rtol * 10)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol * 10, atol=rtol)

    W = (rng.standard_normal((D, 19)) * 0.1).astype(dtype)
    b = rng.standard_normal(19).astype(dtype)
    for act in ("identity", "relu", "tanh", "sigmoid"):
        want = ref.dense_forward(Ld, W.astype(np.float64), b.astype(np.float64), act)
        for got in (
            _dense.dense_forward_memview(L, W, b, act),
            _dense.dense_rows_memview(L, W, b, act),
        ):
            np.testing.assert_allclose(
                got, want, rtol=rtol * 1e3, atol=rtol * 1e2, err_msg=act
            )
        Y = want.astype(dtype)
        Dm = rng.standard_normal(Y.shape).astype(dtype)
        want_d = Dm.astype(np.float64) * ref.activation_grad_from_output(
            Y.astype(np.float64), act
        )
        _dense.activation_grad_memview(Dm, Y, act)
        np.testing.assert_allclose(Dm, want_d, rtol=rtol * 10, atol=rtol, err_msg=act)

    p = rng.standard_normal(1037).astype(dtype)
    s1, s2 = np.zeros_like(p), np.zeros_like(p)
    rp, rm, rv = (a.astype(np.float64) for a in (p, s1, s2))
    for t in range(1, 4):
        g = rng.standard_normal(p.size).astype(dtype)
        _optim.optimizer_update_memview("adam", t, p, g, s1, s2, 1e-3)
        rp, rm, rv = ref.adam(
            rp, g.astype(np.float64), rm, rv, t, 1e-3, 0.9, 0.999, 1e-8
        )
    np.testing.assert_allclose(p, rp, rtol=rtol * 10, atol=rtol / 10)


@pytest.mark.parametrize("level", LEVELS)
def test_kernel_test_modules_pass_at_level(level):
    """The whole reference suites of the element-wise kernels, capped."""
    env = dict(os.environ, FASTVAE_ISA=level)
    files = ["test_losses.py", "test_dense.py", "test_optim.py", "test_reparam.py"]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            *(str(TESTS / f) for f in files),
        ],
        # from the repository root, like the outer run: an in-place build
        # there is the fastvae under test, not another installed one
        env=env,
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


@pytest.mark.skipif(CPU == "baseline", reason="one level only")
def test_levels_run_different_code():
    """Not only the reported level: the numbers change in the last bits
    (FMA contraction and vector widths of the avx2 copies)."""
    rng = np.random.default_rng(11)
    L = (rng.standard_normal((64, 784)) * 4).astype(np.float32)
    X = (rng.random((64, 784)) < 0.4).astype(np.float32)
    p0 = rng.standard_normal(4096).astype(np.float32)
    g = rng.standard_normal(4096).astype(np.float32)
    before = fastvae.get_isa()["cap"]
    out = {}
    try:
        for lv in ("baseline", "avx2"):
            fastvae.set_isa(lv)
            loss, grad = _losses.bernoulli_memview(L, X)
            p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
            for t in range(1, 4):
                _optim.optimizer_update_memview("adam", t, p, g, m, v, 1e-3)
            out[lv] = (_bits(loss), _bits(grad), _bits(p))
    finally:
        fastvae.set_isa(before)
    assert any(a != b for a, b in zip(out["baseline"], out["avx2"], strict=True))


def _fit(X, n_threads):
    model = fastvae.VAE(
        X.shape[1],
        hidden=(48,),
        latent_dim=6,
        epochs=2,
        batch_size=32,
        dynamic_binarization=True,
        random_state=3,
        n_threads=n_threads,
    )
    model.fit(X)
    return model


@pytest.mark.parametrize("at_level", LEVELS, indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_bitwise_across_threads(at_level, dtype):
    rng = np.random.default_rng(7)
    X = rng.random((200, 67)).astype(dtype)
    prev = fastvae.get_num_threads()
    try:
        runs = []
        for nt in (1, 2, 3):
            fastvae.set_num_threads(nt)
            model = _fit(X, nt)
            runs.append(
                (
                    _bits(model.params_),
                    _bits(model.score_samples(X[:50])),
                    _bits(model.transform(X[:50])),
                )
            )
    finally:
        fastvae.set_num_threads(prev)
    assert runs[1] == runs[0] and runs[2] == runs[0]


@pytest.mark.skipif(CPU == "baseline", reason="one level only")
def test_training_differs_between_levels():
    X = np.random.default_rng(8).random((200, 67)).astype(np.float32)
    before = fastvae.get_isa()["cap"]
    try:
        params = {}
        for lv in ("baseline", "avx2"):
            fastvae.set_isa(lv)
            params[lv] = _bits(_fit(X, 1).params_)
    finally:
        fastvae.set_isa(before)
    assert params["baseline"] != params["avx2"]


@pytest.mark.parametrize("level", ["baseline", "avx2"])
def test_env_sets_the_cap_at_import(level):
    code = (
        "import fastvae; from fastvae._core import _dense, _losses, _optim, _step; "
        "i = fastvae.get_isa(); "
        "print(i['level'], i['cap'], [m._dispatch_level() "
        "for m in (_dense, _losses, _optim, _step)])"
    )
    env = dict(os.environ, FASTVAE_ISA=level)
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    got_level, cap, probes = run.stdout.strip().split(" ", 2)
    assert cap == level
    expect = level if ORDER.index(level) <= ORDER.index(CPU) else CPU
    assert got_level == expect
    assert probes == str([CODES[expect]] * 4)
