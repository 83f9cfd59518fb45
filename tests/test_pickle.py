"""In-memory pickling of the estimators (what scikit-learn's clone of fitted
models, joblib and multiprocessing use); model files stay pickle-free."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import fastvae
from fastvae._core import _network


def _binary(n=80, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, d)) < 0.4).astype(np.float32)


def _small(cls=fastvae.VAE, **kw):
    settings = dict(hidden=(8,), latent_dim=3, epochs=2, batch_size=16, random_state=4)
    settings.update(kw)
    return cls(**settings)


TIMINGS = ("seconds", "samples_per_second")


def _same_fitted_state(a, b, timings=True):
    np.testing.assert_array_equal(a.params_, b.params_)
    for s, t in zip(a._opt_state, b._opt_state, strict=True):
        np.testing.assert_array_equal(s, t)
    assert a.get_params() == b.get_params()
    assert (a.n_features_in_, a.n_conditions_, a.n_iter_, a.t_) == (
        b.n_features_in_,
        b.n_conditions_,
        b.n_iter_,
        b.t_,
    )
    skip = () if timings else TIMINGS
    assert {k: v for k, v in a.history_.items() if k not in skip} == {
        k: v for k, v in b.history_.items() if k not in skip
    }
    assert a.loss_curve_ == b.loss_curve_


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "cls", [fastvae.VAE, fastvae.Autoencoder, fastvae.DenoisingAutoencoder]
)
def test_round_trip_is_exact(cls, dtype):
    X = _binary()
    model = _small(cls, dtype=dtype).fit(X)
    back = pickle.loads(pickle.dumps(model))
    assert type(back) is cls
    _same_fitted_state(model, back)
    assert back.params_.ctypes.data % 64 == 0 and back.params_.flags.writeable
    np.testing.assert_array_equal(back.transform(X), model.transform(X))
    np.testing.assert_array_equal(back.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(
        back.decode(model.transform(X)), model.decode(model.transform(X))
    )
    if cls is fastvae.VAE:
        np.testing.assert_array_equal(back.sample(5), model.sample(5))


def test_pickle_holds_no_compiled_objects_or_locks():
    model = _small().fit(_binary())
    state = model.__getstate__()
    assert "_lock" not in state and "_infer_net" not in state
    assert not any(isinstance(v, _network.Network) for v in state.values())
    # which is why they are left out: neither pickles
    with pytest.raises(TypeError):
        pickle.dumps(model._infer_net)
    with pytest.raises(TypeError):
        pickle.dumps(model._lock)
    back = pickle.loads(pickle.dumps(model))
    assert (
        isinstance(back._infer_net, _network.Network) and back._lock is not model._lock
    )


def test_unfitted_model_pickles():
    model = _small(optimizer=fastvae.optim.Momentum(lr=0.05), hidden=[8, 4])
    back = pickle.loads(pickle.dumps(model))
    assert back.get_params() == model.get_params() and back.hidden == [8, 4]
    assert not hasattr(back, "params_")
    with pytest.raises(fastvae.NotFittedError):
        back.transform(_binary())
    np.testing.assert_array_equal(
        back.fit(_binary()).params_, model.fit(_binary()).params_
    )


def test_unpickled_model_trains_on_exactly():
    """The optimizer state travels too: warm-started training after a round trip
    equals training the original further."""
    X = _binary()
    model = _small(warm_start=True).fit(X)
    back = pickle.loads(pickle.dumps(model))
    model.fit(X)
    back.fit(X)
    _same_fitted_state(model, back, timings=False)
    stepwise = _small().partial_fit(X)
    again = pickle.loads(pickle.dumps(stepwise)).partial_fit(X)
    np.testing.assert_array_equal(again.params_, stepwise.partial_fit(X).params_)


def test_conditional_model_round_trip():
    X = _binary()
    cond = np.eye(3, dtype=np.float32)[np.arange(len(X)) % 3]
    model = _small().fit(X, condition=cond)
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.transform(X, cond), model.transform(X, cond))
    np.testing.assert_array_equal(
        back.sample(4, condition=cond[0]), model.sample(4, condition=cond[0])
    )


def test_deepcopy_and_joblib_memmapped_load(tmp_path):
    joblib = pytest.importorskip("joblib")
    X = _binary()
    model = _small().fit(X)
    twin = copy.deepcopy(model)
    _same_fitted_state(model, twin)
    assert twin.params_ is not model.params_
    # joblib (scikit-learn's persistence and parallel backends) may hand the
    # arrays back as read-only memmaps: they become aligned buffers of our own
    joblib.dump(model, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib", mmap_mode="r")
    _same_fitted_state(model, loaded)
    assert not isinstance(loaded.params_, np.memmap) and loaded.params_.flags.writeable
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))


def test_model_files_stay_pickle_free(tmp_path):
    model = _small().fit(_binary())
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as f:  # raises on a pickled member
        assert set(f.files) >= {"params", "opt_state1", "opt_state2"}
        assert all(f[name].dtype != object for name in f.files)
    same = fastvae.load(path)
    np.testing.assert_array_equal(
        same.params_, pickle.loads(pickle.dumps(model)).params_
    )
