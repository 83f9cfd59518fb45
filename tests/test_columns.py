"""Per-column likelihoods in the compiled step (src_c/fastvae/columns.h):
Gaussian (fixed and learned sigma), Bernoulli, categorical, Poisson,
negative binomial and zero-inflated negative binomial columns in one model,
with missing entries, and count models with a library size, against
tests/reference.py and finite differences."""

import numpy as np
import pytest
import reference as ref
from _helpers import columns_network, fd4, flat_grads, init_params, ref_layers

from fastvae._core import _network as network_module
from fastvae._core import _rng

K, C, B, N_ROWS = 3, 2, 9, 30
SEED = 5
ROWS = np.array([3, 7, 1, 0, 29, 20, 5, 5, 11], dtype=np.int64)
SPEC = [
    ("gaussian", 1, 0.7),
    ("gaussian_learned", 1, 1.0),
    ("bernoulli", 1, 1.0),
    ("categorical", 4, 1.0),
    ("poisson", 1, 1.0),
    ("negbin", 1, 1.0),
    ("zinb", 1, 1.0),
    ("categorical", 2, 1.0),
]


def _network(spec=SPEC, missing=False, n_cond=0, kind="vae", dtype=np.float64, **kw):
    return columns_network(spec, K, n_cond, missing, kind, dtype, **kw)


def _params(lay, seed, dtype=np.float64):
    return init_params(lay, np.random.default_rng(seed), dtype, tail=(-0.8, 0.8))


def _data(spec=SPEC, seed=0, n=N_ROWS, missing_rate=0.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    cols = []
    for kind, width, _ in spec:
        if kind.startswith("gaussian"):
            cols.append(rng.standard_normal(n))
        elif kind == "bernoulli":
            cols.append((rng.random(n) > 0.5).astype(float))
        elif kind == "categorical":
            cols.append(rng.integers(0, width, n).astype(float))
        else:
            cols.append(rng.negative_binomial(2, 0.3, n).astype(float))
    X = np.stack(cols, axis=1)
    if missing_rate:
        X[rng.random(X.shape) < missing_rate] = np.nan
    cond = np.eye(C)[rng.integers(0, C, n)]
    return X.astype(dtype), cond.astype(dtype)


CASES = {
    "vae": dict(),
    "vae-missing": dict(missing=True),
    "cvae-missing": dict(missing=True, n_cond=C),
    "ae-missing": dict(missing=True, kind="ae"),
}


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_gradients_match_reference(case, n_threads):
    settings = CASES[case]
    net, lay, names = _network(**settings)
    p = _params(lay, seed=len(case))
    rate = 0.2 if settings.get("missing") else 0.0
    X, cond = _data(seed=3, missing_rate=rate)
    c = cond if settings.get("n_cond") else None
    g = lay.zeros(np.float64)
    status, recon_sum, kl_sum = net.gradients(
        p, g, X, ROWS, B, SEED, 4, kl_weight=0.6, n_threads=n_threads, cond=c
    )
    assert status == 0
    kind = settings.get("kind", "vae")
    eps = _rng.normal_matrix(SEED, _rng.STREAM_REPARAM, 4, B, K)
    loss, recon, kl, grads = ref.loss_and_grads_columns(
        ref_layers(lay, p, names),
        lay.n_encoder,
        X[ROWS],
        eps,
        SPEC,
        lay.tail(p),
        missing=settings.get("missing", False),
        beta=0.6,
        kind=kind,
        cond=None if c is None else c[ROWS],
    )
    assert recon_sum == pytest.approx(recon.sum(), rel=1e-12)
    assert kl_sum == pytest.approx(kl.sum(), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(g, flat_grads(lay, grads), rtol=1e-10, atol=1e-12)
    if rate:
        assert np.isnan(X[ROWS]).any()


def test_float32_matches_the_float64_reference():
    net, lay, names = _network(missing=True, dtype=np.float32)
    p = _params(lay, seed=2, dtype=np.float32)
    X, _ = _data(seed=2, missing_rate=0.15, dtype=np.float32)
    g = lay.zeros(np.float32)
    status, recon_sum, _ = net.gradients(p, g, X, ROWS, B, SEED, 0)
    assert status == 0
    eps = _rng.normal_matrix(SEED, _rng.STREAM_REPARAM, 0, B, K, dtype=np.float32)
    _, recon, _, grads = ref.loss_and_grads_columns(
        ref_layers(lay, p.astype(np.float64), names),
        lay.n_encoder,
        X[ROWS].astype(np.float64),
        eps.astype(np.float64),
        SPEC,
        lay.tail(p).astype(np.float64),
        missing=True,
    )
    gref = flat_grads(lay, grads)
    assert recon_sum == pytest.approx(recon.sum(), rel=1e-5)
    np.testing.assert_allclose(g, gref, rtol=2e-4, atol=2e-4 * np.abs(gref).max())


@pytest.mark.parametrize("case", ["vae-missing", "cvae-missing"])
def test_loss_finite_differences(case):
    """The compiled gradient, tail parameters included, is the derivative of
    the compiled loss (float64)."""
    settings = CASES[case]
    net, lay, names = _network(**settings)
    p = _params(lay, seed=9)
    X, cond = _data(seed=9, missing_rate=0.2)
    c = cond if settings.get("n_cond") else None
    g = lay.zeros(np.float64)
    net.gradients(p, g, X, ROWS, B, SEED, 1, kl_weight=0.8, cond=c)

    def loss():
        _, r, k = net.gradients(
            p, lay.zeros(np.float64), X, ROWS, B, SEED, 1, kl_weight=0.8, cond=c
        )
        return (r + 0.8 * k) / B

    rng = np.random.default_rng(0)
    idx = list(rng.choice(lay.w_offsets[-1] + 8 * 3, 30, replace=False))
    idx += list(lay.tail_offset + np.array([1, 5, 6]))  # learned sigma, dispersions
    mask = np.zeros(lay.size, bool)
    for W, b in lay.views(mask):
        W[...], b[...] = True, True
    lay.tail(mask)[...] = True
    checked = 0
    for i in idx:
        if not mask[i]:
            continue
        h = 1e-5 * max(1.0, abs(p[i]))
        assert g[i] == pytest.approx(fd4(loss, p, (i,), h), rel=1e-6, abs=1e-8), i
        checked += 1
    assert checked >= 20
    assert g[lay.tail_offset + np.array([1, 5, 6])].all()
    # columns without a tail parameter get no gradient there
    assert not g[lay.tail_offset + np.array([0, 2, 3, 4, 7])].any()


def test_missing_entries_do_not_count():
    """A row with every entry missing has reconstruction term 0 and sends no
    gradient into the decoder's output."""
    net, lay, _ = _network(missing=True)
    p = _params(lay, seed=1)
    X, _ = _data(seed=1)
    X[0, :] = np.nan
    g = lay.zeros(np.float64)
    net.gradients(p, g, X, None, 1, SEED, 0)
    assert net.row_losses(1)[0, 0] == 0.0
    W_out, b_out = lay.views(g)[-1]
    assert not W_out.any() and not b_out.any()


def test_a_level_out_of_range_is_a_non_finite_loss():
    net, lay, _ = _network()
    p = _params(lay, seed=1)
    X, _ = _data(seed=1)
    for bad in (4.0, -1.0, 1.5):
        Y = X.copy()
        Y[2, 3] = bad
        g = lay.zeros(np.float64)
        status, recon_sum, _ = net.gradients(p, g, Y, None, 5, SEED, 0)
        assert status == 1 and not np.isfinite(recon_sum), bad


def test_decode_gives_each_columns_mean():
    net, lay, names = _network(n_cond=C, missing=True)
    p = _params(lay, seed=4)
    Z = np.random.default_rng(0).standard_normal((N_ROWS, K))
    _, cond = _data(seed=4)
    means = net.decode(p, Z, cond=cond)
    h = np.hstack([Z, cond])
    for W, b, a in ref_layers(lay, p, names)[lay.n_encoder :]:
        h = ref.dense_forward(h, W, b, a)
    np.testing.assert_allclose(means, ref.columns_means(h, SPEC), rtol=1e-12)
    np.testing.assert_allclose(means[:, 3:7].sum(axis=1), 1.0, rtol=1e-12)
    assert (means[:, 7:9] > 0).all()


def test_elbo_and_log_likelihood_for_a_layout():
    """elbo_terms and the importance-sampled log p(x) run for a layout with
    missing entries; the estimate with many samples is above the ELBO."""
    net, lay, _ = _network(missing=True)
    p = _params(lay, seed=3)
    X, _ = _data(seed=3, missing_rate=0.2)
    recon, kl = net.elbo_terms(p, X, SEED, _rng.STREAM_EVAL)
    assert np.isfinite(recon).all() and np.isfinite(kl).all()
    ll = net.log_likelihood(p, X, 200, SEED, _rng.STREAM_EVAL)
    assert np.isfinite(ll).all()
    assert ll.mean() > -(recon + kl).mean()


def test_bitwise_identical_for_any_thread_count():
    results = []
    for n_threads in (1, 2, 3):
        net, lay, _ = _network(missing=True, n_cond=C, dtype=np.float32, n_samples=3)
        net.set_optimizer("adam", 0.01)
        p = _params(lay, seed=3, dtype=np.float32)
        X, cond = _data(seed=3, missing_rate=0.2, dtype=np.float32)
        g, s1, s2 = (lay.zeros(np.float32) for _ in range(3))
        for step in range(3):
            status, *_ = net.train_step(
                p, g, s1, s2, X, ROWS, B, SEED, step, n_threads=n_threads, cond=cond
            )
            assert status == 0
        results.append((p, g, s1, s2))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "columns, message",
    [
        ([("cauchy", 1, 1.0)], "kind must be one of"),
        ([("categorical", 1, 1.0)], "2 or more levels"),
        ([("poisson", 3, 1.0)], "has width 1"),
        ([("gaussian", 1, 0.0)], "sigma must be > 0"),
        ([("gaussian", 1)], "must be \\(kind, width, sigma\\)"),
        ([], "must not be empty"),
    ],
)
def test_bad_layouts_raise(columns, message):
    with pytest.raises(ValueError, match=message):
        network_module.Network(
            (2, 2),
            (1, 1),
            [0, 0],
            [0, 4],
            [2, 6],
            8,
            "columns",
            1.0,
            4,
            np.float64,
            columns=columns,
        )


def test_missing_needs_columns_and_columns_need_their_likelihood():
    args = ((2, 2), (1, 2), [0, 0], [0, 4], [2, 6], 8)
    with pytest.raises(ValueError, match="missing needs columns"):
        network_module.Network(*args, "bernoulli", 1.0, 4, np.float64, missing=True)
    with pytest.raises(ValueError, match="columns go with"):
        network_module.Network(
            *args, "bernoulli", 1.0, 4, np.float64, columns=[("bernoulli", 1, 1)]
        )


# -- count models with a library size (scVI's decoder) ------------------------

COUNTS = [("negbin", 1, 1.0)] * 3 + [("zinb", 1, 1.0)] * 2 + [("poisson", 1, 1.0)]


def _counts(n=N_ROWS, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.negative_binomial(2, 0.4, (n, len(COUNTS))).astype(dtype)
    X[1] = 0.0  # an empty row: library clamped to 1
    return X


@pytest.mark.parametrize("n_threads", [1, 2])
def test_library_gradients_match_reference(n_threads):
    net, lay, names = _network(COUNTS, library=True)
    p = _params(lay, seed=6)
    X = _counts(seed=6)
    rows = np.append(ROWS, 1)
    g = lay.zeros(np.float64)
    status, recon_sum, _ = net.gradients(
        p, g, X, rows, len(rows), SEED, 2, kl_weight=0.7, n_threads=n_threads
    )
    assert status == 0
    eps = _rng.normal_matrix(SEED, _rng.STREAM_REPARAM, 2, len(rows), K)
    _, recon, _, grads = ref.loss_and_grads_columns(
        ref_layers(lay, p, names),
        lay.n_encoder,
        X[rows],
        eps,
        COUNTS,
        lay.tail(p),
        beta=0.7,
        library=True,
    )
    assert recon_sum == pytest.approx(recon.sum(), rel=1e-12)
    np.testing.assert_allclose(g, flat_grads(lay, grads), rtol=1e-10, atol=1e-12)


def test_library_float32_matches_the_float64_reference():
    net, lay, names = _network(COUNTS, library=True, dtype=np.float32)
    p = _params(lay, seed=7, dtype=np.float32)
    X = _counts(seed=7, dtype=np.float32)
    g = lay.zeros(np.float32)
    status, recon_sum, _ = net.gradients(p, g, X, ROWS, B, SEED, 0)
    assert status == 0
    eps = _rng.normal_matrix(SEED, _rng.STREAM_REPARAM, 0, B, K, dtype=np.float32)
    _, recon, _, grads = ref.loss_and_grads_columns(
        ref_layers(lay, p.astype(np.float64), names),
        lay.n_encoder,
        X[ROWS].astype(np.float64),
        eps.astype(np.float64),
        COUNTS,
        lay.tail(p).astype(np.float64),
        library=True,
    )
    gref = flat_grads(lay, grads)
    assert recon_sum == pytest.approx(recon.sum(), rel=1e-5)
    np.testing.assert_allclose(g, gref, rtol=2e-4, atol=2e-4 * np.abs(gref).max())


def test_library_loss_finite_differences():
    net, lay, _ = _network(COUNTS, library=True, n_cond=C)
    p = _params(lay, seed=8)
    X = _counts(seed=8)
    _, cond = _data(seed=8)
    g = lay.zeros(np.float64)
    net.gradients(p, g, X, ROWS, B, SEED, 1, kl_weight=0.8, cond=cond)

    def loss():
        _, r, k = net.gradients(
            p, lay.zeros(np.float64), X, ROWS, B, SEED, 1, kl_weight=0.8, cond=cond
        )
        return (r + 0.8 * k) / B

    last_W, last_b = lay.w_offsets[-1], lay.b_offsets[-1]
    rng = np.random.default_rng(1)
    idx = list(rng.choice(last_W, 12, replace=False))
    idx += list(last_W + rng.choice(8 * lay.decoder_dims[-1], 12, replace=False))
    idx += list(last_b + np.arange(lay.decoder_dims[-1]))  # means and zinb logits
    idx += list(lay.tail_offset + np.arange(5))  # dispersions
    for i in idx:
        h = 1e-5 * max(1.0, abs(p[i]))
        assert g[i] == pytest.approx(fd4(loss, p, (i,), h), rel=1e-6, abs=1e-8), i
    assert g[lay.tail_offset + 5] == 0.0  # the Poisson column has no tail


def test_library_means_are_proportions():
    net, lay, names = _network(COUNTS, library=True)
    p = _params(lay, seed=4)
    Z = np.random.default_rng(0).standard_normal((N_ROWS, K))
    means = net.decode(p, Z)
    h = Z
    for W, b, a in ref_layers(lay, p, names)[lay.n_encoder :]:
        h = ref.dense_forward(h, W, b, a)
    np.testing.assert_allclose(
        means, ref.columns_means(h, COUNTS, library=True), rtol=1e-12
    )
    D = len(COUNTS)
    w = means[:, D:]  # zero-inflation probabilities
    assert ((w > 0) & (w < 1)).all()
    total = means[:, :D].sum(axis=1) + (means[:, 3:5] * w / (1 - w)).sum(axis=1)
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)


def test_library_needs_count_columns_and_no_gaps():
    with pytest.raises(ValueError, match="every column to be a count"):
        _network(SPEC, library=True)
    with pytest.raises(ValueError, match="no missing values"):
        _network(COUNTS, library=True, missing=True)


# -- the sparse first layer (Network.gradients_csr) -----------------------------


def _csr(X):
    sp = pytest.importorskip("scipy.sparse")
    A = sp.csr_matrix(X)
    return A.data, A.indices.astype(np.int32), A.indptr.astype(np.int64)


@pytest.mark.parametrize("n_threads", [1, 3])
def test_csr_gradients_match_reference(n_threads):
    """The first layer on the nonzeros (log1p counts, conditions too)."""
    net, lay, names = _network(COUNTS, library=True, n_cond=C)
    p = _params(lay, seed=12)
    X = _counts(seed=12)
    X[X < 2] = 0  # sparser
    _, cond = _data(seed=12)
    g = lay.zeros(np.float64)
    status, recon_sum, _ = net.gradients_csr(
        p, g, *_csr(X), ROWS, B, SEED, 3, kl_weight=0.6, n_threads=n_threads, cond=cond
    )
    assert status == 0
    eps = _rng.normal_matrix(SEED, _rng.STREAM_REPARAM, 3, B, K)
    _, recon, _, grads = ref.loss_and_grads_columns(
        ref_layers(lay, p, names),
        lay.n_encoder,
        X[ROWS],
        eps,
        COUNTS,
        lay.tail(p),
        beta=0.6,
        cond=cond[ROWS],
        library=True,
    )
    assert recon_sum == pytest.approx(recon.sum(), rel=1e-12)
    np.testing.assert_allclose(g, flat_grads(lay, grads), rtol=1e-10, atol=1e-12)


def test_csr_rows_are_checked():
    net, lay, _ = _network(COUNTS, library=True)
    p = _params(lay, seed=1)
    data, indices, indptr = _csr(_counts(seed=1))
    g = lay.zeros(np.float64)
    bad = indices.copy()
    bad[indptr[3]] = len(COUNTS)
    with pytest.raises(IndexError, match="column index 6 of row 3"):
        net.gradients_csr(p, g, data, bad, indptr, ROWS, B, SEED, 0)
    with pytest.raises(IndexError, match="row index 40 out of range"):
        rows = ROWS.copy()
        rows[0] = 40
        net.gradients_csr(p, g, data, indices, indptr, rows, B, SEED, 0)
    with pytest.raises(ValueError, match="one index per stored value"):
        net.gradients_csr(p, g, data, indices[:-1], indptr, ROWS, B, SEED, 0)
    other, lay2, _ = _network()
    with pytest.raises(ValueError, match="cannot read a CSR matrix"):
        other.gradients_csr(
            _params(lay2, 0),
            lay2.zeros(np.float64),
            data,
            indices,
            indptr,
            ROWS,
            B,
            0,
            0,
        )
