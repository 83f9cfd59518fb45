"""AnnData input (fastvae.data.annotated, fastvae.models.anndata_input):
fit(adata, layer=..., condition_key=...) is the fit on the same CSR matrix
and one-hot condition, bitwise, in memory and backed; the fitted layer,
key and levels carry to inference and through model files."""

import os
import tempfile

import numpy as np
import pytest

import fastvae
from fastvae.callbacks import Callback

anndata = pytest.importorskip("anndata")
pd = pytest.importorskip("pandas")
sp = pytest.importorskip("scipy.sparse")

N, D = 300, 40
LEVELS = ["b2", "a1", "c3"]  # categories in an order that is not sorted
SETTINGS = dict(
    hidden=(16,),
    latent_dim=3,
    likelihood="zinb",
    library="observed",
    epochs=2,
    batch_size=64,
    random_state=3,
)


def _data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    counts = rng.negative_binomial(2, 0.5, (n, D)) * (rng.random((n, D)) < 0.3)
    X = sp.csr_matrix(counts.astype(np.float32))
    codes = rng.integers(0, len(LEVELS), n)
    batch = pd.Categorical.from_codes(codes, categories=LEVELS)
    obs = pd.DataFrame(
        {"batch": batch, "donor": rng.integers(0, 2, n) + 7},
        index=[f"cell{i}" for i in range(n)],
    )
    # adata.X holds something else, so reading the layer is what is tested
    adata = anndata.AnnData(X=np.ones((n, D), dtype=np.float32), obs=obs)
    adata.layers["counts"] = X
    onehot = np.zeros((n, len(LEVELS)), dtype=np.float32)
    onehot[np.arange(n), codes] = 1.0
    return adata, X, onehot


def _backed(tmp_path, X, obs, name="a.h5ad"):
    anndata.AnnData(X=X, obs=obs).write_h5ad(tmp_path / name)
    return anndata.read_h5ad(tmp_path / name, backed="r")


class _SeeTempFolders(Callback):
    """Lists the temporary folder while training runs."""

    def __init__(self, folder):
        self.folder = folder
        self.seen = None

    def on_train_begin(self, model, info):
        self.seen = sorted(os.listdir(self.folder))


@pytest.fixture
def temp_folder(tmp_path, monkeypatch):
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_fit_on_adata_is_the_fit_on_its_layer_and_one_hot_batch():
    adata, X, onehot = _data()
    a = fastvae.VAE(**SETTINGS).fit(
        adata, layer="counts", condition_key="batch", validation_data=adata[:50]
    )
    b = fastvae.VAE(**SETTINGS).fit(
        X, condition=onehot, validation_data=(X[:50], onehot[:50])
    )
    assert np.array_equal(a.params_, b.params_)
    assert a.history_["val_elbo"] == b.history_["val_elbo"]
    assert a.anndata_layer_ == "counts" and a.condition_key_ == "batch"
    assert a.condition_levels_ == LEVELS

    test, X_test, onehot_test = _data(seed=1, n=120)
    assert np.array_equal(a.transform(test), b.transform(X_test, onehot_test))
    assert np.array_equal(a.score_samples(test), b.score_samples(X_test, onehot_test))
    assert a.score(test) == b.score(X_test, None, onehot_test)
    assert np.array_equal(
        a.log_likelihood(test, k=4), b.log_likelihood(X_test, onehot_test, k=4)
    )
    assert np.array_equal(a.reconstruct(test), b.reconstruct(X_test, onehot_test))
    for got, want in zip(a.encode(test), b.encode(X_test, onehot_test), strict=True):
        assert np.array_equal(got, want)
    # a view of an AnnData reads as the rows it selects
    assert np.array_equal(
        a.transform(test[10:20]), b.transform(X_test, onehot_test)[10:20]
    )


def test_levels_of_a_plain_column_are_its_sorted_values_and_x_is_read_as_is():
    adata, _, _ = _data()
    dense = np.asarray(adata.layers["counts"].todense())
    adata.X = dense
    a = fastvae.VAE(**SETTINGS).fit(adata, condition_key="donor")
    assert a.anndata_layer_ is None and a.condition_levels_ == [7, 8]
    cond = np.stack([adata.obs["donor"] == 7, adata.obs["donor"] == 8], axis=1)
    b = fastvae.VAE(**SETTINGS).fit(dense, condition=cond.astype(np.float32))
    assert np.array_equal(a.params_, b.params_)


def test_backed_fit_is_the_in_memory_fit_and_leaves_no_copy(tmp_path, temp_folder):
    adata, X, onehot = _data()
    backed = _backed(tmp_path, X, adata.obs)
    assert backed.isbacked
    watch = _SeeTempFolders(temp_folder)
    a = fastvae.VAE(**SETTINGS).fit(backed, condition_key="batch", callbacks=[watch])
    b = fastvae.VAE(**SETTINGS).fit(X, condition=onehot)
    assert np.array_equal(a.params_, b.params_)
    assert len(watch.seen) == 1 and watch.seen[0].startswith("fastvae-anndata-")
    assert os.listdir(temp_folder) == []
    assert np.array_equal(a.transform(backed), b.transform(X, onehot))
    assert np.array_equal(a.score_samples(backed), b.score_samples(X, onehot))
    assert os.listdir(temp_folder) == []


def test_the_copy_is_removed_when_training_fails(tmp_path, temp_folder):
    adata, X, _ = _data()
    backed = _backed(tmp_path, X, adata.obs)

    class Interrupt(Callback):
        def on_step_end(self, model, logs):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fastvae.VAE(**SETTINGS).fit(backed, callbacks=[Interrupt()])
    assert os.listdir(temp_folder) == []


def test_a_backed_csc_matrix_is_refused_naming_csr(tmp_path):
    adata, X, _ = _data()
    backed = _backed(tmp_path, X.tocsc(), adata.obs)
    with pytest.raises(ValueError, match="backed CSC matrix.*as CSR"):
        fastvae.VAE(**SETTINGS).fit(backed)


def test_partial_fit_reads_the_adata_as_the_first_pass_did():
    adata, X, onehot = _data()
    a = fastvae.VAE(**SETTINGS)
    b = fastvae.VAE(**SETTINGS)
    a.partial_fit(adata[:150], layer="counts", condition_key="batch")
    b.partial_fit(X[:150], condition=onehot[:150])
    a.partial_fit(adata[150:])
    b.partial_fit(X[150:], condition=onehot[150:])
    assert np.array_equal(a.params_, b.params_)
    assert a.condition_levels_ == LEVELS


def test_resume_reads_the_adata_as_the_checkpointed_fit(tmp_path):
    adata, _, _ = _data()
    kw = dict(SETTINGS, epochs=1)
    fastvae.VAE(**kw).fit(
        adata, layer="counts", condition_key="batch", checkpoint=tmp_path / "run"
    )
    resumed = fastvae.resume(tmp_path / "run", adata, epochs=2)
    whole = fastvae.VAE(**SETTINGS).fit(adata, layer="counts", condition_key="batch")
    assert np.array_equal(resumed.params_, whole.params_)
    assert resumed.condition_levels_ == LEVELS


def test_save_and_load_keep_the_conversion(tmp_path):
    adata, X, onehot = _data()
    a = fastvae.VAE(**SETTINGS).fit(adata, layer="counts", condition_key="batch")
    a.save(tmp_path / "m.npz")
    loaded = fastvae.load(tmp_path / "m.npz")
    assert loaded.anndata_layer_ == "counts"
    assert loaded.condition_key_ == "batch" and loaded.condition_levels_ == LEVELS
    assert np.array_equal(loaded.transform(adata), a.transform(X, onehot))


def test_files_without_the_conversion_still_load():
    _, X, onehot = _data()
    a = fastvae.VAE(**SETTINGS).fit(X, condition=onehot)
    assert a.condition_key_ is None and a.condition_levels_ is None
    state, arrays = a._state()
    for name in ("anndata_layer_", "condition_key_", "condition_levels_"):
        del state["fitted"][name]
    b = fastvae.VAE()
    b._set_state(state, arrays)
    assert b.condition_key_ is None
    assert np.array_equal(b.transform(X, onehot), a.transform(X, onehot))
    state["fitted"]["condition_key_"] = "batch"
    state["fitted"]["condition_levels_"] = ["x"]  # one level, three columns
    with pytest.raises(ValueError, match="condition_levels_ must be 3"):
        fastvae.VAE()._set_state(state, arrays)


def test_a_fit_on_arrays_forgets_the_adata_conversion():
    adata, X, onehot = _data()
    vae = fastvae.VAE(**SETTINGS).fit(adata, layer="counts", condition_key="batch")
    vae.fit(X, condition=onehot)
    assert vae.anndata_layer_ is None and vae.condition_key_ is None


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda vae, adata, X, c: vae.fit(adata, layer="raw"),
            r"layer 'raw' is not in adata.layers; its layers are \['counts'\]",
        ),
        (
            lambda vae, adata, X, c: vae.fit(adata, condition_key="sample"),
            r"condition_key 'sample' is not a column of adata.obs; its columns are "
            r"\['batch', 'donor'\]",
        ),
        (
            lambda vae, adata, X, c: vae.fit(adata, condition=c, condition_key="batch"),
            "pass condition or condition_key, not both",
        ),
        (
            lambda vae, adata, X, c: vae.fit(X, layer="counts"),
            "layer and condition_key read an AnnData; X is a csr_matrix",
        ),
        (
            lambda vae, adata, X, c: vae.fit(X.toarray(), condition_key="batch"),
            "layer and condition_key read an AnnData; X is a ndarray",
        ),
    ],
)
def test_mistakes_name_the_problem(call, message):
    adata, X, onehot = _data()
    with pytest.raises(ValueError, match=message):
        call(fastvae.VAE(**SETTINGS), adata, X, onehot)


def test_missing_values_in_the_key_are_refused():
    adata, _, _ = _data()
    adata.obs["donor"] = adata.obs["donor"].astype(float)
    adata.obs.loc["cell5", "donor"] = np.nan
    with pytest.raises(ValueError, match=r"adata.obs\['donor'\] has 1 missing .*cell5"):
        fastvae.VAE(**SETTINGS).fit(adata, layer="counts", condition_key="donor")


def test_inference_refuses_unknown_levels_and_a_second_condition():
    adata, _, onehot = _data()
    vae = fastvae.VAE(**SETTINGS).fit(adata, layer="counts", condition_key="batch")
    other = adata[:20].copy()
    other.obs["batch"] = pd.Categorical(["z9"] * 20)
    with pytest.raises(ValueError, match=r"level 'z9'.*not fitted with.*'batch'"):
        vae.transform(other)
    with pytest.raises(ValueError, match=r"takes it from adata.obs\['batch'\]"):
        vae.score_samples(adata, onehot)
