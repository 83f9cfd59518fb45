"""Optimizer kernels (fastvae/_core/_optim.pyx) against tests/reference.py."""

import numpy as np
import pytest
import reference as ref
from _helpers import DTYPES, assert_close_scaled

from fastvae._core import _optim

KINDS = ["sgd", "momentum", "adam"]
TOL = {np.float32: dict(rtol=2e-6, atol=2e-7), np.float64: dict(rtol=1e-14, atol=1e-15)}


def _ref_step(kind, p, g, s1, s2, t, lr, mu=0.9, b1=0.9, b2=0.999, eps=1e-8):
    if kind == "sgd":
        return ref.sgd(p, g, lr), s1, s2
    if kind == "momentum":
        p, v = ref.momentum(p, g, s1, lr, mu)
        return p, v, s2
    p, m, v = ref.adam(p, g, s1, s2, t, lr, b1, b2, eps)
    return p, m, v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "hyper",
    [
        dict(lr=0.05),
        dict(lr=1e-3, momentum=0.5, beta1=0.8, beta2=0.99, eps=1e-6),
    ],
)
def test_five_steps_match_reference(dtype, kind, hyper):
    rng = np.random.default_rng(1)
    n = 1037
    p = rng.standard_normal(n).astype(dtype)
    s1 = np.zeros(n, dtype)
    s2 = np.zeros(n, dtype)
    rp, rs1, rs2 = (a.astype(np.float64) for a in (p, s1, s2))
    hp = dict(
        lr=hyper["lr"],
        mu=hyper.get("momentum", 0.9),
        b1=hyper.get("beta1", 0.9),
        b2=hyper.get("beta2", 0.999),
        eps=hyper.get("eps", 1e-8),
    )
    for t in range(1, 6):
        g = (rng.standard_normal(n) * 10.0 ** rng.uniform(-4, 1, n)).astype(dtype)
        g[:3] = 0  # parameters that see no gradient
        _optim.optimizer_update_memview(kind, t, p, g, s1, s2, **hyper)
        rp, rs1, rs2 = _ref_step(kind, rp, g.astype(np.float64), rs1, rs2, t, **hp)
        np.testing.assert_allclose(p, rp, err_msg=f"params, t={t}", **TOL[dtype])
        if kind != "sgd":
            scale = np.abs(rs1).max()
            np.testing.assert_allclose(
                s1,
                rs1,
                rtol=TOL[dtype]["rtol"],
                atol=TOL[dtype]["atol"] * scale,
                err_msg=f"state1, t={t}",
            )
        if kind == "adam":
            np.testing.assert_allclose(
                s2, rs2, rtol=TOL[dtype]["rtol"], atol=1e-30, err_msg=f"state2, t={t}"
            )
    if kind == "sgd":
        assert not s1.any() and not s2.any()  # states untouched
    if kind == "momentum":
        assert not s2.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_and_momentum_by_hand(dtype):
    p = np.array([1.0, -2.0, 0.5], dtype)
    g = np.array([0.5, 0.25, -1.0], dtype)
    s1, s2 = np.zeros(3, dtype), np.zeros(3, dtype)
    _optim.optimizer_update_memview("sgd", 1, p, g, s1, s2, 0.5)
    np.testing.assert_array_equal(p, [0.75, -2.125, 1.0])
    p = np.array([1.0, -2.0, 0.5], dtype)
    _optim.optimizer_update_memview("momentum", 1, p, g, s1, s2, 0.5, momentum=0.5)
    np.testing.assert_array_equal(s1, g)
    np.testing.assert_array_equal(p, [0.75, -2.125, 1.0])
    _optim.optimizer_update_memview("momentum", 2, p, g, s1, s2, 0.5, momentum=0.5)
    np.testing.assert_array_equal(s1, 1.5 * g)  # v = 0.5 * g + g
    np.testing.assert_array_equal(p, [0.375, -2.3125, 1.75])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lr", [1e-3, 0.1])
def test_adam_first_step_is_lr_times_sign(dtype, lr):
    """m_hat = g, v_hat = g^2 at t = 1, so the step is lr * g / (|g| + eps)."""
    rng = np.random.default_rng(2)
    n = 500
    g = (np.sign(rng.standard_normal(n)) * 10.0 ** rng.uniform(-2, 3, n)).astype(dtype)
    g[0] = 0
    p0 = rng.standard_normal(n).astype(dtype)
    p = p0.copy()
    s1, s2 = np.zeros(n, dtype), np.zeros(n, dtype)
    _optim.optimizer_update_memview("adam", 1, p, g, s1, s2, lr)
    delta = p.astype(np.float64) - p0.astype(np.float64)
    want = -lr * np.sign(g.astype(np.float64))
    # relative error 1e-8 / |g| from eps, plus the rounding of p (float32)
    atol = 2 * np.finfo(dtype).eps * (np.abs(p0.astype(np.float64)) + lr)
    assert_close_scaled(delta[1:], want[1:], lr, 1e-5, atol=atol[1:], err_msg="step")
    assert delta[0] == 0  # zero gradient: no move (0 / (0 + eps))


def test_adam_bias_correction_uses_t():
    """Same state and gradient, different t: different step (pow(beta, t))."""
    n = 8
    g = np.linspace(-1, 1, n)
    outs = []
    for t in (1, 2, 10, 1000):
        p = np.zeros(n)
        s1, s2 = np.full(n, 0.1), np.full(n, 0.02)
        _optim.optimizer_update_memview("adam", t, p, g, s1, s2, 0.01)
        rp, _, _ = ref.adam(
            np.zeros(n), g, np.full(n, 0.1), np.full(n, 0.02), t, 0.01, 0.9, 0.999, 1e-8
        )
        np.testing.assert_allclose(p, rp, rtol=1e-14, atol=1e-17)
        outs.append(p)
    assert not np.array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[1], outs[2])


def test_adam_huge_t_is_finite():
    n = 4
    p, g = np.ones(n, np.float32), np.full(n, 0.5, np.float32)
    s1, s2 = np.full(n, 0.1, np.float32), np.full(n, 0.01, np.float32)
    _optim.optimizer_update_memview("adam", 10**9, p, g, s1, s2, 0.01)
    assert np.all(np.isfinite(p))
    rp, _, _ = ref.adam(
        np.ones(n),
        np.full(n, 0.5),
        np.full(n, 0.1),
        np.full(n, 0.01),
        10**9,
        0.01,
        0.9,
        0.999,
        1e-8,
    )
    np.testing.assert_allclose(p, rp, rtol=1e-6)


# -- threads ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [100003, 17, 1])
def test_bitwise_equal_for_any_thread_count(dtype, kind, n):
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(n).astype(dtype)
    gs = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
    results = []
    for nt in (1, 2, 3):
        p, s1, s2 = p0.copy(), np.zeros(n, dtype), np.zeros(n, dtype)
        for t, g in enumerate(gs, start=1):
            _optim.optimizer_update_memview(kind, t, p, g, s1, s2, 0.01, n_threads=nt)
        results.append((p.tobytes(), s1.tobytes(), s2.tobytes()))
    assert results[0] == results[1] == results[2]
    assert not np.array_equal(p, p0)


def test_empty_buffers():
    e = np.zeros(0)
    _optim.optimizer_update_memview("adam", 1, e, e.copy(), e.copy(), e.copy(), 0.1)


# -- arguments ---------------------------------------------------------------------


def _bufs(n=5, dtype=np.float64):
    return [np.zeros(n, dtype) for _ in range(4)]


@pytest.mark.parametrize("kind", ["SGD", "rmsprop", "", "adamw"])
def test_unknown_kind_raises(kind):
    with pytest.raises(ValueError, match="optimizer"):
        _optim.optimizer_update_memview(kind, 1, *_bufs(), 0.1)


@pytest.mark.parametrize("t", [0, -1])
@pytest.mark.parametrize("kind", KINDS)
def test_t_below_one_raises(t, kind):
    p, g, s1, s2 = _bufs()
    p[:] = 1
    g[:] = 1
    with pytest.raises(ValueError):
        _optim.optimizer_update_memview(kind, t, p, g, s1, s2, 0.1)
    np.testing.assert_array_equal(p, 1)  # nothing happened


@pytest.mark.parametrize("which", [1, 2, 3])
def test_length_mismatch_raises(which):
    bufs = _bufs()
    bufs[which] = np.zeros(4)
    with pytest.raises(ValueError):
        _optim.optimizer_update_memview("adam", 1, *bufs, 0.1)


def test_mixed_dtypes_raise():
    p, g, s1, s2 = _bufs()
    with pytest.raises((TypeError, ValueError)):
        _optim.optimizer_update_memview("sgd", 1, p, g.astype(np.float32), s1, s2, 0.1)


def test_read_only_params_raise():
    p, g, s1, s2 = _bufs()
    p.setflags(write=False)
    with pytest.raises((TypeError, ValueError)):
        _optim.optimizer_update_memview("sgd", 1, p, g, s1, s2, 0.1)


def test_read_only_grads_work():
    p, g, s1, s2 = _bufs()
    g[:] = 2
    g.setflags(write=False)
    _optim.optimizer_update_memview("sgd", 1, p, g, s1, s2, 0.5)
    np.testing.assert_array_equal(p, -1)


def test_optimizer_codes():
    assert _optim.OPTIMIZERS == {"sgd": 0, "momentum": 1, "adam": 2}
