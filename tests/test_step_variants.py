"""The compiled step for the model family: autoencoders, conditional models,
a learned Gaussian likelihood, dynamic binarization, masking noise, several
latent samples per row (the k-sample ELBO and the IWAE bound) and the
importance-sampled log-likelihood, each against tests/reference.py."""

import numpy as np
import pytest
import reference as ref
from _helpers import fd4, flat_grads, init_params, ref_layers

from fastvae._core import _dense, _rng
from fastvae._core import _network as network_module
from fastvae._core.params import Layout

D, K, C, B, N_ROWS, MAX_BATCH = 12, 3, 4, 9, 30, 16
SEED = 7
ROWS = np.array([3, 7, 1, 0, 29, 20, 5, 5, 11], dtype=np.int64)


def _network(
    kind="vae",
    n_cond=0,
    likelihood="bernoulli",
    sigma=0.8,
    corrupt=0.0,
    binarize=False,
    enc_hidden=(10,),
    dec_hidden=(8,),
    max_batch=MAX_BATCH,
    dtype=np.float64,
    acts=("tanh", "sigmoid"),
    **options,
):
    head = 2 * K if kind == "vae" else K
    lay = Layout(
        (D + n_cond, *enc_hidden, head),
        (K + n_cond, *dec_hidden, D),
        n_tail=D if likelihood == "gaussian_learned" else 0,
    )
    names = []
    k = 0
    for hidden in (enc_hidden, dec_hidden):
        for _ in hidden:
            names.append(acts[k % len(acts)])
            k += 1
        names.append("identity")
    net = network_module.Network(
        lay.encoder_dims,
        lay.decoder_dims,
        [_dense.ACTIVATIONS[a] for a in names],
        lay.w_offsets,
        lay.b_offsets,
        lay.size,
        likelihood,
        sigma,
        max_batch,
        dtype,
        kind=kind,
        n_cond=n_cond,
        logsigma_offset=lay.tail_offset if lay.n_tail else -1,
        corrupt=corrupt,
        binarize=binarize,
        **options,
    )
    return net, lay, names


def _params(lay, seed, dtype=np.float64):
    return init_params(lay, np.random.default_rng(seed), dtype, tail=(-1.0, 0.5))


def _data(likelihood, seed, dtype=np.float64, n=N_ROWS):
    rng = np.random.default_rng(seed)
    if likelihood == "bernoulli":
        X = rng.random((n, D))
        X[:, ::2] = X[:, ::2] > 0.5
    else:
        X = rng.standard_normal((n, D))
    cond = np.eye(C)[rng.integers(0, C, n)]
    return X.astype(dtype), cond.astype(dtype)


CASES = {
    "ae": dict(kind="ae"),
    "cvae": dict(n_cond=C),
    "cae-gaussian": dict(kind="ae", n_cond=C, likelihood="gaussian"),
    "learned-sigma": dict(likelihood="gaussian_learned"),
    "cvae-learned-sigma": dict(n_cond=C, likelihood="gaussian_learned"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("n_threads", [1, 2])
def test_gradients_match_reference(case, n_threads):
    settings = CASES[case]
    lik = settings.get("likelihood", "bernoulli")
    net, lay, names = _network(**settings)
    p = _params(lay, seed=len(case))
    X, cond = _data(lik, seed=3)
    cond_arg = cond if settings.get("n_cond") else None
    g = lay.zeros(np.float64)
    status, recon_sum, kl_sum = net.gradients(
        p, g, X, ROWS, B, SEED, 4, kl_weight=0.6, n_threads=n_threads, cond=cond_arg
    )
    assert status == 0
    eps = _rng.normal_matrix(SEED, _rng.STREAM_REPARAM, 4, B, K)
    loss, recon, kl, grads = ref.loss_and_grads(
        ref_layers(lay, p, names),
        lay.n_encoder,
        X[ROWS],
        eps,
        lik,
        0.8,
        beta=0.6,
        kind=settings.get("kind", "vae"),
        cond=None if cond_arg is None else cond[ROWS],
        logsigma=lay.tail(p) if lay.n_tail else None,
    )
    assert recon_sum == pytest.approx(recon.sum(), rel=1e-12)
    assert kl_sum == pytest.approx(kl.sum(), rel=1e-12, abs=1e-12)
    if settings.get("kind") == "ae":
        assert kl_sum == 0.0
    np.testing.assert_allclose(g, flat_grads(lay, grads), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["ae", "cvae", "learned-sigma"])
def test_loss_finite_differences(case):
    """The compiled gradient is the derivative of the compiled loss."""
    settings = CASES[case]
    lik = settings.get("likelihood", "bernoulli")
    net, lay, names = _network(**settings)
    p = _params(lay, seed=11)
    X, cond = _data(lik, seed=5)
    cond_arg = cond if settings.get("n_cond") else None
    g = lay.zeros(np.float64)
    net.gradients(p, g, X, ROWS, B, SEED, 0, cond=cond_arg)

    def loss():
        _, r, k = net.gradients(
            p, lay.zeros(np.float64), X, ROWS, B, SEED, 0, cond=cond_arg
        )
        return (r + k) / B

    rng = np.random.default_rng(0)
    idx = rng.choice(lay.size, 25, replace=False)
    mask = np.zeros(lay.size, bool)
    for W, b in lay.views(mask):
        W[...], b[...] = True, True
    if lay.n_tail:
        lay.tail(mask)[...] = True
    for i in idx[mask[idx]]:
        h = 1e-5 * max(1.0, abs(p[i]))
        assert g[i] == pytest.approx(fd4(loss, p, (i,), h), rel=1e-6, abs=1e-8), i


def test_learned_sigma_is_clamped():
    net, lay, names = _network(likelihood="gaussian_learned")
    p = _params(lay, seed=2)
    lay.tail(p)[:3] = [-20.0, 20.0, 0.0]
    X, _ = _data("gaussian", seed=2)
    g = lay.zeros(np.float64)
    assert net.gradients(p, g, X, None, B, SEED, 0)[0] == 0
    assert lay.tail(g)[0] == 0.0 and lay.tail(g)[1] == 0.0 and lay.tail(g)[2] != 0.0
    eps = _rng.normal_matrix(SEED, _rng.STREAM_REPARAM, 0, B, K)
    _, recon, _, _ = ref.loss_and_grads(
        ref_layers(lay, p, names),
        lay.n_encoder,
        X[:B],
        eps,
        "gaussian_learned",
        logsigma=lay.tail(p),
    )
    np.testing.assert_allclose(net.row_losses(B)[:, 0], recon, rtol=1e-12)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_dynamic_binarization_and_masking_noise(n_threads):
    net, lay, names = _network(binarize=True, corrupt=0.3)
    p = _params(lay, seed=9)
    X, _ = _data("bernoulli", seed=9)
    X[:] = np.random.default_rng(1).random(X.shape)  # probabilities
    g = lay.zeros(np.float64)
    step, offset = 5, 40
    assert (
        net.gradients(
            p,
            g,
            X,
            ROWS,
            B,
            SEED,
            step,
            row_offset=offset,
            global_batch=B,
            n_threads=n_threads,
        )[0]
        == 0
    )
    u_bin = _rng.uniform_matrix(
        SEED, _rng.STREAM_BINARIZE, step, B, D, row_offset=offset
    )
    u_mask = _rng.uniform_matrix(
        SEED, _rng.STREAM_CORRUPT, step, B, D, row_offset=offset
    )
    target = (u_bin < X[ROWS]).astype(np.float64)
    seen = np.where(u_mask < 0.3, 0.0, target)
    eps = _rng.normal_matrix(SEED, _rng.STREAM_REPARAM, step, B, K, row_offset=offset)
    _, recon, _, grads = ref.loss_and_grads(
        ref_layers(lay, p, names), lay.n_encoder, target, eps, x_in=seen
    )
    np.testing.assert_allclose(net.row_losses(B)[:, 0], recon, rtol=1e-12)
    np.testing.assert_allclose(g, flat_grads(lay, grads), rtol=1e-10, atol=1e-12)
    # the noise is redrawn at every step
    g2 = lay.zeros(np.float64)
    net.gradients(p, g2, X, ROWS, B, SEED, step + 1, row_offset=offset)
    assert not np.array_equal(g, g2)


def test_inference_ignores_training_noise():
    noisy, lay, names = _network(binarize=True, corrupt=0.5)
    clean, _, _ = _network()
    p = _params(lay, seed=4)
    X, _ = _data("bernoulli", seed=4)
    np.testing.assert_array_equal(noisy.encode(p, X), clean.encode(p, X))
    np.testing.assert_array_equal(
        noisy.elbo_terms(p, X, SEED, 2)[0], clean.elbo_terms(p, X, SEED, 2)[0]
    )


@pytest.mark.parametrize("case", ["ae", "cvae", "cae-gaussian"])
def test_inference_with_conditions_and_autoencoders(case):
    settings = CASES[case]
    lik = settings.get("likelihood", "bernoulli")
    net, lay, names = _network(**settings, max_batch=7)  # several chunks
    p = _params(lay, seed=6)
    X, cond = _data(lik, seed=6)
    c = cond if settings.get("n_cond") else None
    layers = ref_layers(lay, p, names)
    # evaluation noise: row i's counter is the key of its encoder input [x | c]
    x_in = X if c is None else np.hstack([X, c])
    eps = np.vstack(
        [
            _rng.normal_matrix(
                SEED, _rng.STREAM_EVAL, 0, 1, K, row_offset=ref.row_key(r)
            )
            for r in x_in
        ]
    )
    np.testing.assert_array_equal(
        network_module.row_keys(x_in), [ref.row_key(r) for r in x_in]
    )
    f = ref.forward(
        layers,
        lay.n_encoder,
        X,
        eps,
        lik,
        0.8,
        kind=settings.get("kind", "vae"),
        cond=c,
    )
    np.testing.assert_allclose(net.encode(p, X, cond=c), f["H"], rtol=1e-12, atol=1e-14)
    Z = np.random.default_rng(0).standard_normal((N_ROWS, K))
    dec_in = Z if c is None else np.hstack([Z, c])
    h = dec_in
    for W, b, a in layers[lay.n_encoder :]:
        h = ref.dense_forward(h, W, b, a)
    want = 1 / (1 + np.exp(-h)) if lik == "bernoulli" else h
    np.testing.assert_allclose(net.decode(p, Z, cond=c), want, rtol=1e-12, atol=1e-14)
    recon, kl = net.elbo_terms(p, X, SEED, _rng.STREAM_EVAL, cond=c)
    np.testing.assert_allclose(recon, f["recon"], rtol=1e-12)
    np.testing.assert_allclose(kl, f["kl"], rtol=1e-12, atol=1e-14)


def test_conditions_are_checked():
    net, lay, _ = _network(n_cond=C)
    p = _params(lay, seed=1)
    X, cond = _data("bernoulli", seed=1)
    with pytest.raises(
        ValueError, match=r"needs conditions: an array of shape \(n_rows, 4\)"
    ):
        net.encode(p, X)
    with pytest.raises(
        ValueError, match=r"cond must have shape \(30, 4\), got \(30, 3\)"
    ):
        net.encode(p, X, cond=cond[:, :3].copy())
    plain, lay2, _ = _network()
    with pytest.raises(ValueError, match="takes no conditions"):
        plain.encode(_params(lay2, 1), X, cond=cond)


@pytest.mark.parametrize(
    "settings",
    [
        dict(),
        dict(n_cond=C),
        dict(likelihood="gaussian"),
        dict(likelihood="gaussian_learned"),
    ],
    ids=["vae", "cvae", "gaussian", "learned-sigma"],
)
def test_log_likelihood_matches_reference(settings):
    lik = settings.get("likelihood", "bernoulli")
    net, lay, names = _network(**settings, max_batch=8)  # windows split rows' samples
    p = _params(lay, seed=8)
    X, cond = _data(lik, seed=8, n=5)
    c = cond if settings.get("n_cond") else None
    k, offset = 13, 100
    got = net.log_likelihood(
        p, X, k, SEED, _rng.STREAM_IS, cond=c, row_offset=offset, n_threads=2
    )
    eps = np.stack(
        [
            np.vstack(
                [
                    _rng.normal_matrix(
                        SEED, _rng.STREAM_IS, s, 1, K, row_offset=offset + r
                    )
                    for s in range(k)
                ]
            )
            for r in range(5)
        ]
    )
    want = ref.log_likelihood(
        ref_layers(lay, p, names),
        lay.n_encoder,
        X,
        eps,
        lik,
        0.8,
        cond=c,
        logsigma=lay.tail(p) if lay.n_tail else None,
    )
    np.testing.assert_allclose(got, want, rtol=1e-11)


def test_log_likelihood_does_not_depend_on_chunking_or_threads():
    X, _ = _data("bernoulli", seed=3, n=20)
    results = []
    for max_batch, threads in ((4, 1), (16, 2), (64, 2)):
        net, lay, names = _network(max_batch=max_batch)
        p = _params(lay, seed=3)
        results.append(
            net.log_likelihood(p, X, 10, SEED, _rng.STREAM_IS, n_threads=threads)
        )
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_log_likelihood_needs_a_vae():
    net, lay, _ = _network(kind="ae")
    X, _ = _data("bernoulli", seed=1)
    with pytest.raises(ValueError, match="need a VAE"):
        net.log_likelihood(_params(lay, 1), X, 5, SEED, _rng.STREAM_IS)
    vae, lay2, _ = _network()
    with pytest.raises(ValueError, match="k must be >= 1"):
        vae.log_likelihood(_params(lay2, 1), X, 0, SEED, _rng.STREAM_IS)


def test_network_validates_the_model_family():
    lay = Layout((D, 2 * K), (K, D))
    acts = [_dense.ACTIVATIONS["identity"]] * 2
    args = (
        lay.encoder_dims,
        lay.decoder_dims,
        acts,
        lay.w_offsets,
        lay.b_offsets,
        lay.size,
        "bernoulli",
        1.0,
        8,
        np.float64,
    )
    with pytest.raises(ValueError, match="kind must be one of"):
        network_module.Network(*args, kind="gan")
    with pytest.raises(ValueError, match="head = latent_dim"):
        network_module.Network(*args, kind="ae")
    with pytest.raises(ValueError, match="2 condition columns"):
        network_module.Network(*args, n_cond=2)
    with pytest.raises(ValueError, match="corrupt must be in"):
        network_module.Network(*args, corrupt=1.0)
    with pytest.raises(ValueError, match="log-sigmas do not fit"):
        network_module.Network(*args[:6], "gaussian_learned", 1.0, 8, np.float64)


# -- several latent samples per row: the k-sample ELBO and the IWAE bound --------

SAMPLE_CASES = {
    "bernoulli": dict(),
    "cvae": dict(n_cond=C),
    "learned-sigma": dict(likelihood="gaussian_learned"),
    "gaussian": dict(likelihood="gaussian"),
}


def _sample_eps(k, step, n=B, row_offset=0):
    """eps (n, k, K) as the step draws them: sample s of row i from counter
    (block, row_offset + i, step, s)."""
    return np.stack(
        [
            _rng.normal_matrix(
                SEED, _rng.STREAM_REPARAM, step, n, K, row_offset=row_offset, draw=s
            )
            for s in range(k)
        ],
        axis=1,
    )


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
@pytest.mark.parametrize("case", list(SAMPLE_CASES))
@pytest.mark.parametrize("k", [2, 5])
def test_samples_gradients_match_reference(objective, case, k):
    settings = SAMPLE_CASES[case]
    lik = settings.get("likelihood", "bernoulli")
    net, lay, names = _network(**settings, n_samples=k, objective=objective)
    p = _params(lay, seed=k + len(case))
    X, cond = _data(lik, seed=4)
    cond_arg = cond if settings.get("n_cond") else None
    g = lay.zeros(np.float64)
    status, recon_sum, kl_sum = net.gradients(
        p, g, X, ROWS, B, SEED, 3, kl_weight=0.6, n_threads=2, cond=cond_arg
    )
    assert status == 0
    loss, recon, kl, grads = ref.loss_and_grads_samples(
        ref_layers(lay, p, names),
        lay.n_encoder,
        X[ROWS],
        _sample_eps(k, step=3),
        objective,
        lik,
        0.8,
        beta=0.6,
        cond=None if cond_arg is None else cond[ROWS],
        logsigma=lay.tail(p) if lay.n_tail else None,
    )
    assert recon_sum == pytest.approx(recon.sum(), rel=1e-12)
    assert kl_sum == pytest.approx(kl.sum(), rel=1e-12)
    assert (recon_sum + 0.6 * kl_sum) / B == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(g, flat_grads(lay, grads), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_samples_float32_and_float64_match_reference(objective, dtype):
    net, lay, names = _network(n_samples=4, objective=objective, dtype=dtype)
    p = _params(lay, seed=8, dtype=dtype)
    X, _ = _data("bernoulli", seed=9, dtype=dtype)
    g = lay.zeros(dtype)
    status, recon_sum, kl_sum = net.gradients(p, g, X, ROWS, B, SEED, 0)
    assert status == 0
    loss, recon, kl, grads = ref.loss_and_grads_samples(
        ref_layers(lay, p.astype(np.float64), names),
        lay.n_encoder,
        X[ROWS].astype(np.float64),
        _sample_eps(4, step=0).astype(dtype).astype(np.float64),
        objective,
    )
    gref = flat_grads(lay, grads)
    tol = 1e-10 if dtype == np.float64 else 2e-4
    assert recon_sum == pytest.approx(recon.sum(), rel=tol)
    np.testing.assert_allclose(
        g, gref, rtol=tol, atol=tol * np.abs(gref).max(), err_msg=str(dtype)
    )


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
@pytest.mark.parametrize("case", ["bernoulli", "cvae", "learned-sigma"])
def test_samples_loss_finite_differences(objective, case):
    """The compiled gradient of the k-sample objectives is the derivative of
    the compiled loss (float64), with a KL weight below 1 (warm-up)."""
    settings = SAMPLE_CASES[case]
    lik = settings.get("likelihood", "bernoulli")
    net, lay, names = _network(**settings, n_samples=3, objective=objective)
    p = _params(lay, seed=12)
    X, cond = _data(lik, seed=6)
    cond_arg = cond if settings.get("n_cond") else None
    beta = 0.7
    g = lay.zeros(np.float64)
    net.gradients(p, g, X, ROWS, B, SEED, 2, kl_weight=beta, cond=cond_arg)

    def loss():
        _, r, k = net.gradients(
            p,
            lay.zeros(np.float64),
            X,
            ROWS,
            B,
            SEED,
            2,
            kl_weight=beta,
            cond=cond_arg,
        )
        return (r + beta * k) / B

    rng = np.random.default_rng(1)
    idx = rng.choice(lay.size, 40, replace=False)
    mask = np.zeros(lay.size, bool)
    for W, b in lay.views(mask):
        W[...], b[...] = True, True
    if lay.n_tail:
        lay.tail(mask)[...] = True
    checked = 0
    for i in idx[mask[idx]]:
        h = 1e-5 * max(1.0, abs(p[i]))
        assert g[i] == pytest.approx(fd4(loss, p, (i,), h), rel=1e-6, abs=1e-8), i
        checked += 1
    assert checked >= 20


def test_iwae_row_loss_is_the_importance_sampled_estimate():
    """An IWAE row's loss is -log (1/k) sum_s w_s on the step's draws, the
    estimate reference.log_likelihood makes from them, and it is below the
    mean of the samples' -log w_s (Jensen)."""
    k = 6
    net, lay, names = _network(n_samples=k, objective="iwae")
    p = _params(lay, seed=2)
    X, _ = _data("bernoulli", seed=2)
    net.gradients(p, lay.zeros(np.float64), X, ROWS, B, SEED, 5)
    rows = net.row_losses(B)
    loss = rows[:, 0] + rows[:, 1]
    eps = _sample_eps(k, step=5)
    layers = ref_layers(lay, p, names)
    ll = ref.log_likelihood(layers, lay.n_encoder, X[ROWS], eps)
    np.testing.assert_allclose(-loss, ll, rtol=1e-12)
    log_w = np.stack(
        [
            ref.log_likelihood(layers, lay.n_encoder, X[ROWS], eps[:, s : s + 1])
            for s in range(k)
        ],
        axis=1,
    )
    assert np.all(loss <= -log_w.mean(axis=1) + 1e-12)
    assert np.all(loss < -log_w.mean(axis=1) - 1e-3)


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_samples_bitwise_identical_for_any_thread_count(objective):
    results = []
    for n_threads in (1, 2, 3):
        net, lay, _ = _network(
            n_samples=7,
            objective=objective,
            dtype=np.float32,
            n_cond=C,
            enc_hidden=(40,),
            dec_hidden=(70,),
        )
        net.set_optimizer("adam", 0.01)
        p = _params(lay, seed=3, dtype=np.float32)
        X, cond = _data("bernoulli", seed=3, dtype=np.float32)
        g, s1, s2 = (lay.zeros(np.float32) for _ in range(3))
        for step in range(3):
            status, *_ = net.train_step(
                p,
                g,
                s1,
                s2,
                X,
                ROWS,
                B,
                SEED,
                step,
                kl_weight=0.5,
                n_threads=n_threads,
                cond=cond,
            )
            assert status == 0
        results.append((p, g, s1, s2))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert np.array_equal(a, b)


def test_one_sample_is_the_plain_step_for_both_objectives():
    """n_samples = 1 is the plain step, bitwise, whatever the objective."""
    X, _ = _data("bernoulli", seed=1)
    outs = []
    for options in ({}, dict(objective="elbo"), dict(objective="iwae")):
        net, lay, _ = _network(**options, n_samples=1)
        p = _params(lay, seed=1)
        g = lay.zeros(np.float64)
        outs.append((g, net.gradients(p, g, X, ROWS, B, SEED, 2, kl_weight=0.3)))
    for g, sums in outs[1:]:
        assert np.array_equal(g, outs[0][0]) and sums == outs[0][1]


def test_samples_half_batches_sum_to_the_full_batch():
    """Rows are independent: two shards (row_offset, global_batch) give the
    full minibatch's gradient, as MPI ranks do."""
    net, lay, _ = _network(n_samples=4, objective="iwae")
    p = _params(lay, seed=5)
    X, _ = _data("bernoulli", seed=5)
    g_full = lay.zeros(np.float64)
    net.gradients(p, g_full, X[ROWS], None, B, SEED, 1)
    g_a, g_b = lay.zeros(np.float64), lay.zeros(np.float64)
    net.gradients(p, g_a, X[ROWS][:5], None, 5, SEED, 1, global_batch=B)
    net.gradients(p, g_b, X[ROWS][5:], None, 4, SEED, 1, global_batch=B, row_offset=5)
    np.testing.assert_allclose(g_a + g_b, g_full, rtol=1e-12, atol=1e-15)


def test_samples_bad_options_raise():
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        _network(n_samples=0)
    with pytest.raises(ValueError, match="objective must be one of"):
        _network(objective="vi")
    with pytest.raises(ValueError, match="autoencoder"):
        _network(kind="ae", n_samples=2)
