"""fastvae's estimators in scikit-learn: its own estimator checks, Pipeline,
GridSearchCV, clone, partial_fit, feature names, and the row-by-row
determinism the checks rely on (skipped without scikit-learn, which fastvae
does not need at run time)."""

from __future__ import annotations

import inspect
import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastvae  # noqa: E402

SMALL = dict(hidden=(8,), latent_dim=2, epochs=2, batch_size=16)

# scikit-learn's checks fit on standard-normal and uniform data with values
# outside [0, 1]. The Gaussian models pass every check; the Bernoulli VAE (the
# default likelihood, for data in [0, 1]) rejects those data with a ValueError
# naming the range, so every check that fits on them is expected to fail.
_OUTSIDE_UNIT_INTERVAL = (
    "fits on data outside [0, 1], which the Bernoulli likelihood refuses "
    "(the Gaussian VAE passes it)"
)
BERNOULLI_EXPECTED_FAILURES = {
    name: _OUTSIDE_UNIT_INTERVAL
    for name in (
        "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit",
        "check_estimators_dtypes",
        "check_pipeline_consistency",
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_transformer_data_not_an_array",
        "check_transformer_general",
        "check_transformer_preserve_dtypes",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_fit2d_1sample",
        "check_fit2d_1feature",
        "check_dict_unchanged",
        "check_fit_idempotent",
        "check_fit_check_is_fitted",
        "check_n_features_in",
        "check_fit2d_predict1d",
    )
}

ESTIMATORS = [
    fastvae.VAE(likelihood="gaussian", **SMALL),
    fastvae.VAE(likelihood="gaussian", dtype=np.float64, **SMALL),
    fastvae.VAE(likelihood="gaussian", objective="iwae", n_latent_samples=3, **SMALL),
    fastvae.Autoencoder(likelihood="gaussian", **SMALL),
    fastvae.DenoisingAutoencoder(likelihood="gaussian", **SMALL),
    fastvae.VAE(**SMALL),  # Bernoulli
]


def _expected_failures(estimator):
    if estimator.likelihood == "bernoulli":
        return BERNOULLI_EXPECTED_FAILURES
    return {}


_strict = (
    {"xfail_strict": True}
    if "xfail_strict" in inspect.signature(parametrize_with_checks).parameters
    else {}
)


with warnings.catch_warnings():  # "does not inherit from BaseEstimator": by design
    warnings.simplefilter("ignore", UserWarning)
    _CHECKS = parametrize_with_checks(
        ESTIMATORS, expected_failed_checks=_expected_failures, **_strict
    )


@pytest.mark.filterwarnings("ignore::UserWarning")  # batch_size > the checks' tiny data
@_CHECKS
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_tags():
    from sklearn.utils import get_tags

    tags = get_tags(fastvae.VAE())
    assert tags.estimator_type == "density_estimator"
    assert not tags.target_tags.required and tags.input_tags.sparse
    assert tags.transformer_tags.preserves_dtype == ["float32"]
    assert get_tags(fastvae.VAE(dtype="float64")).transformer_tags.preserves_dtype == [
        "float64"
    ]
    assert get_tags(fastvae.Autoencoder()).estimator_type is None


# -- data ----------------------------------------------------------------------


def _unit(n=120, d=10, seed=0):
    """Data in [0, 1] with structure: two latent factors through a sigmoid."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    W = rng.standard_normal((2, d))
    return (1 / (1 + np.exp(-(z @ W)))).astype(np.float32)


# -- Pipeline, GridSearchCV, clone --------------------------------------------------


def test_pipeline_with_scaler_and_vae():
    rng = np.random.default_rng(1)
    X = 5.0 * _unit(90, 8) + rng.normal(3.0, 0.1, (90, 8))  # not in [0, 1]
    pipe = Pipeline(
        [
            ("scale", MinMaxScaler()),
            ("vae", fastvae.VAE(hidden=(8,), latent_dim=2, epochs=3, batch_size=16)),
        ]
    )
    Z = pipe.fit(X).transform(X)
    assert Z.shape == (90, 2) and Z.dtype == np.float32
    scaled = MinMaxScaler().fit_transform(X)
    direct = fastvae.VAE(hidden=(8,), latent_dim=2, epochs=3, batch_size=16).fit(scaled)
    np.testing.assert_array_equal(Z, direct.transform(scaled))
    assert pipe.score(X) == pytest.approx(direct.score(scaled))
    np.testing.assert_array_equal(pipe.get_feature_names_out(), ["vae0", "vae1"])
    np.testing.assert_array_equal(pipe.fit_transform(X), Z)


def test_grid_search_picks_latent_dim_by_score():
    X = _unit(96, 10)
    search = GridSearchCV(
        fastvae.VAE(hidden=(16,), epochs=4, batch_size=16, random_state=0),
        {"latent_dim": [2, 8]},
        cv=3,
    )
    search.fit(X)
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (2,) and np.all(np.isfinite(scores))
    # each fold's score is the mean ELBO of the held-out rows (VAE.score)
    folds = list(sklearn.model_selection.KFold(3).split(X))  # cv=3 without labels
    for i, k in enumerate([2, 8]):
        want = np.mean(
            [
                fastvae.VAE(
                    hidden=(16,), latent_dim=k, epochs=4, batch_size=16, random_state=0
                )
                .fit(X[train])
                .score(X[test])
                for train, test in folds
            ]
        )
        assert scores[i] == pytest.approx(want, rel=1e-12)
    assert search.best_params_ == {"latent_dim": [2, 8][int(np.argmax(scores))]}
    assert search.best_estimator_.n_features_in_ == 10
    assert search.best_estimator_.transform(X).shape == (
        96,
        search.best_params_["latent_dim"],
    )


def test_clone_keeps_parameters_and_drops_fitted_state():
    vae = fastvae.VAE(
        hidden=[8],
        latent_dim=3,
        epochs=1,
        batch_size=16,
        optimizer=fastvae.optim.Adam(lr=0.01),
    ).fit(_unit(40, 6))
    twin = clone(vae)
    assert twin.get_params() == vae.get_params()
    assert twin.hidden == [8] and not hasattr(twin, "params_")
    np.testing.assert_array_equal(twin.fit(_unit(40, 6)).params_, vae.params_)


# -- the estimator protocol ---------------------------------------------------------


def test_feature_names_out():
    X = _unit(40, 6)
    with pytest.raises(fastvae.NotFittedError):
        fastvae.VAE().get_feature_names_out()
    vae = fastvae.VAE(hidden=(8,), latent_dim=3, epochs=1, batch_size=16).fit(X)
    names = vae.get_feature_names_out()
    assert names.dtype == object and names.tolist() == ["vae0", "vae1", "vae2"]
    named = vae.get_feature_names_out([f"x{i}" for i in range(6)])
    assert named.tolist() == names.tolist()
    with pytest.raises(
        ValueError, match="input_features has 2 names, but VAE is expecting 6"
    ):
        vae.get_feature_names_out(["a", "b"])
    ae = fastvae.DenoisingAutoencoder(
        hidden=(8,), latent_dim=2, epochs=1, batch_size=16
    ).fit(X)
    assert ae.get_feature_names_out().tolist() == [
        "denoisingautoencoder0",
        "denoisingautoencoder1",
    ]


def test_partial_fit_is_one_epoch_with_state_kept():
    X = _unit(100, 8)
    settings = dict(hidden=(8,), latent_dim=2, batch_size=16, random_state=3)
    stepwise = fastvae.VAE(**settings)
    assert stepwise.partial_fit(X) is stepwise
    assert stepwise.n_iter_ == 1 and stepwise.t_ == 7
    stepwise.partial_fit(X)
    assert stepwise.n_iter_ == 2 and stepwise.t_ == 14
    # two passes = fit with epochs=2: same shuffles, Adam's state carried over
    whole = fastvae.VAE(epochs=2, **settings).fit(X)
    np.testing.assert_array_equal(stepwise.params_, whole.params_)
    np.testing.assert_array_equal(stepwise._opt_state[1], whole._opt_state[1])
    assert stepwise.loss_curve_ == whole.loss_curve_
    # a pass over a batch smaller than batch_size is one step on all of it
    stepwise.partial_fit(X[:5])
    assert stepwise.t_ == 15 and stepwise.n_iter_ == 3


def test_partial_fit_checks_what_it_continues():
    X = _unit(40, 8)
    vae = fastvae.VAE(hidden=(8,), latent_dim=2, batch_size=16).partial_fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but VAE is expecting 8"):
        vae.partial_fit(X[:, :3])
    vae.set_params(latent_dim=4)
    with pytest.raises(ValueError, match="call fit to start over"):
        vae.partial_fit(X)


def test_warm_start_fit_continues_from_learned_parameters():
    X = _unit(64, 8)
    settings = dict(hidden=(8,), latent_dim=2, batch_size=16, random_state=2)
    warm = fastvae.VAE(epochs=1, warm_start=True, **settings).fit(X)
    first = warm.params_.copy()
    warm.fit(X)
    assert warm.n_iter_ == 2 and not np.array_equal(warm.params_, first)
    np.testing.assert_array_equal(
        warm.params_, fastvae.VAE(epochs=2, **settings).fit(X).params_
    )
    cold = fastvae.VAE(epochs=1, **settings).fit(X)
    cold.fit(X)
    assert cold.n_iter_ == 1
    np.testing.assert_array_equal(cold.params_, first)


def test_score_is_the_mean_per_sample_elbo():
    X = _unit(50, 8)
    vae = fastvae.VAE(hidden=(8,), latent_dim=2, epochs=2, batch_size=16).fit(X)
    elbo = vae.score_samples(X)
    assert vae.score(X) == pytest.approx(float(np.mean(elbo)), rel=1e-15)
    assert vae.score(X) == vae.score(X)  # deterministic
    assert vae.score(X, np.zeros(len(X))) == vae.score(X)  # y is ignored


def test_fit_twice_with_the_same_seed_is_identical():
    X = _unit(60, 8)
    vae = fastvae.VAE(
        hidden=(8,), latent_dim=2, epochs=2, batch_size=16, random_state=7
    )
    a = vae.fit(X).params_.copy()
    Za = vae.transform(X)
    np.testing.assert_array_equal(vae.fit(X).params_, a)
    np.testing.assert_array_equal(vae.transform(X), Za)
    assert not np.array_equal(clone(vae).set_params(random_state=8).fit(X).params_, a)


# -- row by row ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_inference_is_bitwise_row_invariant(dtype, n_threads):
    """Random permutations and subsets give bitwise the rows of the whole batch
    for every inference method (a 64-feature model whose layers use the vector
    body and the ragged tails of the row kernel; more rows than one 512-row
    chunk)."""
    rng = np.random.default_rng(0)
    X = _unit(1100, 64, seed=1).astype(dtype)
    vae = fastvae.VAE(
        hidden=(40, 24),
        latent_dim=5,
        epochs=1,
        batch_size=64,
        dtype=dtype,
        n_threads=n_threads,
    ).fit(X)
    ae = fastvae.Autoencoder(
        hidden=(40,),
        latent_dim=5,
        epochs=1,
        batch_size=64,
        dtype=dtype,
        n_threads=n_threads,
    ).fit(X)
    Z = rng.standard_normal((1100, 5)).astype(dtype)
    methods = [
        (vae.transform, X),
        (vae.score_samples, X),
        (vae.reconstruct, X),
        (vae.decode, Z),
        (ae.transform, X),
        (ae.score_samples, X),
    ]
    for method, data in methods:
        whole = method(data)
        for _ in range(3):
            perm = rng.permutation(len(data))
            np.testing.assert_array_equal(method(data[perm]), whole[perm])
            sub = rng.choice(len(data), size=int(rng.integers(1, 600)), replace=False)
            np.testing.assert_array_equal(method(data[sub]), whole[sub])
        np.testing.assert_array_equal(method(data[7:8]), whole[7:8])
    # and the numbers do not depend on the thread count
    other = pickle.loads(pickle.dumps(vae)).set_params(n_threads=3 - n_threads)
    np.testing.assert_array_equal(other.transform(X), vae.transform(X))
    np.testing.assert_array_equal(other.score_samples(X), vae.score_samples(X))


def test_input_kinds_and_refusals():
    import scipy.sparse

    X = _unit(40, 6)
    vae = fastvae.VAE(hidden=(8,), latent_dim=2, epochs=1, batch_size=16).fit(X)
    want = vae.transform(X)
    np.testing.assert_array_equal(vae.transform(X.astype(np.float64)), want)
    ints = (X > 0.5).astype(np.int32)
    np.testing.assert_array_equal(
        vae.transform(ints), vae.transform(ints.astype(np.float32))
    )
    ro = X.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(vae.transform(ro), want)
    for bad, message in [
        (np.where(X > 0.9, np.nan, X), "NaN or infinite"),
        (np.where(X > 0.9, np.inf, X), "NaN or infinite"),
        (X.astype(np.complex64), "Complex data not supported"),
    ]:
        with pytest.raises(ValueError, match=message):
            fastvae.VAE(hidden=(8,), latent_dim=2, epochs=1, batch_size=16).fit(bad)
        with pytest.raises(ValueError, match=message):
            vae.transform(bad)
    # a sparse matrix is read a minibatch at a time, like the dense data
    np.testing.assert_array_equal(vae.transform(scipy.sparse.csr_matrix(X)), want)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        fastvae.VAE(hidden=(8,), latent_dim=2, epochs=1).fit(
            scipy.sparse.csr_matrix(X * 2)
        )


def test_grid_search_over_a_clipping_pipeline_scores_every_candidate():
    X = np.random.default_rng(0).normal(size=(300, 10))
    pipe = Pipeline(
        [
            ("scale", MinMaxScaler(clip=True)),
            ("vae", fastvae.VAE(hidden=(16,), latent_dim=2, epochs=2, batch_size=50)),
        ]
    )
    search = GridSearchCV(pipe, {"vae__latent_dim": [2, 4]}, cv=3).fit(X)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # without clip, held-out rows leave [0, 1] and the error says what to do
    pipe.set_params(scale=MinMaxScaler()).fit(X[:200])
    with pytest.raises(ValueError, match=r"MinMaxScaler\(clip=True\) keeps held-out"):
        pipe.score(X[200:] * 3)


@pytest.mark.parametrize("cls", [fastvae.VAE, fastvae.Autoencoder])
def test_inverse_transform_decodes_codes(cls):
    X = (np.random.default_rng(1).random((120, 12)) < 0.4).astype(np.float32)
    model = cls(hidden=(8,), latent_dim=3, epochs=2, batch_size=40).fit(X)
    Z = model.transform(X)
    np.testing.assert_array_equal(model.inverse_transform(Z), model.decode(Z))
    assert model.inverse_transform(Z).shape == X.shape


def test_set_output_pandas_names_columns_and_keeps_the_index():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        rng.random((90, 4)), columns=["a", "b", "c", "d"], index=np.arange(90) + 7
    )
    vae = fastvae.VAE(hidden=(8,), latent_dim=2, epochs=1, batch_size=30)
    assert vae.set_output(transform="pandas") is vae
    Z = vae.fit_transform(frame)
    assert list(Z.columns) == ["vae0", "vae1"] and Z.index.equals(frame.index)
    np.testing.assert_array_equal(vae.feature_names_in_, ["a", "b", "c", "d"])
    back = vae.inverse_transform(Z)
    assert list(back.columns) == ["a", "b", "c", "d"] and back.index.equals(Z.index)
    # a clone keeps the choice; "default" goes back to arrays
    assert clone(vae)._sklearn_output_config == {"transform": "pandas"}
    assert isinstance(vae.set_output(transform="default").transform(frame), np.ndarray)
    # a pipeline sets it on its steps
    pipe = Pipeline([("scale", MinMaxScaler(clip=True)), ("vae", clone(vae))])
    assert list(pipe.set_output(transform="pandas").fit_transform(frame).columns) == [
        "vae0",
        "vae1",
    ]
    with pytest.raises(ValueError, match="transform must be 'default', 'pandas'"):
        vae.set_output(transform="polars")
    # arrays in: no recorded names, generic ones out
    vae.set_output(transform="pandas").fit(frame.to_numpy())
    assert not hasattr(vae, "feature_names_in_")
    assert list(vae.inverse_transform(vae.transform(frame.to_numpy())).columns) == [
        "x0",
        "x1",
        "x2",
        "x3",
    ]


def test_seed_is_a_deprecated_name_of_random_state(tmp_path):
    X = _unit(60, 8)
    settings = dict(hidden=(8,), latent_dim=2, epochs=1, batch_size=20)
    new = fastvae.VAE(random_state=5, **settings).fit(X)
    old = fastvae.VAE(seed=5, **settings)
    assert "random_state" in old.get_params() and old.get_params()["seed"] == 5
    with pytest.warns(FutureWarning, match=r"seed=\.\.\.\) is deprecated .* 0\.3"):
        old.fit(X)
    np.testing.assert_array_equal(old.params_, new.params_)
    # a model file from before random_state (params hold "seed") loads as it
    from _zipfiles import members, meta, rewrite, with_meta

    new.save(tmp_path / "m.npz")
    entries = members(tmp_path / "m.npz")
    old_meta = meta(entries)
    del old_meta["params"]["random_state"]
    old_meta["params"]["seed"] = 5
    rewrite(tmp_path / "m.npz", with_meta(entries, old_meta))
    loaded = fastvae.load(tmp_path / "m.npz")
    assert loaded.random_state == 5 and loaded.seed is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded.transform(X)
