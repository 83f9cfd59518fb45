"""fastvae.TabularVAE and fastvae.data.tables: a DataFrame of mixed column
types with gaps in, synthetic rows, imputations and anomaly scores out."""

import warnings

import numpy as np
import pytest

import fastvae
from fastvae.data import tables

pd = pytest.importorskip("pandas")


def _frame(n=3000, seed=0, missing_rate=0.1):
    """Columns tied by two factors, with gaps in some of them."""
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n, 2))
    df = pd.DataFrame(
        {
            "size": np.exp(0.5 * f[:, 0] + 0.1 * rng.standard_normal(n)),
            "colour": pd.Categorical(
                np.array(["red", "green", "blue"])[np.digitize(f[:, 1], [-0.5, 0.5])],
                categories=["red", "green", "blue"],
            ),
            "grade": np.array(["A", "B", "C", "D"])[
                np.digitize(f[:, 0] + f[:, 1], [-1.0, 0.0, 1.0])
            ],
            "flag": f[:, 0] > 0.3,
            "answer": np.where(f[:, 1] > 0, "yes", "no"),
            "rooms": np.digitize(f[:, 0], [-1, 0, 1]) + 1,
            "visits": rng.poisson(np.exp(1.5 + 0.5 * f[:, 1])),
            "price": np.round(np.exp(8 + f[:, 0] + 0.2 * rng.standard_normal(n))),
            "id": np.arange(n),
            "note": [f"free text {i}" for i in range(n)],
        }
    )
    for name in ("size", "grade", "visits"):
        holes = rng.random(n) < missing_rate
        df[name] = df[name].astype(object if name == "grade" else float)
        df.loc[holes, name] = np.nan if name != "grade" else None
    return df


def test_kinds_are_inferred_and_identifiers_dropped_with_a_warning():
    df = _frame(n=500)
    with pytest.warns(UserWarning) as caught:
        schema = tables.infer_schema(df)
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {
        "size": "gaussian",
        "colour": "categorical",
        "grade": "categorical",
        "flag": "bernoulli",
        "answer": "bernoulli",
        "rooms": "categorical",
        "visits": "negbin",
        "price": "gaussian",
    }
    assert schema.dropped == ["id", "note"]
    text = " ".join(str(w.message) for w in caught)
    assert "'id' dropped" in text and "'note' dropped" in text
    colour = schema.columns[1]
    assert colour.levels == ["red", "green", "blue"]  # the category's own order
    assert schema.columns[0].missing_rate == pytest.approx(0.1, abs=0.04)


def test_kinds_can_be_overridden_and_bad_overrides_are_named():
    df = _frame(n=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schema = tables.infer_schema(
            df, {"rooms": "negbin", "note": "drop", "id": "drop", "price": "drop"}
        )
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds["rooms"] == "negbin" and "price" not in kinds
    with pytest.raises(ValueError, match=r"columns the table does not have: \['age'\]"):
        tables.infer_schema(df, {"age": "gaussian"})
    with pytest.raises(ValueError, match=r"kinds\['rooms'\] must be one of"):
        tables.infer_schema(df, {"rooms": "ordinal"})


@pytest.mark.parametrize("encoding", ["standard", "quantile"])
def test_encode_then_decode_gives_the_table_back(encoding):
    df = _frame(n=800)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schema = tables.infer_schema(df, encoding=encoding)
    X = schema.encode(df)
    back = schema.decode(X, np.random.default_rng(0))
    for name in ("colour", "grade", "flag", "answer", "rooms", "visits"):
        pd.testing.assert_series_equal(
            back[name], df[name].astype(back[name].dtype), check_names=False
        )
    tol = 1e-9 if encoding == "standard" else 0.05
    size = df["size"].to_numpy(dtype=float)
    seen = ~np.isnan(size)
    assert np.isnan(back["size"].to_numpy(dtype=float)[~seen]).all()
    err = np.abs(back["size"].to_numpy(dtype=float)[seen] - size[seen])
    assert np.median(err) < tol * np.median(size[seen])
    assert back["price"].dtype == df["price"].dtype  # rounded back to integers


def test_unseen_levels_are_refused_by_name():
    df = _frame(n=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schema = tables.infer_schema(df)
    other = df.copy()
    other.loc[0, "answer"] = "maybe"
    with pytest.raises(ValueError, match="'answer' has the value 'maybe'"):
        schema.encode(other)


@pytest.fixture(scope="module")
def fitted():
    df = _frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fastvae.TabularVAE(epochs=15, random_state=1).fit(df)
    return model, df


def test_sample_is_a_frame_like_the_table(fitted):
    model, df = fitted
    synth = model.sample(4000)
    assert list(synth.columns) == model.schema_.names
    assert synth["colour"].dtype == df["colour"].dtype
    assert list(synth["colour"].cat.categories) == ["red", "green", "blue"]
    assert synth["flag"].dtype == bool and synth["rooms"].dtype == df["rooms"].dtype
    assert set(synth["grade"].dropna()) <= {"A", "B", "C", "D"}
    for name in ("size", "grade", "visits"):  # missing at the observed rate
        assert synth[name].isna().mean() == pytest.approx(
            df[name].isna().mean(), abs=0.03
        )
    assert synth["colour"].notna().all()
    # the marginals follow the data
    share = synth["answer"].eq("yes").mean()
    assert share == pytest.approx(df["answer"].eq("yes").mean(), abs=0.06)
    assert synth["size"].median() == pytest.approx(df["size"].median(), rel=0.15)
    again = model.sample(4000)
    pd.testing.assert_frame_equal(synth, again)


def test_impute_fills_every_gap_and_keeps_the_rest(fitted):
    model, df = fitted
    filled = model.impute(df)
    kept = model.schema_.names
    assert not filled[kept].isna().any().any()
    seen = df["size"].notna()
    assert (filled.loc[seen, "size"] == df.loc[seen, "size"]).all()
    assert set(filled["grade"]) <= {"A", "B", "C", "D"}
    several = model.impute(df.head(50), n_imputations=3, random_state=0)
    assert len(several) == 3 and not several[0][kept].isna().any().any()


def test_anomaly_scores_rank_implausible_rows_first(fitted):
    model, df = fitted
    normal = df.sample(200, random_state=0)
    odd = normal.copy()
    odd["size"] = odd["size"] * 30  # far outside the data
    odd["visits"] = 400.0
    scores = model.anomaly_score(pd.concat([normal, odd]))
    labels = np.r_[np.zeros(200), np.ones(200)]
    order = np.argsort(scores)
    ranks = np.empty(400)
    ranks[order] = np.arange(400)
    auc = (ranks[labels == 1].sum() - 200 * 199 / 2) / (200 * 200)
    assert auc > 0.95, auc
    assert np.allclose(scores, -model.score_samples(pd.concat([normal, odd])))


def test_save_and_load_keep_the_schema(fitted, tmp_path):
    model, df = fitted
    model.save(tmp_path / "table.npz")
    back = fastvae.load(tmp_path / "table.npz")
    assert isinstance(back, fastvae.TabularVAE)
    assert back.schema_.to_dict() == model.schema_.to_dict()
    assert back.get_params() == model.get_params()
    pd.testing.assert_frame_equal(back.sample(100), model.sample(100))
    np.testing.assert_array_equal(back.score_samples(df), model.score_samples(df))


def test_a_structured_array_in_gives_one_out():
    rng = np.random.default_rng(0)
    n = 600
    arr = np.empty(n, dtype=[("x", float), ("n", int), ("c", "U2")])
    arr["x"] = rng.standard_normal(n)
    arr["n"] = rng.poisson(4, n) + 20 * (rng.random(n) < 0.1)
    arr["c"] = np.array(["aa", "bb", "cc"])[rng.integers(0, 3, n)]
    model = fastvae.TabularVAE(hidden=(32,), epochs=3).fit(arr)
    synth = model.sample(50)
    assert isinstance(synth, np.ndarray) and synth.dtype.names == ("x", "n", "c")
    assert set(synth["c"]) <= {"aa", "bb", "cc"}


def test_a_column_of_50000_levels_stays_small():
    """50,000 distinct values in 60,000 rows, kept as categorical: the 999
    most frequent keep their code, the rest share one and are sampled back
    by frequency; the model has about 0.3M parameters, not 6M."""
    rng = np.random.default_rng(0)
    n = 60000
    codes = np.minimum(rng.zipf(1.3, n), 50000)
    df = pd.DataFrame({"city": [f"c{c}" for c in codes], "x": rng.standard_normal(n)})
    model = fastvae.TabularVAE(
        hidden=(64,), latent_dim=4, epochs=1, kinds={"city": "categorical"}
    ).fit(df)
    spec = model.schema_.columns[0]
    assert len(spec.levels) == 999 and spec.n_levels == 1000
    assert model.vae_._fitted_layout.size < 400_000
    synth = model.sample(5000)
    assert synth["city"].isin(set(df["city"])).all()


def test_parameters_and_errors():
    model = fastvae.TabularVAE(latent_dim=3)
    assert model.get_params()["latent_dim"] == 3
    assert repr(model) == "TabularVAE(latent_dim=3)"
    with pytest.raises(fastvae.NotFittedError):
        model.sample(5)
    with pytest.raises(ValueError, match="invalid parameter"):
        model.set_params(depth=3)
    with pytest.raises(TypeError, match="DataFrame or a 1-D NumPy structured array"):
        model.fit(np.zeros((10, 3)))


@pytest.mark.filterwarnings("ignore:column 'note' dropped")
@pytest.mark.filterwarnings("ignore:column 'id' dropped")
def test_failed_fit_leaves_no_fitted_state():
    """Training that fails (here a bad setting only the VAE checks) leaves an
    unfitted model unfitted, and a fitted one as it was."""
    df = _frame(n=200)
    model = fastvae.TabularVAE(hidden=(8,), latent_dim=2, epochs=1, batch_size=-1)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(df)
    assert not hasattr(model, "schema_") and not hasattr(model, "vae_")
    with pytest.raises(fastvae.NotFittedError):
        model.sample(3)
    model.set_params(batch_size=64).fit(df)
    schema, vae = model.schema_, model.vae_
    model.set_params(batch_size=-1)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(df[["rooms"]])
    assert model.schema_ is schema and model.vae_ is vae
