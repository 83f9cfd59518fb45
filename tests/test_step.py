"""The one-call training step and inference passes (fastvae/_core/_step.pyx) against
reference.loss_and_grads / reference.forward and the reference optimizers."""

import numpy as np
import pytest
import reference as ref
from _helpers import (
    DTYPES,
    fd4,
    flat_grads,
    init_params,
    make_network,
    ref_layers,
    trainable_mask,
)

from fastvae._core import _dense, _network, _rng
from fastvae._core.params import Layout

D, K, B, N_ROWS, MAX_BATCH = 30, 5, 9, 40, 16
SEED = 42
ROWS = np.array([3, 7, 1, 0, 39, 20, 5, 5, 11], dtype=np.int64)  # with a repeat

ARCHS = {
    "0-hidden": ((), (), ("tanh",)),
    "1-hidden": ((17,), (13,), ("tanh", "relu")),
    "2-hidden": ((19, 11), (9, 23), ("relu", "sigmoid", "tanh", "sigmoid")),
}
LIKELIHOODS = {"bernoulli": 1.0, "gaussian": 0.6}

# float32 kernel vs float64 reference (fed the same float32 inputs)
F32 = dict(grad_rtol=1e-4, grad_atol=1e-6, sum_rtol=1e-6)


def _data(rng, likelihood, n=N_ROWS, dtype=np.float64):
    if likelihood == "bernoulli":
        X = (rng.random((n, D)) > 0.5).astype(np.float64)
        X[:, :3] = rng.random((n, 3))  # a few soft targets too
    else:
        X = rng.standard_normal((n, D))
    return X.astype(dtype)


def _setup(
    arch="1-hidden",
    likelihood="bernoulli",
    dtype=np.float64,
    seed=0,
    max_batch=MAX_BATCH,
):
    enc_h, dec_h, hidden_acts = ARCHS[arch]
    net, lay, acts = make_network(
        D,
        enc_h,
        K,
        dec_h,
        hidden_acts,
        likelihood,
        LIKELIHOODS[likelihood],
        max_batch,
        dtype,
    )
    rng = np.random.default_rng(seed)
    p = init_params(lay, rng, dtype)
    X = _data(rng, likelihood, dtype=dtype)
    return net, lay, acts, p, X


def _reference(
    lay,
    acts,
    p,
    X,
    rows,
    batch,
    step,
    likelihood,
    kl_weight,
    dtype,
    row_offset=0,
    stream=_rng.STREAM_REPARAM,
    seed=SEED,
):
    """reference.loss_and_grads on the minibatch with the kernel's eps."""
    Xb = (X[:batch] if rows is None else X[rows]).astype(np.float64)
    eps = _rng.normal_matrix(
        seed, stream, step, batch, K, row_offset=row_offset, dtype=dtype
    ).astype(np.float64)
    loss, recon, kl, grads = ref.loss_and_grads(
        ref_layers(lay, p, acts),
        lay.n_encoder,
        Xb,
        eps,
        likelihood,
        LIKELIHOODS[likelihood],
        beta=kl_weight,
    )
    return loss, recon, kl, flat_grads(lay, grads)


def _assert_grads(g, gref, dtype, msg=""):
    g = g.astype(np.float64)
    scale = np.abs(gref).max()
    if dtype == np.float64:
        np.testing.assert_allclose(g, gref, rtol=1e-11, atol=1e-12 * scale, err_msg=msg)
    else:
        np.testing.assert_allclose(
            g, gref, rtol=F32["grad_rtol"], atol=F32["grad_atol"] * scale, err_msg=msg
        )


def _assert_sum(got, want, dtype, msg=""):
    rtol = 1e-12 if dtype == np.float64 else F32["sum_rtol"]
    assert got == pytest.approx(want, rel=rtol, abs=rtol), msg


def _ref_update(kind, p, g, s1, s2, t, lr):
    p, g, s1, s2 = (a.astype(np.float64) for a in (p, g, s1, s2))
    if kind == "sgd":
        return ref.sgd(p, g, lr), s1, s2
    if kind == "momentum":
        p, v = ref.momentum(p, g, s1, lr, 0.9)
        return p, v, s2
    return ref.adam(p, g, s1, s2, t, lr, 0.9, 0.999, 1e-8)


# -- train_step against the reference ------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gather", [True, False], ids=["rows", "rows-None"])
@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_train_step_matches_reference(arch, likelihood, kind, gather, dtype):
    net, lay, acts, p, X = _setup(arch, likelihood, dtype, seed=len(arch) + len(kind))
    rows = ROWS if gather else None
    lr = {"sgd": 0.05, "momentum": 0.02, "adam": 0.01}[kind]
    if likelihood == "gaussian" and kind != "adam":
        # the Gaussian gradient scales with 1 / sigma^2; plain SGD at 0.05 diverges
        lr *= LIKELIHOODS["gaussian"] ** 2
    net.set_optimizer(kind, lr)
    g, s1, s2 = lay.zeros(dtype), lay.zeros(dtype), lay.zeros(dtype)
    kl_weight = 0.3
    for step in (0, 1, 6):  # Adam's t = step + 1: 1, 2, 7
        p0, s10, s20 = p.copy(), s1.copy(), s2.copy()
        status, recon_sum, kl_sum = net.train_step(
            p,
            g,
            s1,
            s2,
            X,
            rows,
            B,
            seed=SEED,
            step=step,
            kl_weight=kl_weight,
            n_threads=2,
        )
        assert status == 0
        assert recon_sum < 100 * B * D  # a sane training trajectory
        _, recon, kl, gref = _reference(
            lay, acts, p0, X, rows, B, step, likelihood, kl_weight, dtype
        )
        _assert_sum(recon_sum, recon.sum(), dtype, "recon_sum")
        _assert_sum(kl_sum, kl.sum(), dtype, "kl_sum")
        _assert_grads(g, gref, dtype, f"grads at step {step}")
        # the update: in float64 from the reference gradient; in float32 from the
        # kernel's own gradient (Adam amplifies relative errors of tiny gradients)
        gsrc = gref if dtype == np.float64 else g
        rp, rs1, rs2 = _ref_update(kind, p0, gsrc, s10, s20, step + 1, lr)
        tol = (
            dict(rtol=1e-12, atol=1e-14)
            if dtype == np.float64
            else dict(rtol=1e-6, atol=1e-6)
        )
        np.testing.assert_allclose(p, rp, err_msg=f"params at step {step}", **tol)
        if kind != "sgd":
            np.testing.assert_allclose(
                s1,
                rs1,
                rtol=tol["rtol"],
                atol=tol["atol"] * np.abs(rs1).max(),
                err_msg=f"state1 at step {step}",
            )
        if kind == "adam":
            np.testing.assert_allclose(
                s2, rs2, rtol=tol["rtol"], atol=1e-20, err_msg=f"state2 at step {step}"
            )
        assert not np.array_equal(p, p0)
    # padding between layers is never written
    pad = ~trainable_mask(lay)
    assert not p[pad].any() and not g[pad].any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_gradients_matches_reference_and_leaves_params(likelihood, dtype):
    net, lay, acts, p, X = _setup("2-hidden", likelihood, dtype, seed=3)
    p_copy = p.copy()
    g = lay.zeros(dtype)
    g[:] = np.nan  # must be overwritten wherever it matters
    status, recon_sum, kl_sum = net.gradients(
        p, g, X, ROWS, B, seed=SEED, step=11, kl_weight=1.7, n_threads=2
    )
    assert status == 0
    np.testing.assert_array_equal(p, p_copy)
    _, recon, kl, gref = _reference(
        lay, acts, p, X, ROWS, B, 11, likelihood, 1.7, dtype
    )
    mask = trainable_mask(lay)
    assert np.all(np.isfinite(g[mask]))
    _assert_grads(np.where(mask, g, 0), gref, dtype)
    _assert_sum(recon_sum, recon.sum(), dtype)
    _assert_sum(kl_sum, kl.sum(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_losses(dtype):
    net, lay, acts, p, X = _setup("1-hidden", "gaussian", dtype, seed=4)
    g = lay.zeros(dtype)
    net.set_optimizer("sgd", 0.1)
    p0 = p.copy()
    status, recon_sum, kl_sum = net.train_step(
        p, g, lay.zeros(dtype), lay.zeros(dtype), X, ROWS, B, seed=SEED, step=2
    )
    assert status == 0
    _, recon, kl, _ = _reference(lay, acts, p0, X, ROWS, B, 2, "gaussian", 1.0, dtype)
    rl = net.row_losses(B)
    assert rl.shape == (B, 2) and rl.dtype == np.float64
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(rl[:, 0], recon, rtol=rtol)
    np.testing.assert_allclose(rl[:, 1], kl, rtol=rtol)
    assert rl[:, 0].sum() == pytest.approx(recon_sum, rel=1e-15)
    assert rl[:, 1].sum() == pytest.approx(kl_sum, rel=1e-15)
    # repeated row 5 sits at positions 6 and 7 with different eps: same KL
    # (deterministic given the encoder), different reconstruction
    assert rl[6, 1] == rl[7, 1] and rl[6, 0] != rl[7, 0]
    np.testing.assert_array_equal(net.row_losses(3), rl[:3])
    # after gradients() with a smaller batch
    net.gradients(p, g, X, None, 4, seed=SEED, step=0)
    _, recon, kl, _ = _reference(lay, acts, p, X, None, 4, 0, "gaussian", 1.0, dtype)
    np.testing.assert_allclose(
        net.row_losses(4), np.stack([recon, kl], axis=1), rtol=rtol
    )
    assert net.row_losses(0).shape == (0, 2)
    for bad in (-1, MAX_BATCH + 1):
        with pytest.raises(ValueError):
            net.row_losses(bad)


# -- full loss vs finite differences ------------------------------------------------


def _sample_param_indices(lay, rng, per_w=4, per_b=2):
    idx = []
    for (n_in, n_out), wo, bo in zip(
        lay.shapes, lay.w_offsets, lay.b_offsets, strict=True
    ):
        idx += list(
            wo + rng.choice(n_in * n_out, size=min(per_w, n_in * n_out), replace=False)
        )
        idx += list(bo + rng.choice(n_out, size=min(per_b, n_out), replace=False))
    return idx


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("hidden_acts", [("tanh", "sigmoid"), ("sigmoid", "tanh")])
def test_full_loss_finite_differences(likelihood, hidden_acts):
    enc_h, dec_h = (17, 12), (11,)
    net, lay, acts = make_network(
        D,
        enc_h,
        K,
        dec_h,
        hidden_acts,
        likelihood,
        LIKELIHOODS[likelihood],
        MAX_BATCH,
        np.float64,
    )
    rng = np.random.default_rng(5)
    p = init_params(lay, rng, np.float64, b_scale=0.3)
    X = _data(rng, likelihood)
    kl_weight, step = 0.7, 9
    scratch = lay.zeros(np.float64)

    def loss():
        status, r, k = net.gradients(
            p, scratch, X, ROWS, B, seed=SEED, step=step, kl_weight=kl_weight
        )
        assert status == 0
        return (r + kl_weight * k) / B

    g = lay.zeros(np.float64)
    net.gradients(p, g, X, ROWS, B, seed=SEED, step=step, kl_weight=kl_weight)
    idx = _sample_param_indices(lay, rng)
    assert len(idx) >= 30
    fd = np.array([fd4(loss, p, i, 1e-4 * max(1.0, abs(p[i]))) for i in idx])
    np.testing.assert_allclose(g[idx], fd, rtol=1e-6, atol=1e-9)
    assert np.abs(fd).min() > 0  # every sampled parameter matters


def test_full_loss_finite_differences_with_relu_and_clamped_logvar():
    """relu layers (kinks are measure-zero) and a head bias that pushes one
    log-variance below the clamp for every row: its gradient is exactly zero."""
    net, lay, acts = make_network(
        D, (16,), K, (14,), ("relu",), "bernoulli", 1.0, MAX_BATCH, np.float64
    )
    rng = np.random.default_rng(6)
    p = init_params(lay, rng, np.float64, b_scale=0.3)
    (_, b_head) = lay.views(p)[lay.n_encoder - 1]
    b_head[K] = -50.0  # logvar of latent 0 far below -30 for every row
    X = _data(rng, "bernoulli")
    scratch = lay.zeros(np.float64)

    def loss():
        return sum(net.gradients(p, scratch, X, ROWS, B, seed=SEED, step=0)[1:]) / B

    g = lay.zeros(np.float64)
    net.gradients(p, g, X, ROWS, B, seed=SEED, step=0)
    _, _, _, gref = _reference(
        lay, acts, p, X, ROWS, B, 0, "bernoulli", 1.0, np.float64
    )
    _assert_grads(g, gref, np.float64)
    b_head_off = lay.b_offsets[lay.n_encoder - 1]
    assert g[b_head_off + K] == 0.0
    idx = _sample_param_indices(lay, rng, per_w=6, per_b=3) + [b_head_off + K]
    fd = np.array([fd4(loss, p, i, 1e-5) for i in idx])
    np.testing.assert_allclose(g[idx], fd, rtol=1e-5, atol=1e-8)


# -- threads ---------------------------------------------------------------------------


def test_bitwise_identical_for_any_thread_count_mnist_sized():
    dtype = np.float32
    n_features, latent, batch = 784, 8, 32
    lay = Layout((n_features, 64, 2 * latent), (latent, 64, n_features))
    acts = ["relu", "identity", "tanh", "identity"]
    rng = np.random.default_rng(7)
    p0 = init_params(lay, rng, dtype)
    X = (rng.random((100, n_features)) > 0.7).astype(dtype)
    results = []
    for nt in (1, 2, 3):
        net = _network.Network(
            lay.encoder_dims,
            lay.decoder_dims,
            [_dense.ACTIVATIONS[a] for a in acts],
            lay.w_offsets,
            lay.b_offsets,
            lay.size,
            "bernoulli",
            1.0,
            batch,
            dtype,
        )
        net.set_optimizer("adam", 1e-3)
        p, g, s1, s2 = p0.copy(), lay.zeros(dtype), lay.zeros(dtype), lay.zeros(dtype)
        sums = []
        for step in range(5):
            rows = (
                np.random.default_rng(step)
                .choice(100, batch, replace=False)
                .astype(np.int64)
            )
            status, r, k = net.train_step(
                p, g, s1, s2, X, rows, batch, seed=SEED, step=step, n_threads=nt
            )
            assert status == 0
            sums.append((r, k, net.row_losses(batch).tobytes()))
        results.append((p.tobytes(), g.tobytes(), s1.tobytes(), s2.tobytes(), sums))
    assert results[0] == results[1], "1 vs 2 threads"
    assert results[0] == results[2], "1 vs 3 threads"
    assert not np.array_equal(np.frombuffer(results[0][0], dtype), p0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inference_bitwise_identical_for_any_thread_count(dtype):
    net, lay, acts, p, X = _setup("2-hidden", "gaussian", dtype, seed=8)
    Z = np.random.default_rng(0).standard_normal((N_ROWS, K)).astype(dtype)
    base = None
    for nt in (1, 2, 3):
        out = (
            net.encode(p, X, n_threads=nt).tobytes(),
            net.decode(p, Z, n_threads=nt).tobytes(),
            *(
                a.tobytes()
                for a in net.elbo_terms(p, X, SEED, _rng.STREAM_EVAL, n_threads=nt)
            ),
        )
        g = lay.zeros(dtype)
        net.gradients(p, g, X, ROWS, B, SEED, 0, n_threads=nt)
        out += (g.tobytes(),)
        if base is None:
            base = out
        assert out == base, f"{nt} threads"


# -- non-finite data -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_data_returns_1_and_changes_nothing(likelihood, dtype, bad):
    net, lay, acts, p, X = _setup("1-hidden", likelihood, dtype, seed=9)
    net.set_optimizer("adam", 0.01)
    g, s1, s2 = lay.zeros(dtype), lay.zeros(dtype), lay.zeros(dtype)
    assert (
        net.train_step(p, g, s1, s2, X, ROWS, B, SEED, 0)[0] == 0
    )  # states now non-zero
    X[20, 4] = bad  # row 20 is in ROWS
    before = [a.copy() for a in (p, s1, s2)]
    status, recon_sum, kl_sum = net.train_step(
        p, g, s1, s2, X, ROWS, B, SEED, 1, n_threads=2
    )
    assert status == 1
    assert not np.isfinite(recon_sum)
    for a, b0 in zip((p, s1, s2), before, strict=True):
        assert a.tobytes() == b0.tobytes()
    assert net.gradients(p, g, X, ROWS, B, SEED, 1)[0] == 1
    # a bad row outside the minibatch does not matter
    assert net.train_step(p, g, s1, s2, X, ROWS[ROWS != 20][:4], 4, SEED, 2)[0] == 0
    assert not np.array_equal(p, before[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_params_return_1(dtype):
    net, lay, acts, p, X = _setup("1-hidden", "bernoulli", dtype, seed=10)
    net.set_optimizer("sgd", 0.1)
    p[lay.w_offsets[0]] = np.nan
    before = p.copy()
    g, s1, s2 = lay.zeros(dtype), lay.zeros(dtype), lay.zeros(dtype)
    assert net.train_step(p, g, s1, s2, X, None, B, SEED, 0)[0] == 1
    assert p.tobytes() == before.tobytes()


@pytest.mark.parametrize("n_threads", [1, 2])
def test_finite_loss_with_non_finite_gradient_returns_2(n_threads):
    """float32: sigma so small that scale / sigma^2 overflows the gradient
    while the loss, summed in double, stays finite: nothing may be updated."""
    dtype, sigma = np.float32, 1e-20
    enc_h, dec_h, hidden_acts = ARCHS["1-hidden"]
    net, lay, acts = make_network(
        D, enc_h, K, dec_h, hidden_acts, "gaussian", sigma, MAX_BATCH, dtype
    )
    rng = np.random.default_rng(12)
    p = init_params(lay, rng, dtype)
    X = _data(rng, "gaussian", dtype=dtype)
    net.set_optimizer("adam", 0.01)
    g, s1, s2 = lay.zeros(dtype), lay.zeros(dtype), lay.zeros(dtype)
    before = [a.copy() for a in (p, s1, s2)]
    status, recon_sum, kl_sum = net.train_step(
        p, g, s1, s2, X, ROWS, B, SEED, 0, n_threads=n_threads
    )
    assert status == 2
    assert np.isfinite(recon_sum) and np.isfinite(kl_sum)
    assert not np.isfinite(g).all()
    for a, b0 in zip((p, s1, s2), before, strict=True):
        assert a.tobytes() == b0.tobytes()
    assert net.gradients(p, g, X, ROWS, B, SEED, 0, n_threads=n_threads)[0] == 2


def test_too_many_threads_raise():
    net, lay, acts, p, X = _setup()
    g = lay.zeros(np.float64)
    with pytest.raises(ValueError, match=r"n_threads must be in \[1, 256\], got 257"):
        net.train_step(p, g, g.copy(), g.copy(), X, None, B, SEED, 0, n_threads=257)


# -- encode / decode / elbo_terms ------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("n", [45, 16, 1, 0])
def test_inference_matches_reference(likelihood, dtype, n):
    net, lay, acts, p, X = _setup("2-hidden", likelihood, dtype, seed=11)
    X = np.ascontiguousarray(np.vstack([X, X])[:n])  # n up to 80 > max_batch: chunks
    layers = ref_layers(lay, p, acts)
    Xd = X.astype(np.float64)
    rtol = 1e-12 if dtype == np.float64 else 1e-4
    # encode: the raw head [mu | logvar]
    H = net.encode(p, X, n_threads=2)
    assert H.shape == (n, 2 * K) and H.dtype == np.dtype(dtype)
    Href = Xd
    for W, b, a in layers[: lay.n_encoder]:
        Href = ref.dense_forward(Href, W, b, a)
    np.testing.assert_allclose(
        H, Href, rtol=rtol, atol=rtol * max(1.0, np.abs(Href).max(initial=0))
    )
    # decode: sigmoid(logits) or the Gaussian mean
    Z = np.random.default_rng(1).standard_normal((n, K)).astype(dtype)
    out = net.decode(p, Z, n_threads=2)
    assert out.shape == (n, D) and out.dtype == np.dtype(dtype)
    Y = Z.astype(np.float64)
    for W, b, a in layers[lay.n_encoder :]:
        Y = ref.dense_forward(Y, W, b, a)
    want = ref.activation(Y, "sigmoid") if likelihood == "bernoulli" else Y
    np.testing.assert_allclose(
        out, want, rtol=rtol, atol=rtol * max(1.0, np.abs(want).max(initial=0))
    )
    if likelihood == "bernoulli":
        assert np.all((out >= 0) & (out <= 1))
    # elbo_terms: eps of row i from counter row key(X[i]) (the row's hash), given draw
    keys = [ref.row_key(x) for x in X]
    np.testing.assert_array_equal(_network.row_keys(X), np.array(keys, dtype=np.uint64))
    for stream, step, draw in [(_rng.STREAM_EVAL, 0, 0), (_rng.STREAM_SAMPLE, 5, 3)]:
        recon, kl = net.elbo_terms(
            p, X, SEED, stream, step=step, draw=draw, n_threads=2
        )
        assert recon.shape == kl.shape == (n,)
        assert recon.dtype == kl.dtype == np.float64
        eps = np.array(
            [
                _rng.normal_matrix(
                    SEED, stream, step, 1, K, row_offset=k, draw=draw, dtype=dtype
                )[0]
                for k in keys
            ]
        ).reshape(n, K)
        eps = eps.astype(np.float64)
        f = ref.forward(
            layers, lay.n_encoder, Xd, eps, likelihood, LIKELIHOODS[likelihood]
        )
        rt = 1e-12 if dtype == np.float64 else 2e-4
        np.testing.assert_allclose(recon, f["recon"], rtol=rt)
        np.testing.assert_allclose(kl, f["kl"], rtol=rt, atol=rt)


def test_elbo_terms_defaults_and_dependence():
    net, lay, acts, p, X = _setup("1-hidden", "bernoulli", np.float64, seed=12)
    a = net.elbo_terms(p, X, SEED, _rng.STREAM_EVAL)
    b = net.elbo_terms(p, X, SEED, _rng.STREAM_EVAL, step=0, draw=0)
    np.testing.assert_array_equal(a[0], b[0])
    c = net.elbo_terms(p, X, SEED, _rng.STREAM_EVAL, draw=1)
    assert not np.any(a[0] == c[0])
    np.testing.assert_array_equal(a[1], c[1])  # KL does not depend on the noise
    # a row's noise is a function of the row: any subset or order gives its numbers
    rows = np.random.default_rng(0).permutation(len(X))[:17]
    sub = net.elbo_terms(p, np.ascontiguousarray(X[rows]), SEED, _rng.STREAM_EVAL)
    np.testing.assert_array_equal(sub[0], a[0][rows])
    np.testing.assert_array_equal(sub[1], a[1][rows])
    # and of its values: changing one value of a row changes its noise only
    X2 = X.copy()
    X2[3, 0] = 1.0 - X2[3, 0]
    keys, keys2 = _network.row_keys(X), _network.row_keys(X2)
    assert keys[3] != keys2[3] and np.array_equal(
        np.delete(keys, 3), np.delete(keys2, 3)
    )
    assert len(set(keys.tolist())) == len(X)
    # -0 and +0 are the same input to the network, and get the same key
    Z = np.zeros((2, 5))
    Z[1, 2] = -0.0
    assert _network.row_keys(Z)[0] == _network.row_keys(Z)[1]


# -- data-parallel semantics: row_offset and global_batch ------------------------------


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_half_batches_sum_to_full_batch(likelihood):
    net, lay, acts, p, X = _setup("2-hidden", likelihood, np.float64, seed=13)
    rows = np.array([3, 7, 1, 0, 39, 20, 5, 5, 11, 30], dtype=np.int64)
    Bf, h = 10, 5
    kw = dict(seed=SEED, step=4, kl_weight=0.4)
    g_full = lay.zeros(np.float64)
    _, r_full, k_full = net.gradients(p, g_full, X, rows, Bf, **kw)
    g1, g2 = lay.zeros(np.float64), lay.zeros(np.float64)
    _, r1, k1 = net.gradients(
        p, g1, X, rows[:h], h, row_offset=0, global_batch=Bf, **kw
    )
    _, r2, k2 = net.gradients(
        p, g2, X, rows[h:], h, row_offset=h, global_batch=Bf, **kw
    )
    np.testing.assert_allclose(
        g1 + g2, g_full, rtol=1e-13, atol=1e-15 * np.abs(g_full).max()
    )
    assert r1 + r2 == pytest.approx(r_full, rel=1e-14)
    assert k1 + k2 == pytest.approx(k_full, rel=1e-14)
    # without the offset the second half would reuse the first half's noise
    g3 = lay.zeros(np.float64)
    _, r3, _ = net.gradients(p, g3, X, rows[h:], h, row_offset=0, global_batch=Bf, **kw)
    assert r3 != pytest.approx(r2, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_offset_and_global_batch_match_reference(dtype):
    net, lay, acts, p, X = _setup("1-hidden", "gaussian", dtype, seed=14)
    g = lay.zeros(dtype)
    status, r, k = net.gradients(
        p, g, X, ROWS, B, SEED, 3, kl_weight=0.5, row_offset=1000, global_batch=4 * B
    )
    assert status == 0
    _, recon, kl, gref = _reference(
        lay, acts, p, X, ROWS, B, 3, "gaussian", 0.5, dtype, row_offset=1000
    )
    # averaged over global_batch rows instead of B
    _assert_grads(g, gref * B / (4 * B), dtype)
    _assert_sum(r, recon.sum(), dtype)
    # train_step applies the same gradient
    net.set_optimizer("sgd", 1.0)
    p0 = p.copy()
    g2 = lay.zeros(dtype)
    net.train_step(
        p,
        g2,
        lay.zeros(dtype),
        lay.zeros(dtype),
        X,
        ROWS,
        B,
        SEED,
        3,
        kl_weight=0.5,
        row_offset=1000,
        global_batch=4 * B,
    )
    np.testing.assert_array_equal(g2, g)
    np.testing.assert_allclose(
        p, p0 - g.astype(np.float64), rtol=1e-6 if dtype == np.float32 else 1e-15
    )


# -- architectures ---------------------------------------------------------------------


def test_32_layers_work_and_match_reference():
    enc_h = (6,) * 15
    dec_h = (7,) * 15
    net, lay, acts = make_network(
        D,
        enc_h,
        K,
        dec_h,
        ("tanh", "sigmoid", "relu"),
        "bernoulli",
        1.0,
        MAX_BATCH,
        np.float64,
    )
    assert len(lay.shapes) == 32 == _network.MAX_LAYERS
    rng = np.random.default_rng(15)
    p = init_params(lay, rng, np.float64, w_scale=0.5)
    X = _data(rng, "bernoulli")
    g = lay.zeros(np.float64)
    _, r, _ = net.gradients(p, g, X, ROWS, B, SEED, 0)
    _, recon, _, gref = _reference(
        lay, acts, p, X, ROWS, B, 0, "bernoulli", 1.0, np.float64
    )
    _assert_grads(g, gref, np.float64)
    _assert_sum(r, recon.sum(), np.float64)


def test_training_reduces_the_loss():
    net, lay, acts, p, _ = _setup("1-hidden", "bernoulli", np.float64, seed=16)
    rng = np.random.default_rng(16)
    prototypes = rng.random((4, D)) > 0.5
    X = prototypes[rng.integers(0, 4, N_ROWS)] ^ (rng.random((N_ROWS, D)) < 0.05)
    X = X.astype(np.float64)
    net.set_optimizer("adam", 0.01)
    g, s1, s2 = lay.zeros(np.float64), lay.zeros(np.float64), lay.zeros(np.float64)
    losses = []
    for step in range(150):
        rows = np.arange(step % 4 * 10, step % 4 * 10 + 10, dtype=np.int64)
        status, r, k = net.train_step(p, g, s1, s2, X, rows, 10, SEED, step)
        assert status == 0
        losses.append((r + k) / 10)
    assert np.mean(losses[-20:]) < 0.8 * np.mean(losses[:20])


def test_default_optimizer_does_not_move_params():
    net, lay, acts, p, X = _setup("0-hidden", "bernoulli", np.float64, seed=17)
    p0 = p.copy()
    g = lay.zeros(np.float64)
    assert (
        net.train_step(
            p, g, lay.zeros(np.float64), lay.zeros(np.float64), X, None, B, SEED, 0
        )[0]
        == 0
    )
    np.testing.assert_array_equal(p, p0)
    assert np.abs(g).max() > 0


def test_network_properties():
    net, lay, acts, p, X = _setup("1-hidden", "bernoulli", np.float32, seed=18)
    assert net.max_batch == MAX_BATCH
    assert net.n_params == lay.size
    assert net.dtype == np.float32
    assert net.work_size >= MAX_BATCH * (D + 2 * K + K + K + 17 + 13 + D)


def test_read_only_inputs():
    net, lay, acts, p, X = _setup("1-hidden", "gaussian", np.float64, seed=19)
    rows = ROWS.copy()
    g1 = lay.zeros(np.float64)
    net.gradients(p, g1, X, rows, B, SEED, 0)
    want = (
        net.encode(p, X),
        net.decode(p, X[:, :K].copy()),
        net.elbo_terms(p, X, SEED, 2),
    )
    for a in (p, X, rows):
        a.setflags(write=False)
    g2 = lay.zeros(np.float64)
    net.gradients(p, g2, X, rows, B, SEED, 0)
    np.testing.assert_array_equal(g1, g2)
    net.set_optimizer("sgd", 0.1)
    p2 = p.copy()
    net.train_step(
        p2, g2, lay.zeros(np.float64), lay.zeros(np.float64), X, rows, B, SEED, 0
    )
    np.testing.assert_array_equal(net.encode(p, X), want[0])
    Zro = X[:, :K].copy()
    Zro.setflags(write=False)
    np.testing.assert_array_equal(net.decode(p, Zro), want[1])
    np.testing.assert_array_equal(net.elbo_terms(p, X, SEED, 2)[0], want[2][0])


# -- input validation ------------------------------------------------------------------


@pytest.fixture
def small():
    net, lay, acts, p, X = _setup("1-hidden", "bernoulli", np.float64, seed=20)
    bufs = [lay.zeros(np.float64) for _ in range(3)]
    return net, lay, p, X, bufs


def test_wrong_x_width_raises(small):
    net, lay, p, X, (g, s1, s2) = small
    Xw = np.zeros((N_ROWS, D + 1))
    with pytest.raises(ValueError, match="columns"):
        net.train_step(p, g, s1, s2, Xw, ROWS, B, SEED, 0)
    with pytest.raises(ValueError, match="columns"):
        net.gradients(p, g, Xw, ROWS, B, SEED, 0)
    with pytest.raises(ValueError):
        net.encode(p, Xw)
    with pytest.raises(ValueError):
        net.elbo_terms(p, Xw, SEED, 2)
    with pytest.raises(ValueError):
        net.decode(p, np.zeros((3, K + 1)))


def test_bad_batch_raises(small):
    net, lay, p, X, (g, s1, s2) = small
    rows = np.arange(MAX_BATCH + 1, dtype=np.int64)
    with pytest.raises(ValueError, match="batch"):
        net.train_step(p, g, s1, s2, X, rows, MAX_BATCH + 1, SEED, 0)
    with pytest.raises(ValueError, match="batch"):
        net.gradients(p, g, X, None, MAX_BATCH + 1, SEED, 0)
    with pytest.raises(ValueError, match="batch"):
        net.gradients(p, g, X, ROWS[:0], 0, SEED, 0)
    with pytest.raises(ValueError):  # rows and batch disagree
        net.gradients(p, g, X, ROWS, B - 1, SEED, 0)
    with pytest.raises(ValueError):  # X has fewer rows than batch
        net.gradients(p, g, X[:5], None, B, SEED, 0)
    with pytest.raises(ValueError):
        net.gradients(p, g, X, ROWS, B, SEED, 0, global_batch=B - 1)
    with pytest.raises(ValueError):
        net.gradients(p, g, X, ROWS, B, SEED, 0, n_threads=0)


@pytest.mark.parametrize("bad_row", [N_ROWS, -1, 10**9])
def test_out_of_range_row_raises(small, bad_row):
    net, lay, p, X, (g, s1, s2) = small
    rows = ROWS.copy()
    rows[4] = bad_row
    p0 = p.copy()
    with pytest.raises(IndexError):
        net.train_step(p, g, s1, s2, X, rows, B, SEED, 0)
    with pytest.raises(IndexError):
        net.gradients(p, g, X, rows, B, SEED, 0)
    np.testing.assert_array_equal(p, p0)


def test_dtype_mismatch_raises(small):
    net, lay, p, X, (g, s1, s2) = small
    f32 = [a.astype(np.float32) for a in (p, g, s1, s2)]
    X32 = X.astype(np.float32)
    with pytest.raises(TypeError):
        net.train_step(*f32, X32, ROWS, B, SEED, 0)
    with pytest.raises(TypeError):
        net.gradients(f32[0], f32[1], X32, ROWS, B, SEED, 0)
    with pytest.raises(TypeError):
        net.encode(f32[0], X32)
    with pytest.raises(TypeError):
        net.decode(f32[0], X32[:, :K].copy())
    with pytest.raises(TypeError):
        net.elbo_terms(f32[0], X32, SEED, 2)
    # params float64 but X float32: no fused signature matches
    with pytest.raises((TypeError, ValueError)):
        net.gradients(p, g, X32, ROWS, B, SEED, 0)
    # int32 row indices are not silently reinterpreted
    with pytest.raises((TypeError, ValueError)):
        net.gradients(p, g, X, ROWS.astype(np.int32), B, SEED, 0)


def test_wrong_buffer_length_raises(small):
    net, lay, p, X, (g, s1, s2) = small
    short = np.zeros(lay.size - 1)
    with pytest.raises(ValueError, match="length"):
        net.train_step(
            short, short.copy(), short.copy(), short.copy(), X, ROWS, B, SEED, 0
        )
    for i in range(3):
        bufs = [g, s1, s2]
        bufs[i] = short
        with pytest.raises(ValueError):
            net.train_step(p, *bufs, X, ROWS, B, SEED, 0)
    with pytest.raises(ValueError):
        net.gradients(p, short, X, ROWS, B, SEED, 0)
    with pytest.raises(ValueError):
        net.encode(short, X)


def test_negative_seed_or_step_raises(small):
    net, lay, p, X, (g, s1, s2) = small
    with pytest.raises((OverflowError, ValueError)):
        net.gradients(p, g, X, ROWS, B, -1, 0)
    with pytest.raises((OverflowError, ValueError)):
        net.gradients(p, g, X, ROWS, B, SEED, -1)


def test_set_optimizer_unknown_kind_raises(small):
    net = small[0]
    with pytest.raises(ValueError, match="optimizer"):
        net.set_optimizer("lbfgs", 0.1)


def _net_args(lay, acts):
    return [
        lay.encoder_dims,
        lay.decoder_dims,
        [_dense.ACTIVATIONS[a] for a in acts],
        lay.w_offsets,
        lay.b_offsets,
        lay.size,
        "bernoulli",
        1.0,
        8,
        np.float64,
    ]


def test_constructor_rejects_bad_configurations():
    lay = Layout((D, 12, 2 * K), (K, 12, D))
    acts = ["tanh", "identity", "tanh", "identity"]
    _network.Network(*_net_args(lay, acts))  # the good one

    def bad(exc=ValueError, **changes):
        args = _net_args(lay, acts)
        names = ["enc", "dec", "acts", "w", "b", "n", "lik", "sigma", "mb", "dtype"]
        for k, v in changes.items():
            args[names.index(k)] = v
        with pytest.raises(exc):
            _network.Network(*args)

    bad(enc=(D, 12, 2 * K + 2))  # head != 2 * latent
    bad(dec=(K, 12, D + 1))  # output != n_features
    bad(enc=(D + 1, 12, 2 * K))  # input != n_features
    bad(enc=(D,))  # no encoder layer
    bad(dec=(K,))  # no decoder layer
    bad(acts=[1, 2, 2, 0])  # head not identity
    bad(acts=[2, 0, 2, 3])  # output not identity
    bad(acts=[2, 0, 0])  # one activation short
    bad(w=lay.w_offsets[:-1])
    bad(b=lay.b_offsets + [0])
    bad(n=lay.b_offsets[-1] + D - 1)  # last bias does not fit
    bad(n=lay.w_offsets[-1] + 12 * D - 1)  # last W does not fit
    bad(w=[-1] + lay.w_offsets[1:])
    bad(lik="poisson")
    bad(sigma=0.0)
    bad(sigma=-1.0)
    bad(mb=0)
    bad(TypeError, dtype=np.int32)
    bad(TypeError, dtype=np.float16)
    bad(enc=(D, 0, 2 * K))  # empty layer


def test_constructor_rejects_more_than_32_layers():
    lay = Layout((D, *(6,) * 16, 2 * K), (K, *(6,) * 15, D))
    assert len(lay.shapes) == 33
    acts = (["tanh"] * 16 + ["identity"]) + (["tanh"] * 15 + ["identity"])
    with pytest.raises(ValueError, match="32"):
        _network.Network(*_net_args(lay, acts))
