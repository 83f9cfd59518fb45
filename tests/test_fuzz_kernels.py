"""Property-based fuzzing of every Python-reachable compiled wrapper.

Hypothesis draws shapes (down to 1x1), dtypes (float32 and float64, plus
float16, int32 and complex as invalid ones) and memory layouts (C order,
Fortran order, offset views, column slices, row steps, negative strides,
read-only copies) for every array argument. A call with a valid layout must
match the float64 NumPy reference (tests/reference.py) within the dtype's
tolerance; any other call must raise a ValueError or TypeError that says
what is wrong. A crash would take the test process down with it.

Hypothesis runs derandomized (the same examples on every run) with modest
example counts, so CI stays reproducible and fast.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference as ref
from _helpers import (
    assert_close_scaled,
    flat_grads,
    init_params,
    ref_layers,
    trainable_mask,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fastvae._core import (
    _blas,
    _dense,
    _losses,
    _network,
    _numerics,
    _optim,
    _reparam,
    _rng,
)
from fastvae._core.params import Layout

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FLOATS = (np.float32, np.float64)
# invalid dtypes are drawn now and then
DTYPE = st.sampled_from(
    [np.float32, np.float64] * 8 + [np.float16, np.int32, np.complex128]
)
LAYOUTS = (
    "C",
    "F",
    "offset view",
    "column slice",
    "row step",
    "negative stride",
    "read-only",
)
LAYOUT = st.sampled_from(("C",) * 12 + LAYOUTS[1:])
ACTS = ("identity", "relu", "tanh", "sigmoid")
# what the wrappers (and Cython's buffer checks) say about a bad argument
CLEAR = (
    r"C-contiguous|C contiguous|dtype mismatch|No matching signature|read-only|"
    r"buffer dtype format|"
    r"must be|must have|overlap|do not agree|shapes differ|wrong shape|same shape|"
    r"wrong number of dimensions"
)
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _place(values, dtype, layout):
    """`values` (a float64 array) cast to dtype, stored in `layout`."""
    a = np.asarray(values).astype(dtype)
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "read-only":
        a = a.copy()
        a.setflags(write=False)
        return a
    if a.ndim == 1:
        a2 = a[None, :]
    else:
        a2 = a
    r, c = a2.shape
    if layout == "offset view":
        big = np.zeros((r + 2, c), dtype)
        big[1:-1] = a2
        out = big[1:-1]
    elif layout == "column slice":
        big = np.zeros((r, c + 3), dtype)
        big[:, 1 : c + 1] = a2
        out = big[:, 1 : c + 1]
    elif layout == "row step":
        big = (
            np.zeros((2 * r, c), dtype) if a.ndim == 2 else np.zeros((r, 2 * c), dtype)
        )
        if a.ndim == 2:
            big[::2] = a2
            out = big[::2]
        else:
            big[:, ::2] = a2
            out = big[:, ::2]
    elif layout == "negative stride":
        out = a2[::-1].copy()[::-1] if a.ndim == 2 else a2[:, ::-1].copy()[:, ::-1]
    else:
        raise ValueError(layout)
    return out if a.ndim == 2 else out[0]


def _ok(arr, writable=False):
    """Would a typed memoryview `floating[::1]` / `[:, ::1]` take this array?"""
    return (
        arr.dtype in (np.float32, np.float64)
        and arr.flags.c_contiguous
        and (arr.flags.writeable or not writable)
    )


def _valid(*arrays, writable=()):
    """All arrays acceptable and of one float dtype (the fused specialisation)."""
    dtypes = {a.dtype for a in arrays}
    return len(dtypes) == 1 and all(_ok(a, i in writable) for i, a in enumerate(arrays))


def _expect(valid, call):
    """call() if valid; else it must raise a clear ValueError/TypeError."""
    event("valid layout" if valid else "refused layout")
    if valid:
        return call()
    with pytest.raises((ValueError, TypeError), match=CLEAR):
        call()
    return None


def _tol(dtype):
    return TOL[np.dtype(dtype).type]


def _arrays(draw, specs):
    """Draw one dtype (sometimes one per array) and a layout per array.
    specs: list of (shape, writable)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    common = draw(DTYPE)
    mixed = draw(st.integers(0, 9)) == 0
    out = []
    for shape, _ in specs:
        dtype = draw(DTYPE) if mixed else common
        values = rng.uniform(-3, 3, size=shape)
        out.append(_place(values, dtype, draw(LAYOUT)))
    return out


def _f64(a):
    return np.asarray(a, dtype=np.float64)


# -- GEMM and dense layers -------------------------------------------------------------

DIM = st.integers(1, 9)


@FUZZ
@given(st.data())
def test_gemm(data):
    m, n, k = data.draw(DIM), data.draw(DIM), data.draw(DIM)
    ta, tb = data.draw(st.booleans()), data.draw(st.booleans())
    a, b, c = _arrays(
        data.draw,
        [
            ((k, m) if ta else (m, k), False),
            ((n, k) if tb else (k, n), False),
            ((m, n), True),
        ],
    )
    alpha, beta = (
        data.draw(st.sampled_from([1.0, -0.5, 2.0])),
        data.draw(st.sampled_from([0.0, 1.0, -1.5])),
    )
    valid = _valid(a, b, c, writable=(2,))
    c0 = _f64(c).copy() if valid else None
    _expect(valid, lambda: _blas.gemm_memview(ta, tb, a, b, c, alpha, beta))
    if valid:
        A, B = (_f64(a).T if ta else _f64(a)), (_f64(b).T if tb else _f64(b))
        want = alpha * A @ B + beta * c0
        scale = abs(alpha) * np.abs(A) @ np.abs(B) + abs(beta) * np.abs(c0)
        assert_close_scaled(c, want, scale, _tol(c.dtype), err_msg="gemm")


@FUZZ
@given(st.data())
def test_dense_forward(data):
    rows, n_in, n_out = data.draw(DIM), data.draw(DIM), data.draw(DIM)
    X, W, b = _arrays(
        data.draw, [((rows, n_in), False), ((n_in, n_out), False), ((n_out,), False)]
    )
    act = data.draw(st.sampled_from(ACTS))
    n_threads, parts = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    Y = _expect(
        _valid(X, W, b),
        lambda: _dense.dense_forward_memview(X, W, b, act, n_threads, parts),
    )
    if Y is not None:
        assert Y.dtype == X.dtype and Y.shape == (rows, n_out)
        want = ref.dense_forward(_f64(X), _f64(W), _f64(b), act)
        scale = np.abs(_f64(X)) @ np.abs(_f64(W)) + np.abs(_f64(b))
        assert_close_scaled(Y, want, scale, _tol(X.dtype), atol=1e-6, err_msg=act)


@FUZZ
@given(st.data())
def test_dense_backward(data):
    rows, n_in, n_out = data.draw(DIM), data.draw(DIM), data.draw(DIM)
    X, W, dA = _arrays(
        data.draw,
        [((rows, n_in), False), ((n_in, n_out), False), ((rows, n_out), False)],
    )
    act, need_dx = data.draw(st.sampled_from(ACTS)), data.draw(st.booleans())
    out = _expect(
        _valid(X, W, dA),
        lambda: _dense.dense_backward_memview(
            X,
            W,
            dA,
            act,
            need_dx,
            data.draw(st.integers(1, 3)),
            data.draw(st.integers(1, 4)),
        ),
    )
    if out is not None:
        dX, dW, db = out
        rdX, rdW, rdb = ref.dense_backward(_f64(X), _f64(W), _f64(dA), act)
        t = _tol(X.dtype)
        assert_close_scaled(
            dW, rdW, np.abs(_f64(X)).T @ np.abs(_f64(dA)), t, err_msg="dW"
        )
        assert_close_scaled(db, rdb, np.abs(_f64(dA)).sum(0), t, err_msg="db")
        if need_dx:
            g = np.abs(ref.activation_grad_from_output(_f64(X), act))
            assert_close_scaled(
                dX, rdX, (np.abs(_f64(dA)) @ np.abs(_f64(W)).T) * g, t, err_msg="dX"
            )
        else:
            assert dX is None


@FUZZ
@given(st.data())
def test_activation_grad(data):
    shape = (data.draw(DIM), data.draw(DIM))
    D, Y = _arrays(data.draw, [(shape, True), (shape, False)])
    act = data.draw(st.sampled_from(ACTS))
    valid = _valid(D, Y, writable=(0,))
    want = _f64(D) * ref.activation_grad_from_output(_f64(Y), act) if valid else None
    _expect(valid, lambda: _dense.activation_grad_memview(D, Y, act))
    if valid:
        assert_close_scaled(
            D, want, np.abs(want), _tol(D.dtype), atol=1e-7, err_msg=act
        )


def test_activation_grad_refuses_overlapping_buffers():
    buf = np.ones(13)
    with pytest.raises(ValueError, match="D and Y overlap in memory"):
        _dense.activation_grad_memview(
            buf[1:].reshape(3, 4), buf[:-1].reshape(3, 4), "tanh"
        )


# -- reparameterization, KL and likelihoods --------------------------------------------


U64 = st.integers(0, 2**64 - 1)


@FUZZ
@given(st.data())
def test_reparam_forward_and_backward(data):
    n, K = data.draw(DIM), data.draw(st.integers(1, 5))
    H, dZ = _arrays(data.draw, [((n, 2 * K), False), ((n, K), False)])
    seed, stream, step, ro, draw = (data.draw(U64) for _ in range(5))
    n_threads = data.draw(st.integers(1, 3))
    out = _expect(
        _valid(H),
        lambda: _reparam.reparam_forward_memview(
            H, seed, stream, step, ro, draw, n_threads
        ),
    )
    if out is None:
        return
    Z, eps = out
    np.testing.assert_array_equal(
        eps, _rng.normal_matrix(seed, stream, step, n, K, ro, draw, dtype=H.dtype)
    )
    want = ref.reparam_forward(_f64(H), _f64(eps))
    assert_close_scaled(
        Z, want, np.abs(want) + np.abs(_f64(H[:, :K])), _tol(H.dtype), err_msg="Z"
    )
    eps_in = np.ascontiguousarray(eps) if data.draw(st.booleans()) else eps.T.copy().T
    dH = _expect(
        _valid(H, eps_in, dZ),
        lambda: _reparam.reparam_backward_memview(H, eps_in, dZ, n_threads),
    )
    if dH is not None:
        want = ref.reparam_backward(_f64(H), _f64(eps), _f64(dZ))
        assert_close_scaled(dH, want, np.abs(want), _tol(H.dtype), err_msg="dH")


@FUZZ
@given(st.data())
def test_kl_and_its_gradient(data):
    n, K = data.draw(DIM), data.draw(st.integers(1, 5))
    (H,) = _arrays(data.draw, [((n, 2 * K), False)])
    scale = data.draw(st.sampled_from([1.0, 0.25, -2.0]))
    kl = _expect(_valid(H), lambda: _losses.kl_memview(H, data.draw(st.integers(1, 3))))
    if kl is None:
        return
    mu, lv = ref.split_head(_f64(H))
    terms = np.exp(lv) + mu**2 + 1 + np.abs(lv)
    assert_close_scaled(
        kl, ref.kl(_f64(H)), 0.5 * terms.sum(1), _tol(H.dtype), err_msg="kl"
    )
    dH = _losses.kl_backward_memview(H, scale)
    want = scale * ref.kl_backward(_f64(H))
    assert_close_scaled(
        dH, want, np.abs(want) + abs(scale), _tol(H.dtype), err_msg="dKL"
    )


@FUZZ
@given(st.data())
def test_bernoulli_and_gaussian_losses(data):
    shape = (data.draw(DIM), data.draw(DIM))
    L, X = _arrays(data.draw, [(shape, False), (shape, False)])
    scale = data.draw(st.sampled_from([1.0, 0.125]))
    sigma = data.draw(st.sampled_from([1.0, 0.3, 2.5]))
    n_threads = data.draw(st.integers(1, 3))
    valid = _valid(L, X)
    out = _expect(valid, lambda: _losses.bernoulli_memview(L, X, scale, n_threads))
    if out is not None:
        loss, grad = out
        want_loss, want_grad = ref.bernoulli(_f64(L), _f64(X))
        terms = (np.logaddexp(0, _f64(L)) + np.abs(_f64(X) * _f64(L))).sum(1)
        assert_close_scaled(loss, want_loss, terms, _tol(L.dtype), err_msg="bernoulli")
        assert_close_scaled(
            grad,
            scale * want_grad,
            scale * (1 + np.abs(_f64(X))),
            _tol(L.dtype),
            err_msg="bernoulli grad",
        )
    out = _expect(
        valid, lambda: _losses.gaussian_memview(L, X, sigma, scale, n_threads)
    )
    if out is not None:
        loss, grad = out
        want_loss, want_grad = ref.gaussian(_f64(L), _f64(X), sigma)
        assert_close_scaled(
            loss,
            want_loss,
            np.abs(want_loss) + shape[1],
            _tol(L.dtype),
            err_msg="gaussian",
        )
        assert_close_scaled(
            grad,
            scale * want_grad,
            scale * (np.abs(_f64(L)) + np.abs(_f64(X))) / sigma**2,
            _tol(L.dtype),
            err_msg="gaussian grad",
        )


# -- optimizers ------------------------------------------------------------------------


@FUZZ
@given(st.data())
def test_optimizer_updates(data):
    n = data.draw(st.integers(1, 70))
    kind = data.draw(st.sampled_from(["sgd", "momentum", "adam"]))
    p, g, s1, s2 = _arrays(
        data.draw, [((n,), True), ((n,), False), ((n,), True), ((n,), True)]
    )
    if kind == "adam" and s2.flags.writeable:
        s2[...] = np.abs(s2)  # Adam's second moment is >= 0
    t = data.draw(st.integers(1, 50))
    lr = data.draw(st.sampled_from([0.1, 1e-3]))
    valid = _valid(p, g, s1, s2, writable=(0, 2, 3))
    before = [_f64(a).copy() for a in (p, g, s1, s2)] if valid else None
    _expect(
        valid,
        lambda: _optim.optimizer_update_memview(
            kind,
            t,
            p,
            g,
            s1,
            s2,
            lr,
            0.9,
            0.9,
            0.999,
            1e-8,
            data.draw(st.integers(1, 3)),
        ),
    )
    if not valid:
        return
    P, G, S1, S2 = before
    rtol = 50 * _tol(p.dtype)
    if kind == "sgd":
        assert_close_scaled(p, ref.sgd(P, G, lr), np.abs(P) + lr * np.abs(G), rtol)
    elif kind == "momentum":
        want_p, want_v = ref.momentum(P, G, S1, lr, 0.9)
        assert_close_scaled(s1, want_v, 0.9 * np.abs(S1) + np.abs(G), rtol)
        assert_close_scaled(p, want_p, np.abs(P) + lr * (np.abs(S1) + np.abs(G)), rtol)
    else:
        want_p, want_m, want_v = ref.adam(P, G, S1, S2, t, lr, 0.9, 0.999, 1e-8)
        assert_close_scaled(s1, want_m, np.abs(S1) + np.abs(G), rtol)
        assert_close_scaled(s2, want_v, S2 + G * G, rtol)
        assert_close_scaled(p, want_p, np.abs(P) + np.abs(want_p - P), rtol)


# -- random numbers and float32 math ---------------------------------------------------


def _philox_reference(counter, key):
    """numpy.random.Philox's block for `counter` (numpy increments before use)."""
    c = (sum(int(v) << (64 * i) for i, v in enumerate(counter)) - 1) % 2**256
    words = np.array([(c >> (64 * i)) & (2**64 - 1) for i in range(4)], dtype=np.uint64)
    bg = np.random.Philox(counter=words, key=np.array(key, dtype=np.uint64))
    return bg.random_raw(4)


@FUZZ
@given(st.data())
def test_random_matrices_follow_their_definition(data):
    n, m = data.draw(st.integers(0, 5)), data.draw(st.integers(0, 9))
    seed, stream, step, ro, draw = (data.draw(U64) for _ in range(5))
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.float16]))
    n_threads = data.draw(st.integers(1, 3))
    if dtype == np.float16:
        with pytest.raises(TypeError, match="dtype must be float32 or float64"):
            _rng.normal_matrix(seed, stream, step, n, m, ro, draw, dtype, n_threads)
        return
    U = _rng.uniform_matrix(seed, stream, step, n, m, ro, draw)
    Z = _rng.normal_matrix(seed, stream, step, n, m, ro, draw, dtype, n_threads)
    assert U.shape == Z.shape == (n, m) and Z.dtype == dtype
    for i in range(n):
        for blk in range(-(-m // 4)):
            ctr = [blk, (ro + i) % 2**64, step, draw]
            raw = _philox_reference(ctr, [seed, stream])
            np.testing.assert_array_equal(_rng.philox4x64_10(ctr, [seed, stream]), raw)
            u = [(int(r) >> 11) * 2.0**-53 for r in raw]
            z = []
            for p in range(2):
                rad = math.sqrt(-2.0 * math.log(1.0 - u[2 * p]))
                z += [
                    rad * math.cos(2 * math.pi * u[2 * p + 1]),
                    rad * math.sin(2 * math.pi * u[2 * p + 1]),
                ]
            cols = slice(4 * blk, min(4 * blk + 4, m))
            np.testing.assert_array_equal(U[i, cols], u[: cols.stop - cols.start])
            want = np.array(z[: cols.stop - cols.start]).astype(dtype)
            np.testing.assert_allclose(
                Z[i, cols],
                want,
                rtol=1e-13 if dtype == np.float64 else 6e-8,
                atol=1e-13,
            )


@FUZZ
@given(st.data())
def test_float32_math_functions(data):
    name = data.draw(st.sampled_from(_numerics.FUNCTIONS))
    n = data.draw(st.integers(1, 50))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    lo, hi = {
        "exp": (-80, 80),
        "log1p": (-0.9, 50),
        "tanh": (-10, 10),
        "sigmoid": (-60, 60),
    }[name]
    dtype, layout = data.draw(DTYPE), data.draw(LAYOUT)
    x = _place(rng.uniform(lo, hi, n), dtype, layout)
    valid = x.dtype == np.float32 and x.flags.c_contiguous
    got = _expect(valid, lambda: _numerics.apply_f32(name, x))
    if got is None:
        return
    xd = _f64(x)
    exact = {
        "exp": np.exp,
        "log1p": np.log1p,
        "tanh": np.tanh,
        "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    }[name](xd)
    np.testing.assert_allclose(got, exact, rtol=4e-7, atol=1e-37, err_msg=name)


# -- the compiled network --------------------------------------------------------------


@st.composite
def networks(draw):
    """A random small architecture, dtype and minibatch."""
    return dict(
        D=draw(st.integers(1, 6)),
        enc=tuple(draw(st.lists(st.integers(1, 6), max_size=2))),
        dec=tuple(draw(st.lists(st.integers(1, 6), max_size=2))),
        K=draw(st.integers(1, 3)),
        C=draw(st.integers(0, 2)),
        kind=draw(st.sampled_from(["vae", "vae", "ae"])),
        likelihood=draw(st.sampled_from(["bernoulli", "gaussian", "gaussian_learned"])),
        act=draw(st.sampled_from(ACTS)),
        dtype=draw(st.sampled_from(FLOATS)),
        max_batch=draw(st.integers(1, 5)),
        parts=draw(st.integers(1, 4)),
        n_threads=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**64 - 1)),
    )


def _build(a, rng):
    D, K, C, dtype = a["D"], a["K"], a["C"], a["dtype"]
    learned = a["likelihood"] == "gaussian_learned"
    head = 2 * K if a["kind"] == "vae" else K
    lay = Layout(
        (D + C, *a["enc"], head), (K + C, *a["dec"], D), n_tail=D if learned else 0
    )
    names = (
        [a["act"]] * len(a["enc"])
        + ["identity"]
        + [a["act"]] * len(a["dec"])
        + ["identity"]
    )
    net = _network.Network(
        lay.encoder_dims,
        lay.decoder_dims,
        [_dense.ACTIVATIONS[x] for x in names],
        lay.w_offsets,
        lay.b_offsets,
        lay.size,
        a["likelihood"],
        0.7,
        a["max_batch"],
        dtype,
        a["parts"],
        kind=a["kind"],
        n_cond=C,
        logsigma_offset=lay.tail_offset if learned else -1,
    )
    p = init_params(lay, rng, dtype)
    if learned:
        lay.tail(p)[...] = rng.uniform(-0.5, 0.5, D)
    return net, lay, names, p


def _ref_kwargs(a, lay, p, names):
    learned = a["likelihood"] == "gaussian_learned"
    return dict(
        layers=ref_layers(lay, p, names),
        n_encoder=lay.n_encoder,
        likelihood=a["likelihood"],
        sigma=0.7,
        kind=a["kind"],
        logsigma=_f64(lay.tail(p)) if learned else None,
    )


def _close(got, want, dtype, what):
    want = np.asarray(want, dtype=np.float64)
    big = max(1.0, float(np.abs(want).max(initial=0.0)))
    rtol = 1e-9 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(
        _f64(got), want, rtol=rtol, atol=rtol * big, err_msg=what
    )


def _data_for(a, n, rng):
    if a["likelihood"] == "bernoulli":
        X = rng.random((n, a["D"]))
    else:
        X = rng.standard_normal((n, a["D"]))
    cond = np.eye(max(a["C"], 1))[rng.integers(0, max(a["C"], 1), n)][:, : a["C"]]
    return X, cond


@FUZZ
@given(networks(), st.data())
def test_network_gradients_and_training_step(a, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    net, lay, names, p = _build(a, rng)
    dtype, K, C = a["dtype"], a["K"], a["C"]
    n = data.draw(st.integers(1, 8))
    batch = data.draw(st.integers(1, min(n, a["max_batch"])))
    rows = (
        rng.integers(0, n, batch).astype(np.int64) if data.draw(st.booleans()) else None
    )
    X0, cond0 = _data_for(a, n, rng)
    X = _place(
        X0, data.draw(st.sampled_from([dtype] * 6 + [np.float16])), data.draw(LAYOUT)
    )
    cond = _place(cond0, dtype, data.draw(LAYOUT)) if C else None
    step, ro = data.draw(st.integers(0, 2**63)), data.draw(st.integers(0, 1000))
    kl_weight = data.draw(st.sampled_from([1.0, 0.3]))
    g = lay.zeros(dtype)
    valid = _ok(X) and X.dtype == dtype and (cond is None or _ok(cond))
    out = _expect(
        valid,
        lambda: net.gradients(
            p,
            g,
            X,
            rows,
            batch,
            a["seed"],
            step,
            kl_weight,
            a["n_threads"],
            ro,
            None,
            cond,
        ),
    )
    if out is None:
        return
    status, recon_sum, kl_sum = out
    idx = np.arange(batch) if rows is None else rows
    eps = _rng.normal_matrix(
        a["seed"], _rng.STREAM_REPARAM, step, batch, K, ro, dtype=dtype
    ).astype(np.float64)
    _, recon, kl, grads = ref.loss_and_grads(
        X=_f64(X)[idx],
        eps=eps,
        beta=kl_weight,
        cond=_f64(cond)[idx] if C else None,
        **_ref_kwargs(a, lay, p, names),
    )
    if a["likelihood"] == "gaussian_learned":
        tail = grads.pop()
    want = flat_grads(lay, grads)
    if a["likelihood"] == "gaussian_learned":
        lay.tail(want)[...] = tail
    assert status == 0
    _close(recon_sum, recon.sum(), dtype, "recon sum")
    _close(kl_sum, kl.sum(), dtype, "kl sum")
    mask = trainable_mask(lay)
    mask[lay.tail_offset : lay.tail_offset + lay.n_tail] = True
    _close(g[mask], want[mask], dtype, "gradients")

    # the training step: the same gradients, then an SGD update
    net.set_optimizer("sgd", 0.05)
    p2, s1, s2 = p.copy(), lay.zeros(dtype), lay.zeros(dtype)
    status = net.train_step(
        p2,
        lay.zeros(dtype),
        s1,
        s2,
        X,
        rows,
        batch,
        a["seed"],
        step,
        kl_weight,
        a["n_threads"],
        ro,
        None,
        cond,
    )[0]
    assert status == 0
    _close(p2[mask], _f64(p)[mask] - 0.05 * want[mask], dtype, "updated parameters")


@FUZZ
@given(networks(), st.data())
def test_network_inference(a, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    net, lay, names, p = _build(a, rng)
    dtype, K, C = a["dtype"], a["K"], a["C"]
    n = data.draw(st.integers(1, 7))  # more rows than max_batch: chunked calls
    X0, cond0 = _data_for(a, n, rng)
    X = _place(X0, dtype, data.draw(LAYOUT))
    cond = _place(cond0, dtype, data.draw(LAYOUT)) if C else None
    params = p if data.draw(st.integers(0, 7)) else p.astype(np.float16)
    kw = _ref_kwargs(a, lay, p, names)
    valid = _ok(X) and (cond is None or _ok(cond)) and params.dtype == dtype
    Xd, Cd = _f64(X), (_f64(cond) if C else None)
    threads = a["n_threads"]

    H = _expect(valid, lambda: net.encode(params, X, threads, cond))
    if H is None:
        return
    eps = _rng.normal_matrix(a["seed"], _rng.STREAM_EVAL, 3, n, K, dtype=dtype).astype(
        float
    )
    f = ref.forward(X=Xd, eps=eps, cond=Cd, **kw)
    _close(H, f["H"], dtype, "encode")

    Z = rng.standard_normal((n, K))
    means = net.decode(p, np.ascontiguousarray(Z, dtype=dtype), threads, cond)
    dec_in = Z.astype(dtype).astype(float)
    dec_in = dec_in if C == 0 else np.hstack([dec_in, Cd])
    for W, b, act in kw["layers"][lay.n_encoder :]:
        dec_in = ref.dense_forward(dec_in, W, b, act)
    if a["likelihood"] == "bernoulli":
        dec_in = 1 / (1 + np.exp(-dec_in))
    _close(means, dec_in, dtype, "decode")

    # the evaluation noise of a row is keyed by its encoder input [x | c]
    x_in = np.ascontiguousarray(X0 if C == 0 else np.hstack([X0, cond0]), dtype=dtype)
    eps_rows = np.vstack(
        [
            _rng.normal_matrix(
                a["seed"], _rng.STREAM_EVAL, 3, 1, K, dtype=dtype, row_offset=int(key)
            ).astype(float)
            for key in _network.row_keys(x_in)
        ]
    )
    fe = ref.forward(X=Xd, eps=eps_rows, cond=Cd, **kw)
    recon, kl = net.elbo_terms(p, X, a["seed"], _rng.STREAM_EVAL, 3, 0, threads, cond)
    _close(recon, fe["recon"], dtype, "elbo recon")
    _close(kl, fe["kl"], dtype, "elbo kl")

    if a["kind"] == "vae":
        k = data.draw(st.integers(1, 4))
        ll = net.log_likelihood(p, X, k, a["seed"], _rng.STREAM_IS, threads, cond)
        eps_k = np.stack(
            [
                _rng.normal_matrix(a["seed"], _rng.STREAM_IS, s, n, K, dtype=dtype)
                for s in range(k)
            ],
            axis=1,
        ).astype(float)
        want = ref.log_likelihood(
            kw["layers"],
            lay.n_encoder,
            Xd,
            eps_k,
            a["likelihood"],
            0.7,
            Cd,
            kw["logsigma"],
        )
        _close(ll, want, dtype, "log_likelihood")
    else:
        with pytest.raises(ValueError, match="log-likelihoods need a VAE"):
            net.log_likelihood(p, X, 2, 0, 0)


# -- arguments every wrapper must refuse -----------------------------------------------


def _wrappers(n_threads):
    A = np.ones((3, 4))
    H = np.ones((3, 4))
    p = np.ones(8)
    return {
        "dense_forward": lambda: _dense.dense_forward_memview(
            A, np.ones((4, 2)), np.ones(2), "relu", n_threads
        ),
        "dense_backward": lambda: _dense.dense_backward_memview(
            A, np.ones((4, 2)), np.ones((3, 2)), "relu", True, n_threads
        ),
        "reparam_forward": lambda: _reparam.reparam_forward_memview(
            H, 0, 0, 0, 0, 0, n_threads
        ),
        "reparam_backward": lambda: _reparam.reparam_backward_memview(
            H, np.ones((3, 2)), np.ones((3, 2)), n_threads
        ),
        "kl": lambda: _losses.kl_memview(H, n_threads),
        "bernoulli": lambda: _losses.bernoulli_memview(A, A, 1.0, n_threads),
        "gaussian": lambda: _losses.gaussian_memview(A, A, 1.0, 1.0, n_threads),
        "optimizer": lambda: _optim.optimizer_update_memview(
            "adam", 1, p.copy(), p, p.copy(), p.copy(), 0.1, n_threads=n_threads
        ),
        "normal_matrix": lambda: _rng.normal_matrix(0, 0, 0, 3, 4, n_threads=n_threads),
    }


@pytest.mark.parametrize("n_threads", [0, -1, -5, 257, 100_000])
@pytest.mark.parametrize("name", list(_wrappers(1)))
def test_thread_counts_out_of_range_are_refused(name, n_threads):
    """libgomp segfaulted on 10^5 threads and aborted on negative counts."""
    with pytest.raises(ValueError, match=r"n_threads must be in \[1, 256\]"):
        _wrappers(n_threads)[name]()


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: _reparam.reparam_forward_memview(np.ones((2, 2)), 1.5, 0, 0),
            TypeError,
            "seed must be an integer, got 1.5",
        ),
        (
            lambda: _reparam.reparam_forward_memview(np.ones((2, 2)), -1, 0, 0),
            ValueError,
            r"seed must be in \[0, 2\*\*64\)",
        ),
        (
            lambda: _reparam.reparam_forward_memview(np.ones((2, 2)), 0, 2**64, 0),
            ValueError,
            "stream must be in",
        ),
        (
            lambda: _losses.gaussian_memview(
                np.ones((2, 2)), np.ones((2, 2)), float("inf")
            ),
            ValueError,
            "sigma must be finite",
        ),
        (
            lambda: _losses.bernoulli_memview(
                np.ones((2, 2)), np.ones((2, 2)), float("nan")
            ),
            ValueError,
            "scale must be finite",
        ),
        (
            lambda: _losses.kl_backward_memview(np.ones((2, 2)), float("inf")),
            ValueError,
            "scale must be finite",
        ),
        (
            lambda: _optim.optimizer_update_memview(
                "sgd", 1, *np.ones((4, 3)), float("nan")
            ),
            ValueError,
            r"lr must be finite and in \[0, inf\)",
        ),
        (
            lambda: _optim.optimizer_update_memview(
                "adam", 1, *np.ones((4, 3)), 0.1, eps=0.0
            ),
            ValueError,
            r"eps must be finite and in \(0, inf\)",
        ),
        (
            lambda: _optim.optimizer_update_memview(
                "momentum", 1, *np.ones((4, 3)), 0.1, momentum=1.0
            ),
            ValueError,
            r"momentum must be finite and in \[0, 1\)",
        ),
        (
            lambda: _optim.optimizer_update_memview(
                "adam", 1, *np.ones((4, 3)), 0.1, beta2=float("nan")
            ),
            ValueError,
            "beta2 must be finite",
        ),
    ],
    ids=[
        "seed-float",
        "seed-negative",
        "stream-2**64",
        "sigma-inf",
        "scale-nan",
        "kl-scale-inf",
        "lr-nan",
        "eps-0",
        "momentum-1",
        "beta2-nan",
    ],
)
def test_bad_scalars_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_aliased_optimizer_buffers_are_refused():
    p = np.ones(16)
    with pytest.raises(ValueError, match="params and state1 overlap"):
        _optim.optimizer_update_memview(
            "adam", 1, p, np.ones(16), p[:], np.ones(16), 0.1
        )
    with pytest.raises(ValueError, match="state1 and state2 overlap"):
        s = np.ones(17)
        _optim.optimizer_update_memview(
            "adam", 1, np.ones(16), np.ones(16), s[1:], s[:-1], 0.1
        )
    # SGD uses no state: one dummy buffer for both states is fine
    s = np.zeros(16)
    _optim.optimizer_update_memview("sgd", 1, p, np.ones(16), s, s, 0.5)
    np.testing.assert_array_equal(p, 0.5)


def test_network_refuses_aliased_buffers_and_bad_scalars():
    rng = np.random.default_rng(0)
    a = dict(
        D=4,
        enc=(3,),
        dec=(3,),
        K=2,
        C=0,
        kind="vae",
        likelihood="bernoulli",
        act="tanh",
        dtype=np.float64,
        max_batch=4,
        parts=2,
    )
    net, lay, _, p = _build(a, rng)
    X = rng.random((4, 4))
    g, s1, s2 = (lay.zeros(np.float64) for _ in range(3))
    net.set_optimizer("adam", 1e-3)
    with pytest.raises(ValueError, match="params and grads overlap"):
        net.train_step(p, p, s1, s2, X, None, 4, 0, 0)
    with pytest.raises(ValueError, match="state1 and state2 overlap"):
        net.train_step(p, g, s1, s1, X, None, 4, 0, 0)
    with pytest.raises(ValueError, match="X and grads overlap"):
        net.gradients(p, g, g[: 4 * 4].reshape(4, 4), None, 4, 0, 0)
    with pytest.raises(ValueError, match="kl_weight must be finite"):
        net.gradients(p, g, X, None, 4, 0, 0, float("nan"))
    with pytest.raises(TypeError, match="seed must be an integer"):
        net.gradients(p, g, X, None, 4, 0.5, 0)
    with pytest.raises(ValueError, match="lr must be finite"):
        net.set_optimizer("adam", float("inf"))
    with pytest.raises(ValueError, match=r"n_threads must be in \[1, 256\]"):
        net.elbo_terms(p, X, 0, 0, n_threads=300)
    with pytest.raises(ValueError, match="k must be >= 1"):
        net.log_likelihood(p, X, 0, 0, 0)
    with pytest.raises(ValueError, match=r"k \* n_rows < 2\*\*62"):
        net.log_likelihood(p, X, 2**61, 0, 0)
    with pytest.raises(ValueError, match="sigma must be finite"):
        _network.Network(
            lay.encoder_dims,
            lay.decoder_dims,
            [0, 0, 0, 0],
            lay.w_offsets,
            lay.b_offsets,
            lay.size,
            "gaussian",
            float("inf"),
            4,
            np.float64,
        )
