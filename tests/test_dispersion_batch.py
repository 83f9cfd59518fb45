"""One tail per condition column and data column (scVI's dispersion
"gene-batch"): row i's log-dispersions are sum_b c_ib phi_b. The compiled
step against tests/reference.py and finite differences, thread-count
invariance, and the per-row tails in elbo and log p(x); the estimator
option is in test_dispersion_batch_model.py."""

import numpy as np
import pytest
import reference as ref
from _helpers import (
    COLUMN_ACTS,
    columns_network,
    fd4,
    flat_grads,
    init_params,
    ref_layers,
)

from fastvae._core import _network as network_module
from fastvae._core import _rng
from fastvae._core.params import Layout

K, C, B, N_ROWS = 3, 3, 9, 30
SEED = 11
ROWS = np.array([3, 7, 1, 0, 29, 20, 5, 5, 11], dtype=np.int64)
SPEC = [
    ("negbin", 1, 1.0),
    ("gaussian_learned", 1, 1.0),
    ("zinb", 1, 1.0),
    ("poisson", 1, 1.0),
    ("negbin", 1, 1.0),
    ("zinb", 1, 1.0),
]
COUNTS = [("negbin", 1, 1.0)] * 3 + [("zinb", 1, 1.0)] * 2 + [("poisson", 1, 1.0)]
NAMES = list(COLUMN_ACTS)


def _network(spec=SPEC, dtype=np.float64, by_condition=True, **options):
    net, lay, _ = columns_network(
        spec, K, C, dtype=dtype, tail_by_condition=by_condition, **options
    )
    return net, lay


def _params(lay, seed, dtype=np.float64):
    return init_params(lay, np.random.default_rng(seed), dtype, tail=(-1.5, 1.5))


def _data(spec=SPEC, seed=0, one_hot=True, dtype=np.float64):
    rng = np.random.default_rng(seed)
    D = len(spec)
    X = rng.negative_binomial(2, 0.35, (N_ROWS, D)).astype(float)
    for d, (kind, _, _) in enumerate(spec):
        if kind.startswith("gaussian"):
            X[:, d] = rng.standard_normal(N_ROWS)
    X[4] = 0.0
    if one_hot:
        cond = np.eye(C)[rng.integers(0, C, N_ROWS)]
    else:  # mixtures and signs: the tails are any linear map of c
        cond = rng.uniform(-0.5, 1.2, (N_ROWS, C))
    return X.astype(dtype), cond.astype(dtype)


CASES = {
    "one-hot": dict(one_hot=True),
    "mixed": dict(one_hot=False),
    "library-one-hot": dict(one_hot=True, library=True),
    "library-mixed": dict(one_hot=False, library=True),
}


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_gradients_match_reference(case, n_threads):
    settings = dict(CASES[case])
    one_hot = settings.pop("one_hot")
    library = settings.get("library", False)
    spec = COUNTS if library else SPEC
    net, lay = _network(spec, **settings)
    p = _params(lay, seed=len(case))
    X, cond = _data(spec, seed=3, one_hot=one_hot)
    g = lay.zeros(np.float64)
    status, recon_sum, kl_sum = net.gradients(
        p, g, X, ROWS, B, SEED, 4, kl_weight=0.6, n_threads=n_threads, cond=cond
    )
    assert status == 0
    eps = _rng.normal_matrix(SEED, _rng.STREAM_REPARAM, 4, B, K)
    phi = lay.tail(p).reshape(C, len(spec))
    loss, recon, kl, grads = ref.loss_and_grads_columns(
        ref_layers(lay, p, NAMES),
        lay.n_encoder,
        X[ROWS],
        eps,
        spec,
        phi,
        beta=0.6,
        cond=cond[ROWS],
        library=library,
        tail_by_condition=True,
    )
    assert recon_sum == pytest.approx(recon.sum(), rel=1e-12)
    assert kl_sum == pytest.approx(kl.sum(), rel=1e-12)
    np.testing.assert_allclose(g, flat_grads(lay, grads), rtol=1e-10, atol=1e-12)
    tail_grad = lay.tail(g).reshape(C, len(spec))
    if one_hot:  # a batch without rows in the minibatch gets no gradient
        absent = cond[ROWS].sum(axis=0) == 0
        assert not tail_grad[absent].any()
    no_tail = [d for d, (kind, _, _) in enumerate(spec) if kind == "poisson"]
    assert not tail_grad[:, no_tail].any()


def test_float32_matches_the_float64_reference():
    net, lay = _network(dtype=np.float32)
    p = _params(lay, seed=2, dtype=np.float32)
    X, cond = _data(seed=2, one_hot=False, dtype=np.float32)
    g = lay.zeros(np.float32)
    status, recon_sum, _ = net.gradients(p, g, X, ROWS, B, SEED, 0, cond=cond)
    assert status == 0
    eps = _rng.normal_matrix(SEED, _rng.STREAM_REPARAM, 0, B, K, dtype=np.float32)
    _, recon, _, grads = ref.loss_and_grads_columns(
        ref_layers(lay, p.astype(np.float64), NAMES),
        lay.n_encoder,
        X[ROWS].astype(np.float64),
        eps.astype(np.float64),
        SPEC,
        lay.tail(p).astype(np.float64).reshape(C, len(SPEC)),
        cond=cond[ROWS].astype(np.float64),
        tail_by_condition=True,
    )
    gref = flat_grads(lay, grads)
    assert recon_sum == pytest.approx(recon.sum(), rel=1e-5)
    np.testing.assert_allclose(g, gref, rtol=2e-4, atol=2e-4 * np.abs(gref).max())


FD_CASES = {
    "one-hot": dict(one_hot=True),
    "mixed": dict(one_hot=False),
    "library-mixed": dict(one_hot=False, library=True),
    "elbo-3-samples": dict(one_hot=False, n_samples=3),
    "iwae-3-samples": dict(one_hot=True, n_samples=3, objective="iwae"),
    "library-iwae-3-samples": dict(
        one_hot=False, library=True, n_samples=3, objective="iwae"
    ),
}


@pytest.mark.parametrize("case", list(FD_CASES))
def test_phi_gradient_is_the_derivative_of_the_loss(case):
    """Every phi_bd of the negative binomial, zero-inflated NB and learned
    Gaussian columns against central differences of the compiled float64
    loss, with one latent sample per row and with three (ELBO and IWAE)."""
    settings = dict(FD_CASES[case])
    one_hot = settings.pop("one_hot")
    spec = COUNTS if settings.get("library") else SPEC
    net, lay = _network(spec, **settings)
    p = _params(lay, seed=9)
    X, cond = _data(spec, seed=9, one_hot=one_hot)
    g = lay.zeros(np.float64)
    status, *_ = net.gradients(p, g, X, ROWS, B, SEED, 1, kl_weight=0.8, cond=cond)
    assert status == 0

    def loss():
        _, r, k = net.gradients(
            p, lay.zeros(np.float64), X, ROWS, B, SEED, 1, kl_weight=0.8, cond=cond
        )
        return (r + 0.8 * k) / B

    present = cond[ROWS].any(axis=0)
    checked = 0
    for q in range(C):
        for d, (kind, _, _) in enumerate(spec):
            i = lay.tail_offset + q * len(spec) + d
            if kind == "poisson":
                assert g[i] == 0.0
                continue
            h = 1e-5 * max(1.0, abs(p[i]))
            want = fd4(loss, p, (i,), h)
            assert g[i] == pytest.approx(want, rel=1e-6, abs=1e-9), (q, d)
            checked += bool(present[q])
    assert checked >= 2 * (len(spec) - 1)


@pytest.mark.parametrize("n_samples, objective", [(1, "elbo"), (3, "iwae")])
def test_bitwise_identical_for_any_thread_count(n_samples, objective):
    results = []
    for n_threads in (1, 2, 3):
        net, lay = _network(dtype=np.float32, n_samples=n_samples, objective=objective)
        net.set_optimizer("adam", 0.01)
        p = _params(lay, seed=3, dtype=np.float32)
        X, cond = _data(seed=3, one_hot=False, dtype=np.float32)
        g, s1, s2 = (lay.zeros(np.float32) for _ in range(3))
        for step in range(3):
            status, *_ = net.train_step(
                p, g, s1, s2, X, ROWS, B, SEED, step, n_threads=n_threads, cond=cond
            )
            assert status == 0
        results.append((p, g, s1, s2))
    assert lay.tail(results[0][1]).any()
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert np.array_equal(a, b)


def test_one_hot_rows_score_like_a_model_with_their_batchs_tails():
    """elbo_terms and log p(x) give a row of batch b bitwise what a model
    with one tail per column, phi_b, gives it: the per-row tails reach the
    ELBO and the importance-sampled likelihood (n_samples windows)."""
    net, lay = _network()
    p = _params(lay, seed=5)
    X, cond = _data(seed=5)
    recon, kl = net.elbo_terms(p, X, SEED, _rng.STREAM_EVAL, cond=cond)
    ll = net.log_likelihood(p, X, 7, SEED, _rng.STREAM_EVAL, cond=cond)
    shared, shared_lay = _network(by_condition=False)
    q = shared_lay.zeros(np.float64)
    q[: lay.tail_offset] = p[: lay.tail_offset]
    phi = lay.tail(p).reshape(C, len(SPEC))
    batch = cond.argmax(axis=1)
    for b in range(C):
        shared_lay.tail(q)[...] = phi[b]
        rows = batch == b
        r_b, k_b = shared.elbo_terms(q, X, SEED, _rng.STREAM_EVAL, cond=cond)
        ll_b = shared.log_likelihood(q, X, 7, SEED, _rng.STREAM_EVAL, cond=cond)
        assert np.array_equal(r_b[rows], recon[rows])
        assert np.array_equal(k_b[rows], kl[rows])
        assert np.array_equal(ll_b[rows], ll[rows])
        assert not np.array_equal(r_b[~rows], recon[~rows])


def test_the_option_needs_a_tail_and_conditions():
    with pytest.raises(ValueError, match="tail_by_condition needs"):
        _network([("poisson", 1, 1.0), ("bernoulli", 1, 1.0)])
    lay = Layout((1, 2 * K), (K, 1), n_tail=1)  # no conditions
    with pytest.raises(ValueError, match="tail_by_condition needs"):
        network_module.Network(
            lay.encoder_dims,
            lay.decoder_dims,
            [0, 0],
            lay.w_offsets,
            lay.b_offsets,
            lay.size,
            "columns",
            1.0,
            4,
            np.float64,
            logsigma_offset=lay.tail_offset,
            columns=[("negbin", 1, 1.0)],
            tail_by_condition=True,
        )
    net_lay = Layout((1 + C, 2 * K), (K + C, 1), n_tail=1)
    with pytest.raises(ValueError, match=f"the {C} log-sigmas do not fit"):
        network_module.Network(
            net_lay.encoder_dims,
            net_lay.decoder_dims,
            [0, 0],
            net_lay.w_offsets,
            net_lay.b_offsets,
            net_lay.tail_offset + 1,
            "columns",
            1.0,
            4,
            np.float64,
            n_cond=C,
            logsigma_offset=net_lay.tail_offset,
            columns=[("negbin", 1, 1.0)],
            tail_by_condition=True,
        )


@pytest.mark.parametrize("n_threads", [1, 3])
def test_csr_rows_get_their_tails(n_threads):
    """The step on a CSR matrix's rows makes the tails from the conditions
    like the dense step (gradients against the reference)."""
    sp = pytest.importorskip("scipy.sparse")
    net, lay = _network(COUNTS, library=True)
    p = _params(lay, seed=12)
    X, cond = _data(COUNTS, seed=12, one_hot=False)
    X[X < 2] = 0
    A = sp.csr_matrix(X)
    csr = (A.data, A.indices.astype(np.int32), A.indptr.astype(np.int64))
    g = lay.zeros(np.float64)
    status, recon_sum, _ = net.gradients_csr(
        p, g, *csr, ROWS, B, SEED, 3, kl_weight=0.6, n_threads=n_threads, cond=cond
    )
    assert status == 0
    eps = _rng.normal_matrix(SEED, _rng.STREAM_REPARAM, 3, B, K)
    _, recon, _, grads = ref.loss_and_grads_columns(
        ref_layers(lay, p, NAMES),
        lay.n_encoder,
        X[ROWS],
        eps,
        COUNTS,
        lay.tail(p).reshape(C, len(COUNTS)),
        beta=0.6,
        cond=cond[ROWS],
        library=True,
        tail_by_condition=True,
    )
    assert recon_sum == pytest.approx(recon.sum(), rel=1e-12)
    np.testing.assert_allclose(g, flat_grads(lay, grads), rtol=1e-10, atol=1e-12)
